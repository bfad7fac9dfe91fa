//! Enough of PostgreSQL's `pg_catalog` for clients: psql's backslash commands, driver metadata
//! queries, pgbench's checks. Tables are computed from the statement's catalog when a query names
//! them ([`tables`], one builder each); functions (`pg_get_userbyid`, `format_type`,
//! `pg_get_indexdef`, `version`, ...) are registered per session ([`functions`]); a rewrite
//! ([`rewrite`]) strips `pg_catalog.` qualifiers, `OPERATOR(pg_catalog.~)`, `COLLATE` and
//! `::regclass`-style casts that the planner does not know.

mod functions;
mod rewrite;
mod settings_fns;
mod storage_fns;
mod tables;

pub use functions::random_uuid;
pub(crate) use functions::udf;
pub use functions::{SessionInfo, functions};
pub use rewrite::{array_text_literal, array_text_literal_checked, provably_empty, rewrite};
pub use settings_fns::settings_functions;
pub use storage_fns::{extension, filename, foldername};

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bkg_kernel::{Catalog, DataType};
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Int16Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType as A, Field, Int16Type, Int64Type, Schema, SchemaRef};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::sql::sqlparser::ast::{self, Expr, Statement};
use parking_lot::RwLock;

use super::provider::CatalogView;

pub const PG_CATALOG: &str = "pg_catalog";
const NS_PG_CATALOG: i64 = 11;
const NS_INFORMATION_SCHEMA: i64 = 13_000;
const SUPERUSER_OID: i64 = 10;

/// Built-in types: (oid, name, len, array oid, category).
pub const TYPES: &[(i64, &str, i16, i64, &str)] = &[
    (16, "bool", 1, 1000, "B"),
    (17, "bytea", -1, 1001, "U"),
    (18, "char", 1, 1002, "S"),
    (19, "name", 64, 1003, "S"),
    (20, "int8", 8, 1016, "N"),
    (21, "int2", 2, 1005, "N"),
    (23, "int4", 4, 1007, "N"),
    (25, "text", -1, 1009, "S"),
    (26, "oid", 4, 1028, "N"),
    (114, "json", -1, 199, "U"),
    (700, "float4", 4, 1021, "N"),
    (701, "float8", 8, 1022, "N"),
    (705, "unknown", -2, 0, "X"),
    (1042, "bpchar", -1, 1014, "S"),
    (1043, "varchar", -1, 1015, "S"),
    (1082, "date", 4, 1182, "D"),
    (1083, "time", 8, 1183, "D"),
    (1114, "timestamp", 8, 1115, "D"),
    (1184, "timestamptz", 8, 1185, "D"),
    (1186, "interval", 16, 1187, "T"),
    (1700, "numeric", -1, 1231, "N"),
    (2950, "uuid", 16, 2951, "U"),
    (3802, "jsonb", -1, 3807, "U"),
];

/// Type oid and typmod of a column type.
pub fn type_oid(dt: &DataType) -> (i64, i32) {
    match dt {
        DataType::Bool => (16, -1),
        DataType::Int16 => (21, -1),
        DataType::Int32 => (23, -1),
        DataType::Int64 => (20, -1),
        DataType::Float32 => (700, -1),
        DataType::Float64 => (701, -1),
        DataType::Numeric { precision, scale } => (1700, ((*precision as i32) << 16 | (*scale as i32 & 0xffff)) + 4),
        DataType::Text => (25, -1),
        DataType::Varchar(n) => (1043, n.map(|n| n as i32 + 4).unwrap_or(-1)),
        DataType::Char(n) => (1042, *n as i32 + 4),
        DataType::Bytea => (17, -1),
        DataType::Date => (1082, -1),
        DataType::Time => (1083, -1),
        DataType::Timestamp => (1114, -1),
        DataType::TimestampTz => (1184, -1),
        DataType::Interval => (1186, -1),
        DataType::Uuid => (2950, -1),
        DataType::Json => (114, -1),
        DataType::Jsonb => (3802, -1),
        DataType::Array(elem) => {
            let (oid, typmod) = type_oid(elem);
            (TYPES.iter().find(|t| t.0 == oid).map(|t| t.3).unwrap_or(1009), typmod)
        }
    }
}

/// The type's name in `pg_type` (`int4`, `timestamptz`, `_text` for `text[]`), as
/// `information_schema.columns.udt_name` gives it.
pub fn udt_name(dt: &DataType) -> String {
    let (oid, _) = type_oid(dt);
    if let Some(t) = TYPES.iter().find(|t| t.0 == oid) {
        return t.1.to_string();
    }
    match TYPES.iter().find(|t| t.3 == oid) {
        Some(elem) => format!("_{}", elem.1),
        None => "text".into(),
    }
}

/// `format_type(oid, typmod)` as PostgreSQL prints it.
pub fn format_type(oid: i64, typmod: i64) -> Option<String> {
    Some(match oid {
        16 => "boolean".into(),
        17 => "bytea".into(),
        18 => "\"char\"".into(),
        19 => "name".into(),
        20 => "bigint".into(),
        21 => "smallint".into(),
        23 => "integer".into(),
        25 => "text".into(),
        26 => "oid".into(),
        114 => "json".into(),
        700 => "real".into(),
        701 => "double precision".into(),
        1042 => {
            if typmod > 4 {
                format!("character({})", typmod - 4)
            } else {
                "character".into()
            }
        }
        1043 => {
            if typmod > 4 {
                format!("character varying({})", typmod - 4)
            } else {
                "character varying".into()
            }
        }
        1082 => "date".into(),
        1083 => "time without time zone".into(),
        1114 => "timestamp without time zone".into(),
        1184 => "timestamp with time zone".into(),
        1186 => "interval".into(),
        1700 if typmod > 4 => format!("numeric({},{})", (typmod - 4) >> 16, (typmod - 4) & 0xffff),
        1700 => "numeric".into(),
        2950 => "uuid".into(),
        3802 => "jsonb".into(),
        _ => {
            let (_, name, ..) = TYPES.iter().find(|t| t.3 == oid)?;
            return format_type(TYPES.iter().find(|t| t.1 == *name)?.0, typmod).map(|s| format!("{s}[]"));
        }
    })
}

/// Tables that have a foreign key or are referenced by one.
fn fk_tables(cat: &Catalog) -> std::collections::HashSet<u64> {
    cat.tables
        .values()
        .filter(|t| !t.foreign_keys.is_empty())
        .flat_map(|t| std::iter::once(t.id).chain(t.foreign_keys.iter().map(|f| f.ref_table)))
        .collect()
}

fn schema_oid(cat: &Catalog, name: &str) -> i64 {
    match name {
        PG_CATALOG => NS_PG_CATALOG,
        "information_schema" => NS_INFORMATION_SCHEMA,
        n => cat.schemas.get(n).map(|s| s.id as i64).unwrap_or(0),
    }
}

fn text(v: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}
fn i64s(v: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(v))
}
fn i32s(v: Vec<i32>) -> ArrayRef {
    Arc::new(Int32Array::from(v))
}
fn i16s(v: Vec<i16>) -> ArrayRef {
    Arc::new(Int16Array::from(v))
}
fn bools(v: Vec<bool>) -> ArrayRef {
    Arc::new(BooleanArray::from(v))
}
/// A `text[]` column of NULLs (ACLs, options).
fn null_list(n: usize) -> ArrayRef {
    let field = Arc::new(Field::new("item", A::Utf8, true));
    datafusion::arrow::array::new_null_array(&A::List(field), n)
}

/// A `text[]` column (PostgreSQL's aclitem[] is shown as text).
fn text_lists(v: Vec<Option<Vec<String>>>) -> ArrayRef {
    let mut b = datafusion::arrow::array::ListBuilder::new(datafusion::arrow::array::StringBuilder::new());
    for item in v {
        match item {
            Some(items) => {
                for i in items {
                    b.values().append_value(i);
                }
                b.append(true);
            }
            None => b.append(false),
        }
    }
    Arc::new(b.finish())
}

fn s(x: &str) -> Option<String> {
    Some(x.to_string())
}

fn table(cols: Vec<(&str, ArrayRef)>) -> DfResult<Arc<dyn TableProvider>> {
    let fields: Vec<Field> = cols.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols.into_iter().map(|(_, a)| a).collect())?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// Names of the tables this module serves.
pub fn table_names() -> impl Iterator<Item = &'static str> {
    tables::BUILDERS.iter().map(|(n, _)| *n).chain(tables::EMPTY.iter().map(|(n, _)| *n))
}

/// Builds one pg_catalog table from `cat`; `None` for a name this module does not serve.
pub fn build(cat: &Catalog, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
    if let Some((_, builder)) = tables::BUILDERS.iter().find(|(n, _)| *n == name) {
        return builder(cat).map(Some);
    }
    match tables::EMPTY.iter().find(|(n, _)| *n == name) {
        Some((_, cols)) => empty(cols).map(Some),
        None => Ok(None),
    }
}

fn empty(cols: &[(&str, A)]) -> DfResult<Arc<dyn TableProvider>> {
    let schema: SchemaRef =
        Arc::new(Schema::new(cols.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect::<Vec<_>>()));
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
}

fn index_def(t: &bkg_kernel::TableDef, i: &bkg_kernel::IndexDef) -> String {
    let cols: Vec<&str> = i.columns.iter().map(|&c| t.columns[c].name.as_str()).collect();
    format!(
        "CREATE {}INDEX {} ON {}.{} USING btree ({})",
        if i.unique { "UNIQUE " } else { "" },
        i.name,
        t.schema,
        t.name,
        cols.join(", ")
    )
}

/// Foreign keys have no oid of their own: a synthetic one from the table and the key's position.
const FK_OID_BASE: i64 = 1 << 40;
/// Oids of CHECK constraints: `CHECK_OID_BASE | table << 8 | position` (above the foreign keys').
const CHECK_OID_BASE: i64 = 1 << 41;

fn check_oid(table: u64, k: usize) -> i64 {
    CHECK_OID_BASE | ((table as i64) << 8) | (k as i64 & 0xff)
}

fn fk_oid(table: u64, k: usize) -> i64 {
    FK_OID_BASE | ((table as i64) << 8) | (k as i64 & 0xff)
}

fn constraint_def(cat: &Catalog, oid: i64) -> Option<String> {
    if oid >= CHECK_OID_BASE {
        let t = cat.table(((oid - CHECK_OID_BASE) >> 8) as u64)?;
        let c = t.checks.get((oid & 0xff) as usize)?;
        return Some(format!("CHECK (({})){}", c.expr, if c.not_valid { " NOT VALID" } else { "" }));
    }
    if oid >= FK_OID_BASE {
        let t = cat.table(((oid - FK_OID_BASE) >> 8) as u64)?;
        let fk = t.foreign_keys.get((oid & 0xff) as usize)?;
        let r = cat.table(fk.ref_table)?;
        let names = |def: &bkg_kernel::TableDef, cols: &[usize]| {
            cols.iter().map(|&c| def.columns[c].name.clone()).collect::<Vec<_>>().join(", ")
        };
        let rname = if r.schema == "public" { r.name.clone() } else { format!("{}.{}", r.schema, r.name) };
        return Some(format!(
            "FOREIGN KEY ({}) REFERENCES {rname}({})",
            names(t, &fk.columns),
            names(r, &fk.ref_columns)
        ));
    }
    for t in cat.tables.values() {
        for i in &t.indexes {
            if i.id as i64 == oid {
                let cols: Vec<&str> = i.columns.iter().map(|&c| t.columns[c].name.as_str()).collect();
                return Some(format!("{} ({})", if i.primary { "PRIMARY KEY" } else { "UNIQUE" }, cols.join(", ")));
            }
        }
    }
    None
}

pub fn type_oid_by_name(name: &str) -> Option<i64> {
    let n = name.trim().trim_start_matches("pg_catalog.").trim_matches('"').to_lowercase();
    let alias = match n.as_str() {
        "integer" | "int" => "int4",
        "bigint" => "int8",
        "smallint" => "int2",
        "boolean" => "bool",
        "real" => "float4",
        "double precision" => "float8",
        "character varying" => "varchar",
        "character" => "bpchar",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "decimal" => "numeric",
        other => other,
    };
    if let Some(elem) = alias.strip_prefix('_').or_else(|| alias.strip_suffix("[]")) {
        return TYPES.iter().find(|t| t.1 == elem).map(|t| t.3);
    }
    TYPES.iter().find(|t| t.1 == alias).map(|t| t.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn array_literals_compare_with_array_columns() {
        let mut stmt =
            super::super::session::Session::parse("SELECT polroles = '{0}' FROM pg_policy").unwrap().remove(0);
        super::rewrite(&mut stmt, &bkg_kernel::Catalog::default(), "public").unwrap();
        assert_eq!(stmt.to_string(), "SELECT polroles = ARRAY[0] FROM pg_policy");
    }

    #[test]
    fn catalog_queries_over_always_empty_tables_need_no_plan() {
        let empty = |sql: &str| {
            let stmt = super::super::session::Session::parse(sql).unwrap().remove(0);
            let ast::Statement::Query(q) = stmt else { panic!("not a query") };
            super::provably_empty(&q, &bkg_kernel::Catalog::default())
        };
        use datafusion::sql::sqlparser::ast;
        assert_eq!(
            empty("SELECT tg.tgname AS n, x FROM pg_catalog.pg_trigger tg WHERE tg.tgrelid = 1"),
            Some(vec!["n".to_string(), "x".to_string()])
        );
        assert!(
            empty("SELECT a FROM pg_class c JOIN pg_publication p ON true UNION SELECT b FROM pg_trigger").is_some()
        );
        // Not provable: an aggregate, an outer join that keeps rows, a branch with rows.
        assert!(empty("SELECT count(*) FROM pg_trigger").is_none());
        assert!(empty("SELECT 1 FROM pg_class c LEFT JOIN pg_trigger p ON true").is_none());
        assert!(empty("SELECT 1 FROM pg_trigger p RIGHT JOIN pg_class c ON true").is_none());
        assert!(empty("SELECT 1 FROM pg_trigger UNION SELECT 2").is_none());
        assert!(empty("SELECT 1 FROM pg_class").is_none());
        // psql 15's `\\d t`: statistics objects and publications.
        assert!(empty(PSQL_STATISTICS).is_some());
        assert!(empty(PSQL_PUBLICATIONS).is_some());
    }

    #[test]
    fn publication_catalogs_are_empty_only_while_unused() {
        let q = match super::super::session::Session::parse(PSQL_PUBLICATIONS).unwrap().remove(0) {
            datafusion::sql::sqlparser::ast::Statement::Query(q) => q,
            _ => panic!("not a query"),
        };
        let publication = |all_tables: bool, tables: &[u64]| bkg_kernel::PublicationDef {
            id: 0,
            name: format!("p{all_tables}{}", tables.len()),
            owner: bkg_kernel::BOOTSTRAP_SUPERUSER,
            all_tables,
            tables: tables.iter().copied().collect(),
            schemas: Default::default(),
            publish: Default::default(),
        };
        // An empty publication (supabase_realtime as created): rows in pg_publication, but none
        // that the query can return.
        let mut cat = bkg_kernel::Catalog::default();
        cat.create_publication(publication(false, &[])).unwrap();
        assert!(super::provably_empty(&q, &cat).is_some());
        // FOR ALL TABLES: the third branch may return rows.
        let mut all = cat.clone();
        all.create_publication(publication(true, &[])).unwrap();
        assert!(super::provably_empty(&q, &all).is_none());
        // A table in a publication: the second branch may.
        let mut with_table = cat.clone();
        let id = with_table.alloc_oid();
        with_table.publications.values_mut().for_each(|p| {
            p.tables.insert(id);
        });
        assert!(super::provably_empty(&q, &with_table).is_none());
    }

    const PSQL_STATISTICS: &str = r#"SELECT oid, stxrelid::pg_catalog.regclass, stxnamespace::pg_catalog.regnamespace::pg_catalog.text AS nsp, stxname,
pg_catalog.pg_get_statisticsobjdef_columns(oid) AS columns,
  'd' = any(stxkind) AS ndist_enabled,
  'f' = any(stxkind) AS deps_enabled,
  'm' = any(stxkind) AS mcv_enabled,
stxstattarget
FROM pg_catalog.pg_statistic_ext
WHERE stxrelid = '18920'
ORDER BY nsp, stxname;"#;
    const PSQL_PUBLICATIONS: &str = r#"SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid
     JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid
WHERE pc.oid ='18920' and pg_catalog.pg_relation_is_publishable('18920')
UNION
SELECT pubname
     , pg_get_expr(pr.prqual, c.oid)
     , (CASE WHEN pr.prattrs IS NOT NULL THEN
         (SELECT string_agg(attname, ', ')
           FROM pg_catalog.generate_series(0, pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,
                pg_catalog.pg_attribute
          WHERE attrelid = pr.prrelid AND attnum = prattrs[s])
        ELSE NULL END) FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid
     JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
WHERE pr.prrelid = '18920'
UNION
SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
WHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('18920')
ORDER BY 1;"#;
}
