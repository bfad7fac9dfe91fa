//! Run-time settings: SET, SHOW, RESET, the search path, `request.jwt.claims` and durations.

use super::*;

impl Session {
    pub(super) fn set(&mut self, set: ast::Set) -> SqlResult<Output> {
        match set {
            ast::Set::SingleAssignment { variable, values, scope, .. } => {
                let name = setting_name(&variable.to_string());
                let value = values.iter().map(expr_setting_text).collect::<Vec<_>>().join(", ");
                let local = matches!(scope, Some(ast::ContextModifier::Local));
                if name == "role" {
                    // SET role = 'x' is SET ROLE x.
                    let v = value.trim().to_string();
                    self.scoped(local, "role", |s| {
                        s.set_role(Some(v.as_str()).filter(|n| !n.eq_ignore_ascii_case("none")))
                    })?;
                } else {
                    self.scoped(local, &name, |s| s.set_var(&name, value))?;
                }
            }
            ast::Set::SetTimeZone { value, local } => {
                self.scoped(local, "timezone", |s| s.set_var("timezone", expr_setting_text(&value)))?
            }
            ast::Set::SetNames { charset_name, .. } => self.set_var("client_encoding", charset_name.value)?,
            ast::Set::SetRole { role_name, context_modifier } => {
                let local = matches!(context_modifier, Some(ast::ContextModifier::Local));
                let name = role_name.as_ref().map(crate::ddl::ident_name);
                self.scoped(local, "role", |s| s.set_role(name.as_deref().filter(|n| *n != "none")))?;
            }
            ast::Set::SetTransaction { modes, session, .. } => {
                for m in modes {
                    if let ast::TransactionMode::IsolationLevel(l) = m {
                        let text = match l {
                            ast::TransactionIsolationLevel::ReadCommitted
                            | ast::TransactionIsolationLevel::ReadUncommitted => "read committed",
                            ast::TransactionIsolationLevel::Serializable => {
                                return Err(SqlError::unsupported("SERIALIZABLE isolation"));
                            }
                            _ => "repeatable read",
                        };
                        if session {
                            self.set_var("default_transaction_isolation", text.into())?;
                        } else if let Some(t) = self.txn.lock().as_mut() {
                            t.set_isolation(if text == "read committed" {
                                IsolationLevel::ReadCommitted
                            } else {
                                IsolationLevel::RepeatableRead
                            });
                        }
                    }
                }
            }
            other => return Err(SqlError::unsupported(format!("SET form \"{other}\""))),
        }
        Ok(Output::command("SET"))
    }

    /// Runs a change of setting `name`: `SET LOCAL` (`local`) lasts until the transaction
    /// block ends, and has no effect outside one (PostgreSQL only warns); a plain SET inside a
    /// block lasts beyond it unless the block rolls back.
    fn scoped(&mut self, local: bool, name: &str, f: impl FnOnce(&mut Self) -> SqlResult<()>) -> SqlResult<()> {
        if local && !self.explicit {
            return Ok(());
        }
        let before = self.setting_value(name);
        f(self)?;
        if local {
            self.local_settings.entry(name.to_string()).or_insert(before);
        } else {
            self.local_settings.remove(name);
        }
        Ok(())
    }

    /// The value of setting `name` as [`restore_setting`](Self::restore_setting) takes it back.
    fn setting_value(&self, name: &str) -> Option<String> {
        if name == "request.jwt.claims" {
            return self.claims().map(|c| c.to_string());
        }
        self.vars.get(name).cloned()
    }

    /// Puts setting `name` back to `value` (taken by [`setting_value`](Self::setting_value)),
    /// without the checks of a SET: it held that value before.
    fn restore_setting(&mut self, name: &str, value: Option<String>) {
        match name {
            "request.jwt.claims" => self.set_claims(value.and_then(|v| serde_json::from_str(&v).ok())),
            "role" => {
                let cat = self.catalog_view();
                let role = value
                    .as_deref()
                    .filter(|n| *n != "none")
                    .and_then(|n| cat.find_role(n).map(|r| r.oid))
                    .unwrap_or(self.session_role);
                self.role = role;
                *self.info.user.write() = cat.role(role).map(|r| r.name.clone()).unwrap_or_else(|| self.user.clone());
                self.vars.insert("role".into(), value.unwrap_or_else(|| "none".into()));
            }
            _ => {
                match value {
                    Some(v) => self.vars.insert(name.to_string(), v),
                    None => self.vars.remove(name),
                };
                if name == "search_path" {
                    self.apply_search_path();
                }
            }
        }
        self.publish_settings();
    }

    /// Everything a transaction block or a savepoint may have to return to.
    pub(super) fn save_settings(&self) -> SavedSettings {
        SavedSettings {
            vars: self.vars.clone(),
            claims: self.claims(),
            role: self.role,
            local: self.local_settings.clone(),
        }
    }

    /// Returns to settings saved by [`save_settings`](Self::save_settings) (ROLLBACK, ROLLBACK TO).
    pub(super) fn restore_settings(&mut self, saved: SavedSettings) {
        let claims_changed = self.claims() != saved.claims;
        self.vars = saved.vars;
        self.local_settings = saved.local;
        if claims_changed {
            self.set_claims(saved.claims.map(|c| (*c).clone()));
        }
        let cat = self.catalog_view();
        self.role = saved.role;
        *self.info.user.write() = cat.role(saved.role).map(|r| r.name.clone()).unwrap_or_else(|| self.user.clone());
        self.apply_search_path();
        self.publish_settings();
    }

    /// The block ended: SET LOCAL values go back to their session values (after a COMMIT), or
    /// every setting to what it was at BEGIN (after a ROLLBACK).
    pub(super) fn end_block_settings(&mut self, committed: bool) {
        let began = self.block_settings.take();
        match began {
            Some(saved) if !committed => self.restore_settings(saved),
            _ => {
                for (name, value) in std::mem::take(&mut self.local_settings) {
                    self.restore_setting(&name, value);
                }
            }
        }
        self.local_settings.clear();
    }

    /// Applies the `set_config()` calls of the last statement, which checked them already (see
    /// [`crate::pg_catalog::settings_functions`]); a failed statement's were dropped.
    pub(super) fn apply_pending_settings(&mut self) {
        if !self.info.has_pending_settings.swap(false, std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let pending = std::mem::take(&mut *self.info.pending_settings.lock());
        for (name, value, local) in pending {
            let key = name.clone();
            if let Err(e) = self.scoped(local, &key, |s| s.set_var(&name, value)) {
                tracing::debug!(setting = %key, error = %e.message, "set_config() not applied");
            }
        }
    }

    /// Drops the `set_config()` calls of a statement that failed.
    pub(super) fn drop_pending_settings(&mut self) {
        if self.info.has_pending_settings.swap(false, std::sync::atomic::Ordering::Acquire) {
            self.info.pending_settings.lock().clear();
        }
    }

    /// Makes the settings visible to `current_setting()` (which runs inside a query).
    pub(super) fn publish_settings(&self) {
        *self.info.settings.write() = self.vars.clone();
    }

    /// Sets run-time setting `name` (lower case) for the session, checking its value: a
    /// setting PostgreSQL 15 does not have is refused (42704) unless its name has a dot (a
    /// custom setting, kept as text, as `set_config('app.tenant', …)` uses).
    pub fn set_var(&mut self, name: &str, value: String) -> SqlResult<()> {
        let name = match name {
            "time zone" => "timezone",
            n => n,
        };
        if name.starts_with("request.jwt") {
            return self.set_claims_setting(name, Some(&value));
        }
        check_setting(name, &value)?;
        if name == "transaction_isolation"
            && let Some(t) = self.txn.lock().as_mut()
        {
            t.set_isolation(if value.eq_ignore_ascii_case("repeatable read") {
                IsolationLevel::RepeatableRead
            } else {
                IsolationLevel::ReadCommitted
            });
            return Ok(());
        }
        self.vars.insert(name.to_string(), value);
        if name == "search_path" {
            self.apply_search_path();
        }
        self.publish_settings();
        Ok(())
    }

    /// True when the logged-in role may act for another principal: superusers and
    /// `service_role` (`SET ROLE`, `SET request.jwt.claims`).
    pub fn may_impersonate(&self) -> bool {
        // A token limited by scopes cannot shed them by acting for someone else.
        if self.jwt_login && self.scopes.as_ref().is_some_and(|s| !s.admin) {
            return false;
        }
        let cat = self.catalog_view();
        cat.is_superuser(self.session_role) || cat.role(self.session_role).is_some_and(|r| r.name == "service_role")
    }

    /// `SET request.jwt.claims = '{json}'` (or RESET, `value` None): the principal policies see,
    /// for superusers and the service role only.
    pub(super) fn set_claims_setting(&mut self, name: &str, value: Option<&str>) -> SqlResult<()> {
        if name != "request.jwt.claims" {
            return Err(SqlError::new(
                codes::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            )
            .with_hint("Set the principal with request.jwt.claims, a JSON object."));
        }
        if !self.may_impersonate() {
            return Err(SqlError::new(
                codes::INSUFFICIENT_PRIVILEGE,
                format!("permission denied to set parameter \"{name}\""),
            ));
        }
        match value {
            None => self.set_claims(None),
            Some(v) => {
                let claims: serde_json::Value = serde_json::from_str(v).map_err(|e| {
                    SqlError::new(
                        codes::INVALID_PARAMETER_VALUE,
                        format!("invalid value for parameter \"{name}\": {e}"),
                    )
                })?;
                if !claims.is_object() {
                    return Err(SqlError::new(
                        codes::INVALID_PARAMETER_VALUE,
                        format!("invalid value for parameter \"{name}\": not a JSON object"),
                    ));
                }
                self.set_claims(Some(claims));
            }
        }
        Ok(())
    }

    pub(super) fn apply_search_path(&mut self) {
        let path = self.vars.get("search_path").cloned().unwrap_or_default();
        let catalog = self.view.get();
        let first = path
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .find(|s| catalog.schemas.contains_key(s))
            .unwrap_or_else(|| "public".into());
        *self.info.schema.write() = first.clone();
        self.state.config_mut().options_mut().catalog.default_schema = first;
    }

    /// A DataFusion state for compiling expressions (no transaction, nothing to scan).
    pub(crate) fn planning_state(&self) -> datafusion::execution::SessionState {
        self.state.clone()
    }

    /// The catalog the session plans against now.
    pub fn catalog_view(&self) -> Arc<bkg_kernel::Catalog> {
        self.view.get()
    }

    /// The schema unqualified names resolve to.
    pub fn current_schema(&self) -> String {
        self.state.config().options().catalog.default_schema.clone()
    }

    pub(super) fn show(&self, variable: &[ast::Ident]) -> SqlResult<Output> {
        let words: Vec<String> = variable.iter().map(|i| i.value.to_lowercase()).collect();
        let name = words.join(" ");
        let key = match name.as_str() {
            "time zone" => "timezone".to_string(),
            "transaction isolation level" => "transaction_isolation".to_string(),
            "session authorization" => "session_authorization".to_string(),
            // SHOW takes one name; its parts were split at the dots (`SHOW app.tenant`).
            _ => words.join("."),
        };
        if key == "session_authorization" {
            return self.show_value(&key, self.user.clone());
        }
        if key == "all" {
            let schema = Arc::new(Schema::new(vec![
                Field::new("name", ArrowType::Utf8, false),
                Field::new("setting", ArrowType::Utf8, false),
            ]));
            let names: Vec<&str> = self.vars.keys().map(|s| s.as_str()).collect();
            let vals: Vec<&str> = self.vars.values().map(|s| s.as_str()).collect();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(names)), Arc::new(StringArray::from(vals))],
            )?;
            return Ok(Output::Rows { schema, batches: vec![batch], tag: "SHOW".into() });
        }
        let value = if key == "transaction_isolation" {
            match self.txn.lock().as_ref().map(|t| t.isolation()) {
                Some(IsolationLevel::ReadCommitted) => "read committed".to_string(),
                Some(IsolationLevel::RepeatableRead) => "repeatable read".to_string(),
                None => self.vars.get("default_transaction_isolation").cloned().unwrap_or_default(),
            }
        } else {
            let v = match self.vars.get(&key).cloned() {
                Some(v) => v,
                None => super::known_settings::default_value(&key).map(str::to_string).ok_or_else(|| {
                    SqlError::new(codes::UNDEFINED_OBJECT, format!("unrecognized configuration parameter \"{key}\""))
                })?,
            };
            match key.as_str() {
                "statement_timeout"
                | "lock_timeout"
                | "idle_in_transaction_session_timeout"
                | "idle_session_timeout" => parse_duration_ms(&v).map(show_duration_ms).unwrap_or(v),
                _ => v,
            }
        };
        self.show_value(&key, value)
    }

    fn show_value(&self, key: &str, value: String) -> SqlResult<Output> {
        let schema = Arc::new(Schema::new(vec![Field::new(key, ArrowType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec![value]))])?;
        Ok(Output::Rows { schema, batches: vec![batch], tag: "SHOW".into() })
    }

    /// `current_setting(name [, missing_ok])`, as the session sees it now.
    pub fn current_setting(&self, name: &str) -> Option<String> {
        current_setting_in(&self.vars, name)
    }
}

/// Checks a new value for setting `name` (lower case) as SET does, without setting it: a
/// setting PostgreSQL 15 does not have is refused (42704) unless its name has a dot (a custom
/// setting, kept as text).
pub(crate) fn check_setting(name: &str, value: &str) -> SqlResult<()> {
    let invalid = || {
        SqlError::new(codes::INVALID_PARAMETER_VALUE, format!("invalid value for parameter \"{name}\": \"{value}\""))
    };
    use super::known_settings::Context;
    match super::known_settings::context(name) {
        None if !name.contains('.') => {
            return Err(SqlError::new(
                codes::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            ));
        }
        Some(Context::Internal) => {
            return Err(SqlError::new(
                codes::CANT_CHANGE_RUNTIME_PARAM,
                format!("parameter \"{name}\" cannot be changed"),
            ));
        }
        Some(Context::Server) => {
            return Err(SqlError::new(
                codes::CANT_CHANGE_RUNTIME_PARAM,
                format!("parameter \"{name}\" cannot be changed now"),
            ));
        }
        _ => {}
    }
    match name {
        "statement_timeout" | "idle_in_transaction_session_timeout" | "lock_timeout" | "idle_session_timeout" => {
            parse_duration_ms(value).ok_or_else(invalid)?;
        }
        "default_transaction_isolation" | "transaction_isolation" => match value.to_lowercase().as_str() {
            "read committed" | "read uncommitted" | "repeatable read" => {}
            "serializable" => {
                return Err(SqlError::unsupported("SERIALIZABLE isolation (REPEATABLE READ gives snapshot isolation)"));
            }
            _ => return Err(invalid()),
        },
        "client_encoding" => {
            let v = value.to_uppercase().replace('-', "");
            if v != "UTF8" && v != "UNICODE" {
                return Err(SqlError::unsupported(format!("client encoding \"{value}\" (only UTF8)")));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Settings saved at BEGIN and at each SAVEPOINT.
#[derive(Debug, Clone)]
pub(super) struct SavedSettings {
    vars: BTreeMap<String, String>,
    claims: Option<Arc<serde_json::Value>>,
    role: u64,
    local: BTreeMap<String, Option<String>>,
}

/// The lower-case name of a setting as SET writes it (`TimeZone`, `app.Tenant`).
pub(super) fn setting_name(raw: &str) -> String {
    raw.trim().trim_matches('"').to_lowercase()
}

/// A setting's value in `vars` or, for one PostgreSQL has that the session never set, its
/// default; `None` for an unknown name.
pub(crate) fn current_setting_in(vars: &BTreeMap<String, String>, name: &str) -> Option<String> {
    let key = match name.to_lowercase().as_str() {
        "time zone" => "timezone".to_string(),
        n => n.to_string(),
    };
    vars.get(&key).cloned().or_else(|| super::known_settings::default_value(&key).map(str::to_string))
}

fn expr_setting_text(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        ast::Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// A duration setting as PostgreSQL shows it: in the largest unit that divides it (`0`, `250ms`,
/// `5s`, `2min`, `1h`, `1d`).
fn show_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0".into();
    }
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Parses a PostgreSQL duration setting (`0`, `500`, `5s`, `2min`, `100ms`) into milliseconds.
pub fn parse_duration_ms(v: &str) -> Option<u64> {
    let v = v.trim().trim_matches('\'').to_lowercase();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}
