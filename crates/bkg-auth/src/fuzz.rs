//! Fuzz targets of this crate, run by `bkg_kernel::fuzzing` inside the normal test suite for a
//! bounded time (how, the budget and the knobs: that module's documentation).
//!
//! | test               | code under test                                                   |
//! |--------------------|-------------------------------------------------------------------|
//! | `jwt`              | [`JwtConfig::verify_at`] (HS256), raw tokens and re-signed JSON    |

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use bkg_kernel::fuzzing::{Budget, Spec, TEXT_TOKENS, corpus, run};
use serde_json::{Map, Value as Json};

use crate::jwt::{Alg, JwtConfig};

// ---------------------------------------------------------------------------------------------
// jwt

/// The public demo secret of Supabase's local stack (testdata/fuzz/jwt/supabase_demo_anon.token
/// is signed with it).
const JWT_SECRET: &[u8] = b"super-secret-jwt-token-with-at-least-32-characters-long";
const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// Times tokens are checked at: before the seeds' `exp`, now-ish, and the end of time.
const JWT_NOWS: [u64; 3] = [1000, 1_700_000_000, u64::MAX];

fn jwt_configs() -> Vec<JwtConfig> {
    let base = JwtConfig {
        alg: Alg::HS256,
        secret: JWT_SECRET.to_vec(),
        keys: vec![],
        audience: None,
        issuer: None,
        leeway_s: 30,
    };
    let strict = JwtConfig {
        audience: Some("authenticated".into()),
        issuer: Some("supabase-demo".into()),
        leeway_s: u64::MAX,
        ..base.clone()
    };
    vec![base, strict]
}

/// An HS256 token over header and payload bytes as given.
fn sign_raw(header: &[u8], payload: &[u8]) -> String {
    let signed = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, JWT_SECRET);
    format!("{signed}.{}", B64URL.encode(ring::hmac::sign(&key, signed.as_bytes()).as_ref()))
}

/// Verifies `token` with each configuration at each time. An accepted token must carry a valid
/// HMAC of its first two parts under the secret, and an `exp` not yet passed (with at most
/// LEEWAY_S_MAX of skew); its claims stay proportional to its size.
fn jwt_verify(configs: &[JwtConfig], token: &str) -> bool {
    let mut accepted = false;
    for c in configs {
        for now in JWT_NOWS {
            let Ok(claims) = c.verify_at(token, now) else { continue };
            accepted = true;
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(parts.len(), 3, "accepted a token of {} parts", parts.len());
            let sig = B64URL.decode(parts[2]).expect("an accepted token's signature is base64url");
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, JWT_SECRET);
            let signed = &token[..parts[0].len() + 1 + parts[1].len()];
            assert!(
                ring::hmac::verify(&key, signed.as_bytes(), &sig).is_ok(),
                "accepted a token not signed with the secret"
            );
            let exp = claims.get("exp").and_then(Json::as_f64).expect("an accepted token has a numeric exp");
            let leeway = c.leeway_s.min(crate::limits::LEEWAY_S_MAX);
            assert!((now as f64) < exp + leeway as f64 + 1.0, "accepted at {now} a token that expired at {exp}");
            let size = serde_json::to_string(&claims).map_or(0, |s| s.len());
            assert!(size <= 8 * token.len() + 64, "a {}-byte token made {size} bytes of claims", token.len());
        }
    }
    accepted
}

/// Claims sets the server meets: an API key, a GoTrue user token, one with every time claim.
fn jwt_claims() -> Vec<Map<String, Json>> {
    let obj = |v: Json| v.as_object().cloned().unwrap_or_default();
    vec![
        obj(serde_json::json!({"iss": "supabase-demo", "role": "anon", "exp": 2000})),
        obj(serde_json::json!({
            "aud": "authenticated", "exp": 2000, "iat": 900, "iss": "supabase-demo",
            "sub": "8d0fbd41-2d38-4ee6-9a0c-5e2b1f7f3c1a", "email": "a@example.com", "role": "authenticated",
            "app_metadata": {"provider": "email", "providers": ["email"]}, "user_metadata": {},
            "amr": [{"method": "password", "timestamp": 900}], "session_id": "4c1f0b6e", "is_anonymous": false,
        })),
        obj(
            serde_json::json!({"exp": 2000.5, "nbf": 900, "iat": 900, "aud": ["x", "authenticated"], "role": "service_role"}),
        ),
    ]
}

#[test]
fn jwt() {
    let configs = jwt_configs();
    let budget = Budget::from_env();
    let files = corpus("jwt");
    let claims = jwt_claims();

    // Raw tokens: signed ones (which verify until mutated) and the corpus's *.token files.
    let mut token_seeds: Vec<(String, Vec<u8>)> = claims
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("signed claims {i}"), configs[0].sign(c).into_bytes()))
        .collect();
    token_seeds.extend(files.iter().filter(|(f, _)| f.ends_with(".token")).cloned());
    for (label, t) in &token_seeds[..claims.len()] {
        let t = String::from_utf8_lossy(t);
        assert!(configs[0].verify_at(&t, 1000).is_ok(), "seed {label} does not verify");
    }
    let mut tokens: Vec<&str> = TEXT_TOKENS.to_vec();
    tokens.extend(["eyJ", "e30", "AAAA", "_", "-", "=", "+", "/", "..", "fQ", "In0", "eyJhbGciOiJub25lIn0"]);
    let spec = Spec { name: "jwt", ext: "token", max_len: crate::limits::TOKEN_BYTES_MAX + 64, tokens: &tokens };
    run(&spec, &budget.share(2), &token_seeds, &mut |input: &[u8]| {
        jwt_verify(&configs, &String::from_utf8_lossy(input))
    });

    // Header and payload JSON (a newline between them), mutated, then encoded and signed with
    // the secret, so that what lies behind the signature check is reached.
    let mut json_seeds: Vec<(String, Vec<u8>)> = claims
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let payload = serde_json::to_string(c).unwrap_or_default();
            (format!("claims {i}"), format!("{HS256_HEADER}\n{payload}").into_bytes())
        })
        .collect();
    json_seeds.extend(files.iter().filter(|(f, _)| f.ends_with(".json")).cloned());
    let mut tokens: Vec<&str> = TEXT_TOKENS.to_vec();
    tokens.extend([
        "{",
        "}",
        "[",
        "]",
        ":",
        "\"exp\":",
        "\"nbf\":",
        "\"iat\":",
        "\"aud\":",
        "\"iss\":",
        "\"alg\":",
        "\"kid\":",
        "\"crit\":",
        "\"jku\":",
        "\"role\":",
        "\"HS256\"",
        "\"none\"",
        "\"authenticated\"",
        "null",
        "true",
        "1e308",
        "-0",
        "0.5",
        "18446744073709551616",
        "1e-400",
        "\\u0000",
        "\\ud800",
        "\\u006f",
        "[[[[[[[[",
        "]]]]]]]]",
    ]);
    let spec = Spec { name: "jwt", ext: "json", max_len: 6144, tokens: &tokens };
    run(&spec, &budget.share(2), &json_seeds, &mut |input: &[u8]| {
        let (header, payload) = match input.iter().position(|b| *b == b'\n') {
            Some(at) => (&input[..at], &input[at + 1..]),
            None => (HS256_HEADER.as_bytes(), input),
        };
        jwt_verify(&configs, &sign_raw(header, payload))
    });
}
