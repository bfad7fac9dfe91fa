//! Arrow values and types as SQL: bound parameters become SQL literals (the form pgwire's
//! parameters take too), and ingested columns become column types.

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType as A, Field, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

pub use bkg_sql::ddl::quote_ident;
use bkg_sql::error::{SqlError, SqlResult, codes};

use bkg_sql::SqlState;
use bkg_sql::quote::literal as sql_string;

/// The PostgreSQL type an Arrow column is stored as, for CREATE TABLE of an ingest.
pub fn sql_type(dt: &A) -> SqlResult<String> {
    Ok(match dt {
        A::Boolean => "boolean".into(),
        A::Int8 | A::Int16 | A::UInt8 => "smallint".into(),
        A::Int32 | A::UInt16 => "integer".into(),
        A::Int64 | A::UInt32 => "bigint".into(),
        A::UInt64 => "numeric(20,0)".into(),
        A::Float16 | A::Float32 => "real".into(),
        A::Float64 => "double precision".into(),
        A::Decimal128(p, s) | A::Decimal256(p, s) if *p <= 38 && *s >= 0 => format!("numeric({p},{s})"),
        A::Utf8 | A::LargeUtf8 | A::Utf8View => "text".into(),
        A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_) => "bytea".into(),
        A::Date32 | A::Date64 => "date".into(),
        A::Time32(_) | A::Time64(_) => "time".into(),
        A::Timestamp(_, None) => "timestamp".into(),
        A::Timestamp(_, Some(_)) => "timestamptz".into(),
        A::Interval(_) | A::Duration(_) => "interval".into(),
        A::List(f) | A::LargeList(f) | A::ListView(f) => {
            let inner = sql_type(f.data_type())?;
            if inner.ends_with("[]") {
                return Err(SqlError::unsupported("multidimensional arrays"));
            }
            format!("{inner}[]")
        }
        other => return Err(SqlError::unsupported(format!("Arrow type {other} in an ingest"))),
    })
}

/// `CREATE TABLE` text for an ingest's schema.
pub fn create_table_sql(qualified: &str, fields: &[std::sync::Arc<Field>]) -> SqlResult<String> {
    if fields.is_empty() {
        return Err(SqlError::new(SqlState::InvalidTableDefinition, "an ingested table needs at least one column"));
    }
    let cols = fields
        .iter()
        .map(|f| {
            let null = if f.is_nullable() { "" } else { " NOT NULL" };
            Ok(format!("{} {}{null}", quote_ident(f.name()), sql_type(f.data_type())?))
        })
        .collect::<SqlResult<Vec<_>>>()?;
    Ok(format!("CREATE TABLE {qualified} ({})", cols.join(", ")))
}

/// Row `row` of a parameter batch as one SQL expression per column (`$1` is column 0).
pub fn param_exprs(batch: &RecordBatch, row: usize) -> SqlResult<Vec<ast::Expr>> {
    batch
        .columns()
        .iter()
        .map(|c| {
            let text = literal(c, row)?;
            Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&text)
                .and_then(|mut p| p.parse_expr())
                .map_err(|e| SqlError::internal(format!("parameter literal {text}: {e}")))
        })
        .collect()
}

fn literal(col: &ArrayRef, row: usize) -> SqlResult<String> {
    if col.is_null(row) {
        return Ok("NULL".into());
    }
    let text = || -> SqlResult<String> {
        let f = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
        Ok(f.value(row).to_string())
    };
    Ok(match col.data_type() {
        A::Boolean | A::Int8 | A::Int16 | A::Int32 | A::Int64 | A::UInt8 | A::UInt16 | A::UInt32 | A::UInt64 => {
            let t = text()?;
            if t.starts_with('-') { format!("({t})") } else { t }
        }
        A::Float16 | A::Float32 | A::Float64 => {
            let t = text()?;
            match t.parse::<f64>() {
                Ok(v) if v.is_finite() => format!("CAST({} AS double precision)", sql_string(&t)),
                _ => format!("CAST({} AS double precision)", sql_string(&t.replace("inf", "Infinity"))),
            }
        }
        A::Decimal128(p, s) | A::Decimal256(p, s) => format!("CAST({} AS numeric({p},{s}))", sql_string(&text()?)),
        A::Utf8 | A::LargeUtf8 | A::Utf8View => sql_string(&text()?),
        A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_) => {
            // The formatter prints bytes as hex.
            format!("CAST({} AS bytea)", sql_string(&format!("\\x{}", text()?)))
        }
        A::Date32 | A::Date64 => format!("CAST({} AS date)", sql_string(&text()?)),
        A::Time32(_) | A::Time64(_) => format!("CAST({} AS time)", sql_string(&text()?)),
        A::Timestamp(_, None) => format!("CAST({} AS timestamp)", sql_string(&text()?.replace('T', " "))),
        A::Timestamp(unit, Some(_)) => {
            // Written as UTC so no session time zone changes it.
            let utc = datafusion::arrow::compute::cast(col, &A::Timestamp(*unit, Some("+00:00".into())))?;
            let f = ArrayFormatter::try_new(utc.as_ref(), &FormatOptions::default())?;
            format!("CAST({} AS timestamptz)", sql_string(&f.value(row).to_string().replace('T', " ")))
        }
        A::Duration(TimeUnit::Microsecond | TimeUnit::Millisecond | TimeUnit::Second | TimeUnit::Nanosecond)
        | A::Interval(_) => {
            return Err(SqlError::unsupported("interval parameters over Flight (send them as text)"));
        }
        other => {
            return Err(SqlError::new(
                codes::FEATURE_NOT_SUPPORTED,
                format!("parameters of Arrow type {other} are not supported"),
            ));
        }
    })
}
