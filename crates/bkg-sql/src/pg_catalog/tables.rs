//! The pg_catalog tables, one builder each, computed from the catalog of the statement.

use super::*;
use bkg_kernel::RoleDef;

type Builder = fn(&Catalog) -> DfResult<Arc<dyn TableProvider>>;

/// The tables with rows, by name.
pub(super) const BUILDERS: &[(&str, Builder)] = &[
    ("pg_namespace", pg_namespace),
    ("pg_class", pg_class),
    ("pg_attribute", pg_attribute),
    ("pg_type", pg_type),
    ("pg_database", pg_database),
    ("pg_roles", pg_roles),
    ("pg_authid", pg_roles),
    ("pg_user", pg_user),
    ("pg_am", pg_am),
    ("pg_index", pg_index),
    ("pg_constraint", pg_constraint),
    ("pg_attrdef", pg_attrdef),
    ("pg_tables", pg_tables),
    ("pg_views", pg_views),
    ("pg_indexes", pg_indexes),
    ("pg_tablespace", pg_tablespace),
    ("pg_collation", pg_collation),
    ("pg_settings", pg_settings),
    ("pg_policy", pg_policy),
    ("pg_policies", pg_policies),
    ("pg_auth_members", pg_auth_members),
    ("pg_publication", pg_publication),
    ("pg_publication_rel", pg_publication_rel),
    ("pg_publication_namespace", pg_publication_namespace),
    ("pg_publication_tables", pg_publication_tables),
];

/// Catalogs with no rows here (yet): the right columns, so client queries plan and return nothing.
pub(super) const EMPTY: &[(&str, &[(&str, A)])] = &[
    (
        "pg_proc",
        &[
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
        ],
    ),
    (
        "pg_description",
        &[("objoid", A::Int64), ("classoid", A::Int64), ("objsubid", A::Int32), ("description", A::Utf8)],
    ),
    (
        "pg_inherits",
        &[("inhrelid", A::Int64), ("inhparent", A::Int64), ("inhseqno", A::Int32), ("inhdetachpending", A::Boolean)],
    ),
    (
        "pg_trigger",
        &[
            ("oid", A::Int64),
            ("tgrelid", A::Int64),
            ("tgname", A::Utf8),
            ("tgisinternal", A::Boolean),
            ("tgenabled", A::Utf8),
        ],
    ),
    ("pg_rewrite", &[("oid", A::Int64), ("rulename", A::Utf8), ("ev_class", A::Int64), ("ev_type", A::Utf8)]),
    (
        "pg_statistic_ext",
        &[
            ("oid", A::Int64),
            ("stxrelid", A::Int64),
            ("stxname", A::Utf8),
            ("stxnamespace", A::Int64),
            ("stxkind", A::Utf8),
            ("stxstattarget", A::Int32),
        ],
    ),
    ("pg_partitioned_table", &[("partrelid", A::Int64), ("partstrat", A::Utf8)]),
    ("pg_extension", &[("oid", A::Int64), ("extname", A::Utf8), ("extversion", A::Utf8), ("extnamespace", A::Int64)]),
    ("pg_range", &[("rngtypid", A::Int64), ("rngsubtype", A::Int64)]),
    ("pg_enum", &[("oid", A::Int64), ("enumtypid", A::Int64), ("enumsortorder", A::Float32), ("enumlabel", A::Utf8)]),
    ("pg_foreign_table", &[("ftrelid", A::Int64), ("ftserver", A::Int64)]),
    ("pg_sequence", &[("seqrelid", A::Int64), ("seqtypid", A::Int64)]),
];

/// The schemas: (oid, name, owner, acl), the built-in ones first.
fn schemas(cat: &Catalog) -> Vec<(i64, String, i64, Option<Vec<String>>)> {
    let mut schemas: Vec<(i64, String, i64, Option<Vec<String>>)> = vec![
        (NS_PG_CATALOG, PG_CATALOG.into(), SUPERUSER_OID, None),
        (NS_INFORMATION_SCHEMA, "information_schema".into(), SUPERUSER_OID, None),
    ];
    schemas.extend(
        cat.schemas.values().map(|s| {
            (s.id as i64, s.name.clone(), s.owner as i64, cat.acl_items(bkg_kernel::AclObject::Schema(&s.name)))
        }),
    );
    schemas
}

/// `pg_namespace`.
fn pg_namespace(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let schemas = schemas(cat);
    table(vec![
        ("oid", i64s(schemas.iter().map(|s| s.0).collect())),
        ("nspname", text(schemas.iter().map(|s| Some(s.1.clone())).collect())),
        ("nspowner", i64s(schemas.iter().map(|s| s.2).collect())),
        ("nspacl", text_lists(schemas.iter().map(|s| s.3.clone()).collect())),
    ])
}

/// `pg_class`.
fn pg_class(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
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
        ("relrowsecurity", bools(rows.iter().map(|r| cat.table(r.0 as u64).is_some_and(|t| t.row_security)).collect())),
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
    ])
}

/// `pg_attribute`.
fn pg_attribute(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
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
        ("attcollation", i64s(typ.iter().map(|t| if [25, 1042, 1043].contains(t) { 100 } else { 0 }).collect())),
        ("attacl", null_list(n)),
        ("attoptions", null_list(n)),
    ])
}

/// `pg_type`.
fn pg_type(_: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
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
    ])
}

/// `pg_database`.
fn pg_database(_: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    table(vec![
        ("oid", i64s(vec![5])),
        ("datname", text(vec![s(crate::provider::DATABASE_NAME)])),
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
    ])
}

/// `pg_roles`, `pg_authid`.
/// Passwords are masked in all three: the catalog tables are readable by every role.
fn pg_roles(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let roles: Vec<&RoleDef> = cat.roles.values().collect();
    let masked = |r: &RoleDef| r.password.as_ref().map(|_| "********".to_string());
    table(vec![
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
    ])
}

/// `pg_user`.
fn pg_user(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let roles: Vec<&RoleDef> = cat.roles.values().collect();
    let masked = |r: &RoleDef| r.password.as_ref().map(|_| "********".to_string());
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
    ])
}

/// `pg_am`.
fn pg_am(_: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    table(vec![
        ("oid", i64s(vec![2, 403, 405])),
        ("amname", text(vec![s("heap"), s("btree"), s("hash")])),
        ("amhandler", text(vec![None, None, None])),
        ("amtype", text(vec![s("t"), s("i"), s("i")])),
    ])
}

/// `pg_index`.
fn pg_index(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
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
    ])
}

/// `pg_constraint`.
fn pg_constraint(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let mut rows = Vec::new();
    let mut validated = std::collections::HashMap::new();
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
            let flive: Vec<usize> = fref.map(|r| r.live_columns().map(|(p, _)| p).collect()).unwrap_or_default();
            let fnum: Vec<Option<i16>> =
                fk.ref_columns.iter().map(|c| flive.iter().position(|p| p == c).map(|x| x as i16 + 1)).collect();
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
        for (k, c) in t.checks.iter().enumerate() {
            let cols: Vec<Option<i16>> = crate::checks::check_columns(&c.expr)
                .iter()
                .filter_map(|n| t.column_index(n))
                .map(|p| attnum(&p))
                .collect();
            rows.push((
                check_oid(t.id, k),
                c.name.clone(),
                schema_oid(cat, &t.schema),
                "c",
                t.id as i64,
                0,
                0,
                cols,
                vec![],
            ));
            validated.insert(check_oid(t.id, k), !c.not_valid);
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
        ("convalidated", bools(rows.iter().map(|r| validated.get(&r.0).copied().unwrap_or(true)).collect())),
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
        ("conkey", Arc::new(ListArray::from_iter_primitive::<Int16Type, _, _>(rows.iter().map(|r| Some(r.7.clone()))))),
        (
            "confkey",
            Arc::new(ListArray::from_iter_primitive::<Int16Type, _, _>(rows.iter().map(|r| Some(r.8.clone())))),
        ),
    ])
}

/// `pg_attrdef`.
fn pg_attrdef(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
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
    ])
}

/// `pg_tables`.
fn pg_tables(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let tables: Vec<&bkg_kernel::TableDef> = cat.tables.values().collect();
    let n = tables.len();
    let owner = |oid: u64| cat.role(oid).map(|r| r.name.clone());
    table(vec![
        ("schemaname", text(tables.iter().map(|t| Some(t.schema.clone())).collect())),
        ("tablename", text(tables.iter().map(|t| Some(t.name.clone())).collect())),
        ("tableowner", text(tables.iter().map(|t| owner(t.owner)).collect())),
        ("tablespace", text(vec![None; n])),
        ("hasindexes", bools(tables.iter().map(|t| !t.indexes.is_empty()).collect())),
        ("hasrules", bools(vec![false; n])),
        ("hastriggers", bools(vec![false; n])),
        ("rowsecurity", bools(tables.iter().map(|t| t.row_security).collect())),
    ])
}

/// `pg_views`.
fn pg_views(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let views: Vec<&bkg_kernel::ViewDef> = cat.views.values().collect();
    table(vec![
        ("schemaname", text(views.iter().map(|v| Some(v.schema.clone())).collect())),
        ("viewname", text(views.iter().map(|v| Some(v.name.clone())).collect())),
        ("viewowner", text(views.iter().map(|v| cat.role(v.owner).map(|r| r.name.clone())).collect())),
        ("definition", text(views.iter().map(|v| Some(v.sql.clone())).collect())),
    ])
}

/// `pg_indexes`.
fn pg_indexes(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let indexes: Vec<_> = cat.tables.values().flat_map(|t| t.indexes.iter().map(move |i| (t, i))).collect();
    table(vec![
        ("schemaname", text(indexes.iter().map(|(t, _)| Some(t.schema.clone())).collect())),
        ("tablename", text(indexes.iter().map(|(t, _)| Some(t.name.clone())).collect())),
        ("indexname", text(indexes.iter().map(|(_, i)| Some(i.name.clone())).collect())),
        ("tablespace", text(vec![None; indexes.len()])),
        ("indexdef", text(indexes.iter().map(|(t, i)| Some(index_def(t, i))).collect())),
    ])
}

/// `pg_tablespace`.
fn pg_tablespace(_: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    table(vec![
        ("oid", i64s(vec![1663, 1664])),
        ("spcname", text(vec![s("pg_default"), s("pg_global")])),
        ("spcowner", i64s(vec![10, 10])),
    ])
}

/// `pg_collation`.
fn pg_collation(_: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    table(vec![
        ("oid", i64s(vec![100, 950])),
        ("collname", text(vec![s("default"), s("C")])),
        ("collnamespace", i64s(vec![NS_PG_CATALOG, NS_PG_CATALOG])),
        ("collprovider", text(vec![s("d"), s("c")])),
    ])
}

/// `pg_settings`.
fn pg_settings(_: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    table(vec![
        ("name", text(vec![s("max_connections"), s("server_version"), s("server_encoding")])),
        ("setting", text(vec![s("100"), s("15.0"), s("UTF8")])),
        ("unit", text(vec![None, None, None])),
        ("category", text(vec![None, None, None])),
        ("short_desc", text(vec![None, None, None])),
        ("context", text(vec![s("postmaster"), s("internal"), s("internal")])),
        ("vartype", text(vec![s("integer"), s("string"), s("string")])),
        ("source", text(vec![s("default"), s("default"), s("default")])),
    ])
}

/// `pg_policy`.
fn pg_policy(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let _: Vec<&RoleDef> = cat.roles.values().collect();
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
    ])
}

/// `pg_policies`.
fn pg_policies(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let _: Vec<&RoleDef> = cat.roles.values().collect();
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
            text(pols.iter().map(|(_, p)| s(if p.permissive { "PERMISSIVE" } else { "RESTRICTIVE" })).collect()),
        ),
        ("roles", text_lists(pols.iter().map(|(_, p)| Some(role_names(p))).collect())),
        ("cmd", text(pols.iter().map(|(_, p)| s(p.command.name())).collect())),
        ("qual", text(pols.iter().map(|(_, p)| p.using.clone()).collect())),
        ("with_check", text(pols.iter().map(|(_, p)| p.with_check.clone()).collect())),
    ])
}

/// `pg_auth_members`.
fn pg_auth_members(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let roles: Vec<&RoleDef> = cat.roles.values().collect();
    let pairs: Vec<(i64, i64)> =
        roles.iter().flat_map(|r| r.member_of.iter().map(|m| (*m as i64, r.oid as i64))).collect();
    table(vec![
        ("oid", i64s((0..pairs.len() as i64).map(|i| 1_000_000 + i).collect())),
        ("roleid", i64s(pairs.iter().map(|p| p.0).collect())),
        ("member", i64s(pairs.iter().map(|p| p.1).collect())),
        ("grantor", i64s(vec![SUPERUSER_OID; pairs.len()])),
        ("admin_option", bools(vec![false; pairs.len()])),
    ])
}

/// `pg_publication`.
fn pg_publication(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let pubs: Vec<&bkg_kernel::PublicationDef> = cat.publications.values().collect();
    let n = pubs.len();
    table(vec![
        ("oid", i64s(pubs.iter().map(|p| p.id as i64).collect())),
        ("pubname", text(pubs.iter().map(|p| Some(p.name.clone())).collect())),
        ("pubowner", i64s(pubs.iter().map(|p| p.owner as i64).collect())),
        ("puballtables", bools(pubs.iter().map(|p| p.all_tables).collect())),
        ("pubinsert", bools(pubs.iter().map(|p| p.publish.insert).collect())),
        ("pubupdate", bools(pubs.iter().map(|p| p.publish.update).collect())),
        ("pubdelete", bools(pubs.iter().map(|p| p.publish.delete).collect())),
        ("pubtruncate", bools(pubs.iter().map(|p| p.publish.truncate).collect())),
        ("pubviaroot", bools(vec![false; n])),
    ])
}

/// `pg_publication_rel`: the tables named in publications (a membership's oid is derived from
/// the publication's and the table's).
fn pg_publication_rel(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let rels: Vec<(u64, u64)> = cat.publications.values().flat_map(|p| p.tables.iter().map(|t| (p.id, *t))).collect();
    let n = rels.len();
    table(vec![
        ("oid", i64s(rels.iter().map(|(p, t)| ((p << 32) | t) as i64).collect())),
        ("prpubid", i64s(rels.iter().map(|(p, _)| *p as i64).collect())),
        ("prrelid", i64s(rels.iter().map(|(_, t)| *t as i64).collect())),
        ("prqual", text(vec![None; n])),
        ("prattrs", text(vec![None; n])),
    ])
}

/// `pg_publication_namespace`: the schemas named in publications.
fn pg_publication_namespace(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let rows: Vec<(u64, u64)> = cat
        .publications
        .values()
        .flat_map(|p| p.schemas.iter().filter_map(|s| cat.schemas.get(s)).map(|s| (p.id, s.id)))
        .collect();
    table(vec![
        ("oid", i64s(rows.iter().map(|(p, s)| ((p << 32) | s) as i64).collect())),
        ("pnpubid", i64s(rows.iter().map(|(p, _)| *p as i64).collect())),
        ("pnnspid", i64s(rows.iter().map(|(_, s)| *s as i64).collect())),
    ])
}

/// `pg_publication_tables`: every (publication, table) pair whose changes go out, whichever way
/// the table is included.
fn pg_publication_tables(cat: &Catalog) -> DfResult<Arc<dyn TableProvider>> {
    let rows: Vec<(&bkg_kernel::PublicationDef, &bkg_kernel::TableDef)> = cat
        .publications
        .values()
        .flat_map(|p| cat.tables.values().filter(|t| p.includes(t)).map(move |t| (p, t)))
        .collect();
    let n = rows.len();
    table(vec![
        ("pubname", text(rows.iter().map(|(p, _)| Some(p.name.clone())).collect())),
        ("schemaname", text(rows.iter().map(|(_, t)| Some(t.schema.clone())).collect())),
        ("tablename", text(rows.iter().map(|(_, t)| Some(t.name.clone())).collect())),
        (
            "attnames",
            text_lists(
                rows.iter().map(|(_, t)| Some(t.live_columns().map(|(_, c)| c.name.clone()).collect())).collect(),
            ),
        ),
        ("rowfilter", text(vec![None; n])),
    ])
}
