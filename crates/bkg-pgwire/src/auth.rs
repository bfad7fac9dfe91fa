//! Startup and authentication: the database and user of the startup message, passwords
//! (cleartext, MD5, SCRAM) checked against the catalog, JWTs as passwords, role connection limits.

use super::*;
use bkg_sql::SqlState;

/// Connection metadata key under which a hook-verified principal reaches the session. Set by
/// the server only: a startup parameter of the same name is removed.
pub(crate) const CLAIMS_METADATA: &str = "bkg.verified_jwt_claims";

/// The catalog's password checks as pgwire's authentication source.
#[derive(Clone, Debug)]
pub struct PgAuth(pub Arc<CatalogAuth>);

impl PgAuth {
    fn check_database(login: &LoginInfo) -> PgWireResult<()> {
        if login.database().is_some_and(|d| d != bkg_sql::provider::DATABASE_NAME) {
            return Err(user_error(SqlError::new(
                SqlState::InvalidCatalogName,
                format!("database \"{}\" does not exist", login.database().unwrap_or_default()),
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl AuthSource for PgAuth {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_owned()))
    }

    async fn verify_password(&self, login: &LoginInfo, presented: &[u8]) -> PgWireResult<Option<()>> {
        Self::check_database(login)?;
        let user = login.user().unwrap_or_default();
        let presented = std::str::from_utf8(presented).unwrap_or_default();
        if self.0.verifier(user).is_some_and(|v| v.matches(presented)) {
            return Ok(None);
        }
        // A verified token admits its role even when the role cannot log in with a password
        // (the API roles), but never a superuser that cannot.
        if self.0.token_admits(user, presented) {
            return Ok(None);
        }
        Err(PgWireError::InvalidPassword(user.to_owned()))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        Self::check_database(login)?;
        let v = self.0.verifier(login.user().unwrap_or_default()).unwrap_or_else(|| self.0.decoy().clone());
        Ok((
            ScramSecret::Verifier {
                salt: v.salt,
                iterations: v.iterations as usize,
                stored_key: v.stored_key,
                server_key: v.server_key,
            },
            None,
        ))
    }
}

/// Points the session at the role the connection authenticated as.
pub(crate) fn bind_user<C: ClientInfo>(session: &mut Session, client: &C) {
    let Some(user) = client.metadata().get(pgwire::api::METADATA_USER) else { return };
    let claims = client.metadata().get(CLAIMS_METADATA).and_then(|c| serde_json::from_str(c).ok());
    match claims {
        Some(claims) if !session.is_jwt_login() => session.login_with_token(user, claims),
        Some(_) => {}
        None => session.login(user),
    }
}

/// Chooses how a connection authenticates: SCRAM-SHA-256, or a cleartext password on TLS
/// connections when that is configured; refuses plain connections when TLS is required.
pub(crate) struct BkgStartup {
    pub(crate) scram: SASLAuthStartupHandler<DefaultServerParameterProvider>,
    pub(crate) cleartext: Option<CleartextPasswordAuthStartupHandler<PgAuth, DefaultServerParameterProvider>>,
    pub(crate) scram_tls: Option<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
    pub(crate) tls_required: bool,
    pub(crate) hook: Option<Arc<dyn PasswordHook>>,
    pub(crate) server: Arc<PgServer>,
    pub(crate) slot: Arc<parking_lot::Mutex<Option<String>>>,
    pub(crate) cancel: Arc<bkg_sql::CancelSignal>,
    pub(crate) cancel_key: Arc<parking_lot::Mutex<Option<(i32, bytes::Bytes)>>>,
    /// A SCRAM exchange's first message (SASLInitialResponse) has arrived.
    pub(crate) sasl_started: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl StartupHandler for BkgStartup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_required && !client.is_secure() {
            let mut info = ErrorInfo::new(
                "FATAL".into(),
                SqlState::InvalidAuthorizationSpecification.to_string(),
                "SSL connection is required".into(),
            );
            info.hint = Some("Connect with sslmode=require.".into());
            return Err(PgWireError::UserError(Box::new(info)));
        }
        let startup = matches!(message, PgWireFrontendMessage::Startup(_));
        // The first password message of a SCRAM exchange is a SASLInitialResponse, which the
        // library decodes without bounds checks: its layout is checked here first.
        let scram = !(self.cleartext.is_some() && client.is_secure());
        if let PgWireFrontendMessage::PasswordMessageFamily(pgwire::messages::startup::PasswordMessageFamily::Raw(body)) =
            &message
            && scram
            && !self.sasl_started.swap(true, Ordering::Relaxed)
            && let Err(e) = frames::check_sasl_initial(body)
        {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                SqlState::ProtocolViolation.to_string(),
                e.0,
            ))));
        }
        // A token given as the cleartext password: its claims become the session's principal.
        if let (Some(_), Some(hook), PgWireFrontendMessage::PasswordMessageFamily(p)) =
            (&self.cleartext, &self.hook, &message)
            && client.is_secure()
            && let Some(password) = cleartext_password(p)
        {
            let user = client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
            if let Some(claims) = hook.verify(&user, &password) {
                client.metadata_mut().insert(CLAIMS_METADATA.into(), claims.to_string());
            }
        }
        let r = match (&self.cleartext, &self.scram_tls) {
            (Some(c), _) if client.is_secure() => c.on_startup(client, message).await,
            (_, Some(s)) if client.is_secure() => s.on_startup(client, message).await,
            _ => self.scram.on_startup(client, message).await,
        };
        if startup {
            // Startup parameters land in the metadata: none may pose as a verified principal.
            client.metadata_mut().remove(CLAIMS_METADATA);
        }
        // Count the connection against its role's CONNECTION LIMIT as soon as the role is named
        // (before ReadyForQuery, so the client sees the refusal as a failed login).
        if startup && r.is_ok() && self.slot.lock().is_none() {
            let user = client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
            if let Err(e) = self.server.take_role_slot(&user) {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    e.code.to_string(),
                    e.message,
                ))));
            }
            *self.slot.lock() = Some(user);
        }
        // Once authentication handed out the backend key, cancel requests may name it.
        if r.is_ok() && self.cancel_key.lock().is_none() {
            let (pid, secret) = client.pid_and_secret_key();
            let key = (pid, secret.to_bytes());
            if key != (0, pgwire::messages::startup::SecretKey::default().to_bytes()) {
                self.server.cancel.register(key.clone(), self.cancel.clone());
                *self.cancel_key.lock() = Some(key);
            }
        }
        match r {
            // PostgreSQL's wording, with the user's name (the SCRAM exchange does not know it).
            Err(PgWireError::InvalidPassword(_)) => {
                let user = client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
                let message = format!("password authentication failed for user \"{user}\"");
                Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    codes::INVALID_PASSWORD.to_string(),
                    message,
                ))))
            }
            other => other,
        }
    }
}

/// The password of a cleartext password message (a NUL-terminated string).
pub(crate) fn cleartext_password(p: &pgwire::messages::startup::PasswordMessageFamily) -> Option<String> {
    use pgwire::messages::startup::PasswordMessageFamily as P;
    match p {
        P::Password(pw) => Some(pw.password.clone()),
        P::Raw(body) => {
            let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
            String::from_utf8(body[..end].to_vec()).ok()
        }
        _ => None,
    }
}
