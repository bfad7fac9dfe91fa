//! `/rest/v1/{table}`: PostgREST requests turned into SQL on the one session path.
//!
//! Every identifier comes from the catalog (unknown names are errors, known ones are quoted) and
//! every value is bound as a parameter after parsing, so nothing in a URL, header or body can
//! change a statement's structure. Privileges are checked by the session as for any SQL.

use std::collections::HashMap;

use bkg_kernel::{Catalog, DataType, TableDef};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast;
use serde_json::Value as Json;

use super::error::RestError;
use super::grammar::{self, Cond, Embed, Field, Filter, IsValue, Op, Operand, OrderTerm, SelectItem};
use super::output::{csv_field, field_is_json, json_value};
use crate::limits::EMBED_DEPTH_MAX;
use bkg_sql::SqlState;
use bkg_sql::pg_format::text_value;
use bkg_sql::{Output, Session};

/// Most key values fetched per embedding query; more are fetched in several queries.
const EMBED_KEYS_PER_QUERY: usize = 500;

/// A table or view the request names, with its columns.
#[derive(Debug, Clone)]
pub struct Rel {
    pub schema: String,
    pub name: String,
    pub columns: Vec<(String, DataType)>,
    /// The table definition (None for views).
    pub def: Option<TableDef>,
}

impl Rel {
    pub fn resolve(cat: &Catalog, schema: &str, name: &str) -> Result<Rel, RestError> {
        if let Some(t) = cat.find_table(schema, name) {
            return Ok(Rel::of_table(t));
        }
        if let Some(v) = cat.find_view(schema, name) {
            return Ok(Rel { schema: v.schema.clone(), name: v.name.clone(), columns: v.columns.clone(), def: None });
        }
        Err(RestError::new(404, SqlState::UndefinedTable, format!("relation \"{schema}.{name}\" does not exist"))
            .hint("Check the table name and the schema (Accept-Profile / Content-Profile headers)."))
    }

    fn of_table(t: &TableDef) -> Rel {
        Rel {
            schema: t.schema.clone(),
            name: t.name.clone(),
            columns: t.live_columns().map(|(_, c)| (c.name.clone(), c.data_type.clone())).collect(),
            def: Some(t.clone()),
        }
    }

    pub fn sql_name(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }

    pub fn column(&self, name: &str) -> Result<&DataType, RestError> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, t)| t).ok_or_else(|| {
            RestError::new(400, SqlState::UndefinedColumn, format!("column {}.{} does not exist", self.name, name))
                .hint("Column names are case-sensitive.")
        })
    }

    pub fn primary_key(&self) -> Vec<String> {
        match self.def.as_ref().and_then(|d| d.primary_key().map(|pk| (d, pk))) {
            Some((d, pk)) => pk.columns.iter().map(|&p| d.columns[p].name.clone()).collect(),
            None => vec![],
        }
    }
}

pub use bkg_sql::quote::ident as quote;

/// The SQL type a text parameter is cast to before it meets a column of type `dt`; None when
/// the column holds text already (text, varchar, uuid, json) or arrays (their text form is
/// converted by INSERT and comparisons).
pub fn cast_name(dt: &DataType) -> Option<String> {
    Some(match dt {
        DataType::Bool => "BOOLEAN".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE PRECISION".into(),
        DataType::Numeric { precision, scale } => format!("DECIMAL({precision},{scale})"),
        DataType::Date => "DATE".into(),
        DataType::Time => "TIME".into(),
        DataType::Timestamp => "TIMESTAMP".into(),
        DataType::TimestampTz => "TIMESTAMPTZ".into(),
        DataType::Interval => "INTERVAL".into(),
        DataType::Bytea => "BYTEA".into(),
        _ => return None,
    })
}

/// The array type a text parameter is cast to for an array column (text-like elements as text).
fn array_cast_name(elem: &DataType) -> String {
    match cast_name(elem) {
        Some(t) => format!("{t}[]"),
        None => "TEXT[]".into(),
    }
}

/// SQL text with `$n` placeholders and the values bound to them.
#[derive(Default)]
pub struct Sql {
    pub text: String,
    pub params: Vec<ast::Expr>,
}

impl Sql {
    /// A placeholder for `v` (NULL when None), cast for a column of type `dt`.
    pub fn value(&mut self, v: Option<&str>, dt: Option<&DataType>) -> String {
        let e = match v {
            Some(s) => ast::Expr::value(ast::Value::SingleQuotedString(s.to_string())),
            None => ast::Expr::value(ast::Value::Null),
        };
        self.params.push(e);
        let p = format!("${}", self.params.len());
        match dt {
            // The text form of an array ('{a,b}'), converted by the cast like any array literal.
            Some(DataType::Array(elem)) => format!("CAST({p} AS {})", array_cast_name(elem)),
            _ => match dt.and_then(cast_name) {
                Some(t) => format!("CAST({p} AS {t})"),
                None => p,
            },
        }
    }

    /// `col`, or `json_get(...)` for a JSON path; with the column's type (None for paths).
    pub fn field(&mut self, rel: &Rel, f: &Field, qual: Option<&str>) -> Result<(String, Option<DataType>), RestError> {
        let dt = rel.column(&f.column)?.clone();
        let mut expr = match qual {
            Some(q) => format!("{}.{}", quote(q), quote(&f.column)),
            None => quote(&f.column),
        };
        if f.json.is_empty() {
            return Ok((expr, Some(dt)));
        }
        for (text, key) in &f.json {
            let k = self.value(Some(key), None);
            expr = format!("{}({expr}, {k})", if *text { "json_get_text" } else { "json_get" });
        }
        Ok((expr, None))
    }

    pub fn cond(&mut self, rel: &Rel, c: &Cond, qual: Option<&str>) -> Result<String, RestError> {
        match c {
            Cond::Filter(f) => self.filter(rel, f, qual),
            Cond::Tree { or, negate, items } => {
                let parts = items.iter().map(|i| self.cond(rel, i, qual)).collect::<Result<Vec<_>, _>>()?;
                let joined = format!("({})", parts.join(if *or { " OR " } else { " AND " }));
                Ok(if *negate { format!("NOT {joined}") } else { joined })
            }
        }
    }

    fn filter(&mut self, rel: &Rel, f: &Filter, qual: Option<&str>) -> Result<String, RestError> {
        let (col, dt) = self.field(rel, &f.field, qual)?;
        let text_like = matches!(f.op, Op::Like | Op::Ilike | Op::Match | Op::Imatch);
        let vt = if text_like { None } else { dt.as_ref() };
        let one = |s: &mut Sql, v: &Operand| -> Result<String, RestError> {
            match v {
                Operand::One(x) => Ok(s.value(Some(x), vt)),
                _ => Err(RestError::new(400, SqlState::PgrstQueryString, "operator needs a single value")),
            }
        };
        let like = |v: &Operand| match v {
            Operand::One(x) => Operand::One(x.replace('*', "%")),
            o => o.clone(),
        };
        // Pattern operators compare the text form, as PostgreSQL does for text columns.
        let text_col = if text_like && dt.as_ref().is_some_and(|d| cast_name(d).is_some()) {
            format!("CAST({col} AS TEXT)")
        } else {
            col.clone()
        };
        let sql = match f.op {
            Op::Eq => format!("{col} = {}", one(self, &f.operand)?),
            Op::Neq => format!("{col} <> {}", one(self, &f.operand)?),
            Op::Gt => format!("{col} > {}", one(self, &f.operand)?),
            Op::Gte => format!("{col} >= {}", one(self, &f.operand)?),
            Op::Lt => format!("{col} < {}", one(self, &f.operand)?),
            Op::Lte => format!("{col} <= {}", one(self, &f.operand)?),
            Op::Like => format!("{text_col} LIKE {}", one(self, &like(&f.operand))?),
            Op::Ilike => format!("{text_col} ILIKE {}", one(self, &like(&f.operand))?),
            Op::Match => format!("{text_col} ~ {}", one(self, &f.operand)?),
            Op::Imatch => format!("{text_col} ~* {}", one(self, &f.operand)?),
            Op::IsDistinct => format!("{col} IS DISTINCT FROM {}", one(self, &f.operand)?),
            Op::In => match &f.operand {
                Operand::List(xs) if xs.is_empty() => "FALSE".to_string(),
                Operand::List(xs) => {
                    let vals: Vec<String> = xs
                        .iter()
                        .map(|x| if x == "null" { self.value(None, vt) } else { self.value(Some(x), vt) })
                        .collect();
                    format!("{col} IN ({})", vals.join(", "))
                }
                _ => return Err(RestError::new(400, SqlState::PgrstQueryString, "in needs a list")),
            },
            Op::Is => match &f.operand {
                Operand::Is(IsValue::Null) => format!("{col} IS NULL"),
                Operand::Is(IsValue::NotNull) => format!("{col} IS NOT NULL"),
                Operand::Is(IsValue::True) => format!("{col} IS TRUE"),
                Operand::Is(IsValue::False) => format!("{col} IS FALSE"),
                Operand::Is(IsValue::Unknown) => format!("{col} IS UNKNOWN"),
                _ => {
                    return Err(RestError::new(
                        400,
                        SqlState::PgrstQueryString,
                        "is needs null, not_null, true, false or unknown",
                    ));
                }
            },
        };
        Ok(if f.negate { format!("NOT ({sql})") } else { sql })
    }

    pub fn order(&mut self, rel: &Rel, terms: &[OrderTerm]) -> Result<String, RestError> {
        let mut parts = Vec::new();
        for t in terms {
            let (col, _) = self.field(rel, &t.field, None)?;
            let mut s = format!("{col} {}", if t.desc { "DESC" } else { "ASC" });
            match t.nulls_first {
                Some(true) => s.push_str(" NULLS FIRST"),
                Some(false) => s.push_str(" NULLS LAST"),
                None => {}
            }
            parts.push(s);
        }
        Ok(parts.join(", "))
    }
}

/// Runs one statement of SQL text with its parameters.
pub async fn run(session: &mut Session, sql: Sql, anonymous: bool) -> Result<Output, RestError> {
    Box::pin(session.execute_with_params(&sql.text, &sql.params)).await.map_err(|e| RestError::from_sql(e, anonymous))
}

fn rows_of(out: Output) -> (Option<SchemaRef>, Vec<RecordBatch>, Option<u64>) {
    match out {
        Output::Rows { schema, batches, .. } => (Some(schema), batches, None),
        Output::Command { rows, .. } => (None, vec![], rows),
        _ => (None, vec![], None),
    }
}

/// One output column of a level: a name and where its value comes from.
#[derive(Debug, Clone)]
enum OutItem {
    /// Column `src` of the result, JSON text when `json`.
    Col { name: String, src: usize, json: bool },
    /// The embedded resource `embeds[i]`.
    Embed(usize),
}

/// A resolved relationship: parent columns matched to child columns.
#[derive(Debug, Clone)]
struct Link {
    child: Rel,
    parent_cols: Vec<String>,
    child_cols: Vec<String>,
    to_many: bool,
}

/// One row as (name, JSON fragment, text form for CSV).
pub type RowCells = Vec<(String, String, Option<String>)>;

/// Resolves which foreign key an embedding uses.
fn link(cat: &Catalog, parent: &Rel, e: &Embed) -> Result<Link, RestError> {
    let pdef = parent.def.as_ref();
    let Some(child) = cat.find_table(&parent.schema, &e.relation) else {
        return Err(not_related(parent, &e.relation));
    };
    let mut found: Vec<Link> = Vec::new();
    let names = |d: &TableDef, cols: &[usize]| cols.iter().map(|&c| d.columns[c].name.clone()).collect::<Vec<_>>();
    let hint_ok = |fk_name: &str, cols: &[String]| match &e.hint {
        None => true,
        Some(h) => h == fk_name || (cols.len() == 1 && &cols[0] == h),
    };
    if let Some(pd) = pdef {
        // to-one: the parent's foreign key references the child.
        for fk in pd.foreign_keys.iter().filter(|fk| fk.ref_table == child.id) {
            let pc = names(pd, &fk.columns);
            if hint_ok(&fk.name, &pc) {
                found.push(Link {
                    child: Rel::of_table(child),
                    parent_cols: pc,
                    child_cols: names(child, &fk.ref_columns),
                    to_many: false,
                });
            }
        }
        // to-many: the child's foreign key references the parent.
        for fk in child.foreign_keys.iter().filter(|fk| fk.ref_table == pd.id) {
            let cc = names(child, &fk.columns);
            if hint_ok(&fk.name, &cc) {
                found.push(Link {
                    child: Rel::of_table(child),
                    parent_cols: names(pd, &fk.ref_columns),
                    child_cols: cc,
                    to_many: true,
                });
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(not_related(parent, &e.relation)),
        _ => Err(RestError::new(
            300,
            SqlState::PgrstAmbiguousRelationship,
            format!(
                "Could not embed because more than one relationship was found for '{}' and '{}'",
                parent.name, e.relation
            ),
        )
        .details(
            found
                .iter()
                .map(|l| {
                    format!(
                        "{}({}) -> {}({})",
                        parent.name,
                        l.parent_cols.join(","),
                        e.relation,
                        l.child_cols.join(",")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        )
        .hint(format!("Name the foreign key (or its column) to use, e.g. {}!<fk>(...)", e.relation))),
    }
}

fn not_related(parent: &Rel, other: &str) -> RestError {
    RestError::new(
        400,
        SqlState::PgrstNoRelationship,
        format!("Could not find a relationship between '{}' and '{other}' in the schema cache", parent.name),
    )
    .hint("Embedding follows foreign keys between tables of the same schema.")
}

/// Builds result rows level by level: the query of one level, then one query per embedding.
pub struct Reader<'a> {
    pub session: &'a mut Session,
    pub cat: std::sync::Arc<Catalog>,
    pub anonymous: bool,
}

/// What a level selects: SQL select items (with internal aliases) and how to turn them into
/// output columns.
struct Plan {
    select: Vec<String>,
    items: Vec<OutItem>,
    embeds: Vec<(Embed, Link)>,
    /// For each embedding: the indexes of its parent key columns in the select list.
    parent_keys: Vec<Vec<usize>>,
}

impl Reader<'_> {
    fn plan(&self, sql: &mut Sql, rel: &Rel, items: &[SelectItem], extra_keys: &[String]) -> Result<Plan, RestError> {
        let mut p = Plan { select: vec![], items: vec![], embeds: vec![], parent_keys: vec![] };
        let default_items = [SelectItem::Star];
        let items = if items.is_empty() { &default_items[..] } else { items };
        for it in items {
            match it {
                SelectItem::Star => {
                    for (name, dt) in &rel.columns {
                        p.items.push(OutItem::Col {
                            name: name.clone(),
                            src: p.select.len(),
                            json: matches!(dt, DataType::Json | DataType::Jsonb),
                        });
                        p.select.push(quote(name));
                    }
                }
                SelectItem::Column { field, alias, cast } => {
                    let (mut expr, dt) = sql.field(rel, field, None)?;
                    let mut json = match &dt {
                        Some(d) => matches!(d, DataType::Json | DataType::Jsonb),
                        None => field.is_json_value(),
                    };
                    if let Some(c) = cast {
                        expr = format!("CAST({expr} AS {c})");
                        json = c == "json" || c == "jsonb";
                    }
                    let name = alias.clone().unwrap_or_else(|| field.default_name().to_string());
                    p.items.push(OutItem::Col { name, src: p.select.len(), json });
                    p.select.push(expr);
                }
                SelectItem::Embed(e) => {
                    let l = link(&self.cat, rel, e)?;
                    let mut keys = Vec::new();
                    for c in &l.parent_cols {
                        keys.push(p.select.len());
                        p.select.push(quote(c));
                    }
                    p.items.push(OutItem::Embed(p.embeds.len()));
                    p.parent_keys.push(keys);
                    p.embeds.push((e.clone(), l));
                }
            }
        }
        // Key columns the caller groups by (an embedding's child columns).
        for c in extra_keys {
            rel.column(c)?;
            p.select.push(quote(c));
        }
        for (i, s) in p.select.iter_mut().enumerate() {
            *s = format!("{s} AS \"c{i}\"");
        }
        Ok(p)
    }

    /// Reads `rel` (GET): the rows, each as cells, and the total count when asked for.
    #[allow(clippy::too_many_arguments)]
    pub async fn read(
        &mut self,
        rel: &Rel,
        items: &[SelectItem],
        conds: &[Cond],
        order: &[OrderTerm],
        limit: Option<usize>,
        offset: usize,
        count: bool,
    ) -> Result<(Vec<RowCells>, Option<u64>), RestError> {
        let mut sql = Sql::default();
        let plan = self.plan(&mut sql, rel, items, &[])?;
        let mut wheres = Vec::new();
        for c in conds {
            wheres.push(sql.cond(rel, c, None)?);
        }
        // `!inner` embeddings keep only parents that have a matching (filtered) child.
        for (e, l) in &plan.embeds {
            if e.inner {
                wheres.push(exists(&mut sql, rel, e, l)?);
            }
        }
        let where_sql = if wheres.is_empty() { String::new() } else { format!(" WHERE {}", wheres.join(" AND ")) };
        let total = if count {
            let mut csql = Sql { text: String::new(), params: sql.params.clone() };
            csql.text = format!("SELECT count(*) FROM {} AS \"_t0\"{where_sql}", rel.sql_name());
            let (_, batches, _) = rows_of(run(self.session, csql, self.anonymous).await?);
            let n = batches
                .first()
                .filter(|b| b.num_rows() > 0)
                .and_then(|b| text_value(b.column(0).as_ref(), 0).ok().flatten())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            Some(n)
        } else {
            None
        };
        let order_sql = if order.is_empty() { String::new() } else { format!(" ORDER BY {}", sql.order(rel, order)?) };
        let limit_sql = match limit {
            Some(n) => format!(" LIMIT {n}"),
            None => String::new(),
        };
        let offset_sql = if offset > 0 { format!(" OFFSET {offset}") } else { String::new() };
        sql.text = format!(
            "SELECT {} FROM {} AS \"_t0\"{where_sql}{order_sql}{limit_sql}{offset_sql}",
            plan.select.join(", "),
            rel.sql_name()
        );
        let (_, batches, _) = rows_of(run(self.session, sql, self.anonymous).await?);
        let rows = Box::pin(self.assemble(&plan, &batches, 0)).await?;
        Ok((rows, total))
    }

    /// Rows written by INSERT/UPDATE/DELETE ... RETURNING * (every column, in table order),
    /// shaped by `select=`. Casts and JSON paths are computed by reading the rows back by
    /// primary key in the same transaction.
    pub async fn written(
        &mut self,
        rel: &Rel,
        items: &[SelectItem],
        batches: &[RecordBatch],
    ) -> Result<Vec<RowCells>, RestError> {
        let simple = items.iter().all(|i| match i {
            SelectItem::Column { field, cast, .. } => field.json.is_empty() && cast.is_none(),
            _ => true,
        });
        if simple {
            let mut plan = Plan { select: vec![], items: vec![], embeds: vec![], parent_keys: vec![] };
            let idx = |name: &str| rel.columns.iter().position(|(n, _)| n == name);
            let default_items = [SelectItem::Star];
            for it in if items.is_empty() { &default_items[..] } else { items } {
                match it {
                    SelectItem::Star => {
                        for (i, (name, dt)) in rel.columns.iter().enumerate() {
                            let json = matches!(dt, DataType::Json | DataType::Jsonb);
                            plan.items.push(OutItem::Col { name: name.clone(), src: i, json });
                        }
                    }
                    SelectItem::Column { field, alias, .. } => {
                        let dt = rel.column(&field.column)?;
                        let json = matches!(dt, DataType::Json | DataType::Jsonb);
                        let src = idx(&field.column).unwrap_or(0);
                        plan.items.push(OutItem::Col {
                            name: alias.clone().unwrap_or_else(|| field.column.clone()),
                            src,
                            json,
                        });
                    }
                    SelectItem::Embed(e) => {
                        let l = link(&self.cat, rel, e)?;
                        plan.parent_keys.push(l.parent_cols.iter().map(|c| idx(c).unwrap_or(0)).collect());
                        plan.items.push(OutItem::Embed(plan.embeds.len()));
                        plan.embeds.push((e.clone(), l));
                    }
                }
            }
            return Box::pin(self.assemble(&plan, batches, 0)).await;
        }
        let pk = rel.primary_key();
        if pk.is_empty() {
            return Err(RestError::new(
                400,
                SqlState::PgrstQueryString,
                "casts and JSON paths in select= on writes need a primary key",
            )
            .hint("Select plain columns, or read the rows back with GET."));
        }
        let pos: Vec<usize> = pk.iter().filter_map(|c| rel.columns.iter().position(|(n, _)| n == c)).collect();
        let keys = key_tuples(batches, &pos);
        let mut out = Vec::new();
        for chunk in keys.chunks(EMBED_KEYS_PER_QUERY) {
            let cond = key_match(chunk, rel, &pk);
            let (rows, _) = Box::pin(self.read(rel, items, &[cond], &[], None, 0, false)).await?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// Turns a level's result into rows, fetching each embedding.
    async fn assemble(
        &mut self,
        plan: &Plan,
        batches: &[RecordBatch],
        depth: usize,
    ) -> Result<Vec<RowCells>, RestError> {
        if depth > EMBED_DEPTH_MAX {
            return Err(RestError::new(
                400,
                SqlState::PgrstQueryString,
                format!("embedding nests at most {EMBED_DEPTH_MAX} levels"),
            ));
        }
        // For each embedding: parent key -> JSON of the embedded value.
        let mut embedded: Vec<HashMap<Vec<Option<String>>, String>> = Vec::new();
        for (i, (e, l)) in plan.embeds.iter().enumerate() {
            let keys = key_tuples(batches, &plan.parent_keys[i]);
            let mut groups: HashMap<Vec<Option<String>>, Vec<String>> = HashMap::new();
            for chunk in keys.chunks(EMBED_KEYS_PER_QUERY) {
                let mut sql = Sql::default();
                let child_plan = self.plan(&mut sql, &l.child, &e.items, &l.child_cols)?;
                let nkeys = l.child_cols.len();
                let key_pos: Vec<usize> = (child_plan.select.len() - nkeys..child_plan.select.len()).collect();
                let mut wheres = vec![sql.cond(&l.child, &key_match(chunk, &l.child, &l.child_cols), None)?];
                for c in &e.filters {
                    wheres.push(sql.cond(&l.child, c, None)?);
                }
                sql.text = format!(
                    "SELECT {} FROM {} AS \"_t0\" WHERE {}",
                    child_plan.select.join(", "),
                    l.child.sql_name(),
                    wheres.join(" AND ")
                );
                let (_, child_batches, _) = rows_of(run(self.session, sql, self.anonymous).await?);
                let child_rows = Box::pin(self.assemble(&child_plan, &child_batches, depth + 1)).await?;
                let child_keys = row_keys(&child_batches, &key_pos);
                for (k, row) in child_keys.into_iter().zip(child_rows) {
                    groups.entry(k).or_default().push(object(&row));
                }
            }
            let mut m = HashMap::new();
            for (k, objs) in groups {
                let v = if l.to_many {
                    format!("[{}]", objs.join(","))
                } else {
                    objs.into_iter().next().unwrap_or_default()
                };
                m.insert(k, v);
            }
            embedded.push(m);
        }
        let mut rows = Vec::new();
        for b in batches {
            for r in 0..b.num_rows() {
                let mut cells = Vec::with_capacity(plan.items.len());
                for it in &plan.items {
                    match it {
                        OutItem::Col { name, src, json } => {
                            let col = b.column(*src);
                            let json = *json || field_is_json(b.schema().field(*src));
                            let mut j = String::new();
                            json_value(col.as_ref(), r, json, &mut j).map_err(|e| RestError::from_sql(e, false))?;
                            let t = text_value(col.as_ref(), r).map_err(|e| RestError::from_sql(e, false))?;
                            cells.push((name.clone(), j, t));
                        }
                        OutItem::Embed(i) => {
                            let (e, l) = &plan.embeds[*i];
                            let key = row_key(b, r, &plan.parent_keys[*i]);
                            let v = embedded[*i]
                                .get(&key)
                                .cloned()
                                .unwrap_or_else(|| if l.to_many { "[]".to_string() } else { "null".to_string() });
                            cells.push((e.name().to_string(), v.clone(), Some(v)));
                        }
                    }
                }
                rows.push(cells);
            }
        }
        Ok(rows)
    }
}

/// `EXISTS (SELECT 1 FROM child WHERE child.k = parent.k AND <embedded filters>)`.
fn exists(sql: &mut Sql, parent: &Rel, e: &Embed, l: &Link) -> Result<String, RestError> {
    let _ = parent;
    let mut parts: Vec<String> = l
        .parent_cols
        .iter()
        .zip(&l.child_cols)
        .map(|(p, c)| format!("\"_t1\".{} = \"_t0\".{}", quote(c), quote(p)))
        .collect();
    for c in &e.filters {
        parts.push(sql.cond(&l.child, c, Some("_t1"))?);
    }
    Ok(format!("EXISTS (SELECT 1 FROM {} AS \"_t1\" WHERE {})", l.child.sql_name(), parts.join(" AND ")))
}

fn row_key(b: &RecordBatch, r: usize, pos: &[usize]) -> Vec<Option<String>> {
    pos.iter().map(|&p| text_value(b.column(p).as_ref(), r).ok().flatten()).collect()
}

fn row_keys(batches: &[RecordBatch], pos: &[usize]) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(row_key(b, r, pos));
        }
    }
    out
}

/// Distinct key tuples without NULLs (a NULL key matches nothing).
fn key_tuples(batches: &[RecordBatch], pos: &[usize]) -> Vec<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for k in row_keys(batches, pos) {
        if let Some(k) = k.into_iter().collect::<Option<Vec<String>>>()
            && seen.insert(k.clone())
        {
            out.push(k);
        }
    }
    out
}

/// A condition matching any of `keys` on `cols`.
fn key_match(keys: &[Vec<String>], _rel: &Rel, cols: &[String]) -> Cond {
    let f = |c: &str, op: Op, operand: Operand| {
        Cond::Filter(Filter { field: Field { column: c.to_string(), json: vec![] }, negate: false, op, operand })
    };
    if cols.len() == 1 {
        return f(&cols[0], Op::In, Operand::List(keys.iter().map(|k| k[0].clone()).collect()));
    }
    if keys.is_empty() {
        return f(&cols[0], Op::In, Operand::List(vec![]));
    }
    Cond::Tree {
        or: true,
        negate: false,
        items: keys
            .iter()
            .map(|k| Cond::Tree {
                or: false,
                negate: false,
                items: cols.iter().zip(k).map(|(c, v)| f(c, Op::Eq, Operand::One(v.clone()))).collect(),
            })
            .collect(),
    }
}

pub fn object(row: &RowCells) -> String {
    let mut s = String::from("{");
    for (i, (name, v, _)) in row.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&serde_json::to_string(name).unwrap_or_default());
        s.push(':');
        s.push_str(v);
    }
    s.push('}');
    s
}

pub fn json_array(rows: &[RowCells]) -> String {
    let mut s = String::from("[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&object(r));
    }
    s.push(']');
    s
}

pub fn csv(rows: &[RowCells], header: &[String]) -> String {
    let mut s = String::new();
    for (i, h) in header.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        csv_field(Some(h), &mut s);
    }
    for r in rows {
        s.push('\n');
        for (i, (_, _, t)) in r.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            csv_field(t.as_deref(), &mut s);
        }
    }
    s
}

/// Output column names of a read (for the CSV header when there are no rows).
pub fn header_names(rel: &Rel, items: &[SelectItem]) -> Vec<String> {
    let mut out = Vec::new();
    if items.is_empty() {
        return rel.columns.iter().map(|(n, _)| n.clone()).collect();
    }
    for it in items {
        match it {
            SelectItem::Star => out.extend(rel.columns.iter().map(|(n, _)| n.clone())),
            SelectItem::Column { field, alias, .. } => {
                out.push(alias.clone().unwrap_or_else(|| field.default_name().to_string()))
            }
            SelectItem::Embed(e) => out.push(e.name().to_string()),
        }
    }
    out
}

/// A JSON body value as the text of a parameter for a column of type `dt`.
pub fn body_value(v: &Json, dt: &DataType, column: &str) -> Result<Option<String>, RestError> {
    if let DataType::Array(_) = dt {
        return match v {
            Json::Null => Ok(None),
            Json::Array(items) if items.iter().all(|i| !i.is_array()) => Ok(Some(pg_array(items))),
            Json::Array(items) => {
                let lens: Vec<Option<usize>> = items.iter().map(|i| i.as_array().map(Vec::len)).collect();
                if lens.iter().any(Option::is_none) {
                    Err(RestError::new(
                        400,
                        SqlState::InvalidTextRepresentation,
                        format!("malformed array literal for column \"{column}\""),
                    )
                    .details("Elements and nested arrays are mixed."))
                } else if lens.windows(2).any(|w| w[0] != w[1]) {
                    Err(RestError::new(
                        400,
                        SqlState::ArraySubscriptError,
                        "multidimensional arrays must have array expressions with matching dimensions",
                    ))
                } else {
                    Err(RestError::new(
                        400,
                        SqlState::FeatureNotSupported,
                        format!("column \"{column}\": multidimensional arrays are not supported"),
                    ))
                }
            }
            // The text form '{a,b}', checked by the cast.
            Json::String(s) => Ok(Some(s.clone())),
            _ => Err(RestError::new(
                400,
                SqlState::InvalidTextRepresentation,
                format!("malformed array literal for column \"{column}\""),
            )
            .details("Give a JSON array or the text form \"{a,b}\".")),
        };
    }
    Ok(match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    })
}

/// A JSON array as PostgreSQL array text: `{1,"a b",NULL}`.
fn pg_array(items: &[Json]) -> String {
    let mut s = String::from("{");
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match v {
            Json::Null => s.push_str("NULL"),
            Json::Bool(b) => s.push_str(&b.to_string()),
            Json::Number(n) => s.push_str(&n.to_string()),
            Json::String(t) => s.push_str(&format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))),
            obj => s.push_str(&format!("\"{}\"", obj.to_string().replace('\\', "\\\\").replace('"', "\\\""))),
        }
    }
    s.push('}');
    s
}

/// Parses the select list, reporting grammar errors as 400.
pub fn parse_select(s: Option<&str>) -> Result<Vec<SelectItem>, RestError> {
    match s {
        Some(s) => grammar::select(s),
        None => Ok(vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_and_values() {
        let arr = DataType::Array(Box::new(DataType::Text));
        let v: Json = serde_json::json!([1, null, "a \"b\""]);
        assert_eq!(body_value(&v, &arr, "c").unwrap().unwrap(), r#"{1,NULL,"a \"b\""}"#);
        assert!(body_value(&serde_json::json!([[1], [2]]), &arr, "c").is_err());
        assert!(body_value(&serde_json::json!({"a": 1}), &arr, "c").is_err());
        assert_eq!(body_value(&serde_json::json!({"a": 1}), &DataType::Jsonb, "c").unwrap().unwrap(), r#"{"a":1}"#);
        assert_eq!(body_value(&Json::Null, &DataType::Int32, "c").unwrap(), None);
        let mut sql = Sql::default();
        assert_eq!(sql.value(Some("5"), Some(&DataType::Int32)), "CAST($1 AS INTEGER)");
        assert_eq!(sql.value(Some("x'); DROP TABLE t; --"), Some(&DataType::Text)), "$2");
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
    }
}
