//! JSON Web Tokens: compact-serialised JWS with the algorithm pinned by configuration.
//!
//! Only what the server configured is accepted: the header's `alg` must equal it (so `none`, or an
//! HMAC token made with a public key, never verifies), `crit`, `jku`, `x5u` and `jwk` headers are
//! refused, `exp` is required, `nbf`/`iat` are checked with a bounded leeway and `aud`/`iss` when
//! configured. Signatures are checked with `ring` in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Map, Value};

/// Longest token accepted, in bytes (headers of a few KiB are already unusual).
pub const TOKEN_BYTES_MAX: usize = 8 << 10;
/// Most clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_S_MAX: u64 = 60;

/// How tokens are checked.
#[derive(Clone)]
pub struct JwtConfig {
    /// HS256 secret.
    pub secret: Vec<u8>,
    /// Required `aud` (string or one element of an array), if set.
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
        let header: Map<String, Value> =
            serde_json::from_slice(&decode_part(h, "header")?).map_err(|_| err("JWT header is not a JSON object"))?;
        match header.get("alg").and_then(Value::as_str) {
            Some("HS256") => {}
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
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
        let signed = &token[..h.len() + 1 + p.len()];
        ring::hmac::verify(&key, signed.as_bytes(), &sig).map_err(|_| err("JWT signature does not match"))?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&decode_part(p, "payload")?).map_err(|_| err("JWT payload is not a JSON object"))?;
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
        if let Some(aud) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => a == aud,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(aud)),
                _ => false,
            };
            if !ok {
                return Err(err("JWT audience is not accepted"));
            }
        }
        if let Some(iss) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(iss.as_str())
        {
            return Err(err("JWT issuer is not accepted"));
        }
        Ok(claims)
    }

    /// Signs `claims` (HS256).
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        let header = B64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = B64URL.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signed = format!("{header}.{payload}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
        let sig = B64URL.encode(ring::hmac::sign(&key, signed.as_bytes()).as_ref());
        format!("{signed}.{sig}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> JwtConfig {
        JwtConfig {
            secret: b"a-secret-of-at-least-32-bytes-long!!".to_vec(),
            audience: None,
            issuer: None,
            leeway_s: 30,
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
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
}
