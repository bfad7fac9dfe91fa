//! JSON Web Tokens: compact-serialised JWS with the algorithm pinned by configuration.
//!
//! Only what the server configured is accepted: the header's `alg` must equal it (so `none`, or an
//! HMAC token made with a public key, never verifies), `crit`, `jku`, `x5u` and `jwk` headers are
//! refused, `exp` is required, `nbf`/`iat` are checked with a bounded leeway, `iss` when
//! configured, and `aud` always: against the configured audience, or else, when the token has one,
//! against [`DEFAULT_AUDIENCE`]. The header and the payload must be JSON objects in which no object,
//! at any depth, names a member twice. Signatures are checked with `ring` in constant time.
//!
//! HS256 uses the shared secret. ES256 and RS256 use a key ring (P-256 keys, generated; RSA keys,
//! imported from PKCS#8 files), each key with a `kid`: tokens are signed with the newest key of
//! the algorithm that is not retired and must name a known, unretired key of it; the public
//! keys are published as a JWKS. Rotation adds a key (which signs from then on) while older
//! ones still verify until they are retired.

use crate::limits::{LEEWAY_S_MAX, NAME_CHARS_MAX, TOKEN_BYTES_MAX};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The `aud` accepted when none is configured: the one the server's `/auth/v1` user tokens carry
/// (GoTrue's default). Tokens without `aud`, such as the API keys, are accepted too.
pub const DEFAULT_AUDIENCE: &str = "authenticated";

/// The one algorithm a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Alg {
    #[default]
    HS256,
    ES256,
    RS256,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "HS256" => Some(Alg::HS256),
            "ES256" => Some(Alg::ES256),
            "RS256" => Some(Alg::RS256),
            _ => None,
        }
    }
}

/// A signing key of the ES256/RS256 key ring.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Alg,
    /// PKCS#8 document of the private key.
    pub pkcs8: Vec<u8>,
    /// Retired keys neither sign nor verify.
    pub retired: bool,
    /// Seconds since 1970 (the newest unretired key signs).
    pub created_at: u64,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl SigningKey {
    /// A new P-256 key with a random `kid`.
    pub fn generate_es256() -> Result<SigningKey, String> {
        let rng = ring::rand::SystemRandom::new();
        let doc =
            ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| "cannot generate a P-256 key".to_string())?;
        let id: [u8; 8] = rand::random();
        Ok(SigningKey {
            kid: hex(&id),
            alg: Alg::ES256,
            pkcs8: doc.as_ref().to_vec(),
            retired: false,
            created_at: now_s(),
        })
    }

    /// An RSA key from its PKCS#8 document; the `kid` is derived from the public modulus, so
    /// importing the same key twice gives the same id.
    pub fn from_rsa_pkcs8(der: &[u8]) -> Result<SigningKey, String> {
        let pair = ring::signature::RsaKeyPair::from_pkcs8(der)
            .map_err(|e| format!("not an RSA PKCS#8 private key of 2048 bits or more: {e}"))?;
        let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        let digest = ring::digest::digest(&ring::digest::SHA256, &c.n);
        Ok(SigningKey {
            kid: format!("rsa-{}", hex(&digest.as_ref()[..8])),
            alg: Alg::RS256,
            pkcs8: der.to_vec(),
            retired: false,
            created_at: now_s(),
        })
    }

    /// Checks that the key material fits its algorithm.
    pub fn check(&self) -> Result<(), String> {
        match self.alg {
            Alg::ES256 => self.ec_pair().map(|_| ()),
            Alg::RS256 => self.rsa_pair().map(|_| ()),
            Alg::HS256 => Err(format!("key {} has no asymmetric algorithm", self.kid)),
        }
    }

    fn ec_pair(&self) -> Result<ring::signature::EcdsaKeyPair, String> {
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &self.pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|_| format!("signing key {} is not a P-256 PKCS#8 key", self.kid))
    }

    fn rsa_pair(&self) -> Result<ring::signature::RsaKeyPair, String> {
        ring::signature::RsaKeyPair::from_pkcs8(&self.pkcs8)
            .map_err(|_| format!("signing key {} is not an RSA PKCS#8 key", self.kid))
    }

    /// The P-256 public key as an uncompressed point (0x04 || x || y).
    pub fn public_point(&self) -> Result<Vec<u8>, String> {
        use ring::signature::KeyPair;
        Ok(self.ec_pair()?.public_key().as_ref().to_vec())
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let rng = ring::rand::SystemRandom::new();
        match self.alg {
            Alg::ES256 => {
                self.ec_pair()?.sign(&rng, msg).map(|s| s.as_ref().to_vec()).map_err(|_| "signing failed".to_string())
            }
            Alg::RS256 => {
                let pair = self.rsa_pair()?;
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| "signing failed".to_string())?;
                Ok(sig)
            }
            Alg::HS256 => Err("not an asymmetric key".into()),
        }
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), String> {
        match self.alg {
            Alg::ES256 => {
                let public = self.public_point()?;
                ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &public)
                    .verify(msg, sig)
                    .map_err(|_| "JWT signature does not match".to_string())
            }
            Alg::RS256 => {
                let pair = self.rsa_pair()?;
                ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public())
                    .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
                    .map_err(|_| "JWT signature does not match".to_string())
            }
            Alg::HS256 => Err("not an asymmetric key".into()),
        }
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Result<Value, String> {
        match self.alg {
            Alg::ES256 => {
                let p = self.public_point()?;
                Ok(serde_json::json!({
                    "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
                    "x": B64URL.encode(&p[1..33]), "y": B64URL.encode(&p[33..65]),
                }))
            }
            Alg::RS256 => {
                let pair = self.rsa_pair()?;
                let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
                Ok(serde_json::json!({
                    "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                    "n": B64URL.encode(&c.n), "e": B64URL.encode(&c.e),
                }))
            }
            Alg::HS256 => Err("not an asymmetric key".into()),
        }
    }
}

/// How tokens are checked.
#[derive(Clone)]
pub struct JwtConfig {
    /// The accepted (and signing) algorithm.
    pub alg: Alg,
    /// HS256 secret.
    pub secret: Vec<u8>,
    /// ES256/RS256 key ring (keys of other algorithms than `alg` are ignored).
    pub keys: Vec<SigningKey>,
    /// Required `aud` (a string, or one element of an array), if set: tokens without it are
    /// refused. When unset, a token's `aud`, if it has one, must be [`DEFAULT_AUDIENCE`].
    pub audience: Option<String>,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Clock skew tolerated, seconds (at most [`LEEWAY_S_MAX`]).
    pub leeway_s: u64,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("secret", &"<redacted>")
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// Why a token was refused. The message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtError(pub String);

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(m: impl Into<String>) -> JwtError {
    JwtError(m.into())
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn decode_part(part: &str, what: &str) -> Result<Vec<u8>, JwtError> {
    B64URL.decode(part.as_bytes()).map_err(|_| err(format!("JWT {what} is not base64url")))
}

/// Parses a JWT header or payload: a JSON object in which no object, at any depth, names a
/// member twice. Parsers disagree on which of two members of one name wins (serde_json keeps the
/// last, others the first or refuse), so a token whose meaning depends on it is refused.
fn parse_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, JwtError> {
    let not_object = || err(format!("JWT {what} is not a JSON object"));
    // First a walk that only checks member names (serde_json's recursion limit bounds its depth),
    // then the parse itself, so the claims are exactly what serde_json makes of the text.
    let duplicate = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let walked = NoDuplicates(&duplicate).deserialize(&mut de).and_then(|()| de.end());
    if let Some(name) = duplicate.into_inner() {
        let shown: String = name.chars().take(NAME_CHARS_MAX).collect();
        return Err(err(format!("JWT {what} has duplicate member {shown:?}")));
    }
    walked.map_err(|_| not_object())?;
    serde_json::from_slice(bytes).map_err(|_| not_object())
}

/// Walks a JSON value and stops at the first object that names a member twice, recording the name.
#[derive(Clone, Copy)]
struct NoDuplicates<'a>(&'a std::cell::RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for NoDuplicates<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::BTreeSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if seen.contains(&name) {
                *self.0.borrow_mut() = Some(name);
                return Err(serde::de::Error::custom("duplicate member"));
            }
            map.next_value_seed(self)?;
            seen.insert(name);
        }
        Ok(())
    }
}

impl JwtConfig {
    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, JwtError> {
        self.verify_at(token, now_s())
    }

    pub fn verify_at(&self, token: &str, now: u64) -> Result<Map<String, Value>, JwtError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(err(format!("JWT is longer than {TOKEN_BYTES_MAX} bytes")));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(err("JWT must have three parts"));
        };
        let header = parse_object(&decode_part(h, "header")?, "header")?;
        match header.get("alg").and_then(Value::as_str) {
            Some(a) if a == self.alg.name() => {}
            Some(other) => return Err(err(format!("JWT algorithm {other} is not accepted"))),
            None => return Err(err("JWT header has no alg")),
        }
        for refused in ["crit", "jku", "x5u", "jwk", "x5c"] {
            if header.contains_key(refused) {
                return Err(err(format!("JWT header {refused} is not accepted")));
            }
        }
        let sig = decode_part(s, "signature")?;
        if sig.is_empty() {
            return Err(err("JWT has no signature"));
        }
        let signed = &token[..h.len() + 1 + p.len()];
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(err("JWT kid is not a string")),
        };
        match self.alg {
            Alg::HS256 => {
                // The shared secret has no key id: a token naming one is not ours.
                if kid.is_some() {
                    return Err(err("JWT kid is not known"));
                }
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
                ring::hmac::verify(&key, signed.as_bytes(), &sig).map_err(|_| err("JWT signature does not match"))?;
            }
            Alg::ES256 | Alg::RS256 => {
                let kid = kid.ok_or_else(|| err("JWT has no kid"))?;
                let key = self
                    .keys
                    .iter()
                    .find(|k| !k.retired && k.alg == self.alg && k.kid == kid)
                    .ok_or_else(|| err("JWT kid is not known"))?;
                key.verify(signed.as_bytes(), &sig).map_err(err)?;
            }
        }
        let claims = parse_object(&decode_part(p, "payload")?, "payload")?;
        let leeway = self.leeway_s.min(LEEWAY_S_MAX);
        let num = |k: &str| -> Result<Option<u64>, JwtError> {
            match claims.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| Some(f as u64))
                    .ok_or_else(|| err(format!("JWT claim {k} is not a number"))),
            }
        };
        let exp = num("exp")?.ok_or_else(|| err("JWT has no exp claim"))?;
        if now >= exp.saturating_add(leeway) {
            return Err(err("JWT expired"));
        }
        if let Some(nbf) = num("nbf")?
            && nbf > now.saturating_add(leeway)
        {
            return Err(err("JWT is not valid yet (nbf)"));
        }
        if let Some(iat) = num("iat")?
            && iat > now.saturating_add(leeway)
        {
            return Err(err("JWT was issued in the future (iat)"));
        }
        // A token meant for another service is not ours, configured audience or not; RFC 7519
        // §4.1.3. Only a configured audience makes `aud` required: the API keys carry it then.
        let names = |want: &str| match claims.get("aud") {
            Some(Value::String(a)) => a == want,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want)),
            _ => false,
        };
        let aud_ok = match &self.audience {
            Some(aud) => names(aud.as_str()),
            None => !claims.contains_key("aud") || names(DEFAULT_AUDIENCE),
        };
        if !aud_ok {
            return Err(err("JWT audience is not accepted"));
        }
        if let Some(iss) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(iss.as_str())
        {
            return Err(err("JWT issuer is not accepted"));
        }
        Ok(claims)
    }

    /// The key that signs: the newest unretired one of the algorithm.
    pub fn signing_key(&self) -> Option<&SigningKey> {
        self.keys.iter().filter(|k| !k.retired && k.alg == self.alg).max_by_key(|k| (k.created_at, k.kid.clone()))
    }

    /// Signs `claims` with the configured algorithm (ES256/RS256: the signing key, named by `kid`).
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        let payload = B64URL.encode(serde_json::to_vec(claims).unwrap_or_default());
        match (self.alg, self.signing_key()) {
            (Alg::ES256 | Alg::RS256, Some(k)) => {
                let header = B64URL.encode(
                    serde_json::json!({"alg": k.alg.name(), "typ": "JWT", "kid": k.kid}).to_string().as_bytes(),
                );
                let signed = format!("{header}.{payload}");
                let sig = k.sign(signed.as_bytes()).map(|s| B64URL.encode(s)).unwrap_or_default();
                format!("{signed}.{sig}")
            }
            _ => {
                let header = B64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
                let signed = format!("{header}.{payload}");
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
                let sig = B64URL.encode(ring::hmac::sign(&key, signed.as_bytes()).as_ref());
                format!("{signed}.{sig}")
            }
        }
    }

    /// The public keys tokens are verified with, as a JWKS (empty for HS256).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = match self.alg {
            Alg::HS256 => vec![],
            _ => self.keys.iter().filter(|k| !k.retired && k.alg == self.alg).filter_map(|k| k.jwk().ok()).collect(),
        };
        serde_json::json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> JwtConfig {
        JwtConfig {
            alg: Alg::HS256,
            keys: vec![],
            secret: b"a-secret-of-at-least-32-bytes-long!!".to_vec(),
            audience: None,
            issuer: None,
            leeway_s: 30,
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    /// An HS256 token over header and payload texts as given (`sign` cannot repeat a member).
    fn sign_raw(c: &JwtConfig, header: &str, payload: &str) -> String {
        let signed = format!("{}.{}", B64URL.encode(header.as_bytes()), B64URL.encode(payload.as_bytes()));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &c.secret);
        format!("{signed}.{}", B64URL.encode(ring::hmac::sign(&key, signed.as_bytes()).as_ref()))
    }

    const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

    #[test]
    fn foreign_audience_is_refused_by_default() {
        let c = cfg();
        assert_eq!(c.audience, None);
        for aud in [json!("other-service"), json!(["other-service"]), json!([]), json!(null), json!(7)] {
            let t = c.sign(&claims(json!({"role": "service_role", "exp": 2000, "aud": aud})));
            assert_eq!(c.verify_at(&t, 1000).unwrap_err().0, "JWT audience is not accepted", "{aud}");
        }
    }

    #[test]
    fn authenticated_audience_is_accepted_by_default() {
        let c = cfg();
        let t = c.sign(&claims(json!({"role": "authenticated", "exp": 2000, "aud": "authenticated"})));
        assert_eq!(c.verify_at(&t, 1000).unwrap()["aud"], DEFAULT_AUDIENCE);
    }

    #[test]
    fn missing_audience_is_accepted_by_default() {
        // The API keys carry no aud unless one is configured.
        let c = cfg();
        let t = c.sign(&claims(json!({"role": "anon", "iss": "bkg-db", "exp": 2000})));
        assert_eq!(c.verify_at(&t, 1000).unwrap()["role"], "anon");
    }

    #[test]
    fn audience_array_containing_authenticated_is_accepted_by_default() {
        let c = cfg();
        let t = c.sign(&claims(json!({"exp": 2000, "aud": ["other-service", "authenticated"]})));
        assert!(c.verify_at(&t, 1000).is_ok());
    }

    #[test]
    fn configured_audience_replaces_the_default() {
        let c = JwtConfig { audience: Some("my-api".into()), ..cfg() };
        let ok = c.sign(&claims(json!({"exp": 2000, "aud": "my-api"})));
        assert!(c.verify_at(&ok, 1000).is_ok());
        let ok = c.sign(&claims(json!({"exp": 2000, "aud": ["x", "my-api"]})));
        assert!(c.verify_at(&ok, 1000).is_ok());
        // The default no longer applies, and a configured audience is required.
        for t in [
            c.sign(&claims(json!({"exp": 2000, "aud": "authenticated"}))),
            c.sign(&claims(json!({"exp": 2000}))),
            c.sign(&claims(json!({"exp": 2000, "aud": "other-service"}))),
        ] {
            assert_eq!(c.verify_at(&t, 1000).unwrap_err().0, "JWT audience is not accepted");
        }
    }

    #[test]
    fn duplicate_role_in_payload_is_refused() {
        let c = cfg();
        let t = sign_raw(&c, HS256_HEADER, r#"{"role":"anon","exp":2000,"role":"service_role"}"#);
        assert_eq!(c.verify_at(&t, 1000).unwrap_err().0, r#"JWT payload has duplicate member "role""#);
        // Also when an escape spells the same name.
        let t = sign_raw(&c, HS256_HEADER, r#"{"role":"anon","exp":2000,"r\u006fle":"service_role"}"#);
        assert_eq!(c.verify_at(&t, 1000).unwrap_err().0, r#"JWT payload has duplicate member "role""#);
    }

    #[test]
    fn duplicate_alg_in_header_is_refused() {
        let c = cfg();
        let t = sign_raw(&c, r#"{"alg":"none","typ":"JWT","alg":"HS256"}"#, r#"{"role":"anon","exp":2000}"#);
        assert_eq!(c.verify_at(&t, 1000).unwrap_err().0, r#"JWT header has duplicate member "alg""#);
    }

    #[test]
    fn duplicate_member_nested_in_app_metadata_is_refused() {
        let c = cfg();
        for payload in [
            r#"{"exp":2000,"app_metadata":{"provider":"email","admin":false,"admin":true}}"#,
            r#"{"exp":2000,"app_metadata":{"org":{"admin":false,"admin":true}}}"#,
            r#"{"exp":2000,"app_metadata":{"orgs":[{"id":1},{"admin":false,"admin":true}]}}"#,
        ] {
            let t = sign_raw(&c, HS256_HEADER, payload);
            assert_eq!(
                c.verify_at(&t, 1000).unwrap_err().0,
                r#"JWT payload has duplicate member "admin""#,
                "{payload}"
            );
        }
    }

    #[test]
    fn tokens_without_duplicate_members_are_unaffected() {
        let c = cfg();
        // One name in several objects is no duplicate.
        let payload = json!({
            "role": "authenticated", "exp": 2000, "iat": 999.5, "aud": "authenticated", "sub": null,
            "app_metadata": {"provider": "email", "providers": ["email"], "role": "x"},
            "user_metadata": {"role": {"role": [{"role": 1}, {"role": 2}]}, "ok": true, "n": -3},
            "amr": [{"method": "password", "timestamp": 1}, {"method": "otp", "timestamp": 2}],
        });
        let t = c.sign(&claims(payload.clone()));
        assert_eq!(Value::Object(c.verify_at(&t, 1000).unwrap()), payload);
        let t = sign_raw(&c, HS256_HEADER, &payload.to_string());
        assert_eq!(Value::Object(c.verify_at(&t, 1000).unwrap()), payload);
        // What is not one JSON object is refused as before.
        for (header, payload, want) in [
            (HS256_HEADER, r#"{"exp":2000} x"#, "JWT payload is not a JSON object"),
            (HS256_HEADER, r#"[{"exp":2000}]"#, "JWT payload is not a JSON object"),
            (HS256_HEADER, r#"{"exp":2000"#, "JWT payload is not a JSON object"),
            (r#"{"alg":"HS256"}{}"#, r#"{"exp":2000}"#, "JWT header is not a JSON object"),
        ] {
            assert_eq!(c.verify_at(&sign_raw(&c, header, payload), 1000).unwrap_err().0, want);
        }
        // Nesting deeper than serde_json's recursion limit is refused, not a stack overflow.
        let deep = format!(r#"{{"exp":2000,"a":{}1{}}}"#, "[".repeat(1000), "]".repeat(1000));
        assert_eq!(
            c.verify_at(&sign_raw(&c, HS256_HEADER, &deep), 1000).unwrap_err().0,
            "JWT payload is not a JSON object"
        );
    }

    #[test]
    fn round_trip_and_expiry() {
        let c = cfg();
        let t = c.sign(&claims(json!({"role": "service_role", "exp": 2000})));
        assert_eq!(c.verify_at(&t, 1000).unwrap()["role"], "service_role");
        assert_eq!(c.verify_at(&t, 2029).unwrap()["role"], "service_role", "within leeway");
        assert_eq!(c.verify_at(&t, 2030).unwrap_err().0, "JWT expired");
        let no_exp = c.sign(&claims(json!({"role": "anon"})));
        assert_eq!(c.verify_at(&no_exp, 1000).unwrap_err().0, "JWT has no exp claim");
    }

    #[test]
    fn refuses_forged_tokens() {
        let c = cfg();
        let good = c.sign(&claims(json!({"role": "anon", "exp": 2000})));
        let (h, rest) = good.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        // alg none, with and without a signature.
        let none = B64URL.encode(br#"{"alg":"none"}"#);
        assert!(c.verify_at(&format!("{none}.{p}."), 1000).is_err());
        assert!(c.verify_at(&format!("{none}.{p}.{s}"), 1000).is_err());
        // Stripped signature.
        assert_eq!(c.verify_at(&format!("{h}.{p}."), 1000).unwrap_err().0, "JWT has no signature");
        // Tampered payload.
        let evil = B64URL.encode(br#"{"role":"service_role","exp":2000}"#);
        assert_eq!(c.verify_at(&format!("{h}.{evil}.{s}"), 1000).unwrap_err().0, "JWT signature does not match");
        // Wrong key.
        let other = JwtConfig { secret: b"another-secret-another-secret-xx".to_vec(), ..cfg() };
        assert!(other.verify_at(&good, 1000).is_err());
        // jku header.
        let jku = B64URL.encode(br#"{"alg":"HS256","jku":"http://evil/keys"}"#);
        assert!(c.verify_at(&format!("{jku}.{p}.{s}"), 1000).unwrap_err().0.contains("jku"));
        // Oversized.
        assert!(c.verify_at(&"a".repeat(TOKEN_BYTES_MAX + 1), 1000).is_err());
        // nbf in the future, aud and iss.
        let nbf = c.sign(&claims(json!({"exp": 5000, "nbf": 1100})));
        assert!(c.verify_at(&nbf, 1000).is_err());
        assert!(c.verify_at(&nbf, 1080).is_ok());
        let aud = JwtConfig { audience: Some("authenticated".into()), issuer: Some("bkg".into()), ..cfg() };
        let t = aud.sign(&claims(json!({"exp": 5000, "aud": ["x", "authenticated"], "iss": "bkg"})));
        assert!(aud.verify_at(&t, 1000).is_ok());
        let t = aud.sign(&claims(json!({"exp": 5000, "aud": "x", "iss": "bkg"})));
        assert!(aud.verify_at(&t, 1000).is_err());
        let t = aud.sign(&claims(json!({"exp": 5000, "aud": "authenticated"})));
        assert!(aud.verify_at(&t, 1000).is_err());
    }

    #[test]
    fn es256_key_ring_signs_verifies_and_rotates() {
        let k1 = SigningKey::generate_es256().unwrap();
        let mut c = JwtConfig { alg: Alg::ES256, keys: vec![k1.clone()], ..cfg() };
        let t1 = c.sign(&claims(json!({"role": "anon", "exp": 2000})));
        assert_eq!(c.verify_at(&t1, 1000).unwrap()["role"], "anon");
        // Rotation: a newer key signs; the old one still verifies until retired.
        let mut k2 = SigningKey::generate_es256().unwrap();
        k2.created_at = k1.created_at + 1;
        c.keys.push(k2.clone());
        let t2 = c.sign(&claims(json!({"role": "anon", "exp": 2000})));
        let kid_of = |t: &str| {
            let h: Value = serde_json::from_slice(&B64URL.decode(t.split('.').next().unwrap()).unwrap()).unwrap();
            h["kid"].as_str().unwrap().to_string()
        };
        assert_eq!(kid_of(&t2), k2.kid);
        assert!(c.verify_at(&t1, 1000).is_ok() && c.verify_at(&t2, 1000).is_ok());
        c.keys[0].retired = true;
        assert_eq!(c.verify_at(&t1, 1000).unwrap_err().0, "JWT kid is not known");
        assert!(c.verify_at(&t2, 1000).is_ok());
        assert_eq!(c.jwks()["keys"].as_array().unwrap().len(), 1);
        assert_eq!(c.jwks()["keys"][0]["kid"], k2.kid.as_str());
    }

    #[test]
    fn es256_refuses_confused_and_forged_tokens() {
        let k = SigningKey::generate_es256().unwrap();
        let c = JwtConfig { alg: Alg::ES256, keys: vec![k.clone()], ..cfg() };
        let good = c.sign(&claims(json!({"role": "anon", "exp": 2000})));
        let (_, rest) = good.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        // HS256 keyed with the public key (the classic algorithm confusion).
        let public = k.public_point().unwrap();
        let hs = JwtConfig { secret: public.clone(), ..cfg() };
        let confused = hs.sign(&claims(json!({"role": "service_role", "exp": 2000})));
        assert!(c.verify_at(&confused, 1000).unwrap_err().0.contains("HS256"));
        let jwk_pem = JwtConfig { secret: B64URL.encode(&public).into_bytes(), ..cfg() };
        assert!(c.verify_at(&jwk_pem.sign(&claims(json!({"exp": 2000}))), 1000).is_err());
        // Unknown kid, kid path tricks, no kid, a kid of another type.
        for header in [
            json!({"alg": "ES256", "kid": "nope"}),
            json!({"alg": "ES256", "kid": "../../../../dev/null"}),
            json!({"alg": "ES256", "kid": format!("{}/../{}", k.kid, k.kid)}),
            json!({"alg": "ES256"}),
            json!({"alg": "ES256", "kid": 7}),
            json!({"alg": "ES256", "kid": k.kid, "jwk": {"kty": "EC"}}),
            json!({"alg": "ES256", "kid": k.kid, "x5u": "http://evil/cert"}),
            json!({"alg": "none", "kid": k.kid}),
        ] {
            let h = B64URL.encode(header.to_string().as_bytes());
            assert!(c.verify_at(&format!("{h}.{p}.{s}"), 1000).is_err(), "{header}");
        }
        // A signature by another key under the right kid.
        let mut other = SigningKey::generate_es256().unwrap();
        other.kid = k.kid.clone();
        let forged = JwtConfig { alg: Alg::ES256, keys: vec![other], ..cfg() }.sign(&claims(json!({"exp": 2000})));
        assert_eq!(c.verify_at(&forged, 1000).unwrap_err().0, "JWT signature does not match");
        // HS256 servers refuse any kid.
        let h = cfg();
        let t = h.sign(&claims(json!({"exp": 2000})));
        let (_, rest) = t.split_once('.').unwrap();
        let kid_header = B64URL.encode(br#"{"alg":"HS256","kid":"k1"}"#);
        assert_eq!(h.verify_at(&format!("{kid_header}.{rest}"), 1000).unwrap_err().0, "JWT kid is not known");
    }
}
