//! Who is asking: JWT verification, the API keys and the principal a request runs as.
//!
//! Every HTTP request carries an `apikey` header and/or `Authorization: Bearer <JWT>`, as Supabase
//! clients send them. The token's `role` claim names the database role the request runs as, so
//! privileges (and row-level security) are checked by the one SQL path, never per endpoint.

#[cfg(test)]
mod fuzz;
pub mod jwt;
pub mod limits;
pub mod passwords;

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value, json};

pub use jwt::{Alg, JwtConfig, JwtError, SigningKey};
pub use passwords::{CatalogAuth, PasswordHook};

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

/// How tokens are made and checked: the settings that are not stored in the data directory.
#[derive(Debug, Clone, Default)]
pub struct KeySettings {
    /// BKG_DB_JWT_SECRET (HS256), if configured; otherwise the stored or a generated one.
    pub secret: Option<String>,
    pub alg: Alg,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    /// RS256: a PKCS#8 PEM RSA private key to sign with (imported into the key ring).
    pub rsa_key_file: Option<std::path::PathBuf>,
}

/// Reads an RSA private key (PKCS#8 PEM) into a signing key.
pub fn read_rsa_key(path: &Path) -> Result<SigningKey, String> {
    use pgwire::tokio::tokio_rustls::rustls::pki_types::PrivateKeyDer;
    use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
    match PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))?
    {
        PrivateKeyDer::Pkcs8(k) => SigningKey::from_rsa_pkcs8(k.secret_pkcs8_der()),
        _ => Err(format!("{} is not a PKCS#8 key (\"BEGIN PRIVATE KEY\")", path.display())),
    }
}

/// Keys and token settings of the server. The verification keys can be replaced while the
/// server runs (after `bkg-db keys rotate|retire`), so they sit behind a lock.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    jwt: Arc<parking_lot::RwLock<Arc<JwtConfig>>>,
    /// Serialises every change of the keys (this process's, through any clone) with the reload
    /// of keys.json, and holds the bytes this process wrote last: a reload that finds them is
    /// this process's own change, not news.
    written: Arc<parking_lot::Mutex<Option<Vec<u8>>>>,
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

fn keys_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("auth").join("keys.json")
}

fn read_stored(data_dir: &Path) -> Result<Option<Map<String, Value>>, String> {
    let path = keys_path(data_dir);
    match std::fs::read(&path) {
        Ok(b) => {
            Ok(Some(serde_json::from_slice(&b).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn stored_keys(stored: &Option<Map<String, Value>>) -> Result<Vec<SigningKey>, String> {
    use base64::Engine as _;
    let Some(list) = stored.as_ref().and_then(|m| m.get("signing_keys")).and_then(Value::as_array) else {
        return Ok(vec![]);
    };
    list.iter()
        .map(|k| {
            let kid = k["kid"].as_str().ok_or("a signing key has no kid")?.to_string();
            let pkcs8 = base64::engine::general_purpose::STANDARD
                .decode(k["pkcs8"].as_str().unwrap_or_default())
                .map_err(|_| format!("signing key {kid} is not base64"))?;
            let key = SigningKey {
                kid,
                alg: Alg::parse(k["alg"].as_str().unwrap_or("ES256")).unwrap_or(Alg::ES256),
                pkcs8,
                retired: k["retired"].as_bool().unwrap_or(false),
                created_at: k["created_at"].as_u64().unwrap_or(0),
            };
            key.check()?;
            Ok(key)
        })
        .collect()
}

impl AuthConfig {
    /// Loads the secret, signing keys and API keys from `<data_dir>/auth/keys.json`, creating
    /// them on first start. A secret given by configuration wins over the stored one; API keys
    /// are re-signed when they no longer verify (new secret, other algorithm, retired key).
    /// Returns the config and whether keys were (re)generated, so the caller can print them once.
    pub fn load_or_create(data_dir: &Path, settings: &KeySettings) -> Result<(AuthConfig, bool), String> {
        let stored = read_stored(data_dir)?;
        let get = |k: &str| stored.as_ref().and_then(|m| m.get(k)).and_then(Value::as_str).map(str::to_string);
        let secret = match &settings.secret {
            Some(s) if s.len() < 32 => return Err("BKG_DB_JWT_SECRET must be at least 32 characters".into()),
            Some(s) => s.clone(),
            None => get("jwt_secret").unwrap_or_else(random_secret),
        };
        let mut keys = stored_keys(&stored)?;
        let mut fresh = get("jwt_secret").as_deref() != Some(secret.as_str());
        if settings.alg == Alg::RS256
            && let Some(path) = &settings.rsa_key_file
        {
            let mut key = read_rsa_key(path)?;
            if !keys.iter().any(|k| k.kid == key.kid) {
                // A newly configured key signs from now on.
                key.created_at = key.created_at.max(keys.iter().map(|k| k.created_at).max().unwrap_or(0) + 1);
                keys.push(key);
                fresh = true;
            }
        }
        let usable = |keys: &[SigningKey]| keys.iter().any(|k| !k.retired && k.alg == settings.alg);
        match settings.alg {
            Alg::ES256 if !usable(&keys) => {
                keys.push(SigningKey::generate_es256()?);
                fresh = true;
            }
            Alg::RS256 if !usable(&keys) => {
                return Err("RS256 needs a signing key: set BKG_DB_JWT_RSA_KEY_FILE to a PKCS#8 PEM RSA key".into());
            }
            _ => {}
        }
        let jwt = JwtConfig {
            alg: settings.alg,
            secret: secret.as_bytes().to_vec(),
            keys,
            audience: settings.audience.clone(),
            issuer: settings.issuer.clone(),
            leeway_s: limits::LEEWAY_S_MAX,
        };
        let still_valid = |k: Option<String>, role: &str| {
            k.filter(|t| jwt.verify(t).ok().and_then(|c| c.get("role").cloned()) == Some(json!(role)))
        };
        let anon = still_valid(get("anon_key"), ANON_ROLE);
        let service = still_valid(get("service_key"), SERVICE_ROLE);
        fresh |= anon.is_none() || service.is_none();
        let cfg = AuthConfig {
            anon_key: anon.unwrap_or_else(|| api_key(&jwt, ANON_ROLE)),
            service_key: service.unwrap_or_else(|| api_key(&jwt, SERVICE_ROLE)),
            jwt: Arc::new(parking_lot::RwLock::new(Arc::new(jwt))),
            written: Default::default(),
        };
        if fresh {
            cfg.store(data_dir)?;
        }
        Ok((cfg, fresh))
    }

    /// The keys tokens are checked (and signed) with now.
    pub fn jwt(&self) -> Arc<JwtConfig> {
        self.jwt.read().clone()
    }

    /// Reads the signing keys again (after `bkg-db keys rotate|retire` changed them); API keys
    /// and the secret stay as they are. Returns whether anything changed: `false` when the file
    /// holds what this process wrote last (its own change, already in effect).
    pub fn reload(&self, data_dir: &Path) -> Result<bool, String> {
        let written = self.written.lock();
        let bytes = std::fs::read(keys_path(data_dir)).map_err(|e| format!("cannot read keys.json: {e}"))?;
        if written.as_deref() == Some(bytes.as_slice()) {
            return Ok(false);
        }
        let stored = read_stored(data_dir)?;
        let keys = stored_keys(&stored)?;
        let mut next = (*self.jwt()).clone();
        if next.alg != Alg::HS256 && !keys.iter().any(|k| !k.retired && k.alg == next.alg) {
            return Err("keys.json has no unretired signing key; keeping the current keys".into());
        }
        next.keys = keys;
        *self.jwt.write() = Arc::new(next);
        Ok(true)
    }

    /// The anon key as keys.json holds it now (it changes with `rotate-api-keys`), if readable.
    pub fn stored_anon_key(data_dir: &Path) -> Option<String> {
        read_stored(data_dir).ok().flatten()?.get("anon_key")?.as_str().map(str::to_string)
    }

    /// Starts a change from the API keys on disk (another clone, or the CLI, may have changed
    /// them since this copy was made).
    fn api_keys_from_disk(&mut self, data_dir: &Path) -> Result<(), String> {
        if let Some(m) = read_stored(data_dir)? {
            let get = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
            if let (Some(a), Some(sk)) = (get("anon_key"), get("service_key")) {
                self.anon_key = a;
                self.service_key = sk;
            }
        }
        Ok(())
    }

    /// Issues new anon and service keys with the current signing key (the old ones stay valid
    /// while the key that signed them is).
    pub fn rotate_api_keys(&mut self, data_dir: &Path) -> Result<(), String> {
        let written = self.written.clone();
        let mut written = written.lock();
        let jwt = self.jwt();
        let (anon, service) = (api_key(&jwt, ANON_ROLE), api_key(&jwt, SERVICE_ROLE));
        *written = Some(self.store_with(data_dir, &jwt, &anon, &service)?);
        self.anon_key = anon;
        self.service_key = service;
        Ok(())
    }

    /// Adds a new ES256 signing key, which signs from now on; older keys keep verifying until
    /// retired. Returns the new key's id.
    pub fn rotate_signing_key(&mut self, data_dir: &Path) -> Result<String, String> {
        let key = match self.jwt().alg {
            Alg::ES256 => SigningKey::generate_es256()?,
            Alg::RS256 => {
                return Err("RS256 keys are not generated here: add one with bkg-db keys import --pem <file>".into());
            }
            Alg::HS256 => {
                return Err("HS256 has one shared secret and no key ring: set a new BKG_DB_JWT_SECRET (every token \
                            changes at once), or use ES256 or RS256 for rotation"
                    .into());
            }
        };
        self.add_signing_key(data_dir, key)
    }

    /// Adds an RSA key (RS256) from a PKCS#8 PEM file; it signs from now on.
    pub fn import_rsa_key(&mut self, data_dir: &Path, pem: &Path) -> Result<String, String> {
        if self.jwt().alg != Alg::RS256 {
            return Err("importing RSA keys needs BKG_DB_JWT_ALG=RS256".into());
        }
        let key = read_rsa_key(pem)?;
        if self.jwt().keys.iter().any(|k| k.kid == key.kid) {
            return Err(format!("key {} is in the key ring already", key.kid));
        }
        self.add_signing_key(data_dir, key)
    }

    /// Written first, then put in effect: a failed write changes nothing.
    fn add_signing_key(&mut self, data_dir: &Path, mut key: SigningKey) -> Result<String, String> {
        let written = self.written.clone();
        let mut written = written.lock();
        self.api_keys_from_disk(data_dir)?;
        let mut next = (*self.jwt()).clone();
        let newest = next.keys.iter().map(|k| k.created_at).max().unwrap_or(0);
        key.created_at = key.created_at.max(newest + 1);
        let kid = key.kid.clone();
        next.keys.push(key);
        *written = Some(self.store_with(data_dir, &next, &self.anon_key, &self.service_key)?);
        *self.jwt.write() = Arc::new(next);
        Ok(kid)
    }

    /// Retires a signing key: tokens it signed stop verifying. The last unretired key cannot go.
    /// API keys it signed are signed again (this config's `anon_key`/`service_key` then hold the
    /// new ones). Written first, then put in effect.
    pub fn retire_signing_key(&mut self, data_dir: &Path, kid: &str) -> Result<(), String> {
        let written = self.written.clone();
        let mut written = written.lock();
        self.api_keys_from_disk(data_dir)?;
        let mut next = (*self.jwt()).clone();
        let Some(i) = next.keys.iter().position(|k| k.kid == kid) else {
            return Err(format!("no signing key {kid}"));
        };
        let alg = next.alg;
        if next.keys.iter().filter(|k| !k.retired && k.alg == alg).count() <= 1 && !next.keys[i].retired {
            return Err(format!("{kid} is the only signing key: rotate first"));
        }
        next.keys[i].retired = true;
        // API keys signed by it would stop working: sign them again.
        let (mut anon, mut service) = (self.anon_key.clone(), self.service_key.clone());
        if next.verify(&anon).is_err() || next.verify(&service).is_err() {
            anon = api_key(&next, ANON_ROLE);
            service = api_key(&next, SERVICE_ROLE);
        }
        *written = Some(self.store_with(data_dir, &next, &anon, &service)?);
        *self.jwt.write() = Arc::new(next);
        self.anon_key = anon;
        self.service_key = service;
        Ok(())
    }

    fn store(&self, data_dir: &Path) -> Result<(), String> {
        let bytes = self.store_with(data_dir, &self.jwt(), &self.anon_key, &self.service_key)?;
        *self.written.lock() = Some(bytes);
        Ok(())
    }

    /// Writes keys.json (atomically, 0600) with these keys; returns the bytes written.
    fn store_with(&self, data_dir: &Path, jwt: &JwtConfig, anon: &str, service: &str) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        let dir = data_dir.join("auth");
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let keys: Vec<Value> = jwt
            .keys
            .iter()
            .map(|k| {
                json!({"kid": k.kid, "alg": k.alg.name(), "pkcs8": base64::engine::general_purpose::STANDARD.encode(&k.pkcs8),
                       "retired": k.retired, "created_at": k.created_at})
            })
            .collect();
        let body = json!({
            "jwt_secret": String::from_utf8_lossy(&jwt.secret),
            "jwt_alg": jwt.alg.name(),
            "anon_key": anon,
            "service_key": service,
            "signing_keys": keys,
        });
        let bytes = serde_json::to_string_pretty(&body).unwrap_or_default().into_bytes();
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
            f.write_all(&bytes)
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        }
        std::fs::rename(&tmp, dir.join("keys.json")).map_err(|e| format!("cannot store keys: {e}"))?;
        Ok(bytes)
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
            self.jwt().verify(k).map_err(|e| AuthFailure::Invalid(format!("apikey: {e}")))?;
        }
        let claims = self.jwt().verify(token).map_err(|e| AuthFailure::Invalid(e.0))?;
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
    engine: std::sync::Arc<bkg_sql::Engine>,
    auth: std::sync::Arc<AuthConfig>,
}

impl TokenPasswordHook {
    pub fn new(engine: std::sync::Arc<bkg_sql::Engine>, auth: std::sync::Arc<AuthConfig>) -> TokenPasswordHook {
        TokenPasswordHook { engine, auth }
    }
}

impl PasswordHook for TokenPasswordHook {
    fn verify(&self, user: &str, password: &str) -> Option<Value> {
        // Only what looks like a JWT is tried as one.
        if password.split('.').count() != 3 {
            return None;
        }
        let principal = self.auth.authenticate(None, Some(password)).ok()?;
        if principal.role != user {
            return None;
        }
        token_role(&self.engine, user).ok()?;
        Some(Value::Object(principal.claims))
    }
}

/// Why a verified token cannot act as the role its `role` claim names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRoleRefusal {
    /// There is no such role.
    Missing(String),
    /// The role is a superuser: tokens name API roles, and a superuser logs in with its
    /// password (pgwire, Flight SQL's Basic login), never with a token.
    Superuser(String),
}

/// The rule every front door applies to a verified token's role, in this one place: the role
/// must exist and must not be a superuser.
pub fn token_role(engine: &bkg_sql::Engine, role: &str) -> Result<(), TokenRoleRefusal> {
    match engine.catalog().find_role(role) {
        None => Err(TokenRoleRefusal::Missing(role.to_string())),
        Some(r) if r.superuser => Err(TokenRoleRefusal::Superuser(r.name.clone())),
        Some(_) => Ok(()),
    }
}

/// Creates the API roles when missing (`anon`, `authenticated`: no login; `service_role`: no
/// login, bypasses row-level security) and gives `service_role` CREATE on the exposed schemas
/// and every table privilege in them, for existing tables and, through the schema's default
/// privileges, for tables created later. `anon` and `authenticated` get USAGE on the schemas only: tables are
/// opened to them with GRANT. With `rls_default`, tables created in the schemas from now on
/// start with row-level security on.
pub async fn ensure_api_roles(
    engine: &std::sync::Arc<bkg_sql::Engine>,
    schemas: &[String],
    rls_default: bool,
) -> Result<(), String> {
    use bkg_kernel::{AclItem, privilege};
    let cat = engine.catalog();
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
        let q = bkg_sql::quote::ident(s);
        stmts.push(format!("GRANT USAGE ON SCHEMA {q} TO {ANON_ROLE}, {AUTHENTICATED_ROLE}, {SERVICE_ROLE}"));
        stmts.push(format!("GRANT ALL ON ALL TABLES IN SCHEMA {q} TO {SERVICE_ROLE}"));
        stmts.push(format!("GRANT CREATE ON SCHEMA {q} TO {SERVICE_ROLE}"));
    }
    let mut session = engine.session("postgres");
    let fail = |e: bkg_sql::SqlError| format!("cannot create the API roles: {e}");
    session.execute_one("BEGIN").await.map_err(fail)?;
    for sql in &stmts {
        session.execute_one(sql).await.map_err(fail)?;
    }
    session
        .with_txn(|t| {
            let c = t.catalog_mut();
            let oid = c
                .find_role(SERVICE_ROLE)
                .map(|r| r.oid)
                .ok_or_else(|| bkg_sql::SqlError::internal("no service_role"))?;
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
    // With an issuer or audience configured, the server's own keys carry them.
    c.insert("iss".into(), json!(jwt.issuer.clone().unwrap_or_else(|| "bkg-db".into())));
    if let Some(aud) = &jwt.audience {
        c.insert("aud".into(), json!(aud));
    }
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
        let none = KeySettings::default();
        let (a, fresh) = AuthConfig::load_or_create(dir.path(), &none).unwrap();
        assert!(fresh);
        let (b, fresh) = AuthConfig::load_or_create(dir.path(), &none).unwrap();
        assert!(!fresh);
        assert_eq!(a.anon_key, b.anon_key);
        assert_eq!(b.authenticate(Some(&b.anon_key), None).unwrap().role, "anon");
        assert_eq!(b.authenticate(None, Some(&b.service_key)).unwrap().role, "service_role");
        assert_eq!(b.authenticate(None, None).unwrap_err(), AuthFailure::Missing);
        // A configured secret re-signs the keys; the old ones stop working.
        let with = |s: &str| KeySettings { secret: Some(s.into()), ..KeySettings::default() };
        let (c, fresh) = AuthConfig::load_or_create(dir.path(), &with("0123456789abcdef0123456789abcdef")).unwrap();
        assert!(fresh);
        assert!(c.authenticate(Some(&a.anon_key), None).is_err());
        assert!(c.authenticate(Some(&c.anon_key), None).is_ok());
        assert!(AuthConfig::load_or_create(dir.path(), &with("short")).is_err());
        // A bad apikey next to a good bearer token is refused too.
        assert!(c.authenticate(Some("x.y.z"), Some(&c.service_key)).is_err());
    }

    #[test]
    fn es256_keys_rotate_and_retire_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let es = KeySettings { alg: Alg::ES256, ..KeySettings::default() };
        let (mut a, fresh) = AuthConfig::load_or_create(dir.path(), &es).unwrap();
        assert!(fresh);
        let first = a.jwt().signing_key().unwrap().kid.clone();
        let old_key = a.anon_key.clone();
        let (b, fresh) = AuthConfig::load_or_create(dir.path(), &es).unwrap();
        assert!(!fresh, "the key ring is stored");
        assert_eq!(b.jwt().signing_key().unwrap().kid, first);
        let second = a.rotate_signing_key(dir.path()).unwrap();
        assert_ne!(first, second);
        // A running server (b) picks the new key up by reloading; old tokens still verify.
        b.reload(dir.path()).unwrap();
        assert_eq!(b.jwt().signing_key().unwrap().kid, second);
        assert!(b.authenticate(Some(&old_key), None).is_ok());
        assert!(a.retire_signing_key(dir.path(), &second).is_ok());
        assert!(a.retire_signing_key(dir.path(), &first).is_err(), "the last key stays");
        b.reload(dir.path()).unwrap();
        assert_eq!(b.jwt().signing_key().unwrap().kid, first);
        // HS256 has no key ring.
        let hs = tempfile::tempdir().unwrap();
        let (mut h, _) = AuthConfig::load_or_create(hs.path(), &KeySettings::default()).unwrap();
        assert!(h.rotate_signing_key(hs.path()).is_err());
    }

    #[test]
    fn rs256_keys_come_from_pem_files() {
        let pem = |n: &str| std::path::PathBuf::from(format!("{}/../../testdata/jwt/{n}", env!("CARGO_MANIFEST_DIR")));
        let dir = tempfile::tempdir().unwrap();
        let rs = KeySettings { alg: Alg::RS256, rsa_key_file: Some(pem("rsa-a.pem")), ..KeySettings::default() };
        let (mut a, fresh) = AuthConfig::load_or_create(dir.path(), &rs).unwrap();
        assert!(fresh);
        let first = a.jwt().signing_key().unwrap().kid.clone();
        assert!(first.starts_with("rsa-"));
        assert_eq!(a.authenticate(Some(&a.anon_key), None).unwrap().role, "anon");
        let jwks = a.jwt().jwks();
        assert_eq!(jwks["keys"][0]["kty"], "RSA");
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
        // The same file again changes nothing; another key signs from its import on.
        let (_, fresh) = AuthConfig::load_or_create(dir.path(), &rs).unwrap();
        assert!(!fresh);
        assert!(a.import_rsa_key(dir.path(), &pem("rsa-a.pem")).is_err());
        let second = a.import_rsa_key(dir.path(), &pem("rsa-b.pem")).unwrap();
        assert_eq!(a.jwt().signing_key().unwrap().kid, second);
        let old_anon = a.anon_key.clone();
        assert!(a.authenticate(Some(&old_anon), None).is_ok(), "the older key still verifies");
        a.retire_signing_key(dir.path(), &first).unwrap();
        assert!(a.authenticate(Some(&old_anon), None).is_err());
        assert!(a.authenticate(Some(&a.anon_key), None).is_ok(), "API keys were signed again");
        // Algorithm confusion: HS256 keyed with the RSA public key is refused.
        let jwk = a.jwt().jwks()["keys"][0].clone();
        let hs =
            JwtConfig { alg: Alg::HS256, keys: vec![], secret: jwk.to_string().into_bytes(), ..(*a.jwt()).clone() };
        let forged = hs.sign(json!({"role": "service_role", "exp": 4_000_000_000u64}).as_object().unwrap());
        assert!(a.authenticate(None, Some(&forged)).is_err());
        // RS256 without a key, or with a file that is not one, does not start.
        let empty = tempfile::tempdir().unwrap();
        let none = KeySettings { alg: Alg::RS256, ..KeySettings::default() };
        assert!(AuthConfig::load_or_create(empty.path(), &none).is_err());
        let bad = KeySettings { alg: Alg::RS256, rsa_key_file: Some(pem("README.md")), ..KeySettings::default() };
        assert!(AuthConfig::load_or_create(empty.path(), &bad).is_err());
    }
}
