//! Enough of PostgreSQL's `pg_catalog` for clients: psql's backslash commands, driver metadata
//! queries, pgbench's checks. Tables are computed from the statement's catalog when a query names
//! them; functions (`pg_get_userbyid`, `format_type`, `pg_get_indexdef`, `version`, ...) are
//! registered per session; a rewrite strips `pg_catalog.` qualifiers, `OPERATOR(pg_catalog.~)`,
//! `COLLATE` and `::regclass`-style casts that the planner does not know.

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
pub const TABLES: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_type",
    "pg_database",
    "pg_roles",
    "pg_user",
    "pg_authid",
    "pg_am",
    "pg_index",
    "pg_constraint",
    "pg_attrdef",
    "pg_proc",
    "pg_description",
    "pg_tablespace",
    "pg_collation",
    "pg_inherits",
    "pg_policy",
    "pg_policies",
    "pg_policies",
    "pg_trigger",
    "pg_rewrite",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_partitioned_table",
    "pg_extension",
    "pg_tables",
    "pg_views",
    "pg_indexes",
    "pg_settings",
    "pg_range",
    "pg_enum",
    "pg_foreign_table",
    "pg_sequence",
    "pg_auth_members",
];

/// Builds one pg_catalog table from `cat`.
pub fn build(cat: &Catalog, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
    let mut schemas: Vec<(i64, String, i64, Option<Vec<String>>)> = vec![
        (NS_PG_CATALOG, PG_CATALOG.into(), SUPERUSER_OID, None),
        (NS_INFORMATION_SCHEMA, "information_schema".into(), SUPERUSER_OID, None),
    ];
    schemas.extend(
        cat.schemas.values().map(|s| {
            (s.id as i64, s.name.clone(), s.owner as i64, cat.acl_items(bkg_kernel::AclObject::Schema(&s.name)))
        }),
    );
    let roles: Vec<&bkg_kernel::RoleDef> = cat.roles.values().collect();
    let masked = |r: &bkg_kernel::RoleDef| r.password.as_ref().map(|_| "********".to_string());
    let t = match name {
        "pg_namespace" => table(vec![
            ("oid", i64s(schemas.iter().map(|s| s.0).collect())),
            ("nspname", text(schemas.iter().map(|s| Some(s.1.clone())).collect())),
            ("nspowner", i64s(schemas.iter().map(|s| s.2).collect())),
            ("nspacl", text_lists(schemas.iter().map(|s| s.3.clone()).collect())),
        ])?,
        "pg_class" => {
            // (oid, name, namespace, kind, natts, has_index, am, owner, acl)
            let mut rows: Vec<(i64, String, i64, &str, i16, bool, i64, i64, Option<Vec<String>>)> = Vec::new();
            for t in cat.tables.values() {
                rows.push((
                    t.id as i64,
                    t.name.clone(),
                    schema_oid(cat, &t.schema),
                    "r",
                    t.live_columns().count() as i16,
                    !t.indexes.is_empty(),
                    2,
                    t.owner as i64,
                    cat.acl_items(bkg_kernel::AclObject::Relation(t.id)),
                ));
                for i in &t.indexes {
                    rows.push((
                        i.id as i64,
                        i.name.clone(),
                        schema_oid(cat, &t.schema),
                        "i",
                        i.columns.len() as i16,
                        false,
                        403,
                        t.owner as i64,
                        None,
                    ));
                }
            }
            for v in cat.views.values() {
                rows.push((
                    v.id as i64,
                    v.name.clone(),
                    schema_oid(cat, &v.schema),
                    "v",
                    v.columns.len() as i16,
                    false,
                    0,
                    v.owner as i64,
                    cat.acl_items(bkg_kernel::AclObject::Relation(v.id)),
                ));
            }
            let n = rows.len();
            table(vec![
                ("oid", i64s(rows.iter().map(|r| r.0).collect())),
                ("relname", text(rows.iter().map(|r| Some(r.1.clone())).collect())),
                ("relnamespace", i64s(rows.iter().map(|r| r.2).collect())),
                ("reltype", i64s(vec![0; n])),
                ("reloftype", i64s(vec![0; n])),
                ("relowner", i64s(rows.iter().map(|r| r.7).collect())),
                ("relam", i64s(rows.iter().map(|r| r.6).collect())),
                ("relfilenode", i64s(rows.iter().map(|r| r.0).collect())),
                ("reltablespace", i64s(vec![0; n])),
                ("relpages", i32s(vec![0; n])),
                ("reltuples", Arc::new(Float32Array::from(vec![-1.0f32; n]))),
                ("relallvisible", i32s(vec![0; n])),
                ("reltoastrelid", i64s(vec![0; n])),
                ("relhasindex", bools(rows.iter().map(|r| r.5).collect())),
                ("relisshared", bools(vec![false; n])),
                ("relpersistence", text(vec![s("p"); n])),
                ("relkind", text(rows.iter().map(|r| s(r.3)).collect())),
                ("relnatts", i16s(rows.iter().map(|r| r.4).collect())),
                ("relchecks", i16s(vec![0; n])),
                ("relhasrules", bools(vec![false; n])),
                // PostgreSQL enforces foreign keys with triggers, and psql lists a table's foreign
                // keys (and the ones referencing it) only when this is set.
                ("relhastriggers", {
                    let fk = fk_tables(cat);
                    bools(rows.iter().map(|r| r.3 == "r" && fk.contains(&(r.0 as u64))).collect())
                }),
                ("relhassubclass", bools(vec![false; n])),
                (
                    "relrowsecurity",
                    bools(rows.iter().map(|r| cat.table(r.0 as u64).is_some_and(|t| t.row_security)).collect()),
                ),
                (
                    "relforcerowsecurity",
                    bools(rows.iter().map(|r| cat.table(r.0 as u64).is_some_and(|t| t.force_row_security)).collect()),
                ),
                ("relispopulated", bools(vec![true; n])),
                ("relreplident", text(vec![s("d"); n])),
                ("relispartition", bools(vec![false; n])),
                ("relrewrite", i64s(vec![0; n])),
                ("relacl", text_lists(rows.iter().map(|r| r.8.clone()).collect())),
                ("reloptions", null_list(n)),
                ("relpartbound", text(vec![None; n])),
            ])?
        }
        "pg_attribute" => {
            let mut rel = Vec::new();
            let mut names = Vec::new();
            let mut typ = Vec::new();
            let mut typmod = Vec::new();
            let mut num = Vec::new();
            let mut notnull = Vec::new();
            let mut hasdef = Vec::new();
            let mut identity = Vec::new();
            let mut len = Vec::new();
            for t in cat.tables.values() {
                for (n, (pos, c)) in t.live_columns().enumerate() {
                    let _ = pos;
                    let (oid, m) = type_oid(&c.data_type);
                    rel.push(t.id as i64);
                    names.push(Some(c.name.clone()));
                    typ.push(oid);
                    typmod.push(m);
                    num.push(n as i16 + 1);
                    notnull.push(!c.nullable);
                    hasdef.push(matches!(c.default, Some(bkg_kernel::ColumnDefault::Expr(_))));
                    identity.push(match c.default {
                        Some(bkg_kernel::ColumnDefault::Identity { always: true }) => s("a"),
                        Some(bkg_kernel::ColumnDefault::Identity { always: false }) => s("d"),
                        _ => s(""),
                    });
                    len.push(TYPES.iter().find(|x| x.0 == oid).map(|x| x.2).unwrap_or(-1));
                }
            }
            for v in cat.views.values() {
                for (n, (name, dt)) in v.columns.iter().enumerate() {
                    let (oid, m) = type_oid(dt);
                    rel.push(v.id as i64);
                    names.push(Some(name.clone()));
                    typ.push(oid);
                    typmod.push(m);
                    num.push(n as i16 + 1);
                    notnull.push(false);
                    hasdef.push(false);
                    identity.push(s(""));
                    len.push(TYPES.iter().find(|x| x.0 == oid).map(|x| x.2).unwrap_or(-1));
                }
            }
            let n = rel.len();
            table(vec![
                ("attrelid", i64s(rel)),
                ("attname", text(names)),
                ("atttypid", i64s(typ.clone())),
                ("attstattarget", i32s(vec![-1; n])),
                ("attlen", i16s(len)),
                ("attnum", i16s(num)),
                ("attndims", i32s(vec![0; n])),
                ("attcacheoff", i32s(vec![-1; n])),
                ("atttypmod", i32s(typmod)),
                ("attbyval", bools(vec![false; n])),
                ("attstorage", text(vec![s("p"); n])),
                ("attalign", text(vec![s("i"); n])),
                ("attnotnull", bools(notnull)),
                ("atthasdef", bools(hasdef)),
                ("atthasmissing", bools(vec![false; n])),
                ("attcompression", text(vec![s(""); n])),
                ("attidentity", text(identity)),
                ("attgenerated", text(vec![s(""); n])),
                ("attisdropped", bools(vec![false; n])),
                ("attislocal", bools(vec![true; n])),
                ("attinhcount", i32s(vec![0; n])),
                (
                    "attcollation",
                    i64s(typ.iter().map(|t| if [25, 1042, 1043].contains(t) { 100 } else { 0 }).collect()),
                ),
                ("attacl", null_list(n)),
                ("attoptions", null_list(n)),
            ])?
        }
        "pg_type" => {
            let n = TYPES.len() * 2;
            let mut oid = Vec::with_capacity(n);
            let mut name = Vec::with_capacity(n);
            let mut len = Vec::with_capacity(n);
            let mut elem = Vec::with_capacity(n);
            let mut arr = Vec::with_capacity(n);
            let mut cat_ = Vec::with_capacity(n);
            for t in TYPES {
                oid.push(t.0);
                name.push(s(t.1));
                len.push(t.2);
                elem.push(0);
                arr.push(t.3);
                cat_.push(s(t.4));
                if t.3 != 0 {
                    oid.push(t.3);
                    name.push(Some(format!("_{}", t.1)));
                    len.push(-1);
                    elem.push(t.0);
                    arr.push(0);
                    cat_.push(s("A"));
                }
            }
            let n = oid.len();
            table(vec![
                ("oid", i64s(oid)),
                ("typname", text(name)),
                ("typnamespace", i64s(vec![NS_PG_CATALOG; n])),
                ("typowner", i64s(vec![SUPERUSER_OID; n])),
                ("typlen", i16s(len)),
                ("typbyval", bools(vec![false; n])),
                ("typtype", text(vec![s("b"); n])),
                ("typcategory", text(cat_)),
                ("typispreferred", bools(vec![false; n])),
                ("typisdefined", bools(vec![true; n])),
                ("typdelim", text(vec![s(","); n])),
                ("typrelid", i64s(vec![0; n])),
                ("typelem", i64s(elem)),
                ("typarray", i64s(arr)),
                ("typinput", text(vec![None; n])),
                ("typoutput", text(vec![None; n])),
                ("typbasetype", i64s(vec![0; n])),
                ("typtypmod", i32s(vec![-1; n])),
                ("typndims", i32s(vec![0; n])),
                ("typcollation", i64s(vec![0; n])),
                ("typnotnull", bools(vec![false; n])),
                ("typdefault", text(vec![None; n])),
            ])?
        }
        "pg_database" => table(vec![
            ("oid", i64s(vec![5])),
            ("datname", text(vec![s(super::provider::DATABASE_NAME)])),
            ("datdba", i64s(vec![SUPERUSER_OID])),
            ("encoding", i32s(vec![6])),
            ("datlocprovider", text(vec![s("c")])),
            ("datistemplate", bools(vec![false])),
            ("datallowconn", bools(vec![true])),
            ("datconnlimit", i32s(vec![-1])),
            ("datcollate", text(vec![s("C.UTF-8")])),
            ("datctype", text(vec![s("C.UTF-8")])),
            ("daticulocale", text(vec![None])),
            ("datcollversion", text(vec![None])),
            ("dattablespace", i64s(vec![1663])),
            ("datacl", null_list(1)),
        ])?,
        // Passwords are masked in all three: the catalog tables are readable by every role.
        "pg_roles" | "pg_authid" => table(vec![
            ("oid", i64s(roles.iter().map(|r| r.oid as i64).collect())),
            ("rolname", text(roles.iter().map(|r| Some(r.name.clone())).collect())),
            ("rolsuper", bools(roles.iter().map(|r| r.superuser).collect())),
            ("rolinherit", bools(roles.iter().map(|r| r.inherit).collect())),
            ("rolcreaterole", bools(roles.iter().map(|r| r.create_role).collect())),
            ("rolcreatedb", bools(roles.iter().map(|r| r.create_db).collect())),
            ("rolcanlogin", bools(roles.iter().map(|r| r.login).collect())),
            ("rolreplication", bools(roles.iter().map(|r| r.oid == bkg_kernel::BOOTSTRAP_SUPERUSER).collect())),
            ("rolconnlimit", i32s(roles.iter().map(|r| r.connection_limit).collect())),
            ("rolpassword", text(roles.iter().map(|r| masked(r)).collect())),
            (
                "rolvaliduntil",
                text(
                    roles
                        .iter()
                        .map(|r| {
                            r.valid_until
                                .and_then(chrono::DateTime::from_timestamp_micros)
                                .map(|d| d.format("%Y-%m-%d %H:%M:%S+00").to_string())
                        })
                        .collect(),
                ),
            ),
            ("rolbypassrls", bools(roles.iter().map(|r| r.bypass_rls).collect())),
            ("rolconfig", null_list(roles.len())),
        ])?,
        "pg_user" => {
            let users: Vec<&&bkg_kernel::RoleDef> = roles.iter().filter(|r| r.login).collect();
            table(vec![
                ("usename", text(users.iter().map(|r| Some(r.name.clone())).collect())),
                ("usesysid", i64s(users.iter().map(|r| r.oid as i64).collect())),
                ("usecreatedb", bools(users.iter().map(|r| r.create_db).collect())),
                ("usesuper", bools(users.iter().map(|r| r.superuser).collect())),
                ("userepl", bools(users.iter().map(|r| r.oid == bkg_kernel::BOOTSTRAP_SUPERUSER).collect())),
                ("usebypassrls", bools(users.iter().map(|r| r.bypass_rls).collect())),
                ("passwd", text(users.iter().map(|r| masked(r)).collect())),
                ("valuntil", text(vec![None; users.len()])),
                ("useconfig", null_list(users.len())),
            ])?
        }
        "pg_am" => table(vec![
            ("oid", i64s(vec![2, 403, 405])),
            ("amname", text(vec![s("heap"), s("btree"), s("hash")])),
            ("amhandler", text(vec![None, None, None])),
            ("amtype", text(vec![s("t"), s("i"), s("i")])),
        ])?,
        "pg_index" => {
            let mut rows = Vec::new();
            for t in cat.tables.values() {
                let live: Vec<usize> = t.live_columns().map(|(p, _)| p).collect();
                for i in &t.indexes {
                    let key: Vec<Option<i16>> =
                        i.columns.iter().map(|c| live.iter().position(|p| p == c).map(|x| x as i16 + 1)).collect();
                    rows.push((i.id as i64, t.id as i64, i.columns.len() as i16, i.unique, i.primary, key));
                }
            }
            let n = rows.len();
            let indkey = ListArray::from_iter_primitive::<Int16Type, _, _>(rows.iter().map(|r| Some(r.5.clone())));
            table(vec![
                ("indexrelid", i64s(rows.iter().map(|r| r.0).collect())),
                ("indrelid", i64s(rows.iter().map(|r| r.1).collect())),
                ("indnatts", i16s(rows.iter().map(|r| r.2).collect())),
                ("indnkeyatts", i16s(rows.iter().map(|r| r.2).collect())),
                ("indisunique", bools(rows.iter().map(|r| r.3).collect())),
                ("indnullsnotdistinct", bools(vec![false; n])),
                ("indisprimary", bools(rows.iter().map(|r| r.4).collect())),
                ("indisexclusion", bools(vec![false; n])),
                ("indimmediate", bools(vec![true; n])),
                ("indisclustered", bools(vec![false; n])),
                ("indisvalid", bools(vec![true; n])),
                ("indcheckxmin", bools(vec![false; n])),
                ("indisready", bools(vec![true; n])),
                ("indislive", bools(vec![true; n])),
                ("indisreplident", bools(vec![false; n])),
                ("indkey", Arc::new(indkey)),
                ("indexprs", text(vec![None; n])),
                ("indpred", text(vec![None; n])),
            ])?
        }
        "pg_constraint" => {
            let mut rows = Vec::new();
            for t in cat.tables.values() {
                let live: Vec<usize> = t.live_columns().map(|(p, _)| p).collect();
                let attnum = |c: &usize| live.iter().position(|p| p == c).map(|x| x as i16 + 1);
                for i in t.indexes.iter().filter(|i| i.unique) {
                    let kind = if i.primary { "p" } else { "u" };
                    rows.push((
                        i.id as i64,
                        i.name.clone(),
                        schema_oid(cat, &t.schema),
                        kind,
                        t.id as i64,
                        i.id as i64,
                        0i64,
                        i.columns.iter().map(attnum).collect::<Vec<_>>(),
                        vec![],
                    ));
                }
                for (k, fk) in t.foreign_keys.iter().enumerate() {
                    let fref = cat.table(fk.ref_table);
                    let flive: Vec<usize> =
                        fref.map(|r| r.live_columns().map(|(p, _)| p).collect()).unwrap_or_default();
                    let fnum: Vec<Option<i16>> = fk
                        .ref_columns
                        .iter()
                        .map(|c| flive.iter().position(|p| p == c).map(|x| x as i16 + 1))
                        .collect();
                    rows.push((
                        fk_oid(t.id, k),
                        fk.name.clone(),
                        schema_oid(cat, &t.schema),
                        "f",
                        t.id as i64,
                        0,
                        fk.ref_table as i64,
                        fk.columns.iter().map(attnum).collect(),
                        fnum,
                    ));
                }
            }
            let n = rows.len();
            table(vec![
                ("oid", i64s(rows.iter().map(|r| r.0).collect())),
                ("conname", text(rows.iter().map(|r| Some(r.1.clone())).collect())),
                ("connamespace", i64s(rows.iter().map(|r| r.2).collect())),
                ("contype", text(rows.iter().map(|r| s(r.3)).collect())),
                ("condeferrable", bools(vec![false; n])),
                ("condeferred", bools(vec![false; n])),
                ("convalidated", bools(vec![true; n])),
                ("conrelid", i64s(rows.iter().map(|r| r.4).collect())),
                ("contypid", i64s(vec![0; n])),
                ("conindid", i64s(rows.iter().map(|r| r.5).collect())),
                ("conparentid", i64s(vec![0; n])),
                ("confrelid", i64s(rows.iter().map(|r| r.6).collect())),
                ("confupdtype", text(vec![s("a"); n])),
                ("confdeltype", text(vec![s("a"); n])),
                ("confmatchtype", text(vec![s("s"); n])),
                ("conislocal", bools(vec![true; n])),
                ("coninhcount", i32s(vec![0; n])),
                ("connoinherit", bools(vec![true; n])),
                (
                    "conkey",
                    Arc::new(ListArray::from_iter_primitive::<Int16Type, _, _>(rows.iter().map(|r| Some(r.7.clone())))),
                ),
                (
                    "confkey",
                    Arc::new(ListArray::from_iter_primitive::<Int16Type, _, _>(rows.iter().map(|r| Some(r.8.clone())))),
                ),
            ])?
        }
        "pg_attrdef" => {
            let mut rows = Vec::new();
            for t in cat.tables.values() {
                for (n, (_, c)) in t.live_columns().enumerate() {
                    if let Some(bkg_kernel::ColumnDefault::Expr(e)) = &c.default {
                        rows.push((t.id as i64, n as i16 + 1, e.clone()));
                    }
                }
            }
            table(vec![
                ("oid", i64s(rows.iter().map(|r| r.0 * 1000 + r.1 as i64).collect())),
                ("adrelid", i64s(rows.iter().map(|r| r.0).collect())),
                ("adnum", i16s(rows.iter().map(|r| r.1).collect())),
                ("adbin", text(rows.iter().map(|r| Some(r.2.clone())).collect())),
            ])?
        }
        "pg_tables" | "pg_views" | "pg_indexes" => {
            let mut schema = Vec::new();
            let mut tname = Vec::new();
            let mut third = Vec::new();
            match name {
                "pg_tables" => {
                    for t in cat.tables.values() {
                        schema.push(Some(t.schema.clone()));
                        tname.push(Some(t.name.clone()));
                        third.push(Some(t.indexes.is_empty().to_string()));
                    }
                    let n = schema.len();
                    let owner = |oid: u64| cat.role(oid).map(|r| r.name.clone());
                    table(vec![
                        ("schemaname", text(schema)),
                        ("tablename", text(tname)),
                        ("tableowner", text(cat.tables.values().map(|t| owner(t.owner)).collect())),
                        ("tablespace", text(vec![None; n])),
                        ("hasindexes", bools(third.iter().map(|x| x.as_deref() == Some("false")).collect())),
                        ("hasrules", bools(vec![false; n])),
                        ("hastriggers", bools(vec![false; n])),
                        ("rowsecurity", bools(cat.tables.values().map(|t| t.row_security).collect())),
                    ])?
                }
                "pg_views" => {
                    for v in cat.views.values() {
                        schema.push(Some(v.schema.clone()));
                        tname.push(Some(v.name.clone()));
                        third.push(Some(v.sql.clone()));
                    }
                    let owners = cat.views.values().map(|v| cat.role(v.owner).map(|r| r.name.clone())).collect();
                    table(vec![
                        ("schemaname", text(schema)),
                        ("viewname", text(tname)),
                        ("viewowner", text(owners)),
                        ("definition", text(third)),
                    ])?
                }
                _ => {
                    let mut iname = Vec::new();
                    for t in cat.tables.values() {
                        for i in &t.indexes {
                            schema.push(Some(t.schema.clone()));
                            tname.push(Some(t.name.clone()));
                            iname.push(Some(i.name.clone()));
                            third.push(Some(index_def(t, i)));
                        }
                    }
                    let n = schema.len();
                    table(vec![
                        ("schemaname", text(schema)),
                        ("tablename", text(tname)),
                        ("indexname", text(iname)),
                        ("tablespace", text(vec![None; n])),
                        ("indexdef", text(third)),
                    ])?
                }
            }
        }
        "pg_tablespace" => table(vec![
            ("oid", i64s(vec![1663, 1664])),
            ("spcname", text(vec![s("pg_default"), s("pg_global")])),
            ("spcowner", i64s(vec![10, 10])),
        ])?,
        "pg_collation" => table(vec![
            ("oid", i64s(vec![100, 950])),
            ("collname", text(vec![s("default"), s("C")])),
            ("collnamespace", i64s(vec![NS_PG_CATALOG, NS_PG_CATALOG])),
            ("collprovider", text(vec![s("d"), s("c")])),
        ])?,
        "pg_settings" => table(vec![
            ("name", text(vec![s("max_connections"), s("server_version"), s("server_encoding")])),
            ("setting", text(vec![s("100"), s("15.0"), s("UTF8")])),
            ("unit", text(vec![None, None, None])),
            ("category", text(vec![None, None, None])),
            ("short_desc", text(vec![None, None, None])),
            ("context", text(vec![s("postmaster"), s("internal"), s("internal")])),
            ("vartype", text(vec![s("integer"), s("string"), s("string")])),
            ("source", text(vec![s("default"), s("default"), s("default")])),
        ])?,
        // Catalogs with no rows here (yet): right columns, so client queries plan and return nothing.
        "pg_proc" => empty(&[
            ("oid", A::Int64),
            ("proname", A::Utf8),
            ("pronamespace", A::Int64),
            ("proowner", A::Int64),
            ("prolang", A::Int64),
            ("prokind", A::Utf8),
            ("prosecdef", A::Boolean),
            ("proretset", A::Boolean),
            ("provolatile", A::Utf8),
            ("pronargs", A::Int16),
            ("prorettype", A::Int64),
            ("proargtypes", A::Utf8),
            ("proallargtypes", A::Utf8),
            ("proargmodes", A::Utf8),
            ("proargnames", A::Utf8),
            ("prosrc", A::Utf8),
            ("proacl", A::Utf8),
        ])?,
        "pg_description" => {
            empty(&[("objoid", A::Int64), ("classoid", A::Int64), ("objsubid", A::Int32), ("description", A::Utf8)])?
        }
        "pg_inherits" => empty(&[
            ("inhrelid", A::Int64),
            ("inhparent", A::Int64),
            ("inhseqno", A::Int32),
            ("inhdetachpending", A::Boolean),
        ])?,
        "pg_policy" => {
            let pols: Vec<(&bkg_kernel::TableDef, &bkg_kernel::PolicyDef)> =
                cat.tables.values().flat_map(|t| t.policies.iter().map(move |p| (t, p))).collect();
            let cmd = |c: bkg_kernel::PolicyCommand| match c {
                bkg_kernel::PolicyCommand::All => "*",
                bkg_kernel::PolicyCommand::Select => "r",
                bkg_kernel::PolicyCommand::Insert => "a",
                bkg_kernel::PolicyCommand::Update => "w",
                bkg_kernel::PolicyCommand::Delete => "d",
            };
            // PUBLIC is role 0, as PostgreSQL stores it.
            let roles = ListArray::from_iter_primitive::<Int64Type, _, _>(pols.iter().map(|(_, p)| {
                Some(if p.roles.is_empty() { vec![Some(0)] } else { p.roles.iter().map(|r| Some(*r as i64)).collect() })
            }));
            table(vec![
                ("oid", i64s(pols.iter().map(|(_, p)| p.oid as i64).collect())),
                ("polname", text(pols.iter().map(|(_, p)| Some(p.name.clone())).collect())),
                ("polrelid", i64s(pols.iter().map(|(t, _)| t.id as i64).collect())),
                ("polcmd", text(pols.iter().map(|(_, p)| s(cmd(p.command))).collect())),
                ("polpermissive", bools(pols.iter().map(|(_, p)| p.permissive).collect())),
                ("polroles", Arc::new(roles)),
                ("polqual", text(pols.iter().map(|(_, p)| p.using.clone()).collect())),
                ("polwithcheck", text(pols.iter().map(|(_, p)| p.with_check.clone()).collect())),
            ])?
        }
        "pg_policies" => {
            let pols: Vec<(&bkg_kernel::TableDef, &bkg_kernel::PolicyDef)> =
                cat.tables.values().flat_map(|t| t.policies.iter().map(move |p| (t, p))).collect();
            let role_names = |p: &bkg_kernel::PolicyDef| -> Vec<String> {
                if p.roles.is_empty() {
                    return vec!["public".into()];
                }
                p.roles.iter().map(|r| cat.role(*r).map(|d| d.name.clone()).unwrap_or_else(|| r.to_string())).collect()
            };
            table(vec![
                ("schemaname", text(pols.iter().map(|(t, _)| Some(t.schema.clone())).collect())),
                ("tablename", text(pols.iter().map(|(t, _)| Some(t.name.clone())).collect())),
                ("policyname", text(pols.iter().map(|(_, p)| Some(p.name.clone())).collect())),
                (
                    "permissive",
                    text(
                        pols.iter().map(|(_, p)| s(if p.permissive { "PERMISSIVE" } else { "RESTRICTIVE" })).collect(),
                    ),
                ),
                ("roles", text_lists(pols.iter().map(|(_, p)| Some(role_names(p))).collect())),
                ("cmd", text(pols.iter().map(|(_, p)| s(p.command.name())).collect())),
                ("qual", text(pols.iter().map(|(_, p)| p.using.clone()).collect())),
                ("with_check", text(pols.iter().map(|(_, p)| p.with_check.clone()).collect())),
            ])?
        }
        "pg_auth_members" => {
            let pairs: Vec<(i64, i64)> =
                roles.iter().flat_map(|r| r.member_of.iter().map(|m| (*m as i64, r.oid as i64))).collect();
            table(vec![
                ("oid", i64s((0..pairs.len() as i64).map(|i| 1_000_000 + i).collect())),
                ("roleid", i64s(pairs.iter().map(|p| p.0).collect())),
                ("member", i64s(pairs.iter().map(|p| p.1).collect())),
                ("grantor", i64s(vec![SUPERUSER_OID; pairs.len()])),
                ("admin_option", bools(vec![false; pairs.len()])),
            ])?
        }
        "pg_trigger" => empty(&[
            ("oid", A::Int64),
            ("tgrelid", A::Int64),
            ("tgname", A::Utf8),
            ("tgisinternal", A::Boolean),
            ("tgenabled", A::Utf8),
        ])?,
        "pg_rewrite" => {
            empty(&[("oid", A::Int64), ("rulename", A::Utf8), ("ev_class", A::Int64), ("ev_type", A::Utf8)])?
        }
        "pg_statistic_ext" => empty(&[
            ("oid", A::Int64),
            ("stxrelid", A::Int64),
            ("stxname", A::Utf8),
            ("stxnamespace", A::Int64),
            ("stxkind", A::Utf8),
            ("stxstattarget", A::Int32),
        ])?,
        "pg_publication" => empty(&[("oid", A::Int64), ("pubname", A::Utf8), ("puballtables", A::Boolean)])?,
        "pg_publication_rel" => empty(&[("oid", A::Int64), ("prpubid", A::Int64), ("prrelid", A::Int64)])?,
        "pg_publication_namespace" => empty(&[("oid", A::Int64), ("pnpubid", A::Int64), ("pnnspid", A::Int64)])?,
        "pg_partitioned_table" => empty(&[("partrelid", A::Int64), ("partstrat", A::Utf8)])?,
        "pg_extension" => {
            empty(&[("oid", A::Int64), ("extname", A::Utf8), ("extversion", A::Utf8), ("extnamespace", A::Int64)])?
        }
        "pg_range" => empty(&[("rngtypid", A::Int64), ("rngsubtype", A::Int64)])?,
        "pg_enum" => {
            empty(&[("oid", A::Int64), ("enumtypid", A::Int64), ("enumsortorder", A::Float32), ("enumlabel", A::Utf8)])?
        }
        "pg_foreign_table" => empty(&[("ftrelid", A::Int64), ("ftserver", A::Int64)])?,
        "pg_sequence" => empty(&[("seqrelid", A::Int64), ("seqtypid", A::Int64)])?,
        _ => return Ok(None),
    };
    Ok(Some(t))
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

fn fk_oid(table: u64, k: usize) -> i64 {
    FK_OID_BASE | ((table as i64) << 8) | (k as i64 & 0xff)
}

fn constraint_def(cat: &Catalog, oid: i64) -> Option<String> {
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

type RowFn = dyn Fn(&[Option<String>]) -> Option<String> + Send + Sync;

/// A scalar function evaluated row by row on the text form of its arguments.
struct PgFn {
    name: String,
    sig: Signature,
    ret: A,
    f: Arc<RowFn>,
}

impl std::fmt::Debug for PgFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgFn({})", self.name)
    }
}
impl PartialEq for PgFn {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}
impl Eq for PgFn {}
impl Hash for PgFn {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}

impl ScalarUDFImpl for PgFn {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.sig
    }
    fn return_type(&self, _: &[A]) -> DfResult<A> {
        Ok(self.ret.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        // All-scalar arguments give one value, whatever the batch size.
        let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n = if all_scalar { 1 } else { args.number_rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts: Vec<ArrayRef> =
            arrays.iter().map(|a| datafusion::arrow::compute::cast(a, &A::Utf8)).collect::<Result<_, _>>()?;
        let mut out: Vec<Option<String>> = Vec::with_capacity(n.max(1));
        for r in 0..n.max(if arrays.is_empty() { 1 } else { 0 }) {
            let row: Vec<Option<String>> = texts
                .iter()
                .map(|t| {
                    let s = t.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                    if s.is_null(r) { None } else { Some(s.value(r).to_string()) }
                })
                .collect();
            out.push((self.f)(&row));
        }
        let arr: ArrayRef = Arc::new(StringArray::from(out));
        let arr = datafusion::arrow::compute::cast(&arr, &self.ret)?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&arr, 0)?))
        } else {
            Ok(ColumnarValue::Array(arr))
        }
    }
}

use datafusion::arrow::array::Array;

pub(crate) fn udf(
    name: &str,
    sig: Signature,
    ret: A,
    f: impl Fn(&[Option<String>]) -> Option<String> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(PgFn { name: name.to_string(), sig, ret, f: Arc::new(f) })
}

/// `has_table_privilege([user,] table, privileges)` / `has_schema_privilege([user,] schema, privileges)`:
/// objects and users by name or oid, privileges as a comma-separated list.
fn has_privilege(cat: &Catalog, info: &SessionInfo, args: &[Option<String>], schema: bool) -> Option<String> {
    let (user, object, privs) = match args {
        [object, privs] => (info.user.read().clone(), object.clone()?, privs.clone()?),
        [user, object, privs] => (user.clone()?, object.clone()?, privs.clone()?),
        _ => return None,
    };
    let role = match user.parse::<u64>() {
        Ok(oid) => oid,
        Err(_) => cat.find_role(&user)?.oid,
    };
    let mut bits = 0;
    for p in privs.split(',') {
        let p = p.trim().to_uppercase();
        let p = p.trim_end_matches(" WITH GRANT OPTION");
        bits |=
            bkg_kernel::privilege::LETTERS.iter().map(|(b, _)| *b).find(|b| bkg_kernel::privilege::name(*b) == p)?;
    }
    let held = if schema {
        let name = match object.parse::<i64>() {
            Ok(oid) => cat.schemas.values().find(|s| s.id as i64 == oid)?.name.clone(),
            Err(_) => object.trim_matches('"').to_string(),
        };
        cat.privileges(role, bkg_kernel::AclObject::Schema(&name)).ok()?
    } else {
        let id = match object.parse::<u64>() {
            Ok(oid) => oid,
            Err(_) => {
                let (schema, name) = match object.split_once('.') {
                    Some((s, n)) => (s.trim_matches('"').to_string(), n.trim_matches('"').to_string()),
                    None => (info.schema.read().clone(), object.trim_matches('"').to_string()),
                };
                cat.find_table(&schema, &name).map(|t| t.id).or_else(|| cat.find_view(&schema, &name).map(|v| v.id))?
            }
        };
        cat.privileges(role, bkg_kernel::AclObject::Relation(id)).ok()?
    };
    Some((held & bits == bits).to_string())
}

/// What the session-bound functions read: the user and the current schema.
pub struct SessionInfo {
    /// `current_user`: changes with SET ROLE.
    pub user: RwLock<String>,
    pub session_user: RwLock<String>,
    pub schema: RwLock<String>,
    pub backend_pid: i32,
    /// The JWT claims of the principal the session acts for (set by the front door, never by
    /// a client setting); read by `auth.uid()`, `auth.role()`, `auth.jwt()`, `auth.email()`.
    pub claims: RwLock<Option<Arc<serde_json::Value>>>,
}

/// A function of the session's JWT claims (NULL without a principal).
fn claim_udf(
    name: &str,
    info: &Arc<SessionInfo>,
    f: impl Fn(&serde_json::Value) -> Option<String> + Send + Sync + 'static,
) -> ScalarUDF {
    let info = info.clone();
    udf(name, Signature::nullary(Volatility::Stable), A::Utf8, move |_| f(info.claims.read().as_ref()?))
}

fn claim_text(claims: &serde_json::Value, name: &str) -> Option<String> {
    match claims.get(name)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The PostgreSQL compatibility functions of one session.
pub fn functions(view: Arc<CatalogView>, info: Arc<SessionInfo>, server_version: &str) -> Vec<ScalarUDF> {
    let st = Volatility::Stable;
    let any = |n: usize| Signature::any(n, Volatility::Stable);
    let var = Signature::variadic_any(Volatility::Stable);
    let version = format!(
        "PostgreSQL {server_version} (bkg-db {}) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION")
    );
    let v2 = view.clone();
    let v3 = view.clone();
    let v4 = view.clone();
    let i1 = info.clone();
    let i2 = info.clone();
    let i3 = info.clone();
    let i4 = info.clone();
    let i5 = info.clone();
    let v5 = view.clone();
    vec![
        udf("version", Signature::nullary(st), A::Utf8, move |_| Some(version.clone())),
        udf("current_user", Signature::nullary(st), A::Utf8, move |_| Some(i1.user.read().clone())),
        udf("session_user", Signature::nullary(st), A::Utf8, move |_| Some(i2.session_user.read().clone())),
        udf("current_schema", Signature::nullary(st), A::Utf8, move |_| Some(i3.schema.read().clone())),
        udf("current_database", Signature::nullary(st), A::Utf8, |_| s(super::provider::DATABASE_NAME)),
        udf("bkg_role_names", any(1), A::Utf8, {
            let v = view.clone();
            move |a| {
                // The argument is an oid[] rendered as text: "[16390, 16391]".
                let text = a.first()?.as_deref()?;
                let cat = v.get();
                let mut names: Vec<String> = text
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|d| d.parse::<u64>().ok())
                    .filter_map(|oid| cat.role(oid).map(|r| r.name.clone()))
                    .collect();
                names.sort();
                (!names.is_empty()).then(|| names.join(","))
            }
        }),
        claim_udf("auth.uid", &info, |c| claim_text(c, "sub")),
        claim_udf("auth.role", &info, |c| claim_text(c, "role")),
        claim_udf("auth.email", &info, |c| claim_text(c, "email")),
        claim_udf("auth.jwt", &info, |c| Some(c.to_string())),
        udf("pg_backend_pid", Signature::nullary(st), A::Int32, move |_| Some(i4.backend_pid.to_string())),
        udf("pg_get_userbyid", any(1), A::Utf8, {
            let v = view.clone();
            move |a| {
                let oid: u64 = a.first()?.as_deref()?.parse().ok()?;
                Some(v.get().role(oid).map(|r| r.name.clone()).unwrap_or_else(|| format!("unknown (OID={oid})")))
            }
        }),
        udf("pg_table_is_visible", any(1), A::Boolean, move |a| {
            // Visible when its schema is the one unqualified names resolve to.
            let oid: u64 = a.first()?.as_deref()?.parse().ok()?;
            let cat = v5.get();
            let schema = cat
                .tables
                .values()
                .find_map(|t| (t.id == oid || t.indexes.iter().any(|i| i.id == oid)).then(|| t.schema.clone()))
                .or_else(|| cat.views.get(&oid).map(|v| v.schema.clone()))?;
            Some((schema == *i5.schema.read()).to_string())
        }),
        udf("pg_type_is_visible", any(1), A::Boolean, |_| s("true")),
        udf("pg_function_is_visible", any(1), A::Boolean, |_| s("true")),
        udf("has_table_privilege", var.clone(), A::Boolean, {
            let (v, i) = (view.clone(), info.clone());
            move |a| has_privilege(&v.get(), &i, a, false)
        }),
        udf("has_schema_privilege", var.clone(), A::Boolean, {
            let (v, i) = (view.clone(), info.clone());
            move |a| has_privilege(&v.get(), &i, a, true)
        }),
        udf("has_database_privilege", var.clone(), A::Boolean, |_| s("true")),
        udf("pg_encoding_to_char", any(1), A::Utf8, |_| s("UTF8")),
        udf("obj_description", var.clone(), A::Utf8, |_| None),
        udf("col_description", var.clone(), A::Utf8, |_| None),
        udf("shobj_description", var.clone(), A::Utf8, |_| None),
        udf("pg_get_expr", var.clone(), A::Utf8, |a| a.first().cloned().flatten()),
        udf("pg_get_partkeydef", var.clone(), A::Utf8, |_| None),
        // No partitions: no relation has a partition root.
        udf("pg_partition_root", any(1), A::Int64, |_| None),
        // In a select list: the relation itself, its only ancestor.
        udf("pg_partition_ancestors", any(1), A::Int64, |a| {
            a.first()?.as_deref()?.parse::<i64>().ok().map(|o| o.to_string())
        }),
        udf("pg_regclass_name", any(1), A::Utf8, {
            let (v, i) = (view.clone(), info.clone());
            move |a| {
                let oid: u64 = a.first()?.as_deref()?.parse().ok()?;
                let cat = v.get();
                let (schema, name) = cat
                    .tables
                    .values()
                    .find(|t| t.id == oid)
                    .map(|t| (t.schema.clone(), t.name.clone()))
                    .or_else(|| cat.views.get(&oid).map(|v| (v.schema.clone(), v.name.clone())))?;
                Some(if schema == *i.schema.read() { name } else { format!("{schema}.{name}") })
            }
        }),
        udf("pg_relation_size", var.clone(), A::Int64, |_| s("0")),
        udf("pg_total_relation_size", var.clone(), A::Int64, |_| s("0")),
        udf("pg_size_pretty", any(1), A::Utf8, |a| a[0].as_ref().map(|b| format!("{b} bytes"))),
        udf("format_type", any(2), A::Utf8, |a| {
            let oid = a[0].as_deref()?.parse().ok()?;
            format_type(oid, a[1].as_deref().and_then(|m| m.parse().ok()).unwrap_or(-1))
        }),
        udf("pg_get_indexdef", var.clone(), A::Utf8, move |a| {
            let oid: u64 = a.first()?.as_deref()?.parse().ok()?;
            let cat = v2.get();
            cat.tables.values().find_map(|t| t.indexes.iter().find(|i| i.id == oid).map(|i| index_def(t, i)))
        }),
        udf("pg_get_constraintdef", var.clone(), A::Utf8, move |a| {
            let oid: i64 = a.first()?.as_deref()?.parse().ok()?;
            constraint_def(&v3.get(), oid)
        }),
        udf("pg_get_viewdef", var.clone(), A::Utf8, move |a| {
            let oid: u64 = a.first()?.as_deref()?.parse().ok()?;
            v4.get().views.get(&oid).map(|v| v.sql.clone())
        }),
        udf("pg_get_function_result", var.clone(), A::Utf8, |_| None),
        udf("pg_get_function_arguments", var.clone(), A::Utf8, |_| None),
        udf("pg_get_function_identity_arguments", var.clone(), A::Utf8, |_| None),
        udf("pg_get_triggerdef", var.clone(), A::Utf8, |_| None),
        udf("pg_get_ruledef", var.clone(), A::Utf8, |_| None),
        udf("pg_get_statisticsobjdef_columns", var.clone(), A::Utf8, |_| None),
        udf("to_regtype", any(1), A::Int64, |a| type_oid_by_name(a[0].as_deref()?).map(|o| o.to_string())),
        udf("pg_is_in_recovery", Signature::nullary(st), A::Boolean, |_| s("false")),
        udf("txid_current", Signature::nullary(Volatility::Volatile), A::Int64, |_| s("1")),
        udf("pg_tablespace_location", var, A::Utf8, |_| s("")),
    ]
}

/// Rewrites PostgreSQL catalog idioms the planner does not know into plain SQL.
pub fn rewrite(stmt: &mut Statement, cat: &Catalog, current_schema: &str) -> crate::error::SqlResult<()> {
    let _ = ast::VisitMut::visit(stmt, &mut CatalogForms);
    let mut err = None;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        // A malformed array literal in a cast is an error, as in PostgreSQL.
        if let Expr::Cast { expr, data_type: ast::DataType::Array(_), .. } = e
            && let Err(x) = array_text_literal_checked(expr)
        {
            err = Some(x);
            return std::ops::ControlFlow::Break(());
        }
        rewrite_expr(e, cat, current_schema);
        std::ops::ControlFlow::<()>::Continue(())
    });
    if let Some(e) = err {
        return Err(e);
    }
    Ok(())
    // `pg_catalog.fn(...)` → `fn(...)` also for table functions and in FROM.
}

fn parse_expr(sql: &str) -> Option<Expr> {
    datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// Catalog forms beyond single expressions: `pg_partition_ancestors(rel)` in FROM (bkg-db has no
/// partitions, so a relation's only ancestor is itself) and `x::regclass` in a select list,
/// shown by name as PostgreSQL prints regclass values.
struct CatalogForms;

impl ast::VisitorMut for CatalogForms {
    type Break = ();

    fn pre_visit_table_factor(&mut self, tf: &mut ast::TableFactor) -> std::ops::ControlFlow<()> {
        // `pg_catalog.unnest(…)` and other qualified table functions.
        if let ast::TableFactor::Table { name, args: Some(_), alias, .. } = tf {
            strip_pg_catalog(name);
            // `unnest(a) x`: in PostgreSQL the alias also names the single output column.
            if name.to_string().eq_ignore_ascii_case("unnest")
                && let Some(a) = alias
                && a.columns.is_empty()
            {
                a.columns.push(ast::TableAliasColumnDef { name: a.name.clone(), data_type: None });
            }
        }
        if let ast::TableFactor::Table { name, args: Some(args), alias, .. } = tf
            && name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_partition_ancestors"))
            && let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))] = args.args.as_slice()
        {
            let alias = alias.as_ref().map(|a| a.to_string()).unwrap_or_else(|| "pg_partition_ancestors".into());
            let sql = format!("SELECT 1 FROM (SELECT CAST({arg} AS BIGINT) AS relid) AS {alias}");
            if let Ok(mut stmts) = super::session::Session::parse(&sql)
                && let Some(Statement::Query(q)) = stmts.pop()
                && let ast::SetExpr::Select(sel) = *q.body
                && let Some(from) = sel.from.into_iter().next()
            {
                *tf = from.relation;
            }
        }
        std::ops::ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &mut ast::Query) -> std::ops::ControlFlow<()> {
        if let ast::SetExpr::Select(sel) = q.body.as_mut() {
            for item in sel.projection.iter_mut() {
                let (ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. }) = item else {
                    continue;
                };
                if let Expr::Cast { expr, data_type, .. } = e
                    && (matches!(data_type, ast::DataType::Regclass)
                        || matches!(data_type, ast::DataType::Custom(n, _) if n.to_string().to_lowercase().ends_with("regclass")))
                    && !matches!(expr.as_ref(), Expr::Value(_))
                    && let Some(call) = parse_expr(&format!("pg_regclass_name({expr})"))
                {
                    *e = call;
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// `SELECT … FROM unnest(x.reloptions)` (psql's `\d+`): bkg-db has no storage options, so the
/// array is always NULL and the (correlated, unsupported) subquery is empty.
fn unnests_unset_options(q: &ast::Query) -> bool {
    let ast::SetExpr::Select(sel) = q.body.as_ref() else { return false };
    let [from] = sel.from.as_slice() else { return false };
    let ast::TableFactor::Table { name, args: Some(args), .. } = &from.relation else { return false };
    if !name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("unnest")) {
        return false;
    }
    matches!(args.args.as_slice(), [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))]
        if matches!(e, Expr::CompoundIdentifier(parts) if parts.last().is_some_and(|p| ["reloptions", "attoptions"].contains(&p.value.to_lowercase().as_str())))
            || matches!(e, Expr::Identifier(p) if ["reloptions", "attoptions"].contains(&p.value.to_lowercase().as_str())))
}

/// `SELECT rolname FROM pg_roles WHERE oid = ANY (x) ...`: the expression `x`.
fn role_names_of_any(q: &ast::Query) -> Option<Expr> {
    let ast::SetExpr::Select(sel) = q.body.as_ref() else { return None };
    let [from] = sel.from.as_slice() else { return None };
    let ast::TableFactor::Table { name, .. } = &from.relation else { return None };
    if !name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("pg_roles")) {
        return None;
    }
    let [ast::SelectItem::UnnamedExpr(Expr::Identifier(col))] = sel.projection.as_slice() else { return None };
    if !col.value.eq_ignore_ascii_case("rolname") {
        return None;
    }
    match sel.selection.as_ref()? {
        Expr::AnyOp { left, compare_op: ast::BinaryOperator::Eq, right, .. } if matches!(left.as_ref(), Expr::Identifier(i) if i.value.eq_ignore_ascii_case("oid")) => {
            Some(right.as_ref().clone())
        }
        _ => None,
    }
}

fn strip_pg_catalog(name: &mut ast::ObjectName) {
    if name.0.len() == 2 && name.0[0].as_ident().is_some_and(|i| i.value.eq_ignore_ascii_case(PG_CATALOG)) {
        name.0.remove(0);
    }
}

fn rewrite_expr(e: &mut Expr, cat: &Catalog, current_schema: &str) {
    super::json::rewrite_operator(e);
    match e {
        Expr::Function(f) => {
            let n = f.name.0.len();
            if n == 2 && f.name.0[0].as_ident().is_some_and(|i| i.value.eq_ignore_ascii_case(PG_CATALOG)) {
                f.name.0.remove(0);
            }
            // ARRAY(SELECT x FROM ...) → (SELECT array_agg(x) FROM ...)
            if f.name.to_string().eq_ignore_ascii_case("array")
                && let ast::FunctionArguments::Subquery(q) = &f.args
            {
                // psql's `\d t` names a policy's roles with a correlated subquery.
                if let Some(oids) = role_names_of_any(q)
                    && let Some(names) = parse_expr(&format!("string_to_array(bkg_role_names({oids}), ',')"))
                {
                    *e = names;
                    return;
                }
                // Over a catalog table bkg-db keeps empty: an empty array, without planning the
                // (often correlated, nested) subquery.
                if (provably_empty(q).is_some() || unnests_unset_options(q))
                    && let Some(empty) = parse_expr("CAST(make_array() AS text[])")
                {
                    *e = empty;
                    return;
                }
                let mut q = q.as_ref().clone();
                if let ast::SetExpr::Select(sel) = q.body.as_mut()
                    && sel.projection.len() == 1
                    && let ast::SelectItem::UnnamedExpr(item) | ast::SelectItem::ExprWithAlias { expr: item, .. } =
                        &sel.projection[0]
                    && let Some(agg) = parse_expr(&format!("array_agg({item})"))
                {
                    sel.projection[0] = ast::SelectItem::UnnamedExpr(agg);
                    q.order_by = None;
                    // ARRAY() of no rows is an empty array, not NULL.
                    let sub = Expr::Subquery(Box::new(q));
                    *e = parse_expr(&format!("coalesce({sub}, make_array())")).unwrap_or(sub);
                }
            }
        }
        Expr::BinaryOp { left, op, right } => {
            // `array_column = '{0}'`: an array literal in PostgreSQL's text form.
            if matches!(op, ast::BinaryOperator::Eq | ast::BinaryOperator::NotEq) {
                for side in [left.as_mut(), right.as_mut()] {
                    if let Some(arr) = array_literal(side) {
                        *side = arr;
                    }
                }
            }
            if let ast::BinaryOperator::PGCustomBinaryOperator(parts) = op {
                let sym = parts.last().cloned().unwrap_or_default();
                let new = match sym.as_str() {
                    "~" => Some(ast::BinaryOperator::PGRegexMatch),
                    "~*" => Some(ast::BinaryOperator::PGRegexIMatch),
                    "!~" => Some(ast::BinaryOperator::PGRegexNotMatch),
                    "!~*" => Some(ast::BinaryOperator::PGRegexNotIMatch),
                    "=" => Some(ast::BinaryOperator::Eq),
                    "<>" => Some(ast::BinaryOperator::NotEq),
                    "<" => Some(ast::BinaryOperator::Lt),
                    ">" => Some(ast::BinaryOperator::Gt),
                    "~~" => None,
                    _ => None,
                };
                if let Some(n) = new {
                    *op = n;
                }
            }
        }
        Expr::Subquery(q) => aggregate_catalog_subquery(q),
        Expr::Collate { expr, .. } => {
            let inner = std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null));
            *e = inner;
        }
        Expr::Cast { expr, data_type: ast::DataType::Array(_), .. } => {
            // '{1,2}'::int[]: the text form becomes ARRAY['1','2'], which casts element-wise.
            if let Some(arr) = array_text_literal(expr) {
                **expr = arr;
            }
        }
        Expr::Cast { expr, data_type, .. } => {
            let tname = match data_type {
                ast::DataType::Custom(n, _) => {
                    strip_pg_catalog(n);
                    n.to_string().to_lowercase()
                }
                ast::DataType::Regclass => "regclass".into(),
                _ => String::new(),
            };
            match tname.as_str() {
                "regclass" => {
                    // 'name'::regclass → the relation's oid.
                    if let Expr::Value(v) = expr.as_ref()
                        && let ast::Value::SingleQuotedString(name) = &v.value
                        && let Ok(oid) = name.trim().parse::<i64>()
                    {
                        // '16386'::regclass: an oid given as text.
                        *e = Expr::value(ast::Value::Number(oid.to_string(), false));
                    } else if let Expr::Value(v) = expr.as_ref()
                        && let ast::Value::SingleQuotedString(name) = &v.value
                    {
                        let (schema, rel) = match name.split_once('.') {
                            Some((s, r)) => (s.trim_matches('"').to_string(), r.trim_matches('"').to_string()),
                            None => (current_schema.to_string(), name.trim_matches('"').to_string()),
                        };
                        let oid = cat
                            .find_table(&schema, &rel)
                            .map(|t| t.id)
                            .or_else(|| cat.find_view(&schema, &rel).map(|v| v.id))
                            .or_else(|| cat.find_index(&schema, &rel).map(|(t, i)| cat.tables[&t].indexes[i].id))
                            .map(|x| x as i64)
                            .unwrap_or(0);
                        *e = Expr::value(ast::Value::Number(oid.to_string(), false));
                    } else {
                        let inner = std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null));
                        *e = inner;
                    }
                }
                // 'json'::regtype is the type's oid; a column cast to regtype is shown by name.
                "regtype" => {
                    let inner = std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null));
                    *e = match &inner {
                        Expr::Value(v) if matches!(v.value, ast::Value::SingleQuotedString(_)) => {
                            let ast::Value::SingleQuotedString(name) = &v.value else { unreachable!() };
                            Expr::value(ast::Value::Number(type_oid_by_name(name).unwrap_or(0).to_string(), false))
                        }
                        _ => call("format_type", vec![inner, Expr::value(ast::Value::Number("-1".into(), false))]),
                    };
                }
                "regproc" | "regprocedure" | "regnamespace" | "regrole" | "oid" => {
                    let inner = std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null));
                    *e = Expr::Cast {
                        kind: ast::CastKind::DoubleColon,
                        expr: Box::new(inner),
                        data_type: ast::DataType::BigInt(None),
                        array: false,
                        format: None,
                    };
                }
                "text" | "name" | "char" | "\"char\"" => {
                    *data_type = ast::DataType::Text;
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// The oid of a built-in type given by name (`int4`, `integer`, `json`, `_text`, ...).
/// Catalog tables that hold no rows in bkg-db (no policies, triggers, statistics objects,
/// publications or inheritance yet).
const ALWAYS_EMPTY: &[&str] = &[
    "pg_trigger",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_inherits",
];

/// The output column names of `q` if it provably returns no rows because every branch reads an
/// always-empty catalog table in a position that empties the result (the base of a FROM item
/// without RIGHT/FULL joins, or an inner join), without aggregates. Clients' catalog queries
/// about features bkg-db lacks (psql's `\d` asks for policies, statistics objects and
/// publications) then answer without planning expressions the planner cannot handle.
pub fn provably_empty(q: &ast::Query) -> Option<Vec<String>> {
    fn is_empty_table(f: &ast::TableFactor) -> bool {
        let ast::TableFactor::Table { name, .. } = f else { return false };
        let parts: Vec<String> = name.0.iter().filter_map(|p| p.as_ident().map(|i| i.value.to_lowercase())).collect();
        match parts.as_slice() {
            [t] => ALWAYS_EMPTY.contains(&t.as_str()),
            [s, t] => s == PG_CATALOG && ALWAYS_EMPTY.contains(&t.as_str()),
            _ => false,
        }
    }
    fn has_aggregate(sel: &ast::Select) -> bool {
        // Aggregates of the select itself, not of subqueries inside it.
        struct Finder {
            depth: usize,
            found: bool,
        }
        impl ast::Visitor for Finder {
            type Break = ();
            fn pre_visit_query(&mut self, _q: &ast::Query) -> std::ops::ControlFlow<()> {
                self.depth += 1;
                std::ops::ControlFlow::Continue(())
            }
            fn post_visit_query(&mut self, _q: &ast::Query) -> std::ops::ControlFlow<()> {
                self.depth -= 1;
                std::ops::ControlFlow::Continue(())
            }
            fn pre_visit_expr(&mut self, e: &Expr) -> std::ops::ControlFlow<()> {
                self.found |= self.depth == 0 && is_aggregate(e);
                std::ops::ControlFlow::Continue(())
            }
        }
        let mut finder = Finder { depth: 0, found: false };
        let _ = ast::Visit::visit(&sel.projection, &mut finder);
        finder.found
            || sel.having.is_some()
            || !matches!(&sel.group_by, ast::GroupByExpr::Expressions(v, _) if v.is_empty())
    }
    fn empty_body(b: &ast::SetExpr) -> bool {
        match b {
            ast::SetExpr::Select(sel) => {
                !has_aggregate(sel)
                    && sel.from.iter().any(|twj| {
                        let outer = twj.joins.iter().any(|j| {
                            matches!(
                                j.join_operator,
                                ast::JoinOperator::RightOuter(_)
                                    | ast::JoinOperator::FullOuter(_)
                                    | ast::JoinOperator::Right(_)
                            )
                        });
                        (is_empty_table(&twj.relation) && !outer)
                            || twj.joins.iter().any(|j| {
                                is_empty_table(&j.relation)
                                    && matches!(
                                        j.join_operator,
                                        ast::JoinOperator::Inner(_)
                                            | ast::JoinOperator::Join(_)
                                            | ast::JoinOperator::CrossJoin(_)
                                    )
                            })
                    })
            }
            ast::SetExpr::Query(q) => empty_body(&q.body),
            ast::SetExpr::SetOperation { op, left, right, .. } => match op {
                ast::SetOperator::Union => empty_body(left) && empty_body(right),
                ast::SetOperator::Intersect => empty_body(left) || empty_body(right),
                _ => empty_body(left),
            },
            _ => false,
        }
    }
    if q.with.is_some() || !empty_body(&q.body) {
        return None;
    }
    let mut first = q.body.as_ref();
    loop {
        match first {
            ast::SetExpr::SetOperation { left, .. } => first = left,
            ast::SetExpr::Query(q) => first = &q.body,
            _ => break,
        }
    }
    let ast::SetExpr::Select(sel) = first else { return None };
    sel.projection
        .iter()
        .map(|item| match item {
            ast::SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            ast::SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.value.clone()),
            ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) => p.last().map(|i| i.value.clone()),
            ast::SelectItem::UnnamedExpr(_) => Some("?column?".into()),
            _ => None,
        })
        .collect()
}

/// `'{1,2}'` (an array in PostgreSQL's text form, integers only) as `ARRAY[1,2]`.
/// `'{a,"b c",NULL}'` as `ARRAY['a', 'b c', NULL]` (elements stay text; a cast types them).
/// As [`array_text_literal`], but a string that is not an array's text form is an error (22P02).
pub fn array_text_literal_checked(e: &Expr) -> crate::error::SqlResult<Option<Expr>> {
    if let Expr::Value(v) = e
        && let ast::Value::SingleQuotedString(text) = &v.value
    {
        super::types::parse_pg_array(text)?;
    }
    Ok(array_text_literal(e))
}

pub fn array_text_literal(e: &Expr) -> Option<Expr> {
    let Expr::Value(v) = e else { return None };
    let ast::Value::SingleQuotedString(text) = &v.value else { return None };
    let items = super::types::parse_pg_array(text).ok()?;
    let elem = items
        .into_iter()
        .map(|x| match x {
            Some(s) => Expr::value(ast::Value::SingleQuotedString(s)),
            None => Expr::value(ast::Value::Null),
        })
        .collect();
    Some(Expr::Array(ast::Array { elem, named: true }))
}

fn array_literal(e: &Expr) -> Option<Expr> {
    let Expr::Value(v) = e else { return None };
    let ast::Value::SingleQuotedString(text) = &v.value else { return None };
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let elem = if inner.trim().is_empty() {
        vec![]
    } else {
        inner
            .split(',')
            .map(|x| x.trim().parse::<i64>().ok().map(|n| Expr::value(ast::Value::Number(n.to_string(), false))))
            .collect::<Option<Vec<_>>>()?
    };
    Some(Expr::Array(ast::Array { elem, named: true }))
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

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a))).collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Catalog queries use scalar subqueries that return at most one row without aggregating
/// (`(SELECT d.adbin FROM pg_attrdef d WHERE d.adrelid = a.attrelid ...)`); the planner only
/// decorrelates aggregated ones, so wrap the single item in `max()`, which is the same value.
fn aggregate_catalog_subquery(q: &mut ast::Query) {
    let ast::SetExpr::Select(sel) = q.body.as_mut() else { return };
    // There are no collations besides the default: psql's per-column collation lookup (a
    // subquery the planner cannot decorrelate) is always NULL.
    let reads = |t: &str| {
        sel.from.iter().any(|f| {
            matches!(&f.relation, ast::TableFactor::Table { name, .. }
                if name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value == t))
        })
    };
    if reads("pg_collation") && sel.projection.len() == 1 {
        sel.projection[0] = ast::SelectItem::UnnamedExpr(Expr::value(ast::Value::Null));
        sel.selection = None;
        sel.from.clear();
        return;
    }
    let reads_catalog = sel.from.iter().any(|f| match &f.relation {
        ast::TableFactor::Table { name, .. } => {
            name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.starts_with("pg_"))
        }
        _ => false,
    });
    if reads_catalog && let Some(w) = sel.selection.take() {
        // A bare boolean column of the outer query as a conjunct (`... AND a.atthasdef`) stops
        // decorrelation; in catalog lookups it only guards rows that do not exist anyway.
        let local: Vec<String> = sel
            .from
            .iter()
            .filter_map(|f| match &f.relation {
                ast::TableFactor::Table { name, alias, .. } => Some(
                    alias
                        .as_ref()
                        .map(|a| a.name.value.clone())
                        .unwrap_or_else(|| name.0.last().map(|p| p.to_string()).unwrap_or_default()),
                ),
                _ => None,
            })
            .collect();
        let mut conjuncts = Vec::new();
        split_and(w, &mut conjuncts);
        conjuncts.retain(|c| !matches!(c, Expr::CompoundIdentifier(p) if p.len() == 2 && !local.contains(&p[0].value)));
        sel.selection = conjuncts.into_iter().reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: ast::BinaryOperator::And,
            right: Box::new(b),
        });
    }
    if !reads_catalog
        || sel.projection.len() != 1
        || !matches!(sel.group_by, ast::GroupByExpr::Expressions(ref v, _) if v.is_empty())
    {
        return;
    }
    let wrap = |e: &mut Expr| {
        let inner = std::mem::replace(e, Expr::value(ast::Value::Null));
        let text = format!("max({inner})");
        *e =
            datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
                .try_with_sql(&text)
                .and_then(|mut p| p.parse_expr())
                .unwrap_or(inner);
    };
    match &mut sel.projection[0] {
        ast::SelectItem::UnnamedExpr(e) if !matches!(e, Expr::Function(_)) || !is_aggregate(e) => wrap(e),
        ast::SelectItem::ExprWithAlias { expr, .. } if !is_aggregate(expr) => wrap(expr),
        _ => {}
    }
}

fn split_and(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp { left, op: ast::BinaryOperator::And, right } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        other => out.push(other),
    }
}

fn is_aggregate(e: &Expr) -> bool {
    matches!(e, Expr::Function(f) if ["count", "max", "min", "sum", "avg", "array_agg", "string_agg", "bool_and", "bool_or"]
        .contains(&f.name.to_string().to_lowercase().as_str()))
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
            super::provably_empty(&q)
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
