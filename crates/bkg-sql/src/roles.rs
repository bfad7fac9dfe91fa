//! Roles, passwords and privileges: `CREATE/ALTER/DROP ROLE|USER`, `GRANT/REVOKE`, `SET ROLE`,
//! and the checks every statement passes, whichever front door it came through.
//!
//! Passwords are kept only as SCRAM-SHA-256 verifiers in PostgreSQL's format, so a verifier
//! taken from PostgreSQL (`pg_authid.rolpassword`, or `pg_dumpall` output) can be given as the
//! password and works unchanged. Checks run against the transaction's catalog; superusers pass
//! them all, owners hold every privilege on what they own.

use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bkg_kernel::{AclObject, BOOTSTRAP_SUPERUSER, Catalog, PUBLIC, RoleDef, privilege};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{self, Statement};

use super::ddl::{ident_name, split_name};
use super::session::{Output, Session};
use crate::SqlState;
use crate::error::{SqlError, SqlResult, codes};

/// PBKDF2 rounds of new verifiers (PostgreSQL's default).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// A parsed SCRAM-SHA-256 verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramVerifier {
    /// Derives a verifier for `password` with a fresh random salt.
    pub fn new(password: &str) -> ScramVerifier {
        let salt: [u8; 16] = rand::random();
        ScramVerifier::derive(password, &salt, SCRAM_ITERATIONS)
    }

    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> ScramVerifier {
        // SASLprep as PostgreSQL does; a password it rejects is used as raw bytes.
        let prepared = stringprep::saslprep(password).map(|p| p.into_owned()).unwrap_or_else(|_| password.to_string());
        let mut salted = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations.max(1)).expect("nonzero"),
            salt,
            prepared.as_bytes(),
            &mut salted,
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salted);
        let client_key = ring::hmac::sign(&key, b"Client Key");
        let stored_key = ring::digest::digest(&ring::digest::SHA256, client_key.as_ref());
        let server_key = ring::hmac::sign(&key, b"Server Key");
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: stored_key.as_ref().to_vec(),
            server_key: server_key.as_ref().to_vec(),
        }
    }

    /// True when `password` is the one this verifier was made from.
    pub fn matches(&self, password: &str) -> bool {
        let other = ScramVerifier::derive(password, &self.salt, self.iterations);
        other.stored_key.len() == self.stored_key.len()
            && other.stored_key.iter().zip(&self.stored_key).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 parts).
    pub fn parse(text: &str) -> Option<ScramVerifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (head, keys) = rest.split_once('$')?;
        let (iters, salt) = head.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let v = ScramVerifier {
            iterations: iters.parse().ok().filter(|i| *i > 0)?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok()?,
            server_key: B64.decode(server).ok()?,
        };
        (v.stored_key.len() == 32 && v.server_key.len() == 32 && !v.salt.is_empty()).then_some(v)
    }
}

impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }
}

/// PostgreSQL's role statements the parser reads differently: `CREATE USER` / `ALTER USER` are
/// `CREATE ROLE ... LOGIN` / `ALTER ROLE`, and `GRANT a, b TO c` / `REVOKE a FROM c` grant roles.
/// Returns the rewritten text and, per `CREATE ROLE` in it, whether it was a `CREATE USER`.
/// Works on tokens, so text inside literals and comments is never touched.
pub fn rewrite_role_statements(sql: &str) -> Option<(String, Vec<bool>)> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::Token;
    static HINT: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"(?i)\b(user|grant|revoke)\b").expect("valid regex"));
    if !HINT.is_match(sql) {
        return None;
    }
    let significant = crate::tokens::significant(sql)?;
    let kw = |i: usize| match significant.get(i).map(|t| &t.token) {
        Some(Token::Word(w)) => Some(w.keyword),
        _ => None,
    };
    // (byte offset, bytes to replace, replacement)
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut from_user = Vec::new();
    let mut at_start = true;
    for i in 0..significant.len() {
        if matches!(significant[i].token, Token::SemiColon) {
            at_start = true;
            continue;
        }
        if !at_start {
            continue;
        }
        at_start = false;
        match (kw(i), kw(i + 1)) {
            (Some(k @ (Keyword::CREATE | Keyword::ALTER)), Some(Keyword::USER | Keyword::ROLE)) => {
                let is_user = kw(i + 1) == Some(Keyword::USER);
                if k == Keyword::CREATE {
                    from_user.push(is_user);
                }
                if is_user {
                    edits.push((significant[i + 1].start, 4, "ROLE".into()));
                }
            }
            (Some(Keyword::GRANT | Keyword::REVOKE), _) => {
                // Role names up to TO/FROM, with no ON: a role grant.
                let mut j = i + 1;
                let mut names = Vec::new();
                loop {
                    match significant.get(j).map(|t| &t.token) {
                        Some(Token::Word(w)) if matches!(w.keyword, Keyword::TO | Keyword::FROM) => break,
                        Some(Token::Word(w))
                            if w.quote_style.is_some()
                                || !matches!(
                                    w.keyword,
                                    Keyword::ALL
                                        | Keyword::SELECT
                                        | Keyword::INSERT
                                        | Keyword::UPDATE
                                        | Keyword::DELETE
                                        | Keyword::TRUNCATE
                                        | Keyword::REFERENCES
                                        | Keyword::TRIGGER
                                        | Keyword::USAGE
                                        | Keyword::CREATE
                                        | Keyword::CONNECT
                                        | Keyword::TEMPORARY
                                        | Keyword::EXECUTE
                                        | Keyword::ON
                                        | Keyword::ROLE
                                ) =>
                        {
                            names.push(j);
                            j += 1;
                        }
                        _ => {
                            names.clear();
                            break;
                        }
                    }
                    if let Some(Token::Comma) = significant.get(j).map(|t| &t.token) {
                        j += 1;
                    }
                }
                for n in names {
                    edits.push((significant[n].start, 0, "ROLE ".into()));
                }
            }
            _ => {}
        }
    }
    if edits.is_empty() && !from_user.contains(&true) {
        return None;
    }
    let mut out = sql.to_string();
    for (at, len, with) in edits.into_iter().rev() {
        out.replace_range(at..at + len, &with);
    }
    Some((out, from_user))
}

fn denied(what: impl std::fmt::Display) -> SqlError {
    SqlError::new(codes::INSUFFICIENT_PRIVILEGE, format!("permission denied for {what}"))
}

fn relation_kind(cat: &Catalog, id: u64) -> (&'static str, String) {
    match (cat.table(id), cat.views.get(&id)) {
        (Some(t), _) => ("table", t.name.clone()),
        (None, Some(v)) => ("view", v.name.clone()),
        _ => ("relation", id.to_string()),
    }
}

fn relation_schema(cat: &Catalog, id: u64) -> Option<String> {
    cat.table(id).map(|t| t.schema.clone()).or_else(|| cat.views.get(&id).map(|v| v.schema.clone()))
}

/// The names of the privilege bits set in `bits`, for messages.
fn privilege_names(bits: u32) -> String {
    privilege::LETTERS
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(b, _)| privilege::name(*b))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Session {
    /// The catalog checks run against: the transaction's when one is open.
    pub(crate) fn acl_catalog(&self) -> std::sync::Arc<Catalog> {
        self.with_txn(|t| Ok(t.catalog().clone())).unwrap_or_else(|_| self.catalog_view())
    }

    /// True when the current role is a superuser.
    pub fn is_superuser(&self) -> bool {
        self.acl_catalog().is_superuser(self.role)
    }

    /// Fails with 42501 unless the current role holds every privilege in `privs` on the relation
    /// (and USAGE on its schema).
    pub fn require_relation(&self, id: u64, privs: u32) -> SqlResult<()> {
        let cat = self.acl_catalog();
        if privs & !privilege::SELECT != 0 {
            self.refuse_audit_internals(relation_schema(&cat, id).as_deref())?;
        }
        require_relation_in(&cat, self.role, id, privs)?;
        self.require_scope(&cat, id, privs)
    }

    /// Fails with 42501 when the principal's token scopes do not cover the relation's schema:
    /// `ns:<schema>:read` for reading, `ns:<schema>:write` for reading and writing, `admin`
    /// for everything. A token without scopes is limited by its role's privileges only.
    pub fn require_scope(&self, cat: &Catalog, id: u64, privs: u32) -> SqlResult<()> {
        require_scope_in(self.scopes().as_deref(), cat, id, privs)
    }

    /// Fails with 42501 unless the current role owns the relation or schema.
    pub fn require_owner(&self, object: AclObject) -> SqlResult<()> {
        require_owner_in(&self.acl_catalog(), self.role, object)
    }

    /// Once the audit log is on, its outbox schema belongs to the server: no role, superusers
    /// included, may write to or create in it over SQL (the server writes it through the
    /// kernel). Ownership is refused always ([`require_owner_in`]). Reading stays open to those
    /// with SELECT (superusers).
    fn refuse_audit_internals(&self, schema: Option<&str>) -> SqlResult<()> {
        if self.engine.auditor().is_some() {
            refuse_audit_internals_in(schema)?;
        }
        Ok(())
    }

    /// Fails with 42501 unless the current role may create objects in `schema`.
    pub fn require_create_in(&self, schema: &str) -> SqlResult<()> {
        self.refuse_audit_internals(Some(schema))?;
        let cat = self.acl_catalog();
        if !cat.schemas.contains_key(schema) {
            return Err(SqlError::new(SqlState::InvalidSchemaName, format!("schema \"{schema}\" does not exist")));
        }
        if cat.privileges(self.role, AclObject::Schema(schema))? & privilege::CREATE == 0 {
            return Err(denied(format!("schema {schema}")));
        }
        Ok(())
    }

    /// Checks SELECT on every relation a planned query reads. Views are checked themselves; what
    /// they read is not re-checked (they run with the privileges they were created with).
    pub fn check_plan_privileges(&self, plan: &LogicalPlan) -> SqlResult<()> {
        let cat = self.acl_catalog();
        if cat.is_superuser(self.role) {
            return Ok(());
        }
        let mut result = Ok(());
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source)
            {
                let id = if let Some(t) = provider.downcast_ref::<super::provider::MvccTable>() {
                    // The DML view of a table: the statement checked its own privileges.
                    (!t.is_dml_view()).then_some(t.def.id)
                } else {
                    provider.downcast_ref::<super::provider::BkgView>().map(|v| v.id)
                };
                if let Some(id) = id
                    && let Err(e) = require_relation_in(&cat, self.role, id, privilege::SELECT)
                        .and_then(|_| self.require_scope(&cat, id, privilege::SELECT))
                {
                    result = Err(e);
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        result
    }

    /// `SET ROLE name` / `SET ROLE NONE` / `RESET ROLE`.
    pub fn set_role(&mut self, name: Option<&str>) -> SqlResult<()> {
        let cat = self.catalog_view();
        // A token fixes the principal: only the service role may switch.
        if self.is_jwt_login() && name.is_some() && !self.may_impersonate() {
            return Err(SqlError::new(
                codes::INSUFFICIENT_PRIVILEGE,
                "permission denied to set role: the session's role comes from its token",
            ));
        }
        let target = match name {
            None => self.session_role,
            Some(n) => {
                let role = cat
                    .find_role(n)
                    .ok_or_else(|| SqlError::new(codes::UNDEFINED_OBJECT, format!("role \"{n}\" does not exist")))?;
                // The service role may act as any role that is not a superuser (to run as a
                // user it set with request.jwt.claims).
                let impersonates = self.may_impersonate() && !role.superuser;
                if !impersonates
                    && !cat.is_superuser(self.session_role)
                    && !cat.member_closure(self.session_role).contains(&role.oid)
                {
                    return Err(SqlError::new(
                        codes::INSUFFICIENT_PRIVILEGE,
                        format!("permission denied to set role \"{n}\""),
                    ));
                }
                role.oid
            }
        };
        self.role = target;
        *self.info.user.write() = cat.role(target).map(|r| r.name.clone()).unwrap_or_default();
        self.vars.insert("role".into(), name.unwrap_or("none").to_string());
        Ok(())
    }
}

/// Fails with 42501 unless `role` owns the relation or schema (or is a superuser).
/// [`Session::require_scope`] for any principal's scopes (`None`: the token names none).
pub(crate) fn require_scope_in(
    scopes: Option<&crate::policy::Scopes>,
    cat: &Catalog,
    id: u64,
    privs: u32,
) -> SqlResult<()> {
    let Some(scopes) = scopes else { return Ok(()) };
    let Some(schema) = relation_schema(cat, id) else { return Ok(()) };
    let write = privs & !(privilege::SELECT) != 0;
    if scopes.allows(&schema, write) {
        return Ok(());
    }
    let (kind, name) = relation_kind(cat, id);
    Err(SqlError::new(
        codes::INSUFFICIENT_PRIVILEGE,
        format!("the token's scopes do not allow {} {kind} {name}", if write { "writing" } else { "reading" }),
    )
    .with_hint(format!("It needs the scope ns:{schema}:{} or admin.", if write { "write" } else { "read" })))
}

/// The audit outbox's schema and what is in it are nobody's to alter, drop, grant on or write.
fn refuse_audit_internals_in(schema: Option<&str>) -> SqlResult<()> {
    if schema == Some(crate::audit::OUTBOX_SCHEMA) {
        return Err(SqlError::new(
            codes::INSUFFICIENT_PRIVILEGE,
            format!(
                "schema {} belongs to the audit log: it cannot be changed over SQL, not even by a superuser",
                crate::audit::OUTBOX_SCHEMA
            ),
        ));
    }
    Ok(())
}

pub fn require_owner_in(cat: &Catalog, role: u64, object: AclObject) -> SqlResult<()> {
    match object {
        AclObject::Relation(id) => refuse_audit_internals_in(relation_schema(cat, id).as_deref())?,
        AclObject::Schema(s) => refuse_audit_internals_in(Some(s))?,
    }
    if cat.owns(role, object)? {
        return Ok(());
    }
    let (kind, name) = match object {
        AclObject::Relation(id) => relation_kind(cat, id),
        AclObject::Schema(s) => ("schema", s.to_string()),
    };
    Err(SqlError::new(codes::INSUFFICIENT_PRIVILEGE, format!("must be owner of {kind} {name}")))
}

pub(crate) fn require_relation_in(cat: &Catalog, role: u64, id: u64, privs: u32) -> SqlResult<()> {
    if cat.is_superuser(role) {
        return Ok(());
    }
    if let Some(schema) = relation_schema(cat, id)
        && cat.privileges(role, AclObject::Schema(&schema))? & privilege::USAGE == 0
    {
        return Err(denied(format!("schema {schema}")));
    }
    let held = cat.privileges(role, AclObject::Relation(id))?;
    if held & privs != privs {
        let (kind, name) = relation_kind(cat, id);
        return Err(
            denied(format!("{kind} {name}")).with_detail(format!("{} is required.", privilege_names(privs & !held)))
        );
    }
    Ok(())
}

/// Runs a role or privilege statement inside the session's transaction.
pub async fn execute(session: &mut Session, stmt: Statement) -> SqlResult<Output> {
    match stmt {
        Statement::CreateRole(cr) => create_role(session, cr),
        Statement::AlterRole { name, operation } => alter_role(session, &ident_name(&name), operation),
        Statement::Grant(g) => grant_or_revoke(session, g.privileges, g.objects, &g.grantees, true),
        Statement::Revoke(r) => grant_or_revoke(session, r.privileges, r.objects, &r.grantees, false),
        other => Err(SqlError::unsupported(format!("statement {other}"))),
    }
}

/// Superusers may manage every role; CREATEROLE roles every role that is not a superuser.
fn require_role_admin(session: &Session, cat: &Catalog, target_superuser: bool) -> SqlResult<()> {
    let me = cat.role(session.role);
    let ok = match me {
        Some(r) if r.superuser => true,
        Some(r) if r.create_role => !target_superuser,
        _ => false,
    };
    if ok {
        Ok(())
    } else if target_superuser {
        Err(SqlError::new(codes::INSUFFICIENT_PRIVILEGE, "must be superuser to create or alter superusers"))
    } else {
        Err(denied("to create or alter roles").with_hint("Only superusers and roles with CREATEROLE may do this."))
    }
}

fn password_text(p: &ast::Password) -> SqlResult<Option<String>> {
    match p {
        ast::Password::NullPassword => Ok(None),
        ast::Password::Password(ast::Expr::Value(v)) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::EscapedStringLiteral(s) => {
                if s.starts_with("SCRAM-SHA-256$") {
                    return ScramVerifier::parse(s).map(|_| Some(s.clone())).ok_or_else(|| {
                        SqlError::new(codes::INVALID_PARAMETER_VALUE, "malformed SCRAM-SHA-256 verifier")
                    });
                }
                if s.len() == 35 && s.starts_with("md5") {
                    return Err(SqlError::unsupported("MD5 password hashes (give the password or a SCRAM verifier)"));
                }
                if s.is_empty() {
                    // PostgreSQL: an empty password is the same as no password.
                    return Ok(None);
                }
                Ok(Some(ScramVerifier::new(s).to_string()))
            }
            ast::Value::Null => Ok(None),
            other => Err(SqlError::syntax(format!("password must be a string literal, not {other}"))),
        },
        ast::Password::Password(other) => {
            Err(SqlError::syntax(format!("password must be a string literal, not {other}")))
        }
    }
}

fn connection_limit(e: &ast::Expr) -> SqlResult<i32> {
    let text = e.to_string();
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|n| *n >= -1)
        .ok_or_else(|| SqlError::new(codes::INVALID_PARAMETER_VALUE, format!("invalid connection limit: {text}")))
}

/// `VALID UNTIL 'timestamp'` (or `'infinity'`): microseconds since 1970, or `None` for ever.
fn valid_until(e: &ast::Expr) -> SqlResult<Option<i64>> {
    let text = match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    };
    let t = text.trim();
    if t.eq_ignore_ascii_case("infinity") {
        return Ok(None);
    }
    let invalid = || {
        SqlError::new(
            SqlState::InvalidDatetimeFormat,
            format!("invalid input syntax for type timestamp with time zone: \"{text}\""),
        )
    };
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(Some(d.timestamp_micros()));
    }
    for f in ["%Y-%m-%d %H:%M:%S%#z", "%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S %#z"] {
        if let Ok(d) = chrono::DateTime::parse_from_str(t, f) {
            return Ok(Some(d.timestamp_micros()));
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, f) {
            return Ok(Some(d.and_utc().timestamp_micros()));
        }
    }
    let d = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| invalid())?;
    Ok(Some(d.and_hms_opt(0, 0, 0).ok_or_else(invalid)?.and_utc().timestamp_micros()))
}

fn create_role(session: &mut Session, cr: ast::CreateRole) -> SqlResult<Output> {
    let until = cr.valid_until.as_ref().map(valid_until).transpose()?.flatten();
    if !cr.role.is_empty() || !cr.user.is_empty() || !cr.admin.is_empty() || !cr.in_group.is_empty() {
        return Err(SqlError::unsupported("ROLE/USER/ADMIN/IN GROUP clauses of CREATE ROLE (use GRANT)"));
    }
    let cat = session.acl_catalog();
    require_role_admin(session, &cat, cr.superuser == Some(true))?;
    let password = cr.password.as_ref().map(password_text).transpose()?.flatten();
    let limit = cr.connection_limit.as_ref().map(connection_limit).transpose()?.unwrap_or(-1);
    let in_role: Vec<String> = cr.in_role.iter().map(ident_name).collect();
    for name in &cr.names {
        let (_, role_name) = split_name(session, name)?;
        let mut role = RoleDef::new(&role_name);
        role.superuser = cr.superuser.unwrap_or(false);
        role.login = cr.login.unwrap_or(false);
        role.inherit = cr.inherit.unwrap_or(true);
        role.create_db = cr.create_db.unwrap_or(false);
        role.create_role = cr.create_role.unwrap_or(false);
        role.bypass_rls = cr.bypassrls.unwrap_or(false);
        role.connection_limit = limit;
        role.password = password.clone();
        role.valid_until = until;
        let if_not_exists = cr.if_not_exists;
        session.with_txn(|t| {
            let cat = t.catalog_mut();
            if if_not_exists && cat.find_role(&role_name).is_some() {
                return Ok(());
            }
            cat.create_role(role)?;
            for r in &in_role {
                cat.grant_role(r, &role_name)?;
            }
            Ok(())
        })?;
    }
    Ok(Output::command("CREATE ROLE"))
}

fn alter_role(session: &mut Session, name: &str, op: ast::AlterRoleOperation) -> SqlResult<Output> {
    let cat = session.acl_catalog();
    let target = cat
        .find_role(name)
        .ok_or_else(|| SqlError::new(codes::UNDEFINED_OBJECT, format!("role \"{name}\" does not exist")))?
        .clone();
    match op {
        ast::AlterRoleOperation::RenameRole { role_name } => {
            require_role_admin(session, &cat, target.superuser)?;
            if target.oid == session.session_role {
                return Err(SqlError::new(codes::FEATURE_NOT_SUPPORTED, "session user cannot be renamed"));
            }
            let to = ident_name(&role_name);
            session.with_txn(|t| Ok(t.catalog_mut().rename_role(name, &to)?))?;
        }
        ast::AlterRoleOperation::WithOptions { options } => {
            // Anyone may change their own password; everything else needs role administration.
            let only_own_password =
                target.oid == session.role && options.iter().all(|o| matches!(o, ast::RoleOption::Password(_)));
            if !only_own_password {
                let makes_superuser = options.iter().any(|o| matches!(o, ast::RoleOption::SuperUser(_)));
                require_role_admin(session, &cat, target.superuser || makes_superuser)?;
            }
            let mut changes: Vec<Box<dyn FnOnce(&mut RoleDef)>> = Vec::new();
            for o in options {
                match o {
                    ast::RoleOption::BypassRLS(b) => changes.push(Box::new(move |r| r.bypass_rls = b)),
                    ast::RoleOption::CreateDB(b) => changes.push(Box::new(move |r| r.create_db = b)),
                    ast::RoleOption::CreateRole(b) => changes.push(Box::new(move |r| r.create_role = b)),
                    ast::RoleOption::Inherit(b) => changes.push(Box::new(move |r| r.inherit = b)),
                    ast::RoleOption::Login(b) => changes.push(Box::new(move |r| r.login = b)),
                    ast::RoleOption::SuperUser(b) => {
                        if !b && target.oid == BOOTSTRAP_SUPERUSER {
                            return Err(SqlError::new(
                                codes::FEATURE_NOT_SUPPORTED,
                                "the bootstrap superuser must stay a superuser",
                            ));
                        }
                        changes.push(Box::new(move |r| r.superuser = b))
                    }
                    ast::RoleOption::Password(p) => {
                        let v = password_text(&p)?;
                        changes.push(Box::new(move |r| r.password = v))
                    }
                    ast::RoleOption::ConnectionLimit(e) => {
                        let n = connection_limit(&e)?;
                        changes.push(Box::new(move |r| r.connection_limit = n))
                    }
                    ast::RoleOption::Replication(_) => {}
                    ast::RoleOption::ValidUntil(e) => {
                        let until = valid_until(&e)?;
                        changes.push(Box::new(move |r| r.valid_until = until))
                    }
                }
            }
            session.with_txn(|t| {
                let role = t.catalog_mut().role_mut(name)?;
                for c in changes {
                    c(role);
                }
                Ok(())
            })?;
        }
        _ => return Err(SqlError::unsupported("this form of ALTER ROLE")),
    }
    Ok(Output::command("ALTER ROLE"))
}

/// `DROP ROLE|USER [IF EXISTS] name, ...`.
pub fn drop_roles(session: &mut Session, names: &[ast::ObjectName], if_exists: bool) -> SqlResult<Output> {
    let cat = session.acl_catalog();
    for n in names {
        let (_, name) = split_name(session, n)?;
        if let Some(r) = cat.find_role(&name) {
            require_role_admin(session, &cat, r.superuser)?;
            if r.oid == session.session_role || r.oid == session.role {
                return Err(SqlError::new(SqlState::ObjectInUse, "current user cannot be dropped"));
            }
        }
        session.with_txn(|t| Ok(t.catalog_mut().drop_role(&name, if_exists)?))?;
    }
    Ok(Output::command("DROP ROLE"))
}

fn grantee_oid(cat: &Catalog, g: &ast::Grantee) -> SqlResult<u64> {
    if g.grantee_type == ast::GranteesType::Public {
        return Ok(PUBLIC);
    }
    let name = match &g.name {
        Some(ast::GranteeName::ObjectName(n)) => match n.0.last().and_then(|p| p.as_ident()) {
            Some(i) => ident_name(i),
            None => n.to_string(),
        },
        Some(other) => return Err(SqlError::unsupported(format!("grantee {other}"))),
        None => return Err(SqlError::syntax("grantee name expected")),
    };
    if name == "public" {
        return Ok(PUBLIC);
    }
    cat.find_role(&name)
        .map(|r| r.oid)
        .ok_or_else(|| SqlError::new(codes::UNDEFINED_OBJECT, format!("role \"{name}\" does not exist")))
}

/// The privilege bits of a GRANT/REVOKE list, refusing ones that do not apply to `schema_target`.
fn privilege_bits(p: &ast::Privileges, schema_target: bool) -> SqlResult<u32> {
    let all = if schema_target { privilege::SCHEMA_ALL } else { privilege::TABLE_ALL };
    let actions = match p {
        ast::Privileges::All { .. } => return Ok(all),
        ast::Privileges::Actions(a) => a,
    };
    let mut bits = 0;
    for a in actions {
        let bit = match a {
            ast::Action::Select { columns: None } => privilege::SELECT,
            ast::Action::Insert { columns: None } => privilege::INSERT,
            ast::Action::Update { columns: None } => privilege::UPDATE,
            ast::Action::Delete => privilege::DELETE,
            ast::Action::Truncate => privilege::TRUNCATE,
            ast::Action::References { columns: None } => privilege::REFERENCES,
            ast::Action::Trigger => privilege::TRIGGER,
            ast::Action::Usage => privilege::USAGE,
            ast::Action::Create { obj_type: None } => privilege::CREATE,
            ast::Action::Select { .. }
            | ast::Action::Insert { .. }
            | ast::Action::Update { .. }
            | ast::Action::References { .. } => {
                return Err(SqlError::unsupported("column privileges"));
            }
            other => return Err(SqlError::unsupported(format!("privilege {other}"))),
        };
        if bit & all == 0 {
            let kind = if schema_target { "schema" } else { "relation" };
            return Err(SqlError::new(
                SqlState::InvalidGrantOperation,
                format!("invalid privilege type {} for {kind}", privilege::name(bit)),
            ));
        }
        bits |= bit;
    }
    Ok(bits)
}

fn grant_or_revoke(
    session: &mut Session,
    privileges: ast::Privileges,
    objects: Option<ast::GrantObjects>,
    grantees: &[ast::Grantee],
    grant: bool,
) -> SqlResult<Output> {
    let tag = if grant { "GRANT" } else { "REVOKE" };
    let cat = session.acl_catalog();
    let members: Vec<u64> = grantees.iter().map(|g| grantee_oid(&cat, g)).collect::<SqlResult<_>>()?;
    let Some(objects) = objects else {
        // GRANT role TO member.
        let ast::Privileges::Actions(actions) = &privileges else {
            return Err(SqlError::syntax("GRANT ALL needs ON <objects>"));
        };
        for a in actions {
            let ast::Action::Role { role } = a else {
                return Err(SqlError::syntax(format!("{a} needs ON <objects>")));
            };
            let (_, role_name) = split_name(session, role)?;
            let role_def = cat.find_role(&role_name).ok_or_else(|| {
                SqlError::new(codes::UNDEFINED_OBJECT, format!("role \"{role_name}\" does not exist"))
            })?;
            require_role_admin(session, &cat, role_def.superuser)?;
            for m in &members {
                let member = cat.role(*m).map(|r| r.name.clone()).ok_or_else(|| {
                    SqlError::new(codes::INVALID_PARAMETER_VALUE, "PUBLIC cannot be a member of a role")
                })?;
                session.with_txn(|t| {
                    let c = t.catalog_mut();
                    if grant {
                        c.grant_role(&role_name, &member)?;
                    } else {
                        c.revoke_role(&role_name, &member)?;
                    }
                    Ok(())
                })?;
            }
        }
        return Ok(Output::command(tag));
    };
    // Resolve the objects first, then check ownership, then change the access lists.
    let mut targets: Vec<(Option<u64>, Option<String>)> = Vec::new();
    let schema_target = matches!(objects, ast::GrantObjects::Schemas(_));
    match &objects {
        ast::GrantObjects::Tables(names) | ast::GrantObjects::Views(names) => {
            for n in names {
                let (schema, name) = split_name(session, n)?;
                let id = cat
                    .find_table(&schema, &name)
                    .map(|t| t.id)
                    .or_else(|| cat.find_view(&schema, &name).map(|v| v.id))
                    .ok_or_else(|| {
                        SqlError::new(codes::UNDEFINED_TABLE, format!("relation \"{name}\" does not exist"))
                    })?;
                targets.push((Some(id), None));
            }
        }
        ast::GrantObjects::AllTablesInSchema { schemas } => {
            for s in schemas {
                let schema = s.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_default();
                if !cat.schemas.contains_key(&schema) {
                    return Err(SqlError::new(
                        SqlState::InvalidSchemaName,
                        format!("schema \"{schema}\" does not exist"),
                    ));
                }
                targets.extend(cat.tables.values().filter(|t| t.schema == schema).map(|t| (Some(t.id), None)));
                targets.extend(cat.views.values().filter(|v| v.schema == schema).map(|v| (Some(v.id), None)));
            }
        }
        ast::GrantObjects::Schemas(names) => {
            for s in names {
                let schema = s.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_default();
                if !cat.schemas.contains_key(&schema) {
                    return Err(SqlError::new(
                        SqlState::InvalidSchemaName,
                        format!("schema \"{schema}\" does not exist"),
                    ));
                }
                targets.push((None, Some(schema)));
            }
        }
        other => return Err(SqlError::unsupported(format!("{tag} on {other}"))),
    }
    let bits = privilege_bits(&privileges, schema_target)?;
    let grantor = session.role;
    for (id, schema) in &targets {
        let object = match (id, schema) {
            (Some(id), _) => AclObject::Relation(*id),
            (None, Some(s)) => AclObject::Schema(s),
            _ => continue,
        };
        session.require_owner(object)?;
        session.with_txn(|t| {
            let c = t.catalog_mut();
            for m in &members {
                if grant {
                    c.grant(object, *m, bits, grantor)?;
                } else {
                    c.revoke(object, *m, bits)?;
                }
            }
            Ok(())
        })?;
    }
    Ok(Output::command(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_statements_are_rewritten_on_tokens() {
        let (sql, users) = rewrite_role_statements("create user a password 'x'; CREATE ROLE b").unwrap();
        assert_eq!(sql, "create ROLE a password 'x'; CREATE ROLE b");
        assert_eq!(users, vec![true, false]);
        let (sql, _) = rewrite_role_statements("ALTER USER \"A\" PASSWORD 'create user'").unwrap();
        assert_eq!(sql, "ALTER ROLE \"A\" PASSWORD 'create user'");
        let (sql, _) = rewrite_role_statements("GRANT admin, \"Ops\" TO alice").unwrap();
        assert_eq!(sql, "GRANT ROLE admin, ROLE \"Ops\" TO alice");
        assert_eq!(rewrite_role_statements("REVOKE admin FROM alice").unwrap().0, "REVOKE ROLE admin FROM alice");
        assert!(rewrite_role_statements("GRANT SELECT ON t TO alice").is_none());
        assert!(rewrite_role_statements("select 'grant a to b', user").is_none());
        assert!(rewrite_role_statements("insert into t values ('x; create user y')").is_none());
    }

    #[test]
    fn verifier_matches_postgresql() {
        // Made by PostgreSQL 15.18 (`CREATE ROLE r PASSWORD 'pencil'`, then pg_authid.rolpassword).
        let pg = "SCRAM-SHA-256$4096:j1e6vkili/3yDbImd6VquQ==$miYHJ1bw2hCrNv/UN4SxcR9nU8PktQ/VXjhAiQdE9/8=:\
                  VgEeEI2c8zVFlcTddIQuiq+0vX+x1yitfJELVj3aXho=";
        let parsed = ScramVerifier::parse(pg).expect("parses");
        assert!(parsed.matches("pencil"));
        assert!(!parsed.matches("pencil2"));
        // Deriving with PostgreSQL's salt gives PostgreSQL's keys, and the text round-trips.
        let ours = ScramVerifier::derive("pencil", &parsed.salt, parsed.iterations);
        assert_eq!(ours, parsed);
        assert_eq!(ours.to_string(), pg);
        assert!(ScramVerifier::parse("SCRAM-SHA-256$0:AA==$AA==:AA==").is_none());
        assert!(ScramVerifier::parse("md5abc").is_none());
        // Fresh verifiers use fresh salts.
        assert_ne!(ScramVerifier::new("x").salt, ScramVerifier::new("x").salt);
    }
}
