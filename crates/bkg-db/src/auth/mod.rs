//! Who is asking: JWT verification, the API keys and the principal a request runs as.
//!
//! Every HTTP request carries an `apikey` header and/or `Authorization: Bearer <JWT>`, as Supabase
//! clients send them. The token's `role` claim names the database role the request runs as, so
//! privileges (and row-level security) are checked by the one SQL path, never per endpoint.

pub mod gotrue;
pub mod jwt;

use std::path::Path;

use serde_json::{Map, Value, json};

pub use jwt::{JwtConfig, JwtError};

/// The roles API clients run as; created at startup when missing.
pub const ANON_ROLE: &str = "anon";
pub const AUTHENTICATED_ROLE: &str = "authenticated";
pub const SERVICE_ROLE: &str = "service_role";

/// How long generated API keys are valid, in seconds (ten years).
const API_KEY_LIFETIME_S: u64 = 10 * 365 * 24 * 3600;

/// The verified identity of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Database role (`role` claim; `anon` when the token has none).
    pub role: String,
    pub claims: Map<String, Value>,
}

/// Keys and token settings of the server.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub jwt: JwtConfig,
    /// A token with `role: anon`: safe to ship in a browser app.
    pub anon_key: String,
    /// A token with `role: service_role`: full access, for servers only.
    pub service_key: String,
}

/// Why a request is not authenticated (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `apikey` and no `Authorization` header.
    Missing,
    /// A token was given and refused.
    Invalid(String),
}

impl AuthConfig {
    /// Loads the secret and keys from `<data_dir>/auth/keys.json`, creating them on first start.
    /// A secret given by configuration wins over the stored one; keys are re-signed with it.
    /// Returns the config and whether keys were (re)generated, so the caller can print them once.
    pub fn load_or_create(
        data_dir: &Path,
        configured_secret: Option<&str>,
        audience: Option<String>,
        issuer: Option<String>,
    ) -> Result<(AuthConfig, bool), String> {
        let dir = data_dir.join("auth");
        let path = dir.join("keys.json");
        let stored: Option<Map<String, Value>> = match std::fs::read(&path) {
            Ok(b) => {
                Some(serde_json::from_slice(&b).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let get = |k: &str| stored.as_ref().and_then(|m| m.get(k)).and_then(Value::as_str).map(str::to_string);
        let secret = match configured_secret {
            Some(s) if s.len() < 32 => return Err("BKG_DB_JWT_SECRET must be at least 32 characters".into()),
            Some(s) => s.to_string(),
            None => match get("jwt_secret") {
                Some(s) => s,
                None => random_secret(),
            },
        };
        let jwt = JwtConfig { secret: secret.as_bytes().to_vec(), audience, issuer, leeway_s: jwt::LEEWAY_S_MAX };
        let still_valid = |k: Option<String>, role: &str| {
            k.filter(|t| jwt.verify(t).ok().and_then(|c| c.get("role").cloned()) == Some(json!(role)))
        };
        let anon = still_valid(get("anon_key"), ANON_ROLE);
        let service = still_valid(get("service_key"), SERVICE_ROLE);
        let fresh = anon.is_none() || service.is_none() || get("jwt_secret").as_deref() != Some(secret.as_str());
        let cfg = AuthConfig {
            anon_key: anon.unwrap_or_else(|| api_key(&jwt, ANON_ROLE)),
            service_key: service.unwrap_or_else(|| api_key(&jwt, SERVICE_ROLE)),
            jwt,
        };
        if fresh {
            cfg.store(&dir, &secret)?;
        }
        Ok((cfg, fresh))
    }

    /// Issues new anon and service keys (the old ones stay valid until the secret changes).
    pub fn rotate_keys(&mut self, data_dir: &Path) -> Result<(), String> {
        self.anon_key = api_key(&self.jwt, ANON_ROLE);
        self.service_key = api_key(&self.jwt, SERVICE_ROLE);
        let secret = String::from_utf8_lossy(&self.jwt.secret).into_owned();
        self.store(&data_dir.join("auth"), &secret)
    }

    fn store(&self, dir: &Path, secret: &str) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let body = json!({"jwt_secret": secret, "anon_key": self.anon_key, "service_key": self.service_key});
        let tmp = dir.join("keys.json.tmp");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            f.write_all(serde_json::to_string_pretty(&body).unwrap_or_default().as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        }
        std::fs::rename(&tmp, dir.join("keys.json")).map_err(|e| format!("cannot store keys: {e}"))
    }

    /// Authenticates a request from its `apikey` header and `Authorization: Bearer` token. The
    /// bearer token wins when both are given (a signed-in user's session token next to the anon
    /// key); each one given must verify.
    pub fn authenticate(&self, apikey: Option<&str>, bearer: Option<&str>) -> Result<Principal, AuthFailure> {
        let token = match (bearer, apikey) {
            (Some(b), _) => b,
            (None, Some(k)) => k,
            (None, None) => return Err(AuthFailure::Missing),
        };
        if let (Some(_), Some(k)) = (bearer, apikey) {
            self.jwt.verify(k).map_err(|e| AuthFailure::Invalid(format!("apikey: {e}")))?;
        }
        let claims = self.jwt.verify(token).map_err(|e| AuthFailure::Invalid(e.0))?;
        let role = match claims.get("role") {
            None | Some(Value::Null) => ANON_ROLE.to_string(),
            Some(Value::String(r)) if !r.is_empty() => r.clone(),
            Some(_) => return Err(AuthFailure::Invalid("JWT role claim is not a role name".into())),
        };
        Ok(Principal { role, claims })
    }
}

/// Lets a JWT be the password of a pgwire connection (cleartext over TLS): the token must
/// verify, name the connecting user in its `role` claim, and that role must not be a
/// superuser. The session then acts for the token's claims and cannot change role.
pub struct TokenPasswordHook {
    engine: std::sync::Arc<crate::sql::Engine>,
    auth: std::sync::Arc<AuthConfig>,
}

impl TokenPasswordHook {
    pub fn new(engine: std::sync::Arc<crate::sql::Engine>, auth: std::sync::Arc<AuthConfig>) -> TokenPasswordHook {
        TokenPasswordHook { engine, auth }
    }
}

impl crate::pgwire::PasswordHook for TokenPasswordHook {
    fn verify(&self, user: &str, password: &str) -> Option<Value> {
        // Only what looks like a JWT is tried as one.
        if password.split('.').count() != 3 {
            return None;
        }
        let principal = self.auth.authenticate(None, Some(password)).ok()?;
        if principal.role != user {
            return None;
        }
        let cat = self.engine.db.catalog();
        let role = cat.find_role(user)?;
        if role.superuser {
            return None;
        }
        Some(Value::Object(principal.claims))
    }
}

/// Creates the API roles when missing (`anon`, `authenticated`: no login; `service_role`: no
/// login, bypasses row-level security) and gives `service_role` CREATE on the exposed schemas
/// and every table privilege in them, for existing tables and, through the schema's default
/// privileges, for tables created later. `anon` and `authenticated` get USAGE on the schemas only: tables are
/// opened to them with GRANT. With `rls_default`, tables created in the schemas from now on
/// start with row-level security on.
pub async fn ensure_api_roles(
    engine: &std::sync::Arc<crate::sql::Engine>,
    schemas: &[String],
    rls_default: bool,
) -> Result<(), String> {
    use bkg_kernel::{AclItem, privilege};
    let cat = engine.db.catalog();
    let mut stmts = Vec::new();
    for (role, attrs) in [
        (ANON_ROLE, "NOLOGIN NOINHERIT"),
        (AUTHENTICATED_ROLE, "NOLOGIN NOINHERIT"),
        (SERVICE_ROLE, "NOLOGIN NOINHERIT BYPASSRLS"),
    ] {
        if cat.find_role(role).is_none() {
            stmts.push(format!("CREATE ROLE {role} {attrs}"));
        }
    }
    let service_default = |c: &bkg_kernel::Catalog, s: &str| {
        let oid = c.find_role(SERVICE_ROLE).map(|r| r.oid);
        c.schemas.get(s).is_some_and(|d| d.default_acl.iter().any(|a| Some(a.grantee) == oid))
    };
    let pending: Vec<&String> =
        schemas.iter().filter(|s| cat.schemas.contains_key(*s) && !service_default(&cat, s)).collect();
    let rls_pending: Vec<&String> =
        schemas.iter().filter(|s| cat.schemas.get(*s).is_some_and(|d| d.row_security_default != rls_default)).collect();
    if stmts.is_empty() && pending.is_empty() && rls_pending.is_empty() {
        return Ok(());
    }
    for s in &pending {
        let q = format!("\"{}\"", s.replace('"', "\"\""));
        stmts.push(format!("GRANT USAGE ON SCHEMA {q} TO {ANON_ROLE}, {AUTHENTICATED_ROLE}, {SERVICE_ROLE}"));
        stmts.push(format!("GRANT ALL ON ALL TABLES IN SCHEMA {q} TO {SERVICE_ROLE}"));
        stmts.push(format!("GRANT CREATE ON SCHEMA {q} TO {SERVICE_ROLE}"));
    }
    let mut session = engine.session("postgres");
    let fail = |e: crate::SqlError| format!("cannot create the API roles: {e}");
    session.execute_one("BEGIN").await.map_err(fail)?;
    for sql in &stmts {
        session.execute_one(sql).await.map_err(fail)?;
    }
    session
        .with_txn(|t| {
            let c = t.catalog_mut();
            let oid =
                c.find_role(SERVICE_ROLE).map(|r| r.oid).ok_or_else(|| crate::SqlError::internal("no service_role"))?;
            for s in &rls_pending {
                if let Some(d) = c.schemas.get_mut(*s) {
                    d.row_security_default = rls_default;
                }
            }
            for s in &pending {
                if let Some(d) = c.schemas.get_mut(*s) {
                    d.default_acl.push(AclItem {
                        grantee: oid,
                        privileges: privilege::TABLE_ALL,
                        grantor: bkg_kernel::acl::BOOTSTRAP_SUPERUSER,
                    });
                }
            }
            Ok(())
        })
        .map_err(fail)?;
    session.execute_one("COMMIT").await.map_err(fail)?;
    Ok(())
}

fn api_key(jwt: &JwtConfig, role: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut c = Map::new();
    c.insert("iss".into(), json!("bkg-db"));
    c.insert("role".into(), json!(role));
    c.insert("iat".into(), json!(now));
    c.insert("exp".into(), json!(now + API_KEY_LIFETIME_S));
    jwt.sign(&c)
}

fn random_secret() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..48)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rng.random_range(0..62)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_and_follow_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let (a, fresh) = AuthConfig::load_or_create(dir.path(), None, None, None).unwrap();
        assert!(fresh);
        let (b, fresh) = AuthConfig::load_or_create(dir.path(), None, None, None).unwrap();
        assert!(!fresh);
        assert_eq!(a.anon_key, b.anon_key);
        assert_eq!(b.authenticate(Some(&b.anon_key), None).unwrap().role, "anon");
        assert_eq!(b.authenticate(None, Some(&b.service_key)).unwrap().role, "service_role");
        assert_eq!(b.authenticate(None, None).unwrap_err(), AuthFailure::Missing);
        // A configured secret re-signs the keys; the old ones stop working.
        let (c, fresh) =
            AuthConfig::load_or_create(dir.path(), Some("0123456789abcdef0123456789abcdef"), None, None).unwrap();
        assert!(fresh);
        assert!(c.authenticate(Some(&a.anon_key), None).is_err());
        assert!(c.authenticate(Some(&c.anon_key), None).is_ok());
        assert!(AuthConfig::load_or_create(dir.path(), Some("short"), None, None).is_err());
        // A bad apikey next to a good bearer token is refused too.
        assert!(c.authenticate(Some("x.y.z"), Some(&c.service_key)).is_err());
    }
}
