//! Run-time settings: SET, SHOW, RESET, the search path, `request.jwt.claims` and durations.

use super::*;

impl Session {
    pub(super) fn set(&mut self, set: ast::Set) -> SqlResult<Output> {
        match set {
            ast::Set::SingleAssignment { variable, values, .. } => {
                let name = variable.to_string().to_lowercase();
                let value = values.iter().map(expr_setting_text).collect::<Vec<_>>().join(", ");
                self.set_var(&name, value)?;
            }
            ast::Set::SetTimeZone { value, .. } => self.set_var("timezone", expr_setting_text(&value))?,
            ast::Set::SetNames { charset_name, .. } => self.set_var("client_encoding", charset_name.value)?,
            ast::Set::SetRole { role_name, context_modifier } => {
                if matches!(context_modifier, Some(ast::ContextModifier::Local)) {
                    return Err(SqlError::unsupported("SET LOCAL ROLE"));
                }
                let name = role_name.as_ref().map(crate::ddl::ident_name);
                self.set_role(name.as_deref().filter(|n| *n != "none"))?;
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

    pub fn set_var(&mut self, name: &str, value: String) -> SqlResult<()> {
        let name = match name {
            "time zone" => "timezone",
            n => n,
        };
        let invalid = || {
            SqlError::new(
                codes::INVALID_PARAMETER_VALUE,
                format!("invalid value for parameter \"{name}\": \"{value}\""),
            )
        };
        if name.starts_with("request.jwt") {
            return self.set_claims_setting(name, Some(&value));
        }
        match name {
            "statement_timeout" | "idle_in_transaction_session_timeout" | "lock_timeout" | "idle_session_timeout" => {
                parse_duration_ms(&value).ok_or_else(invalid)?;
            }
            "default_transaction_isolation" | "transaction_isolation" => match value.to_lowercase().as_str() {
                "read committed" | "read uncommitted" | "repeatable read" => {
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
                }
                "serializable" => {
                    return Err(SqlError::unsupported(
                        "SERIALIZABLE isolation (REPEATABLE READ gives snapshot isolation)",
                    ));
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
        self.vars.insert(name.to_string(), value);
        if name == "search_path" {
            self.apply_search_path();
        }
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
        let name = variable.iter().map(|i| i.value.to_lowercase()).collect::<Vec<_>>().join(" ");
        let key = match name.as_str() {
            "time zone" => "timezone".to_string(),
            "transaction isolation level" => "transaction_isolation".to_string(),
            _ => name.clone(),
        };
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
            let v = self.vars.get(&key).cloned().ok_or_else(|| {
                SqlError::new(codes::UNDEFINED_OBJECT, format!("unrecognized configuration parameter \"{name}\""))
            })?;
            match key.as_str() {
                "statement_timeout"
                | "lock_timeout"
                | "idle_in_transaction_session_timeout"
                | "idle_session_timeout" => parse_duration_ms(&v).map(show_duration_ms).unwrap_or(v),
                _ => v,
            }
        };
        let schema = Arc::new(Schema::new(vec![Field::new(key.clone(), ArrowType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec![value]))])?;
        Ok(Output::Rows { schema, batches: vec![batch], tag: "SHOW".into() })
    }
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
