//! The row filter of a `postgres_changes` binding, as realtime-js passes it: `column=op.value`
//! with `op` one of `eq`, `neq`, `lt`, `lte`, `gt`, `gte`, or `in.(a,b,"c,d")`.

use crate::limits::{FILTER_BYTES_MAX, FILTER_VALUES_MAX};
use crate::protocol::ProtocolError;

/// A comparison of one column with constants (compared as the column's type when evaluated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub column: String,
    pub op: FilterOp,
    /// One value, or the list of `in`.
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
}

impl FilterOp {
    /// The operator as filters write it (`eq`, `in`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FilterOp::Eq => "eq",
            FilterOp::Neq => "neq",
            FilterOp::Lt => "lt",
            FilterOp::Lte => "lte",
            FilterOp::Gt => "gt",
            FilterOp::Gte => "gte",
            FilterOp::In => "in",
        }
    }

    /// The SQL operator (`IN` for a list).
    pub fn sql(self) -> &'static str {
        match self {
            FilterOp::Eq => "=",
            FilterOp::Neq => "<>",
            FilterOp::Lt => "<",
            FilterOp::Lte => "<=",
            FilterOp::Gt => ">",
            FilterOp::Gte => ">=",
            FilterOp::In => "IN",
        }
    }
}

impl Filter {
    /// The filter as a SQL predicate over the table's columns, every name and value quoted
    /// (values are text literals the column's type coerces, as PostgREST filters are).
    pub fn to_sql(&self) -> String {
        let column = bkg_sql::quote::ident(&self.column);
        match self.op {
            FilterOp::In => {
                let items: Vec<String> = self.values.iter().map(|v| bkg_sql::quote::literal(v)).collect();
                format!("{column} IN ({})", items.join(", "))
            }
            op => format!("{column} {} {}", op.sql(), bkg_sql::quote::literal(&self.values[0])),
        }
    }

    /// Parses `column=op.value`.
    pub fn parse(text: &str) -> Result<Filter, ProtocolError> {
        let bad = |why: &str| ProtocolError::new(format!("invalid filter {text:?}: {why}"));
        if text.len() > FILTER_BYTES_MAX {
            return Err(ProtocolError::new(format!("filter of {} bytes is over {FILTER_BYTES_MAX}", text.len())));
        }
        let (column, rest) = text.split_once('=').ok_or_else(|| bad("expected column=op.value"))?;
        let column = column.trim();
        if column.is_empty() {
            return Err(bad("no column"));
        }
        let (op, value) = rest.split_once('.').ok_or_else(|| bad("expected op.value after ="))?;
        const OPS: [FilterOp; 7] =
            [FilterOp::Eq, FilterOp::Neq, FilterOp::Lt, FilterOp::Lte, FilterOp::Gt, FilterOp::Gte, FilterOp::In];
        let op = OPS
            .into_iter()
            .find(|o| o.as_str() == op)
            .ok_or_else(|| bad(&format!("unknown operator {op:?} (eq, neq, lt, lte, gt, gte, in)")))?;
        let values = if op == FilterOp::In {
            let inner =
                value.strip_prefix('(').and_then(|v| v.strip_suffix(')')).ok_or_else(|| bad("in needs (a,b,...)"))?;
            let items = split_list(inner).map_err(&bad)?;
            if items.is_empty() || items.len() > FILTER_VALUES_MAX {
                return Err(bad(&format!("in takes 1 to {FILTER_VALUES_MAX} values")));
            }
            items
        } else {
            vec![value.to_string()]
        };
        Ok(Filter { column: column.to_string(), op, values })
    }
}

/// Splits `a,b,"c,d"` into its items; double quotes protect commas, `\"` and `\\` escape.
fn split_list(text: &str) -> Result<Vec<String>, &'static str> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => cur.push(chars.next().ok_or("a list ends inside an escape")?),
            '"' if quoted => quoted = false,
            '"' if cur.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            ',' if !quoted => {
                items.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("a quoted value is not closed");
    }
    if !cur.is_empty() || was_quoted || !items.is_empty() {
        items.push(cur);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_quoted_sql() {
        assert_eq!(Filter::parse("room_id=eq.1").unwrap().to_sql(), "\"room_id\" = '1'");
        assert_eq!(Filter::parse("Name=neq.o'k").unwrap().to_sql(), "\"Name\" <> 'o''k'");
        assert_eq!(Filter::parse("c=in.(a,\"b,c\")").unwrap().to_sql(), "\"c\" IN ('a', 'b,c')");
    }

    #[test]
    fn filters_parse_as_realtime_js_sends_them() {
        let f = Filter::parse("room_id=eq.1").unwrap();
        assert_eq!((f.column.as_str(), f.op, f.values), ("room_id", FilterOp::Eq, vec!["1".to_string()]));
        // The value is everything after the first dot.
        assert_eq!(Filter::parse("price=gte.10.5").unwrap().values, vec!["10.5"]);
        assert_eq!(Filter::parse("name=neq.").unwrap().values, vec![""]);
        let list = Filter::parse(r#"color=in.(red,"blue, green","say \"hi\"")"#).unwrap();
        assert_eq!(list.op, FilterOp::In);
        assert_eq!(list.values, vec!["red", "blue, green", "say \"hi\""]);
        for (op, sql) in [("lt", "<"), ("lte", "<="), ("gt", ">"), ("neq", "<>")] {
            assert_eq!(Filter::parse(&format!("a={op}.1")).unwrap().op.sql(), sql);
        }
    }

    #[test]
    fn bad_filters_say_why() {
        let bad = |t: &str| Filter::parse(t).unwrap_err().message;
        assert!(bad("room_id").contains("column=op.value"));
        assert!(bad("=eq.1").contains("no column"));
        assert!(bad("a=eq").contains("op.value"));
        assert!(bad("a=like.x").contains("unknown operator"));
        assert!(bad("a=in.1,2").contains("(a,b,...)"));
        assert!(bad("a=in.()").contains("1 to"));
        assert!(bad(r#"a=in.("x)"#).contains("not closed"));
        let many = format!("a=in.({})", vec!["1"; FILTER_VALUES_MAX + 1].join(","));
        assert!(bad(&many).contains("1 to"));
        assert!(bad(&format!("a=eq.{}", "x".repeat(FILTER_BYTES_MAX))).contains("over"));
    }
}
