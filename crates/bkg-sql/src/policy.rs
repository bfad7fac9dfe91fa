//! Row-level security: policies (`CREATE POLICY`, stored in the kernel catalog with their table)
//! compiled into predicates and enforced on the one plan path every front door uses.
//!
//! Enforcement happens twice, on purpose:
//! - **In the scan** ([`super::provider::MvccTable`]): every read of a protected table, whatever
//!   the query shape (views, CTEs, subqueries, joins, UNION, the source of INSERT ... SELECT, the
//!   row-selecting query of UPDATE/DELETE, COPY TO), evaluates the policy on the rows first and
//!   hands on only the rows that pass. No user expression ever sees a hidden row (the
//!   security-barrier property), and a scan without a security context reads nothing.
//! - **In the logical plan** ([`rewrite_plan`]): every scan of a protected table, subqueries
//!   included, gets a `Filter` with the same predicate, so the optimizer can push it down (a
//!   policy `id = auth.uid()` becomes a point lookup) and prune with it.
//!
//! The principal (JWT claims) travels as a typed value on the session, never as a setting a
//! client can change; `auth.uid()`, `auth.role()`, `auth.jwt()`, `auth.email()` and
//! `current_setting('request.jwt.claims' ...)` in a policy are bound as literals per statement,
//! and so is `realtime.topic()` (the private channel being authorised, else NULL).
//! New rows are checked against WITH CHECK (INSERT, COPY FROM, the new version of UPDATE, both
//! sides of ON CONFLICT DO UPDATE); a failure is 42501 and the statement writes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use bkg_kernel::{Catalog, PolicyCommand, PolicyDef, Row, TableDef};
use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, DataFusionError, TableReference};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, Filter, LogicalPlan};
use datafusion::sql::sqlparser::ast::{self, Statement};

use super::ddl::{ident_name, resolve_table};
use super::provider::rows_to_batches;
use super::session::{Output, Session};
use crate::SqlState;
use crate::error::{SqlError, SqlResult, codes};

/// Who runs a statement, as row-level security needs it; built per statement.
#[derive(Debug, Clone)]
pub struct Security {
    /// The current role (`current_user`).
    pub role: u64,
    /// Superusers and BYPASSRLS roles are not subject to policies.
    pub bypass: bool,
    /// The role and every role it is a member of: policies `TO` any of them apply.
    pub members: BTreeSet<u64>,
    /// The request's JWT claims, if a token authenticated it.
    pub claims: Option<Arc<serde_json::Value>>,
    /// The target of the running UPDATE or DELETE: its row-selecting scan uses that command's
    /// policies (together with the SELECT policies).
    pub dml: Option<(u64, PolicyCommand)>,
    /// The realtime channel topic being authorised (`realtime.topic()`), when policies on
    /// `realtime.messages` decide who may join or send on a private channel.
    pub topic: Option<String>,
}

impl Security {
    pub fn new(
        cat: &Catalog,
        role: u64,
        claims: Option<Arc<serde_json::Value>>,
        dml: Option<(u64, PolicyCommand)>,
    ) -> Security {
        let bypass = cat.is_superuser(role) || cat.role(role).is_some_and(|r| r.bypass_rls);
        // Policies never apply to a bypassing role: skip working out its memberships.
        let members = if bypass { BTreeSet::new() } else { cat.member_closure(role) };
        Security { role, bypass, members, claims, dml, topic: None }
    }

    /// True when policies decide which rows of `def` this principal reads and writes: row
    /// security is on, the role does not bypass it, and it is not the owner (unless FORCE).
    pub fn restricted(&self, def: &TableDef) -> bool {
        def.row_security && !self.bypass && (def.force_row_security || !self.members.contains(&def.owner))
    }

    fn claim(&self, name: &str) -> Option<String> {
        match self.claims.as_ref()?.get(name)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// What a token's `scope` claim (space-separated, or a `scopes` array) allows: `admin`, or
/// `ns:<schema>:read` / `ns:<schema>:write` (write includes read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes {
    pub admin: bool,
    /// (schema, write) pairs.
    pub namespaces: Vec<(String, bool)>,
}

impl Scopes {
    /// The scopes of a token's claims; `None` when the token names none (no limit beyond the
    /// role's privileges). Unknown scope words grant nothing.
    pub fn from_claims(claims: &serde_json::Value) -> Option<Scopes> {
        let words: Vec<String> = match (claims.get("scope"), claims.get("scopes")) {
            (Some(serde_json::Value::String(s)), _) => s.split_whitespace().map(str::to_string).collect(),
            (_, Some(serde_json::Value::Array(a))) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            (None, None) => return None,
            _ => vec![],
        };
        let mut scopes = Scopes { admin: false, namespaces: vec![] };
        for w in words {
            if w == "admin" {
                scopes.admin = true;
            } else if let Some(rest) = w.strip_prefix("ns:")
                && let Some((schema, mode)) = rest.rsplit_once(':')
                && (mode == "read" || mode == "write")
                && !schema.is_empty()
            {
                scopes.namespaces.push((schema.to_string(), mode == "write"));
            }
        }
        Some(scopes)
    }

    pub fn allows(&self, schema: &str, write: bool) -> bool {
        self.admin || self.namespaces.iter().any(|(s, w)| s == schema && (*w || !write))
    }
}

/// Which expression of the policies a predicate is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clause {
    /// USING: which existing rows are visible (or may be updated/deleted).
    Using,
    /// WITH CHECK: which new rows may be written (USING where a policy has no WITH CHECK).
    Check,
}

/// The policies of `def` that apply to `command` for this principal, with the expression of
/// each for `clause` (`None`: the policy says nothing about it).
pub fn applicable<'a>(
    sec: &Security,
    def: &'a TableDef,
    command: PolicyCommand,
    clause: Clause,
) -> Vec<(&'a PolicyDef, Option<&'a str>)> {
    def.policies
        .iter()
        .filter(|p| p.command.covers(command))
        .filter(|p| p.roles.is_empty() || p.roles.iter().any(|r| sec.members.contains(r)))
        .map(|p| {
            let text = match clause {
                Clause::Using => p.using.as_deref(),
                Clause::Check => p.with_check.as_deref().or(p.using.as_deref()),
            };
            (p, text)
        })
        .collect()
}

/// The SQL text of the combined predicate: permissive policies OR-ed, restrictive ones AND-ed
/// onto them; no permissive policy means no row (default deny).
pub fn combined_sql(sec: &Security, def: &TableDef, command: PolicyCommand, clause: Clause) -> String {
    let policies = applicable(sec, def, command, clause);
    let permissive: Vec<&str> = policies.iter().filter(|(p, _)| p.permissive).filter_map(|(_, t)| *t).collect();
    if permissive.is_empty() {
        return "FALSE".into();
    }
    let mut sql = format!("(({}))", permissive.join(") OR ("));
    for (_, t) in policies.iter().filter(|(p, _)| !p.permissive) {
        if let Some(t) = t {
            sql.push_str(&format!(" AND ({t})"));
        }
    }
    sql
}

fn parse_expr(sql: &str) -> Option<ast::Expr> {
    datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

fn text_literal(v: Option<String>) -> ast::Expr {
    let sql = match v {
        Some(s) => crate::quote::literal(&s),
        None => "NULL".into(),
    };
    parse_expr(&sql).expect("a literal parses")
}

/// The literal an `auth.*()` call or `current_setting('request.jwt.claim...')` stands for.
fn principal_value(sec: &Security, f: &ast::Function) -> Option<Option<String>> {
    let name = f.name.to_string().to_lowercase();
    let args: Vec<&ast::FunctionArg> = match &f.args {
        ast::FunctionArguments::List(l) => l.args.iter().collect(),
        ast::FunctionArguments::None => vec![],
        ast::FunctionArguments::Subquery(_) => return None,
    };
    let claims_text = || sec.claims.as_ref().map(|c| c.to_string());
    match (name.as_str(), args.as_slice()) {
        ("auth.uid", []) => Some(sec.claim("sub")),
        ("auth.role", []) => Some(sec.claim("role")),
        ("auth.email", []) => Some(sec.claim("email")),
        ("auth.jwt", []) => Some(claims_text()),
        ("realtime.topic", []) => Some(sec.topic.clone()),
        ("current_setting", [first, ..]) => {
            let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(v))) = first else {
                return None;
            };
            let ast::Value::SingleQuotedString(setting) = &v.value else { return None };
            let setting = setting.to_lowercase();
            if setting == "request.jwt.claims" {
                Some(claims_text())
            } else if setting == "realtime.topic" {
                Some(sec.topic.clone())
            } else {
                setting.strip_prefix("request.jwt.claim.").map(|c| sec.claim(c))
            }
        }
        _ => None,
    }
}

/// Replaces the principal's functions by literals (also in the `(SELECT auth.uid())` form) and
/// refuses what a policy cannot hold.
fn bind_principal(expr: &mut ast::Expr, sec: &Security) -> SqlResult<()> {
    let mut err = None;
    let _ = ast::visit_expressions_mut(expr, |e| {
        if let ast::Expr::Function(f) = e
            && let Some(v) = principal_value(sec, f)
        {
            *e = text_literal(v);
        }
        if let ast::Expr::Subquery(q) = e
            && let ast::SetExpr::Select(sel) = q.body.as_ref()
            && sel.from.is_empty()
            && sel.selection.is_none()
            && let [ast::SelectItem::UnnamedExpr(inner)] = sel.projection.as_slice()
        {
            let inner = match inner {
                ast::Expr::Function(f) => principal_value(sec, f).map(text_literal),
                ast::Expr::Value(_) => Some(inner.clone()),
                _ => None,
            };
            if let Some(v) = inner {
                *e = ast::Expr::Nested(Box::new(v));
            }
        }
        if matches!(e, ast::Expr::Subquery(_) | ast::Expr::Exists { .. } | ast::Expr::InSubquery { .. }) {
            err = Some(SqlError::unsupported("subqueries in policy expressions"));
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    });
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A policy expression as the principal sees it: `auth.uid()` and friends replaced by their
/// values (for `/policy/explain`).
pub fn bound_text(sec: &Security, sql: &str) -> SqlResult<String> {
    let mut expr = parse_expr(sql).ok_or_else(|| SqlError::syntax(format!("not an expression: {sql}")))?;
    bind_principal(&mut expr, sec)?;
    Ok(expr.to_string())
}

/// Evaluates predicate SQL over `def`'s columns on one row given as JSON (`{"column": value}`;
/// missing columns are NULL): `Some(true|false)`, or `None` for NULL.
pub fn evaluate_on_row(
    state: &SessionState,
    sec: &Security,
    def: &TableDef,
    sql: &str,
    row: &serde_json::Map<String, serde_json::Value>,
) -> SqlResult<Option<bool>> {
    use datafusion::arrow::array::ArrayRef;
    // Missing columns are NULL whatever the table declares: the row is only judged, never stored.
    let declared = table_df_schema(def, None)?;
    let fields: Vec<_> = declared.as_arrow().fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    for k in row.keys() {
        if def.column_index(k).is_none() {
            return Err(SqlError::new(
                codes::UNDEFINED_COLUMN,
                format!("column \"{k}\" of relation \"{}\" does not exist", def.name),
            ));
        }
    }
    let mut cols: Vec<ArrayRef> = Vec::new();
    for f in schema.fields() {
        let text = match row.get(f.name()) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let arr: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(vec![text]));
        let cast = datafusion::arrow::compute::cast(&arr, f.data_type()).map_err(|e| {
            SqlError::new(
                SqlState::InvalidTextRepresentation,
                format!("invalid value for column \"{}\": {e}", f.name()),
            )
        })?;
        cols.push(cast);
    }
    let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| SqlError::internal(e.to_string()))?;
    let expr = compile(state, sec, def, sql, None)?;
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let physical = state.create_physical_expr(expr, &df_schema)?;
    let mask = physical.evaluate(&batch)?.into_array(1)?;
    let mask = mask.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| SqlError::internal("not boolean"))?;
    Ok((!mask.is_null(0)).then(|| mask.value(0)))
}

/// The DataFusion schema of `def`'s live columns (qualified when `qualifier` is given).
pub(crate) fn table_df_schema(def: &TableDef, qualifier: Option<&TableReference>) -> Result<DFSchema, DataFusionError> {
    let fields: Vec<_> = def.live_columns().map(|(_, c)| c.data_type.arrow_field(&c.name, c.nullable)).collect();
    let schema = Schema::new(fields);
    match qualifier {
        Some(q) => DFSchema::try_from_qualified_schema(q.clone(), &schema),
        None => DFSchema::try_from(schema),
    }
}

/// Compiles predicate SQL over `def`'s (unqualified) columns with the principal bound.
pub(crate) fn compile_predicate(state: &SessionState, sec: &Security, def: &TableDef, sql: &str) -> SqlResult<Expr> {
    Ok(compile(state, sec, def, sql, None)?)
}

/// Compiles predicate SQL over `def`'s columns into a logical expression, with the principal
/// bound and the session's rewrites (`->`, casts) applied.
fn compile(
    state: &SessionState,
    sec: &Security,
    def: &TableDef,
    sql: &str,
    qualifier: Option<&TableReference>,
) -> Result<Expr, DataFusionError> {
    let external = |e: SqlError| DataFusionError::External(Box::new(e));
    let mut expr = parse_expr(sql).ok_or_else(|| {
        external(SqlError::internal(format!("policy expression of table \"{}\" does not parse", def.name)))
    })?;
    bind_principal(&mut expr, sec).map_err(external)?;
    // The session's AST rewrites work on statements: wrap the expression in one.
    let mut stmt = Session::parse(&format!("SELECT {expr}")).map_err(external)?.remove(0);
    let cat = Catalog::default();
    super::pg_catalog::rewrite(&mut stmt, &cat, "public").map_err(external)?;
    let Statement::Query(q) = &stmt else { return Err(external(SqlError::internal("policy rewrite"))) };
    let ast::SetExpr::Select(sel) = q.body.as_ref() else { return Err(external(SqlError::internal("policy rewrite"))) };
    let [ast::SelectItem::UnnamedExpr(e)] = sel.projection.as_slice() else {
        return Err(external(SqlError::internal("policy rewrite")));
    };
    let schema = table_df_schema(def, qualifier)?;
    state.create_logical_expr(&e.to_string(), &schema)
}

/// The row filter of `def` for `command` (the target of UPDATE/DELETE also needs the SELECT
/// policies), or `None` when row security does not restrict this principal.
pub fn row_filter(
    state: &SessionState,
    sec: &Security,
    def: &TableDef,
    command: PolicyCommand,
    qualifier: Option<&TableReference>,
) -> Result<Option<Expr>, DataFusionError> {
    if !sec.restricted(def) {
        return Ok(None);
    }
    let mut sql = combined_sql(sec, def, command, Clause::Using);
    if command != PolicyCommand::Select {
        sql = format!("({sql}) AND ({})", combined_sql(sec, def, PolicyCommand::Select, Clause::Using));
    }
    compile(state, sec, def, &sql, qualifier).map(Some)
}

/// The command whose policies a scan of `def` applies: the running UPDATE/DELETE's for its
/// target's row-id view, SELECT for every other read.
pub fn scan_command(sec: &Security, def: &TableDef, dml_view: bool) -> PolicyCommand {
    match sec.dml {
        Some((table, cmd)) if dml_view && table == def.id => cmd,
        _ => PolicyCommand::Select,
    }
}

/// Keeps the rows of `batch` (whose schema is `schema`) for which `filter` is true.
pub fn filter_batch(
    state: &SessionState,
    schema: &SchemaRef,
    filter: &Expr,
    batch: RecordBatch,
) -> Result<RecordBatch, DataFusionError> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let physical = state.create_physical_expr(filter.clone(), &df_schema)?;
    let mask = physical.evaluate(&batch)?.into_array(batch.num_rows())?;
    let mask = mask
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| DataFusionError::Plan("a policy expression must be boolean".into()))?;
    // NULL counts as false, as in a WHERE clause.
    Ok(datafusion::arrow::compute::filter_record_batch(&batch, mask)?)
}

/// Adds the policy filter above every scan of a protected table, subqueries included.
pub fn rewrite_plan(state: &SessionState, sec: &Security, plan: LogicalPlan) -> SqlResult<LogicalPlan> {
    if sec.bypass {
        return Ok(plan);
    }
    let out = plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = &node else { return Ok(Transformed::no(node)) };
        if scan.projection.is_some() || !scan.filters.is_empty() {
            // Not produced by the SQL planner; the scan enforces the policy on its own.
            return Ok(Transformed::no(node));
        }
        let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source) else {
            return Ok(Transformed::no(node));
        };
        let Some(table) = provider.downcast_ref::<super::provider::MvccTable>() else {
            return Ok(Transformed::no(node));
        };
        let command = scan_command(sec, &table.def, table.is_dml_view());
        match row_filter(state, sec, &table.def, command, Some(&scan.table_name))? {
            None => Ok(Transformed::no(node)),
            Some(filter) => Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(filter, Arc::new(node))?))),
        }
    })?;
    Ok(out.data)
}

/// Checks new rows (all physical columns, in table order) against the WITH CHECK policies of
/// `command`: 42501 unless every row passes.
pub fn check_new_rows(
    session: &Session,
    def: &TableDef,
    command: PolicyCommand,
    clause: Clause,
    rows: &[Vec<bkg_kernel::Value>],
) -> SqlResult<()> {
    if rows.is_empty() || !session.rls_restricts(def) {
        return Ok(());
    }
    let rows: Vec<(u64, Row)> = rows.iter().map(|r| (0, Row::from(r.clone()))).collect();
    check_rows(session, def, command, clause, &rows)
}

/// As [`check_new_rows`], for rows as the kernel returns them.
pub fn check_rows(
    session: &Session,
    def: &TableDef,
    command: PolicyCommand,
    clause: Clause,
    rows: &[(u64, Row)],
) -> SqlResult<()> {
    if rows.is_empty() || !session.rls_restricts(def) {
        return Ok(());
    }
    let sec = session.security();
    let state = session.statement_state();
    let sql = combined_sql(&sec, def, command, clause);
    let filter = compile(&state, &sec, def, &sql, None)?;
    let schema: SchemaRef = Arc::new(table_df_schema(def, None)?.as_arrow().clone());
    let positions: Vec<Option<usize>> = def.live_columns().map(|(p, _)| Some(p)).collect();
    for batch in rows_to_batches(def, &schema, &positions, rows)? {
        let n = batch.num_rows();
        let kept = filter_batch(&state, &schema, &filter, batch)?;
        if kept.num_rows() != n {
            let what = match (clause, command) {
                (Clause::Using, PolicyCommand::Select) | (Clause::Check, _) => "",
                (Clause::Using, _) => " (USING expression)",
            };
            return Err(SqlError::new(
                codes::INSUFFICIENT_PRIVILEGE,
                format!("new row violates row-level security policy{what} for table \"{}\"", def.name),
            ));
        }
    }
    Ok(())
}

fn command_of(c: Option<ast::CreatePolicyCommand>) -> PolicyCommand {
    match c {
        None | Some(ast::CreatePolicyCommand::All) => PolicyCommand::All,
        Some(ast::CreatePolicyCommand::Select) => PolicyCommand::Select,
        Some(ast::CreatePolicyCommand::Insert) => PolicyCommand::Insert,
        Some(ast::CreatePolicyCommand::Update) => PolicyCommand::Update,
        Some(ast::CreatePolicyCommand::Delete) => PolicyCommand::Delete,
    }
}

fn role_oids(session: &Session, owners: &[ast::Owner]) -> SqlResult<Vec<u64>> {
    let cat = session.catalog_view();
    let mut out = Vec::new();
    for o in owners {
        let oid = match o {
            ast::Owner::Ident(i) => {
                let name = ident_name(i);
                if name == "public" {
                    return Ok(vec![]);
                }
                cat.find_role(&name)
                    .ok_or_else(|| SqlError::new(codes::UNDEFINED_OBJECT, format!("role \"{name}\" does not exist")))?
                    .oid
            }
            ast::Owner::CurrentRole | ast::Owner::CurrentUser => session.role,
            ast::Owner::SessionUser => session.session_role,
        };
        if !out.contains(&oid) {
            out.push(oid);
        }
    }
    Ok(out)
}

/// Checks a policy's expressions compile over the table (columns exist, types fit, no
/// subqueries) before it is stored.
fn validate(session: &Session, def: &TableDef, policy: &PolicyDef) -> SqlResult<()> {
    if policy.command == PolicyCommand::Insert && policy.using.is_some() {
        return Err(SqlError::syntax("only WITH CHECK expression allowed for INSERT"));
    }
    if matches!(policy.command, PolicyCommand::Select | PolicyCommand::Delete) && policy.with_check.is_some() {
        return Err(SqlError::syntax("WITH CHECK cannot be applied to SELECT or DELETE"));
    }
    let state = session.statement_state();
    let sec =
        Security { role: session.role, bypass: false, members: BTreeSet::new(), claims: None, dml: None, topic: None };
    for text in [&policy.using, &policy.with_check].into_iter().flatten() {
        let expr = compile(&state, &sec, def, text, None)?;
        let schema = table_df_schema(def, None)?;
        let physical = state.create_physical_expr(expr, &schema)?;
        let ty = physical.data_type(schema.as_arrow())?;
        if ty != datafusion::arrow::datatypes::DataType::Boolean && ty != datafusion::arrow::datatypes::DataType::Null {
            return Err(SqlError::new(
                SqlState::DatatypeMismatch,
                format!("argument of POLICY must be type boolean, not type {ty}"),
            ));
        }
    }
    Ok(())
}

/// The audit event of a policy change, in the change's transaction (it is written if and only
/// if the change commits), whatever front door made it.
fn audit(session: &mut Session, action: &str, def: &TableDef, policy: &str) -> SqlResult<()> {
    let detail = match def.policies.iter().find(|p| p.name == policy) {
        Some(p) => serde_json::json!({
            "policy": policy,
            "command": p.command.name(),
            "permissive": p.permissive,
            "using": p.using,
            "with_check": p.with_check,
        }),
        None => serde_json::json!({ "policy": policy }),
    };
    session.audit(action, &def.qualified_name(), detail)
}

fn table_of(session: &Session, name: &ast::ObjectName) -> SqlResult<TableDef> {
    let id = resolve_table(session, name)?;
    session.require_owner(bkg_kernel::AclObject::Relation(id))?;
    session.with_txn(|t| t.catalog().table(id).cloned().ok_or_else(|| SqlError::internal("table vanished")))
}

/// CREATE POLICY, ALTER POLICY, DROP POLICY.
pub fn execute(session: &mut Session, stmt: Statement) -> SqlResult<Output> {
    match stmt {
        Statement::CreatePolicy(cp) => {
            let cp_table = cp.table_name.clone();
            let def = table_of(session, &cp.table_name)?;
            let policy = PolicyDef {
                oid: 0,
                name: ident_name(&cp.name),
                command: command_of(cp.command),
                permissive: !matches!(cp.policy_type, Some(ast::CreatePolicyType::Restrictive)),
                roles: role_oids(session, cp.to.as_deref().unwrap_or_default())?,
                using: cp.using.map(|e| e.to_string()),
                with_check: cp.with_check.map(|e| e.to_string()),
            };
            validate(session, &def, &policy)?;
            let name = policy.name.clone();
            session.with_txn(|t| Ok(t.catalog_mut().create_policy(def.id, policy)?))?;
            let def = table_of(session, &cp_table)?;
            audit(session, "policy.create", &def, &name)?;
            Ok(Output::command("CREATE POLICY"))
        }
        Statement::AlterPolicy(ap) => {
            let ap_table = ap.table_name.clone();
            let def = table_of(session, &ap.table_name)?;
            let name = ident_name(&ap.name);
            let mut policy = def.policies.iter().find(|p| p.name == name).cloned().ok_or_else(|| {
                SqlError::new(
                    codes::UNDEFINED_OBJECT,
                    format!("policy \"{name}\" for table \"{}\" does not exist", def.name),
                )
            })?;
            match ap.operation {
                ast::AlterPolicyOperation::Rename { new_name } => {
                    let new_name = ident_name(&new_name);
                    if def.policies.iter().any(|p| p.name == new_name) {
                        return Err(SqlError::new(
                            SqlState::DuplicateObject,
                            format!("policy \"{new_name}\" for table \"{}\" already exists", def.name),
                        ));
                    }
                    policy.name = new_name;
                }
                ast::AlterPolicyOperation::Apply { to, using, with_check } => {
                    if let Some(to) = to {
                        policy.roles = role_oids(session, &to)?;
                    }
                    if let Some(u) = using {
                        policy.using = Some(u.to_string());
                    }
                    if let Some(w) = with_check {
                        policy.with_check = Some(w.to_string());
                    }
                    validate(session, &def, &policy)?;
                }
            }
            let new_name = policy.name.clone();
            session.with_txn(|t| {
                *t.catalog_mut().policy_mut(def.id, &name)? = policy;
                Ok(())
            })?;
            let def = table_of(session, &ap_table)?;
            audit(session, "policy.alter", &def, &new_name)?;
            Ok(Output::command("ALTER POLICY"))
        }
        Statement::DropPolicy(dp) => {
            let def = match table_of(session, &dp.table_name) {
                Ok(d) => d,
                Err(e) if dp.if_exists && e.code == codes::UNDEFINED_TABLE => {
                    return Ok(Output::command("DROP POLICY"));
                }
                Err(e) => return Err(e),
            };
            let name = ident_name(&dp.name);
            if session.with_txn(|t| Ok(t.catalog_mut().drop_policy(def.id, &name, dp.if_exists)?))? {
                audit(session, "policy.drop", &def, &name)?;
            }
            Ok(Output::command("DROP POLICY"))
        }
        other => Err(SqlError::internal(format!("not a policy statement: {other}"))),
    }
}

/// `ALTER TABLE ... ENABLE|DISABLE|FORCE|NO FORCE ROW LEVEL SECURITY` (the caller checked
/// ownership). Returns false for other operations.
pub fn alter_table_security(session: &Session, table: u64, op: &ast::AlterTableOperation) -> SqlResult<bool> {
    use ast::AlterTableOperation as Op;
    let change: fn(&mut TableDef) = match op {
        Op::EnableRowLevelSecurity => |d| d.row_security = true,
        Op::DisableRowLevelSecurity => |d| d.row_security = false,
        Op::ForceRowLevelSecurity => |d| d.force_row_security = true,
        Op::NoForceRowLevelSecurity => |d| d.force_row_security = false,
        _ => return Ok(false),
    };
    session.with_txn(|t| {
        change(t.catalog_mut().table_mut(table)?);
        Ok(())
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(claims: serde_json::Value) -> Security {
        Security {
            role: 1,
            bypass: false,
            members: BTreeSet::from([1]),
            claims: Some(Arc::new(claims)),
            dml: None,
            topic: None,
        }
    }

    #[test]
    fn principal_functions_become_literals() {
        let s = sec(serde_json::json!({"sub": "u-1", "role": "authenticated", "email": "a'b@x"}));
        for (input, want) in [
            ("user_id = auth.uid()", "user_id = 'u-1'"),
            ("user_id = (SELECT auth.uid())", "user_id = ('u-1')"),
            ("auth.role() = 'authenticated'", "'authenticated' = 'authenticated'"),
            ("auth.email() = e", "'a''b@x' = e"),
            ("current_setting('request.jwt.claim.sub', true) = o", "'u-1' = o"),
            ("auth.uid() IS NULL OR x", "'u-1' IS NULL OR x"),
        ] {
            let mut e = parse_expr(input).unwrap();
            bind_principal(&mut e, &s).unwrap();
            assert_eq!(e.to_string(), want, "{input}");
        }
        let anon = Security { claims: None, ..s };
        let mut e = parse_expr("user_id = auth.uid()").unwrap();
        bind_principal(&mut e, &anon).unwrap();
        assert_eq!(e.to_string(), "user_id = NULL");
    }

    #[test]
    fn scopes_from_claims() {
        assert_eq!(Scopes::from_claims(&serde_json::json!({"role": "x"})), None);
        let s = Scopes::from_claims(&serde_json::json!({"scope": "ns:app:read ns:logs:write bogus ns::read"})).unwrap();
        assert!(s.allows("app", false) && !s.allows("app", true));
        assert!(s.allows("logs", false) && s.allows("logs", true));
        assert!(!s.allows("public", false) && !s.admin);
        let a = Scopes::from_claims(&serde_json::json!({"scopes": ["admin"]})).unwrap();
        assert!(a.allows("anything", true));
        let none = Scopes::from_claims(&serde_json::json!({"scope": 5})).unwrap();
        assert!(!none.allows("public", false));
    }

    #[test]
    fn subqueries_are_refused() {
        let s = sec(serde_json::json!({}));
        for input in ["EXISTS (SELECT 1 FROM t)", "x IN (SELECT y FROM t)", "x = (SELECT max(y) FROM t)"] {
            let mut e = parse_expr(input).unwrap();
            assert_eq!(bind_principal(&mut e, &s).unwrap_err().code, codes::FEATURE_NOT_SUPPORTED, "{input}");
        }
    }
}
