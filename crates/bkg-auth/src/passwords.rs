//! Password checks against the roles of the catalog, shared by the front doors that take
//! passwords (pgwire's SCRAM and cleartext exchanges, Flight SQL's Basic login).

use std::fmt::Debug;
use std::sync::Arc;

use bkg_sql::Engine;
use bkg_sql::roles::ScramVerifier;

/// Accepts a password that is not the role's own, such as a JWT presented by an application.
/// Asked only for passwords sent in cleartext, which happens only over TLS.
pub trait PasswordHook: Send + Sync {
    /// The principal's claims when `password` lets `user` in (the session then acts for them,
    /// and may not change role), `None` when it does not.
    fn verify(&self, user: &str, password: &str) -> Option<serde_json::Value>;
}

/// Password checks against the roles in the catalog (their SCRAM-SHA-256 verifiers).
#[derive(Clone)]
pub struct CatalogAuth {
    engine: Arc<Engine>,
    /// The `postgres` superuser's verifier while it has no stored password (BKG_DB_PASSWORD).
    bootstrap: ScramVerifier,
    /// A verifier no password matches, for unknown roles: the exchange runs its full course, so
    /// a client cannot tell a missing role from a wrong password.
    decoy: ScramVerifier,
    hook: Option<Arc<dyn PasswordHook>>,
}

impl Debug for CatalogAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogAuth").finish_non_exhaustive()
    }
}

impl CatalogAuth {
    pub fn new(engine: Arc<Engine>, bootstrap_password: &str, hook: Option<Arc<dyn PasswordHook>>) -> CatalogAuth {
        let decoy_password: [u8; 16] = rand::random();
        CatalogAuth {
            engine,
            bootstrap: ScramVerifier::new(bootstrap_password),
            decoy: ScramVerifier::new(&format!("{decoy_password:x?}")),
            hook,
        }
    }

    /// The verifier to check `user` against, or `None` when the role may not log in.
    pub fn verifier(&self, user: &str) -> Option<ScramVerifier> {
        let catalog = self.engine.catalog();
        let role = catalog.find_role(user).filter(|r| r.login)?;
        // VALID UNTIL: an expired password logs in no more (as if it did not match).
        if role.valid_until.is_some_and(|t| chrono::Utc::now().timestamp_micros() > t) {
            return None;
        }
        match &role.password {
            Some(text) => ScramVerifier::parse(text),
            None if role.oid == bkg_kernel::BOOTSTRAP_SUPERUSER => Some(self.bootstrap.clone()),
            None => None,
        }
    }

    /// A verifier no password matches (for roles that may not log in).
    pub fn decoy(&self) -> &ScramVerifier {
        &self.decoy
    }

    /// True when `presented` is a token (checked by the hook) that admits `user`: a token admits
    /// its role even when the role cannot log in with a password (the API roles), but never a
    /// superuser that cannot.
    pub fn token_admits(&self, user: &str, presented: &str) -> bool {
        self.engine.catalog().find_role(user).is_some_and(|r| r.login || !r.superuser)
            && self.hook.as_ref().is_some_and(|h| h.verify(user, presented).is_some())
    }

    /// The hook that checks tokens given as passwords, if any.
    pub fn hook(&self) -> Option<&Arc<dyn PasswordHook>> {
        self.hook.as_ref()
    }

    /// True when `password` is `user`'s password and the role may log in with it now. An
    /// unknown role costs the same check against a decoy, so timing does not tell them apart.
    pub fn password_matches(&self, user: &str, password: &str) -> bool {
        match self.verifier(user) {
            Some(v) => v.matches(password),
            None => {
                let _ = self.decoy.matches(password);
                false
            }
        }
    }
}
