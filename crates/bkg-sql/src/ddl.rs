//! DDL against the kernel catalog, inside the session's transaction.

use bkg_kernel::{AclObject, ColumnDef, ColumnDefault, IndexDef, TableDef, Value, privilege};
use datafusion::sql::sqlparser::ast::{self, ColumnOption, ObjectName, ObjectType, Statement, TableConstraint};

use super::checks::{CheckSpec, add_check, check_columns, drop_constraint, rename_in_check, validate_check};
use super::roles::require_owner_in;
use super::session::{Output, Session};
use super::types::map_type;
use crate::SqlState;
use crate::error::{SqlError, SqlResult, codes};

/// Splits a possibly qualified name into (schema, name), lower-casing unquoted parts.
pub fn split_name(session: &Session, name: &ObjectName) -> SqlResult<(String, String)> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) if i.quote_style.is_some() => i.value.clone(),
            Some(i) => i.value.to_lowercase(),
            None => p.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [n] => Ok((session.current_schema(), n.clone())),
        [s, n] => Ok((s.clone(), n.clone())),
        [db, s, n] if db == super::provider::DATABASE_NAME => Ok((s.clone(), n.clone())),
        _ => Err(SqlError::syntax(format!("improper qualified name: {name}"))),
    }
}

pub fn ident_name(i: &ast::Ident) -> String {
    if i.quote_style.is_some() { i.value.clone() } else { i.value.to_lowercase() }
}

fn index_column_names(cols: &[ast::IndexColumn]) -> SqlResult<Vec<String>> {
    cols.iter()
        .map(|c| match &c.column.expr {
            ast::Expr::Identifier(i) => Ok(ident_name(i)),
            other => Err(SqlError::unsupported(format!("index on expression {other}"))),
        })
        .collect()
}

fn positions(def: &TableDef, names: &[String]) -> SqlResult<Vec<usize>> {
    names
        .iter()
        .map(|n| {
            def.column_index(n).ok_or_else(|| {
                SqlError::new(codes::UNDEFINED_COLUMN, format!("column \"{n}\" named in key does not exist"))
            })
        })
        .collect()
}

/// Resolves a table name to its id in the transaction's catalog.
pub use crate::quote::ident as quote_ident;

pub fn resolve_table(session: &Session, name: &ObjectName) -> SqlResult<u64> {
    let (schema, table) = split_name(session, name)?;
    session.with_txn(|t| {
        let cat = t.catalog();
        if let Some(def) = cat.find_table(&schema, &table) {
            return Ok(def.id);
        }
        if cat.find_view(&schema, &table).is_some() {
            return Err(SqlError::new(codes::WRONG_OBJECT_TYPE, format!("\"{table}\" is not a table")));
        }
        Err(SqlError::new(codes::UNDEFINED_TABLE, format!("relation \"{table}\" does not exist")))
    })
}

fn column_from_ast(
    cd: &ast::ColumnDef,
    pk: &mut Vec<String>,
    uniques: &mut Vec<Vec<String>>,
    fks: &mut Vec<(Vec<String>, ast::ForeignKeyConstraint)>,
    checks: &mut Vec<CheckSpec>,
) -> SqlResult<ColumnDef> {
    let name = ident_name(&cd.name);
    let ty = map_type(&cd.data_type)?;
    let mut col = ColumnDef {
        name: name.clone(),
        data_type: ty.data_type,
        nullable: !ty.serial,
        default: ty.serial.then_some(ColumnDefault::Identity { always: false }),
        dropped: false,
        missing: Value::Null,
    };
    for opt in &cd.options {
        match &opt.option {
            ColumnOption::Null => col.nullable = true,
            ColumnOption::NotNull => col.nullable = false,
            ColumnOption::Default(e) => col.default = Some(ColumnDefault::Expr(e.to_string())),
            ColumnOption::PrimaryKey(_) => pk.push(name.clone()),
            ColumnOption::Unique(_) => uniques.push(vec![name.clone()]),
            ColumnOption::ForeignKey(fk) => fks.push((vec![name.clone()], fk.clone())),
            ColumnOption::Identity(_) => {
                col.default = Some(ColumnDefault::Identity { always: false });
                col.nullable = false;
            }
            ColumnOption::Generated { generated_as, generation_expr, .. } => {
                if generation_expr.is_some() {
                    return Err(SqlError::unsupported("generated columns"));
                }
                col.default =
                    Some(ColumnDefault::Identity { always: matches!(generated_as, ast::GeneratedAs::Always) });
                col.nullable = false;
            }
            ColumnOption::Check(c) => checks.push(CheckSpec {
                name: c.name.as_ref().map(ident_name),
                expr: (*c.expr).clone(),
                column: Some(name.clone()),
            }),
            ColumnOption::Comment(_) | ColumnOption::Collation(_) => {}
            other => return Err(SqlError::unsupported(format!("column option {other}"))),
        }
    }
    if !ty.serial
        && matches!(col.default, Some(ColumnDefault::Identity { .. }))
        && !matches!(
            col.data_type,
            bkg_kernel::DataType::Int16 | bkg_kernel::DataType::Int32 | bkg_kernel::DataType::Int64
        )
    {
        return Err(SqlError::new(
            codes::DATATYPE_MISMATCH,
            format!("identity column type must be smallint, integer, or bigint (column \"{name}\")"),
        ));
    }
    Ok(col)
}

pub async fn execute(session: &mut Session, stmt: Statement) -> SqlResult<Output> {
    match stmt {
        Statement::CreateTable(ct) => create_table(session, ct).await,
        Statement::CreateSchema { schema_name, if_not_exists, .. } => {
            let (name, authorization) = match &schema_name {
                ast::SchemaName::Simple(n) => {
                    (n.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_default(), None)
                }
                ast::SchemaName::NamedAuthorization(n, a) => {
                    (n.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_default(), Some(ident_name(a)))
                }
                ast::SchemaName::UnnamedAuthorization(i) => (ident_name(i), Some(ident_name(i))),
            };
            let cat = session.catalog_view();
            // The database's CREATE privilege: superusers and CREATEDB roles.
            if !cat.role(session.role).is_some_and(|r| r.superuser || r.create_db) {
                return Err(SqlError::new(
                    codes::INSUFFICIENT_PRIVILEGE,
                    format!("permission denied for database {}", super::provider::DATABASE_NAME),
                ));
            }
            let owner = match authorization {
                Some(a) => {
                    let oid = cat.find_role(&a).map(|r| r.oid).ok_or_else(|| {
                        SqlError::new(codes::UNDEFINED_OBJECT, format!("role \"{a}\" does not exist"))
                    })?;
                    if !cat.is_superuser(session.role) && !cat.member_closure(session.role).contains(&oid) {
                        return Err(SqlError::new(
                            codes::INSUFFICIENT_PRIVILEGE,
                            format!("must be able to SET ROLE \"{a}\""),
                        ));
                    }
                    oid
                }
                None => session.role,
            };
            session.with_txn(|t| Ok(t.catalog_mut().create_schema(&name, if_not_exists, owner)?))?;
            Ok(Output::command("CREATE SCHEMA"))
        }
        Statement::Drop { object_type: ObjectType::Role | ObjectType::User, if_exists, names, .. } => {
            super::roles::drop_roles(session, &names, if_exists)
        }
        Statement::Drop { object_type, if_exists, names, cascade, .. } => {
            drop(session, object_type, if_exists, &names, cascade)
        }
        Statement::AlterTable(at) => alter_table(session, at),
        Statement::AlterSchema(a) => alter_schema(session, a),
        Statement::CreateIndex(ci) => create_index(session, ci),
        Statement::CreateView(cv) => {
            if cv.materialized {
                return Err(SqlError::unsupported("materialized views"));
            }
            let (schema, name) = split_name(session, &cv.name)?;
            session.require_create_in(&schema)?;
            let sql = cv.query.to_string();
            // Plan it once now so a broken view is refused at CREATE time.
            session
                .query(Statement::Explain {
                    describe_alias: ast::DescribeAlias::Explain,
                    analyze: false,
                    verbose: false,
                    query_plan: false,
                    estimate: false,
                    statement: Box::new(Statement::Query(cv.query.clone())),
                    format: None,
                    options: None,
                })
                .await?;
            let described = session.describe(&Statement::Query(cv.query.clone())).await?;
            let mut columns: Vec<(String, bkg_kernel::DataType)> = described
                .schema
                .map(|sc| {
                    sc.fields()
                        .iter()
                        .map(|f| {
                            let dt = arrow_to_kernel(f.data_type()).unwrap_or(bkg_kernel::DataType::Text);
                            (f.name().clone(), dt)
                        })
                        .collect()
                })
                .unwrap_or_default();
            // CREATE VIEW v (a, b) AS …: the listed names win.
            for (c, given) in columns.iter_mut().zip(cv.columns.iter()) {
                c.0 = ident_name(&given.name);
            }
            let owner = session.role;
            session.with_txn(|t| {
                if cv.or_replace
                    && let Some(v) = t.catalog().find_view(&schema, &name)
                {
                    require_owner_in(t.catalog(), owner, AclObject::Relation(v.id))?;
                }
                let id = t.catalog_mut().create_view(&schema, &name, &sql, cv.or_replace, owner)?;
                if let Some(v) = t.catalog_mut().views.get_mut(&id) {
                    v.columns = columns;
                }
                Ok(())
            })?;
            Ok(Output::command("CREATE VIEW"))
        }
        Statement::Truncate(tr) => {
            let mut ids = Vec::new();
            for target in &tr.table_names {
                let id = resolve_table(session, &target.name)?;
                session.require_relation(id, privilege::TRUNCATE)?;
                ids.push(id);
            }
            for id in ids {
                session.with_txn(|t| Ok(t.truncate(id)?))?;
            }
            Ok(Output::command("TRUNCATE TABLE"))
        }
        other => Err(SqlError::unsupported(format!("statement {other}"))),
    }
}

async fn create_table(session: &mut Session, ct: ast::CreateTable) -> SqlResult<Output> {
    let (schema, name) = split_name(session, &ct.name)?;
    session.require_create_in(&schema)?;
    if ct.query.is_some() && !ct.columns.is_empty() {
        return Err(SqlError::unsupported("CREATE TABLE with both columns and AS"));
    }
    let mut pk: Vec<String> = Vec::new();
    let mut uniques: Vec<Vec<String>> = Vec::new();
    let mut fks = Vec::new();
    let mut checks = Vec::new();
    let mut columns = Vec::new();
    let mut ctas_rows = None;
    if let Some(q) = &ct.query {
        let (s, batches) = session.query_sql(&q.to_string()).await?;
        for f in s.fields() {
            let dt = arrow_to_kernel(f.data_type())?;
            columns.push(ColumnDef {
                name: f.name().clone(),
                data_type: dt,
                nullable: true,
                default: None,
                dropped: false,
                missing: Value::Null,
            });
        }
        ctas_rows = Some(batches);
    }
    for cd in &ct.columns {
        columns.push(column_from_ast(cd, &mut pk, &mut uniques, &mut fks, &mut checks)?);
    }
    if columns.is_empty() && ct.query.is_none() {
        // PostgreSQL allows zero-column tables; so do we.
    }
    for c in &ct.constraints {
        match c {
            TableConstraint::PrimaryKey(p) => {
                if !pk.is_empty() {
                    return Err(SqlError::new(
                        SqlState::InvalidTableDefinition,
                        format!("multiple primary keys for table \"{name}\" are not allowed"),
                    ));
                }
                pk = index_column_names(&p.columns)?;
            }
            TableConstraint::Unique(u) => uniques.push(index_column_names(&u.columns)?),
            TableConstraint::ForeignKey(fk) => fks.push((fk.columns.iter().map(ident_name).collect(), fk.clone())),
            TableConstraint::Check(c) => {
                checks.push(CheckSpec { name: c.name.as_ref().map(ident_name), expr: (*c.expr).clone(), column: None })
            }
            other => return Err(SqlError::unsupported(format!("table constraint {other}"))),
        }
    }
    let mut def = TableDef {
        id: 0,
        schema: schema.clone(),
        name: name.clone(),
        columns,
        indexes: vec![],
        foreign_keys: vec![],
        owner: session.role,
        acl: vec![],
        row_security: false,
        force_row_security: false,
        policies: vec![],
        checks: vec![],
    };
    for spec in checks {
        let check = spec.resolve(&def)?;
        def.checks.push(check);
    }
    if !pk.is_empty() {
        let cols = positions(&def, &pk)?;
        def.indexes.push(IndexDef { id: 0, name: format!("{name}_pkey"), columns: cols, unique: true, primary: true });
    }
    for u in uniques {
        let cols = positions(&def, &u)?;
        let idx_name = format!("{name}_{}_key", u.join("_"));
        if def.indexes.iter().any(|i| i.columns == cols) {
            continue;
        }
        def.indexes.push(IndexDef { id: 0, name: idx_name, columns: cols, unique: true, primary: false });
    }
    let mut fk_specs = Vec::new();
    for (cols, fk) in fks {
        fk_specs.push(foreign_key_spec(session, &def, &cols, &fk)?);
    }
    let id = session.with_txn(|t| {
        let cat = t.catalog_mut();
        for spec in fk_specs {
            let fk = spec.resolve(cat, &def)?;
            def.foreign_keys.push(fk);
        }
        let created = cat.create_table(def.clone(), ct.if_not_exists)?;
        if let Some(id) = created {
            // Self-references were recorded with table id 0.
            let d = cat.table_mut(id)?;
            for fk in &mut d.foreign_keys {
                if fk.ref_table == 0 {
                    fk.ref_table = id;
                }
            }
        }
        Ok(created)
    })?;
    if let (Some(id), Some(batches)) = (id, ctas_rows) {
        let n = super::dml::insert_batches(session, id, None, &batches).await?;
        return Ok(Output::count("SELECT", n));
    }
    Ok(Output::command("CREATE TABLE"))
}

/// A FOREIGN KEY clause of CREATE TABLE, checked against the new table's columns; the
/// referenced table is looked up in the transaction's catalog by [`FkSpec::resolve`].
struct FkSpec {
    name: String,
    local: Vec<usize>,
    ref_schema: String,
    ref_name: String,
    ref_columns: Vec<String>,
    on_delete: bkg_kernel::FkAction,
}

fn foreign_key_spec(
    session: &Session,
    def: &TableDef,
    cols: &[String],
    fk: &ast::ForeignKeyConstraint,
) -> SqlResult<FkSpec> {
    let (ref_schema, ref_name) = split_name(session, &fk.foreign_table)?;
    if let Some(target) = session.catalog_view().find_table(&ref_schema, &ref_name) {
        session.require_relation(target.id, privilege::REFERENCES)?;
    }
    let local = positions(def, cols)?;
    let name = fk.name.as_ref().map(ident_name).unwrap_or_else(|| format!("{}_{}_fkey", def.name, cols.join("_")));
    let on_delete = match fk.on_delete {
        None | Some(ast::ReferentialAction::NoAction) => bkg_kernel::FkAction::NoAction,
        Some(ast::ReferentialAction::Restrict) => bkg_kernel::FkAction::Restrict,
        Some(ast::ReferentialAction::Cascade) => bkg_kernel::FkAction::Cascade,
        Some(ast::ReferentialAction::SetNull) => bkg_kernel::FkAction::SetNull,
        Some(ast::ReferentialAction::SetDefault) => return Err(SqlError::unsupported("ON DELETE SET DEFAULT")),
    };
    if !matches!(fk.on_update, None | Some(ast::ReferentialAction::NoAction) | Some(ast::ReferentialAction::Restrict)) {
        return Err(SqlError::unsupported("ON UPDATE actions other than NO ACTION and RESTRICT"));
    }
    // DEFERRABLE [INITIALLY DEFERRED] is accepted and checked as NOT DEFERRABLE is: at the end
    // of each statement (stricter than PostgreSQL, never weaker; see KNOWN-GAPS.md 3.1).
    if on_delete == bkg_kernel::FkAction::SetNull
        && let Some(c) = local.iter().find(|&&c| !def.columns[c].nullable)
    {
        return Err(SqlError::new(
            SqlState::InvalidTableDefinition,
            format!("ON DELETE SET NULL on column \"{}\", which is NOT NULL", def.columns[*c].name),
        ));
    }
    Ok(FkSpec {
        name,
        local,
        ref_schema,
        ref_name,
        ref_columns: fk.referred_columns.iter().map(ident_name).collect(),
        on_delete,
    })
}

impl FkSpec {
    /// The foreign key, its referenced columns resolved (the primary key when none are named)
    /// and required to be a unique key. A table referencing itself gets table id 0, replaced
    /// by its id once it is created.
    fn resolve(self, cat: &bkg_kernel::Catalog, def: &TableDef) -> SqlResult<bkg_kernel::catalog::ForeignKeyDef> {
        let rn = &self.ref_name;
        let target = if self.ref_schema == def.schema && *rn == def.name {
            None
        } else {
            Some(
                cat.find_table(&self.ref_schema, rn)
                    .ok_or_else(|| SqlError::new(codes::UNDEFINED_TABLE, format!("relation \"{rn}\" does not exist")))?
                    .clone(),
            )
        };
        let tdef = target.as_ref().unwrap_or(def);
        let refpos: Vec<usize> = if self.ref_columns.is_empty() {
            tdef.primary_key().map(|p| p.columns.clone()).ok_or_else(|| {
                SqlError::new(
                    SqlState::InvalidForeignKey,
                    format!("there is no primary key for referenced table \"{rn}\""),
                )
            })?
        } else {
            positions(tdef, &self.ref_columns)?
        };
        if !tdef.indexes.iter().any(|i| i.unique && i.columns == refpos) {
            return Err(SqlError::new(
                SqlState::InvalidForeignKey,
                format!("there is no unique constraint matching given keys for referenced table \"{rn}\""),
            ));
        }
        Ok(bkg_kernel::catalog::ForeignKeyDef {
            name: self.name,
            columns: self.local,
            ref_table: target.map(|t| t.id).unwrap_or(0),
            ref_columns: refpos,
            on_delete: self.on_delete,
        })
    }
}

fn arrow_to_kernel(t: &datafusion::arrow::datatypes::DataType) -> SqlResult<bkg_kernel::DataType> {
    use bkg_kernel::DataType as K;
    use datafusion::arrow::datatypes::DataType as A;
    Ok(match t {
        A::Boolean => K::Bool,
        A::Int8 | A::Int16 | A::UInt8 => K::Int16,
        A::Int32 | A::UInt16 => K::Int32,
        A::Int64 | A::UInt32 => K::Int64,
        A::UInt64 => K::NUMERIC_DEFAULT,
        A::Float16 | A::Float32 => K::Float32,
        A::Float64 => K::Float64,
        A::Decimal128(p, s) => K::Numeric { precision: *p, scale: *s },
        A::Utf8 | A::LargeUtf8 | A::Utf8View | A::Null => K::Text,
        A::Binary | A::LargeBinary | A::BinaryView => K::Bytea,
        A::Date32 | A::Date64 => K::Date,
        A::Time32(_) | A::Time64(_) => K::Time,
        A::Timestamp(_, None) => K::Timestamp,
        A::Timestamp(_, Some(_)) => K::TimestampTz,
        A::Interval(_) => K::Interval,
        other => return Err(SqlError::unsupported(format!("column of type {other}"))),
    })
}

fn drop(
    session: &mut Session,
    object_type: ObjectType,
    if_exists: bool,
    names: &[ObjectName],
    cascade: bool,
) -> SqlResult<Output> {
    let role = session.role;
    match object_type {
        ObjectType::Table => {
            for n in names {
                let (schema, name) = split_name(session, n)?;
                session.with_txn(|t| {
                    let cat = t.catalog_mut();
                    match cat.find_table(&schema, &name).map(|d| d.id) {
                        Some(id) => {
                            require_owner_in(cat, role, AclObject::Relation(id))?;
                            Ok(cat.drop_table(id, cascade)?)
                        }
                        None if cat.find_view(&schema, &name).is_some() => {
                            Err(SqlError::new(codes::WRONG_OBJECT_TYPE, format!("\"{name}\" is not a table"))
                                .with_hint("Use DROP VIEW to remove a view."))
                        }
                        None if if_exists => Ok(()),
                        None => Err(SqlError::new(codes::UNDEFINED_TABLE, format!("table \"{name}\" does not exist"))),
                    }
                })?;
            }
            Ok(Output::command("DROP TABLE"))
        }
        ObjectType::View => {
            for n in names {
                let (schema, name) = split_name(session, n)?;
                session.with_txn(|t| {
                    let cat = t.catalog_mut();
                    if let Some(v) = cat.find_view(&schema, &name) {
                        require_owner_in(cat, role, AclObject::Relation(v.id))?;
                    }
                    match cat.drop_view(&schema, &name, if_exists) {
                        Err(bkg_kernel::Error::UndefinedTable(_)) => {
                            Err(SqlError::new(codes::UNDEFINED_TABLE, format!("view \"{name}\" does not exist")))
                        }
                        other => Ok(other?),
                    }
                })?;
            }
            Ok(Output::command("DROP VIEW"))
        }
        ObjectType::Schema => {
            for n in names {
                let name = n.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_default();
                session.with_txn(|t| {
                    if t.catalog().schemas.contains_key(&name) {
                        require_owner_in(t.catalog(), role, AclObject::Schema(&name))?;
                    }
                    Ok(t.catalog_mut().drop_schema(&name, if_exists, cascade)?)
                })?;
            }
            Ok(Output::command("DROP SCHEMA"))
        }
        ObjectType::Index => {
            for n in names {
                let (schema, name) = split_name(session, n)?;
                session.with_txn(|t| {
                    let cat = t.catalog_mut();
                    match cat.find_index(&schema, &name) {
                        Some((table, pos)) => {
                            require_owner_in(cat, role, AclObject::Relation(table))?;
                            let def = cat.table_mut(table)?;
                            if def.indexes[pos].primary {
                                return Err(SqlError::new(
                                    SqlState::DependentObjectsStillExist,
                                    format!(
                                        "cannot drop index {name} because constraint {name} on table {} requires it",
                                        def.name
                                    ),
                                ));
                            }
                            def.indexes.remove(pos);
                            Ok(())
                        }
                        None if if_exists => Ok(()),
                        None => Err(SqlError::new(codes::UNDEFINED_OBJECT, format!("index \"{name}\" does not exist"))),
                    }
                })?;
            }
            Ok(Output::command("DROP INDEX"))
        }
        other => Err(SqlError::unsupported(format!("DROP {other}"))),
    }
}

/// Checks that existing rows satisfy a new unique index.
fn check_unique_existing(t: &bkg_kernel::Transaction, def: &TableDef, cols: &[usize], name: &str) -> SqlResult<()> {
    let mut seen = std::collections::HashSet::new();
    let mut dup = None;
    t.scan(def.id, |_, row| {
        if dup.is_some() {
            return;
        }
        if let Some(k) = bkg_kernel::mvcc::index_key(row, cols, def)
            && !seen.insert(k)
        {
            dup = Some(row.clone());
        }
    });
    if let Some(row) = dup {
        let names: Vec<&str> = cols.iter().map(|&c| def.columns[c].name.as_str()).collect();
        let vals: Vec<String> = cols.iter().map(|&c| bkg_kernel::db::render_value(&row[c])).collect();
        return Err(SqlError::new(SqlState::UniqueViolation, format!("could not create unique index \"{name}\""))
            .with_detail(format!("Key ({})=({}) is duplicated.", names.join(", "), vals.join(", "))));
    }
    Ok(())
}

fn create_index(session: &mut Session, ci: ast::CreateIndex) -> SqlResult<Output> {
    if ci.predicate.is_some() {
        return Err(SqlError::unsupported("partial indexes"));
    }
    let table = resolve_table(session, &ci.table_name)?;
    session.require_owner(AclObject::Relation(table))?;
    let cols = index_column_names(&ci.columns)?;
    session.with_txn(|t| {
        let def = t.catalog().table(table).cloned().ok_or_else(|| SqlError::internal("table vanished"))?;
        let pos = positions(&def, &cols)?;
        let name = match &ci.name {
            Some(n) => n.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_default(),
            None => format!("{}_{}_idx", def.name, cols.join("_")),
        };
        if ci.unique {
            check_unique_existing(t, &def, &pos, &name)?;
        }
        t.catalog_mut().add_index(
            table,
            IndexDef { id: 0, name, columns: pos, unique: ci.unique, primary: false },
            ci.if_not_exists,
        )?;
        Ok(())
    })?;
    Ok(Output::command("CREATE INDEX"))
}

/// `ALTER TABLE|SCHEMA … OWNER TO role`: the current owner (or a superuser) gives the object to
/// a role it can SET ROLE to, as in PostgreSQL.
fn change_owner(session: &mut Session, object: AclObject, owner: &ast::Owner) -> SqlResult<()> {
    let cat = session.acl_catalog();
    let new = match owner {
        ast::Owner::Ident(i) => {
            let name = ident_name(i);
            cat.find_role(&name)
                .map(|r| r.oid)
                .ok_or_else(|| SqlError::new(codes::UNDEFINED_OBJECT, format!("role \"{name}\" does not exist")))?
        }
        ast::Owner::CurrentRole | ast::Owner::CurrentUser => session.role,
        ast::Owner::SessionUser => session.session_role,
    };
    require_owner_in(&cat, session.role, object)?;
    if !cat.is_superuser(session.role) && !cat.member_closure(session.role).contains(&new) {
        let name = cat.role(new).map(|r| r.name.clone()).unwrap_or_default();
        return Err(SqlError::new(codes::INSUFFICIENT_PRIVILEGE, format!("must be able to SET ROLE \"{name}\"")));
    }
    session.with_txn(|t| Ok(t.catalog_mut().set_owner(object, new)?))
}

fn alter_schema(session: &mut Session, alter: ast::AlterSchema) -> SqlResult<Output> {
    let name = alter.name.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_default();
    if !session.acl_catalog().schemas.contains_key(&name) {
        if alter.if_exists {
            return Ok(Output::command("ALTER SCHEMA"));
        }
        return Err(SqlError::new(SqlState::InvalidSchemaName, format!("schema \"{name}\" does not exist")));
    }
    for op in alter.operations {
        match op {
            ast::AlterSchemaOperation::OwnerTo { owner } => change_owner(session, AclObject::Schema(&name), &owner)?,
            other => return Err(SqlError::unsupported(format!("ALTER SCHEMA … {other}"))),
        }
    }
    Ok(Output::command("ALTER SCHEMA"))
}

fn alter_table(session: &mut Session, at: ast::AlterTable) -> SqlResult<Output> {
    // PostgreSQL lets ALTER TABLE change a view's owner too.
    if let [ast::AlterTableOperation::OwnerTo { new_owner }] = at.operations.as_slice() {
        let (schema, name) = split_name(session, &at.name)?;
        let view = session.acl_catalog().find_view(&schema, &name).map(|v| v.id);
        if let Some(id) = view {
            change_owner(session, AclObject::Relation(id), new_owner)?;
            return Ok(Output::command("ALTER TABLE"));
        }
    }
    let table = match resolve_table(session, &at.name) {
        Ok(t) => t,
        Err(e) if at.if_exists && e.code == codes::UNDEFINED_TABLE => {
            return Ok(Output::command("ALTER TABLE"));
        }
        Err(e) => return Err(e),
    };
    session.require_owner(AclObject::Relation(table))?;
    for op in at.operations {
        use ast::AlterTableOperation as Op;
        if super::policy::alter_table_security(session, table, &op)? {
            continue;
        }
        match op {
            Op::OwnerTo { new_owner } => change_owner(session, AclObject::Relation(table), &new_owner)?,
            Op::AddColumn { if_not_exists, column_def, .. } => add_column(session, table, &column_def, if_not_exists)?,
            Op::DropColumn { column_names, if_exists, .. } => {
                for c in column_names {
                    let name = ident_name(&c);
                    session.with_txn(|t| {
                        t.catalog_mut().drop_column(table, &name, if_exists)?;
                        // As in PostgreSQL, a check on the column goes with it.
                        let def = t.catalog_mut().table_mut(table)?;
                        def.checks.retain(|c| !check_columns(&c.expr).contains(&name));
                        Ok(())
                    })?;
                }
            }
            Op::RenameColumn { old_column_name, new_column_name } => {
                let (from, to) = (ident_name(&old_column_name), ident_name(&new_column_name));
                session.with_txn(|t| {
                    t.catalog_mut().rename_column(table, &from, &to)?;
                    let def = t.catalog_mut().table_mut(table)?;
                    for c in &mut def.checks {
                        c.expr = rename_in_check(&c.expr, &from, &to);
                    }
                    Ok(())
                })?;
            }
            Op::RenameTable { table_name } => {
                let new = match table_name {
                    ast::RenameTableNameKind::As(n) | ast::RenameTableNameKind::To(n) => n,
                };
                let new_name = new.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_default();
                session.with_txn(|t| Ok(t.catalog_mut().rename_table(table, &new_name)?))?;
            }
            Op::AddConstraint { constraint: TableConstraint::Check(c), not_valid } => {
                let spec = CheckSpec { name: c.name.as_ref().map(ident_name), expr: (*c.expr).clone(), column: None };
                add_check(session, table, spec, not_valid)?
            }
            Op::AddConstraint { constraint, .. } => add_constraint(session, table, &constraint)?,
            Op::ValidateConstraint { name } => validate_check(session, table, &ident_name(&name))?,
            Op::DropConstraint { if_exists, name, .. } => {
                drop_constraint(session, table, &ident_name(&name), if_exists)?
            }
            Op::AlterColumn { column_name, op } => alter_column(session, table, &column_name, op)?,
            other => return Err(SqlError::unsupported(format!("ALTER TABLE {other}"))),
        }
    }
    Ok(Output::command("ALTER TABLE"))
}

/// ALTER TABLE ... ADD COLUMN: a constant default fills existing rows; NOT NULL needs one
/// when the table has rows.
fn add_column(session: &mut Session, table: u64, column_def: &ast::ColumnDef, if_not_exists: bool) -> SqlResult<()> {
    let mut pk = vec![];
    let mut uniques = vec![];
    let mut fks = vec![];
    let mut checks = vec![];
    let mut col = column_from_ast(column_def, &mut pk, &mut uniques, &mut fks, &mut checks)?;
    if !pk.is_empty() || !uniques.is_empty() {
        return Err(SqlError::unsupported("PRIMARY KEY or UNIQUE in ADD COLUMN (add them with ADD CONSTRAINT)"));
    }
    match &col.default {
        Some(ColumnDefault::Expr(e)) => {
            col.missing = constant_default(e, &col.data_type)?;
        }
        Some(ColumnDefault::Identity { .. }) => {
            return Err(SqlError::unsupported("ADD COLUMN with identity"));
        }
        None => {}
    }
    let col_name = col.name.clone();
    session.with_txn(|t| {
        let has_rows = {
            let mut any = false;
            t.scan(table, |_, _| any = true);
            any
        };
        if !col.nullable && col.missing.is_null() && has_rows {
            let tname = t.catalog().table(table).map(|d| d.name.clone()).unwrap_or_default();
            return Err(SqlError::new(
                SqlState::NotNullViolation,
                format!("column \"{col_name}\" of relation \"{tname}\" contains null values"),
            ));
        }
        Ok(t.catalog_mut().add_column(table, col, if_not_exists)?)
    })?;
    for (cols, fk) in fks {
        add_foreign_key(session, table, &cols, &fk)?;
    }
    for spec in checks {
        add_check(session, table, spec, false)?;
    }
    Ok(())
}

/// ALTER TABLE ... ADD [CONSTRAINT] FOREIGN KEY (and ADD COLUMN … REFERENCES): checked against
/// the rows already there (23503), then on every write as one made by CREATE TABLE.
fn add_foreign_key(
    session: &mut Session,
    table: u64,
    cols: &[String],
    fk: &ast::ForeignKeyConstraint,
) -> SqlResult<()> {
    let def =
        session.with_txn(|t| t.catalog().table(table).cloned().ok_or_else(|| SqlError::internal("table vanished")))?;
    let spec = foreign_key_spec(session, &def, cols, fk)?;
    session.with_txn(|t| {
        let mut fk = spec.resolve(t.catalog(), &def)?;
        if fk.ref_table == 0 {
            fk.ref_table = table;
        }
        let name = fk.name.clone();
        let d = t.catalog_mut().table_mut(table)?;
        if d.foreign_keys.iter().any(|f| f.name == name) || d.indexes.iter().any(|i| i.name == name) {
            return Err(SqlError::new(
                SqlState::DuplicateObject,
                format!("constraint \"{name}\" for relation \"{}\" already exists", d.name),
            ));
        }
        d.foreign_keys.push(fk);
        t.validate_foreign_key(table, &name)?;
        Ok(())
    })
}

/// ALTER TABLE ... ADD PRIMARY KEY / UNIQUE: checked against the rows already there.
fn add_constraint(session: &mut Session, table: u64, constraint: &TableConstraint) -> SqlResult<()> {
    let (cols, unique, primary, name) = match constraint {
        TableConstraint::PrimaryKey(p) => {
            (index_column_names(&p.columns)?, true, true, p.name.as_ref().map(ident_name))
        }
        TableConstraint::Unique(u) => (index_column_names(&u.columns)?, true, false, u.name.as_ref().map(ident_name)),
        TableConstraint::ForeignKey(fk) => {
            let cols: Vec<String> = fk.columns.iter().map(ident_name).collect();
            return add_foreign_key(session, table, &cols, fk);
        }
        other => return Err(SqlError::unsupported(format!("ADD {other}"))),
    };
    session.with_txn(|t| {
        let def = t.catalog().table(table).cloned().ok_or_else(|| SqlError::internal("table vanished"))?;
        let pos = positions(&def, &cols)?;
        let name = name.unwrap_or_else(|| {
            if primary { format!("{}_pkey", def.name) } else { format!("{}_{}_key", def.name, cols.join("_")) }
        });
        if primary {
            let mut nulls = None;
            t.scan(table, |_, row| {
                for &c in &pos {
                    if row.get(c).is_none_or(|v| v.is_null()) && nulls.is_none() {
                        nulls = Some(def.columns[c].name.clone());
                    }
                }
            });
            if let Some(c) = nulls {
                return Err(SqlError::new(
                    SqlState::NotNullViolation,
                    format!("column \"{c}\" of relation \"{}\" contains null values", def.name),
                ));
            }
        }
        check_unique_existing(t, &def, &pos, &name)?;
        t.catalog_mut().add_index(table, IndexDef { id: 0, name, columns: pos, unique, primary }, false)?;
        Ok(())
    })
}

/// ALTER TABLE ... ALTER COLUMN: SET/DROP NOT NULL (checked against the rows), SET/DROP DEFAULT.
fn alter_column(
    session: &mut Session,
    table: u64,
    column_name: &ast::Ident,
    op: ast::AlterColumnOperation,
) -> SqlResult<()> {
    let name = ident_name(column_name);
    if let ast::AlterColumnOperation::SetDataType { data_type, using, .. } = &op {
        return alter_column_type(session, table, &name, data_type, using.as_ref());
    }
    session.with_txn(|t| {
        if matches!(op, ast::AlterColumnOperation::SetNotNull) {
            let def = t.catalog().table(table).cloned().ok_or_else(|| SqlError::internal("table vanished"))?;
            if let Some(pos) = def.column_index(&name) {
                let mut has_null = false;
                t.scan(table, |_, row| has_null |= row.get(pos).unwrap_or(&def.columns[pos].missing).is_null());
                if has_null {
                    return Err(SqlError::new(
                        SqlState::NotNullViolation,
                        format!("column \"{name}\" of relation \"{}\" contains null values", def.name),
                    ));
                }
            }
        }
        let def = t.catalog_mut().table_mut(table)?;
        let pos = def.column_index(&name).ok_or_else(|| {
            SqlError::new(
                codes::UNDEFINED_COLUMN,
                format!("column \"{name}\" of relation \"{}\" does not exist", def.name),
            )
        })?;
        match op {
            ast::AlterColumnOperation::SetNotNull => def.columns[pos].nullable = false,
            ast::AlterColumnOperation::DropNotNull => def.columns[pos].nullable = true,
            ast::AlterColumnOperation::SetDefault { value } => {
                def.columns[pos].default = Some(ColumnDefault::Expr(value.to_string()))
            }
            ast::AlterColumnOperation::DropDefault => def.columns[pos].default = None,
            other => {
                return Err(SqlError::unsupported(format!("ALTER COLUMN {other}")));
            }
        }
        Ok(())
    })
}

/// ALTER TABLE … ALTER COLUMN … [SET DATA] TYPE: between types whose stored values are the same
/// (`text`, `varchar`, `varchar(n)`: what Django's migrations change), the rows already there
/// checked against a new length limit (22001). Types whose values would have to be rewritten
/// are refused (0A000).
fn alter_column_type(
    session: &mut Session,
    table: u64,
    name: &str,
    data_type: &ast::DataType,
    using: Option<&ast::Expr>,
) -> SqlResult<()> {
    use bkg_kernel::DataType as D;
    let new = map_type(data_type)?.data_type;
    session.with_txn(|t| {
        let def = t.catalog().table(table).cloned().ok_or_else(|| SqlError::internal("table vanished"))?;
        let pos = def.column_index(name).ok_or_else(|| {
            SqlError::new(
                codes::UNDEFINED_COLUMN,
                format!("column \"{name}\" of relation \"{}\" does not exist", def.name),
            )
        })?;
        let old = def.columns[pos].data_type.clone();
        // USING may only say the value is kept (`USING col` or `USING col::type`).
        let plain_using = |e: &ast::Expr| match e {
            ast::Expr::Identifier(i) => ident_name(i) == name,
            ast::Expr::Cast { expr, .. } => matches!(expr.as_ref(), ast::Expr::Identifier(i) if ident_name(i) == name),
            _ => false,
        };
        if using.is_some_and(|e| !plain_using(e)) {
            return Err(SqlError::unsupported("ALTER COLUMN TYPE … USING an expression"));
        }
        let textual = |d: &D| matches!(d, D::Text | D::Varchar(_));
        if old == new {
            return Ok(());
        }
        if !(textual(&old) && textual(&new)) {
            return Err(SqlError::unsupported(format!(
                "ALTER COLUMN TYPE from {} to {} (the stored values would have to be rewritten)",
                old.pg_name(),
                new.pg_name()
            )));
        }
        if let D::Varchar(Some(n)) = new {
            let mut too_long = false;
            t.scan(table, |_, row| {
                if let Some(Value::Text(s)) = row.get(pos)
                    && s.chars().count() > n as usize
                {
                    too_long = true;
                }
            });
            if too_long {
                return Err(SqlError::new(
                    codes::STRING_DATA_RIGHT_TRUNCATION,
                    format!("value too long for type character varying({n})"),
                ));
            }
        }
        t.catalog_mut().table_mut(table)?.columns[pos].data_type = new;
        Ok(())
    })
}

/// Evaluates a constant default (literal) for ADD COLUMN.
fn constant_default(expr: &str, dt: &bkg_kernel::DataType) -> SqlResult<Value> {
    let e = expr.trim();
    let parsed: Option<Value> = match dt {
        bkg_kernel::DataType::Int16 => e.parse().ok().map(Value::Int16),
        bkg_kernel::DataType::Int32 => e.parse().ok().map(Value::Int32),
        bkg_kernel::DataType::Int64 => e.parse().ok().map(Value::Int64),
        bkg_kernel::DataType::Float32 => e.parse().ok().map(Value::Float32),
        bkg_kernel::DataType::Float64 => e.parse().ok().map(Value::Float64),
        bkg_kernel::DataType::Bool => match e.to_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        bkg_kernel::DataType::Text | bkg_kernel::DataType::Varchar(_) => e
            .strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .map(|s| Value::Text(std::sync::Arc::from(s.replace("''", "'")))),
        _ => None,
    };
    if e.eq_ignore_ascii_case("null") {
        return Ok(Value::Null);
    }
    parsed.ok_or_else(|| SqlError::unsupported(format!("ADD COLUMN with the non-constant default {e}")))
}
