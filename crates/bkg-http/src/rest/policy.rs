//! `/policy`: row-level security policies as JSON, for the admin scope (the service role, or a
//! token with the `admin` scope). The same catalog objects as `CREATE/ALTER/DROP POLICY`: every
//! change runs as that SQL statement in one transaction, so JSON and SQL can never disagree.
//! `POST /policy/explain` tells, for a principal and an operation on a table (and optionally a
//! row), which policies apply, what each evaluates to, and whether the operation is allowed.
//! Policy changes are written to the audit log with the change (see `bkg_sql::audit`).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bkg_kernel::{PolicyCommand, PolicyDef, TableDef};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{RestError, RestState, read_body};
use bkg_auth::Principal;
use bkg_sql::Session;
use bkg_sql::SqlState;
use bkg_sql::policy::{self, Clause, Security};

/// Who may manage policies (and read the audit log): the service role without a scope limit,
/// or an `admin` scope.
pub(crate) fn admin(s: &RestState, addr: SocketAddr, headers: &HeaderMap) -> Result<Principal, RestError> {
    let p = s.authenticate(addr, headers)?;
    if !crate::admin::is_admin(&p) {
        return Err(RestError::new(
            403,
            SqlState::InsufficientPrivilege,
            "this needs the admin scope (or the service role)",
        ));
    }
    Ok(p)
}

fn table_def(s: &RestState, name: &str) -> Result<TableDef, RestError> {
    let (schema, table) = name.split_once('.').unwrap_or(("public", name));
    s.engine
        .catalog()
        .find_table(schema, table)
        .cloned()
        .ok_or_else(|| RestError::new(404, SqlState::UndefinedTable, format!("relation \"{name}\" does not exist")))
}

use bkg_sql::quote::ident as quote;

fn command_name(c: PolicyCommand) -> &'static str {
    match c {
        PolicyCommand::All => "all",
        PolicyCommand::Select => "select",
        PolicyCommand::Insert => "insert",
        PolicyCommand::Update => "update",
        PolicyCommand::Delete => "delete",
    }
}

fn parse_command(c: &str) -> Result<PolicyCommand, RestError> {
    Ok(match c.to_lowercase().as_str() {
        "all" => PolicyCommand::All,
        "select" => PolicyCommand::Select,
        "insert" => PolicyCommand::Insert,
        "update" => PolicyCommand::Update,
        "delete" => PolicyCommand::Delete,
        other => {
            return Err(RestError::new(400, SqlState::PgrstQueryString, format!("unknown command \"{other}\"")))
                .map_err(|e| e.hint("One of select, insert, update, delete, all."));
        }
    })
}

fn policy_json(s: &RestState, def: &TableDef, p: &PolicyDef) -> Value {
    let cat = s.engine.catalog();
    let roles: Vec<String> = if p.roles.is_empty() {
        vec!["public".into()]
    } else {
        p.roles.iter().map(|r| cat.role(*r).map(|d| d.name.clone()).unwrap_or_else(|| r.to_string())).collect()
    };
    json!({
        "table": def.qualified_name(),
        "name": p.name,
        "command": command_name(p.command),
        "permissive": p.permissive,
        "roles": roles,
        "using": p.using,
        "with_check": p.with_check,
    })
}

fn json_response(status: u16, v: Value) -> Response {
    let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
    (status, [("content-type", "application/json; charset=utf-8")], v.to_string()).into_response()
}

/// One policy statement, checked to be exactly that, run in its own transaction as the
/// superuser (the caller was authorised as admin).
async fn run_policy_sql(s: &RestState, sql: &str, who: &Principal, addr: SocketAddr) -> Result<(), RestError> {
    let stmts = Session::parse(sql).map_err(|e| RestError::from_sql(e, false))?;
    let [stmt] = stmts.as_slice() else {
        return Err(RestError::new(400, SqlState::SyntaxError, "a policy expression must be one SQL expression"));
    };
    if !matches!(
        stmt,
        datafusion::sql::sqlparser::ast::Statement::CreatePolicy(_)
            | datafusion::sql::sqlparser::ast::Statement::AlterPolicy(_)
            | datafusion::sql::sqlparser::ast::Statement::DropPolicy(_)
    ) {
        return Err(RestError::new(400, SqlState::SyntaxError, "a policy expression must be one SQL expression"));
    }
    let mut session = s.engine.session("postgres");
    // The audit event names the token's role and subject, not the superuser session doing the work.
    session.set_claims(Some(Value::Object(who.claims.clone())));
    session.audit_role = Some(who.role.clone());
    session.client_address = Some(addr.to_string());
    session.execute_one("BEGIN").await.map_err(|e| RestError::from_sql(e, false))?;
    if let Err(e) = Box::pin(session.execute_statement(stmt.clone())).await {
        let _ = session.execute_one("ROLLBACK").await;
        let missing = matches!(e.code, SqlState::UndefinedObject | SqlState::UndefinedTable);
        let mut r = RestError::from_sql(e, false);
        if missing {
            r.status = 404;
        }
        return Err(r);
    }
    session.execute_one("COMMIT").await.map_err(|e| RestError::from_sql(e, false))?;
    Ok(())
}

/// A policy expression from JSON must be one expression: no statement can hide in it.
fn expression(text: &str) -> Result<String, RestError> {
    let parsed =
        datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
            .try_with_sql(text)
            .and_then(|mut p| {
                let e = p.parse_expr()?;
                p.expect_token(&datafusion::sql::sqlparser::tokenizer::Token::EOF)?;
                Ok(e)
            });
    parsed
        .map(|e| e.to_string())
        .map_err(|e| RestError::new(400, SqlState::SyntaxError, format!("not a single SQL expression: {e}")))
}

fn roles_sql(roles: &[String]) -> String {
    if roles.is_empty() {
        return "PUBLIC".into();
    }
    roles.iter().map(|r| if r == "public" { "PUBLIC".to_string() } else { quote(r) }).collect::<Vec<_>>().join(", ")
}

async fn body_json<T: for<'de> Deserialize<'de>>(s: &RestState, body: Body) -> Result<T, RestError> {
    let bytes = read_body(body, s.config.body_bytes_max).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RestError::new(400, SqlState::PgrstBody, "Invalid JSON body").details(e.to_string()))
}

/// Paging and filtering of `GET /policy`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this table's policies (`schema.table`, or a table of `public`).
    table: Option<String>,
    /// Policies per page (1–1000); without it, every policy.
    limit: Option<usize>,
    /// Policies to skip (with `limit`).
    offset: Option<usize>,
}

/// Row-level security policies, ordered by schema, table and name (`x-total-count` gives the total)
#[utoipa::path(get, path = "/policy", tag = "policies", params(ListParams),
    responses(
        (status = 200, description = "[{table, name, command, permissive, roles, using, with_check}]", content_type = "application/json"),
        (status = 403, description = "Not the admin scope or the service role", body = super::error::ErrorBody),
        (status = 404, description = "No such table", body = super::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn list(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<ListParams>,
) -> Result<Response, RestError> {
    admin(&s, addr, &headers)?;
    let cat = s.engine.catalog();
    let only = q.table.as_deref().map(|t| table_def(&s, t)).transpose()?.map(|d| d.id);
    let mut all: Vec<(&TableDef, &PolicyDef)> = cat
        .tables
        .values()
        .filter(|t| only.is_none_or(|id| t.id == id))
        .flat_map(|t| t.policies.iter().map(move |p| (t, p)))
        .collect();
    all.sort_by(|a, b| (&a.0.schema, &a.0.name, &a.1.name).cmp(&(&b.0.schema, &b.0.name, &b.1.name)));
    let total = all.len();
    let limit = q.limit.map_or(usize::MAX, |l| l.clamp(1, POLICY_PAGE_MAX));
    let page: Vec<Value> =
        all.into_iter().skip(q.offset.unwrap_or(0)).take(limit).map(|(t, p)| policy_json(&s, t, p)).collect();
    let mut r = json_response(200, Value::Array(page));
    r.headers_mut().insert("x-total-count", axum::http::HeaderValue::from(total));
    Ok(r)
}

/// Largest page of `GET /policy`.
const POLICY_PAGE_MAX: usize = 1000;

/// One policy of a table (`schema.table` or a table of `public`).
#[utoipa::path(get, path = "/policy/{table}/{name}", tag = "policies",
    params(("table" = String, Path, description = "schema.table"), ("name" = String, Path, description = "Policy name")),
    responses(
        (status = 200, description = "The policy", content_type = "application/json"),
        (status = 404, description = "No such table or policy", body = super::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn get_one(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((table, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    admin(&s, addr, &headers)?;
    let def = table_def(&s, &table)?;
    let p = def.policies.iter().find(|p| p.name == name).ok_or_else(|| {
        RestError::new(
            404,
            SqlState::UndefinedObject,
            format!("policy \"{name}\" for table \"{}\" does not exist", def.name),
        )
    })?;
    Ok(json_response(200, policy_json(&s, &def, p)))
}

/// A policy to create: `command` all|select|insert|update|delete (default all), `permissive`
/// (default true), `roles` (default PUBLIC), SQL boolean expressions `using` and `with_check`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    table: String,
    name: String,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    permissive: Option<bool>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    using: Option<String>,
    #[serde(default)]
    with_check: Option<String>,
}

/// Creates a policy (runs CREATE POLICY).
#[utoipa::path(post, path = "/policy", tag = "policies",
    request_body(content = NewPolicy, content_type = "application/json"),
    responses(
        (status = 201, description = "The policy", content_type = "application/json"),
        (status = 400, description = "Bad JSON, not one SQL expression, unknown column (42703), duplicate (42710)", body = super::error::ErrorBody),
        (status = 403, description = "Not the admin scope or the service role", body = super::error::ErrorBody),
        (status = 404, description = "No such table", body = super::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn create(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    let who = admin(&s, addr, &headers)?;
    let p: NewPolicy = body_json(&s, body).await?;
    let def = table_def(&s, &p.table)?;
    let command = parse_command(p.command.as_deref().unwrap_or("all"))?;
    let mut sql = format!(
        "CREATE POLICY {} ON {}.{} AS {} FOR {} TO {}",
        quote(&p.name),
        quote(&def.schema),
        quote(&def.name),
        if p.permissive.unwrap_or(true) { "PERMISSIVE" } else { "RESTRICTIVE" },
        command.name(),
        roles_sql(&p.roles)
    );
    if let Some(u) = &p.using {
        sql.push_str(&format!(" USING ({})", expression(u)?));
    }
    if let Some(w) = &p.with_check {
        sql.push_str(&format!(" WITH CHECK ({})", expression(w)?));
    }
    run_policy_sql(&s, &sql, &who, addr).await?;
    let def = table_def(&s, &p.table)?;
    let created = def.policies.iter().find(|x| x.name == p.name).map(|x| policy_json(&s, &def, x));
    Ok(json_response(201, created.unwrap_or(Value::Null)))
}

/// Changes to a policy: a new `name`, `roles`, `using`, `with_check`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    using: Option<String>,
    #[serde(default)]
    with_check: Option<String>,
}

/// Changes a policy (runs ALTER POLICY).
#[utoipa::path(patch, path = "/policy/{table}/{name}", tag = "policies",
    params(("table" = String, Path, description = "schema.table"), ("name" = String, Path, description = "Policy name")),
    request_body(content = PolicyChange, content_type = "application/json"),
    responses(
        (status = 200, description = "The policy", content_type = "application/json"),
        (status = 400, description = "Bad JSON or expression", body = super::error::ErrorBody),
        (status = 404, description = "No such table or policy", body = super::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn update(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((table, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    let who = admin(&s, addr, &headers)?;
    let c: PolicyChange = body_json(&s, body).await?;
    let def = table_def(&s, &table)?;
    let target = format!("{} ON {}.{}", quote(&name), quote(&def.schema), quote(&def.name));
    let mut sql = format!("ALTER POLICY {target}");
    let changes = c.roles.is_some() || c.using.is_some() || c.with_check.is_some();
    if let Some(r) = &c.roles {
        sql.push_str(&format!(" TO {}", roles_sql(r)));
    }
    if let Some(u) = &c.using {
        sql.push_str(&format!(" USING ({})", expression(u)?));
    }
    if let Some(w) = &c.with_check {
        sql.push_str(&format!(" WITH CHECK ({})", expression(w)?));
    }
    if changes {
        run_policy_sql(&s, &sql, &who, addr).await?;
    }
    let mut current = name.clone();
    if let Some(new_name) = &c.name
        && *new_name != name
    {
        run_policy_sql(&s, &format!("ALTER POLICY {target} RENAME TO {}", quote(new_name)), &who, addr).await?;
        current = new_name.clone();
    }
    let def = table_def(&s, &table)?;
    let p = def.policies.iter().find(|x| x.name == current).map(|x| policy_json(&s, &def, x));
    Ok(json_response(200, p.unwrap_or(Value::Null)))
}

/// Drops a policy (runs DROP POLICY).
#[utoipa::path(delete, path = "/policy/{table}/{name}", tag = "policies",
    params(("table" = String, Path, description = "schema.table"), ("name" = String, Path, description = "Policy name")),
    responses(
        (status = 204, description = "Dropped"),
        (status = 404, description = "No such table or policy", body = super::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn remove(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((table, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    let who = admin(&s, addr, &headers)?;
    let def = table_def(&s, &table)?;
    run_policy_sql(
        &s,
        &format!("DROP POLICY {} ON {}.{}", quote(&name), quote(&def.schema), quote(&def.name)),
        &who,
        addr,
    )
    .await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// What to explain: an operation (`command` select|insert|update|delete) on `table` by the
/// principal of `claims` (as role `role`), optionally on one `row`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    table: String,
    command: String,
    /// The principal's JWT claims (`sub`, `role`, ...).
    #[serde(default)]
    #[schema(value_type = Object)]
    claims: Map<String, Value>,
    /// The database role; by default the claims' `role`, else `anon`.
    #[serde(default)]
    role: Option<String>,
    /// A row to evaluate the policies on (`{"column": value}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    row: Option<Map<String, Value>>,
}

/// Which policies apply to a principal's operation, what each evaluates to (on the row, if
/// given), and whether it is allowed and why.
#[utoipa::path(post, path = "/policy/explain", tag = "policies",
    request_body(content = ExplainRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "{policies, checks, allowed, reason, ...}", content_type = "application/json"),
        (status = 400, description = "Bad JSON, unknown role or column, bad value", body = super::error::ErrorBody),
        (status = 403, description = "Not the admin scope or the service role", body = super::error::ErrorBody),
        (status = 404, description = "No such table", body = super::error::ErrorBody),
    ), security(("apikey" = []), ("bearer" = [])))]
pub async fn explain(
    State(s): State<RestState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    admin(&s, addr, &headers)?;
    let req: ExplainRequest = body_json(&s, body).await?;
    let def = table_def(&s, &req.table)?;
    let command = parse_command(&req.command)?;
    if command == PolicyCommand::All {
        return Err(RestError::new(
            400,
            SqlState::PgrstQueryString,
            "explain one command: select, insert, update or delete",
        ));
    }
    let role_name = req
        .role
        .clone()
        .or_else(|| req.claims.get("role").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| bkg_auth::ANON_ROLE.to_string());
    let cat = s.engine.catalog();
    let role = cat.find_role(&role_name).ok_or_else(|| {
        RestError::new(400, SqlState::UndefinedObject, format!("role \"{role_name}\" does not exist"))
    })?;
    let claims = Value::Object(req.claims.clone());
    let sec = Security::new(&cat, role.oid, Some(std::sync::Arc::new(claims)), None);
    let session = s.engine.session("postgres");
    let state = session.statement_state();
    let sqlerr = |e| RestError::from_sql(e, false);
    // The clauses the engine checks for this command, as (what, command, clause).
    let checks: Vec<(&str, PolicyCommand, Clause)> = match command {
        PolicyCommand::Select => vec![("visible", PolicyCommand::Select, Clause::Using)],
        PolicyCommand::Insert => vec![("new row", PolicyCommand::Insert, Clause::Check)],
        PolicyCommand::Update => vec![
            ("visible", PolicyCommand::Select, Clause::Using),
            ("updatable", PolicyCommand::Update, Clause::Using),
            ("new row", PolicyCommand::Update, Clause::Check),
        ],
        _ => {
            vec![("visible", PolicyCommand::Select, Clause::Using), ("deletable", PolicyCommand::Delete, Clause::Using)]
        }
    };
    let mut policies = Vec::new();
    for p in &def.policies {
        let applies =
            p.command.covers(command) || (command != PolicyCommand::Insert && p.command.covers(PolicyCommand::Select));
        let for_role = p.roles.is_empty() || p.roles.iter().any(|r| sec.members.contains(r));
        let mut entry = policy_json(&s, &def, p);
        entry["applies_to_command"] = json!(applies);
        entry["applies_to_role"] = json!(for_role);
        for (key, text) in [("using", &p.using), ("with_check", &p.with_check)] {
            if let Some(t) = text {
                entry[format!("{key}_bound")] = json!(policy::bound_text(&sec, t).map_err(sqlerr)?);
                if let Some(row) = &req.row
                    && applies
                    && for_role
                {
                    let v = policy::evaluate_on_row(&state, &sec, &def, t, row).map_err(sqlerr)?;
                    entry[format!("{key}_result")] = json!(v);
                }
            }
        }
        policies.push(entry);
    }
    let (allowed, reason, steps) = if !def.row_security {
        (Some(true), "row-level security is off for this table".to_string(), vec![])
    } else if sec.bypass {
        (Some(true), format!("role {role_name} bypasses row-level security"), vec![])
    } else if !sec.restricted(&def) {
        (Some(true), format!("role {role_name} owns the table (and FORCE is off)"), vec![])
    } else {
        let mut steps = Vec::new();
        let mut verdict = Some(true);
        let mut reason = String::new();
        for (what, cmd, clause) in &checks {
            let permissive =
                policy::applicable(&sec, &def, *cmd, *clause).iter().any(|(p, t)| p.permissive && t.is_some());
            let sql = policy::combined_sql(&sec, &def, *cmd, *clause);
            let result = match &req.row {
                Some(row) => policy::evaluate_on_row(&state, &sec, &def, &sql, row).map_err(sqlerr)?,
                None => None,
            };
            steps.push(json!({
                "check": what,
                "command": command_name(*cmd),
                "predicate": policy::bound_text(&sec, &sql).map_err(sqlerr)?,
                "result": result,
            }));
            if !permissive {
                verdict = Some(false);
                reason = format!(
                    "no permissive {} policy applies to role {role_name}: denied by default",
                    command_name(*cmd)
                );
                break;
            }
            match (&req.row, result) {
                (Some(_), Some(true)) => {}
                (Some(_), _) => {
                    verdict = Some(false);
                    reason = format!("the row fails the {what} check");
                    break;
                }
                (None, _) => verdict = None,
            }
        }
        if reason.is_empty() {
            reason = match verdict {
                Some(true) => "the row passes every check".into(),
                _ => "depends on the row: give one to evaluate the policies".into(),
            };
        }
        (verdict, reason, steps)
    };
    Ok(json_response(
        200,
        json!({
            "table": def.qualified_name(),
            "command": command_name(command),
            "role": role_name,
            "row_security": def.row_security,
            "bypass": sec.bypass,
            "policies": policies,
            "checks": steps,
            "allowed": allowed,
            "reason": reason,
        }),
    ))
}
