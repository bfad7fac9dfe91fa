//! The admin API behind the dashboard, through a real server: who may call what (a scenario
//! table with what must and must not appear), the overview and rates, slow statements of every
//! door, audit verification that finds a tampered line, user bans and sessions, and signing and
//! API key rotation taking effect at once.

use serde_json::{Value, json};

use crate::rls::{SECRET, token};
use crate::server::TestServer;

fn get(s: &TestServer, path: &str, key: Option<&str>) -> (u16, Value) {
    call(s, "GET", path, key, b"")
}

fn call(s: &TestServer, method: &str, path: &str, key: Option<&str>, body: &[u8]) -> (u16, Value) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    if let (Some(k), Some(a)) = (key, auth.as_deref()) {
        headers.push(("apikey", k));
        headers.push(("authorization", a));
    }
    let (st, _, body) = s.http(method, path, &headers, body);
    (st, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

#[test]
fn who_may_call_what() {
    let s = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET)]);
    let service = token(json!({"role": "service_role"}));
    let user = token(
        json!({"role": "authenticated", "sub": "6a1b3c1e-0000-4000-8000-000000000001", "email": "u@example.com"}),
    );
    let admin_scope =
        token(json!({"role": "authenticated", "sub": "6a1b3c1e-0000-4000-8000-000000000002", "scopes": ["admin"]}));
    let scoped_service = token(json!({"role": "service_role", "scope": "ns:public:read"}));
    let (anon, _) = s.api_keys();
    // (path, caller, status, must appear, must not appear)
    let cases: Vec<(&str, Option<&str>, u16, &str, &str)> = vec![
        ("/admin/bootstrap", None, 200, "anon_key", "service"),
        ("/admin/whoami", None, 401, "", "role"),
        ("/admin/whoami", Some(&anon), 200, "\"role\":\"anon\"", "\"admin\":true"),
        ("/admin/whoami", Some(&user), 200, "u@example.com", "\"admin\":true"),
        ("/admin/whoami", Some(&admin_scope), 200, "\"admin\":true", "\"service_role\":true"),
        ("/admin/whoami", Some(&service), 200, "\"service_role\":true", ""),
        ("/admin/overview", None, 401, "", "tables"),
        ("/admin/overview", Some(&anon), 403, "42501", "tables"),
        ("/admin/overview", Some(&user), 403, "42501", "tables"),
        ("/admin/overview", Some(&admin_scope), 200, "\"tables\"", ""),
        ("/admin/overview", Some(&service), 200, "\"schema\":\"auth\"", "service_key"),
        ("/admin/metrics/history", Some(&user), 403, "42501", "samples"),
        ("/admin/metrics/history", Some(&service), 200, "\"interval_s\"", ""),
        ("/admin/statements/slow", Some(&user), 403, "42501", "statements"),
        ("/admin/statements/slow", Some(&service), 200, "\"threshold_ms\"", ""),
        ("/audit/verify", Some(&user), 403, "42501", "\"ok\""),
        ("/audit/verify", Some(&service), 200, "\"ok\":true", ""),
        // Keys belong to the service role alone, not to admin-scoped users.
        ("/admin/keys", Some(&admin_scope), 403, "42501", "signing_keys"),
        ("/admin/keys", Some(&service), 200, "\"algorithm\":\"HS256\"", "secret"),
        // A service token limited by scopes is not the service role's full power.
        ("/admin/keys", Some(&scoped_service), 403, "42501", "signing_keys"),
        ("/admin/overview", Some(&scoped_service), 403, "42501", "tables"),
    ];
    for (path, key, status, must, must_not) in cases {
        let (st, body) = get(&s, path, key);
        let text = body.to_string();
        assert_eq!(st, status, "{path} as {key:?}: {text}");
        assert!(text.contains(must), "{path}: {must} missing from {text}");
        assert!(must_not.is_empty() || !text.contains(must_not), "{path}: {must_not} in {text}");
    }
    // The anon key the sign-in page gets is the server's.
    assert_eq!(get(&s, "/admin/bootstrap", None).1["anon_key"], anon.as_str());
    let (st, body) = call(&s, "POST", "/admin/keys/rotate-api-keys", Some(&scoped_service), b"");
    assert_eq!(st, 403, "a scoped service token minted unscoped keys: {body}");
    // HS256 has no key ring to rotate: a clear refusal.
    let (st, body) = call(&s, "POST", "/admin/keys/rotate", Some(&service), b"");
    assert_eq!(st, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("HS256"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn overview_counts_rows_and_errors_are_counted_by_code() {
    let s = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET)]);
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE notes (id int PRIMARY KEY, body text);
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY mine ON notes USING (true);
         INSERT INTO notes (id) SELECT * FROM generate_series(1, 123);",
    )
    .await
    .unwrap();
    assert!(c.simple_query("SELEC 1").await.is_err());
    let service = token(json!({"role": "service_role"}));
    let (st, _) = get(&s, "/rest/v1/no_such_table", Some(&service));
    assert_eq!(st, 404);
    let (st, o) = get(&s, "/admin/overview", Some(&service));
    assert_eq!(st, 200, "{o}");
    let notes = o["tables"].as_array().unwrap().iter().find(|t| t["name"] == "notes").cloned().unwrap();
    assert_eq!(notes["rows"], 123, "{notes}");
    assert_eq!(notes["rls_enabled"], true);
    assert_eq!(notes["policies"], 1);
    assert_eq!(o["connections"]["pgwire"], 1, "{o}");
    // This request's own connection; no Flight client.
    assert!(o["connections"]["http"].as_u64().unwrap() >= 1, "{o}");
    assert_eq!(o["connections"]["flight"], 0, "{o}");
    assert!(
        o["wal_bytes"].as_u64().unwrap() > 0
            && o["data_dir_bytes"].as_u64().unwrap() >= o["wal_bytes"].as_u64().unwrap()
    );
    assert_eq!(o["listeners"]["pgwire"], format!("127.0.0.1:{}", s.pg_port));
    let (_, h) = get(&s, "/admin/metrics/history", Some(&service));
    assert_eq!(h["errors_by_code"]["42601"], 1, "{h}");
    assert!(h["errors_by_code"]["42P01"].as_u64().unwrap() >= 1, "{h}");
    // The same counts in /metrics, by door.
    let (_, metrics) = s.http_get("/metrics");
    assert!(metrics.contains("bkg_errors_total{door=\"pgwire\",code=\"42601\"} 1"), "{metrics}");
    assert!(metrics.contains("bkg_http_request_duration_seconds_bucket{le=\"+Inf\"}"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_statements_of_every_door_are_kept() {
    // A threshold every real statement passes; which statements are kept by duration is the
    // unit tests' (bkg_sql::slow).
    let s = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET), ("BKG_DB_SLOW_STATEMENT_MS", "1")]);
    let c = s.connect().await;
    // Real work (a plain count of a cross join is answered from statistics).
    let heavy =
        "SELECT count(*) FROM generate_series(1, 2000) AS a(x), generate_series(1, 2000) AS b(y) WHERE (x * y) % 7 = 3";
    c.simple_query(heavy).await.unwrap();
    let service = token(json!({"role": "service_role"}));
    let body = json!({"query": format!("{heavy} AND true")}).to_string();
    let (st, body) = call(&s, "POST", "/query", Some(&service), body.as_bytes());
    assert_eq!(st, 200, "{body}");
    let (_, v) = get(&s, "/admin/statements/slow?limit=200", Some(&service));
    assert_eq!(v["threshold_ms"], 1);
    let list = v["statements"].as_array().unwrap();
    let rest = list
        .iter()
        .position(|x| x["statement"].as_str().unwrap().ends_with("AND true"))
        .unwrap_or_else(|| panic!("REST's statement missing: {v}"));
    let pg = list.iter().position(|x| x["statement"] == heavy).unwrap_or_else(|| panic!("pgwire's missing: {v}"));
    assert!(rest < pg, "newest first: {v}");
    assert_eq!((list[rest]["door"].as_str(), list[rest]["role"].as_str()), (Some("rest"), Some("service_role")));
    assert_eq!((list[pg]["door"].as_str(), list[pg]["role"].as_str()), (Some("pgwire"), Some("postgres")));
    assert!(list[pg]["duration_ms"].as_f64().unwrap() >= 1.0, "{v}");
    assert!(list[pg]["sqlstate"].is_null());
    // A statement that fails after its work: kept with its SQLSTATE.
    c.simple_query(&format!("SELECT 1 / (c - c) FROM ({heavy}) AS t(c)")).await.unwrap_err();
    // Passwords never reach the log, as in the audit log.
    c.simple_query(&format!("CREATE ROLE slowpoke PASSWORD 'hunter2-secret'; {heavy}")).await.unwrap();
    let (_, v) = get(&s, "/admin/statements/slow?limit=2", Some(&service));
    assert_eq!(v["statements"].as_array().unwrap().len(), 2);
    assert!(v["statements"][0]["statement"].as_str().unwrap().contains("PASSWORD '***'"), "{v}");
    assert!(!v.to_string().contains("hunter2"), "{v}");
    assert_eq!(v["statements"][1]["sqlstate"], "22012", "{v}");
}

#[test]
fn audit_verification_names_the_first_tampered_line() {
    let s = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET)]);
    let service = token(json!({"role": "service_role"}));
    let (_, v) = get(&s, "/audit/verify", Some(&service));
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["events"].as_u64().unwrap() > 1);
    let seg = s.dir.join("audit/audit-000001.jsonl");
    let text = std::fs::read_to_string(&seg).unwrap();
    let tampered = text.replacen("\"outcome\":\"success\"", "\"outcome\":\"failure\"", 1);
    assert_ne!(text, tampered);
    std::fs::write(&seg, tampered).unwrap();
    let (st, v) = get(&s, "/audit/verify", Some(&service));
    assert_eq!(st, 200);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_bad"]["segment"], "audit-000001.jsonl", "{v}");
    assert!(v["first_bad"]["line"].as_u64().unwrap() >= 2, "{v}");
}

fn sign_in(s: &TestServer, anon: &str, email: &str, password: &str) -> (u16, Value) {
    let body = json!({"email": email, "password": password}).to_string();
    call(s, "POST", "/auth/v1/token?grant_type=password", Some(anon), body.as_bytes())
}

#[test]
fn users_are_filtered_banned_and_signed_out_everywhere() {
    let s = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET)]);
    let (anon, service) = s.api_keys();
    for email in ["ada@example.com", "bob@example.com", "a_b@example.org"] {
        let body = json!({"email": email, "password": "correct horse 1", "email_confirm": true}).to_string();
        let (st, v) = call(&s, "POST", "/auth/v1/admin/users", Some(&service), body.as_bytes());
        assert_eq!(st, 200, "{v}");
    }
    let emails = |filter: &str| {
        let (st, v) = get(&s, &format!("/auth/v1/admin/users?filter={filter}"), Some(&service));
        assert_eq!(st, 200, "{v}");
        v["users"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(emails("EXAMPLE.COM"), ["ada@example.com", "bob@example.com"]);
    // `_` is a character to find, not a LIKE wildcard.
    assert_eq!(emails("a_b"), ["a_b@example.org"]);
    assert_eq!(emails("%25"), Vec::<String>::new());
    let (st, v) = sign_in(&s, &anon, "ada@example.com", "correct horse 1");
    assert_eq!(st, 200, "{v}");
    let id = v["user"]["id"].as_str().unwrap().to_string();
    let refresh = v["refresh_token"].as_str().unwrap().to_string();
    sign_in(&s, &anon, "ada@example.com", "correct horse 1");
    let (_, v) = get(&s, &format!("/auth/v1/admin/users/{id}/sessions"), Some(&service));
    assert_eq!(v["sessions"].as_array().unwrap().len(), 2, "{v}");
    // A ban refuses sign-in and ends the sessions (their refresh tokens stop working).
    let (st, v) = call(&s, "PUT", &format!("/auth/v1/admin/users/{id}"), Some(&service), br#"{"ban_duration": "24h"}"#);
    assert_eq!(st, 200, "{v}");
    assert!(v["banned_until"].as_str().is_some_and(|t| t > "2026"), "{v}");
    let (st, v) = sign_in(&s, &anon, "ada@example.com", "correct horse 1");
    assert_eq!((st, v["error_code"].as_str()), (400, Some("user_banned")), "{v}");
    let body = json!({"refresh_token": refresh}).to_string();
    let (st, _) = call(&s, "POST", "/auth/v1/token?grant_type=refresh_token", Some(&anon), body.as_bytes());
    assert_eq!(st, 400);
    let (_, v) = get(&s, &format!("/auth/v1/admin/users/{id}/sessions"), Some(&service));
    assert_eq!(v["sessions"], json!([]));
    let (st, v) =
        call(&s, "PUT", &format!("/auth/v1/admin/users/{id}"), Some(&service), br#"{"ban_duration": "1 fortnight"}"#);
    assert_eq!(st, 400, "{v}");
    let (_, v) = call(&s, "PUT", &format!("/auth/v1/admin/users/{id}"), Some(&service), br#"{"ban_duration": "none"}"#);
    assert!(v["banned_until"].is_null(), "{v}");
    assert_eq!(sign_in(&s, &anon, "ada@example.com", "correct horse 1").0, 200);
    sign_in(&s, &anon, "ada@example.com", "correct horse 1");
    let (st, v) = call(&s, "DELETE", &format!("/auth/v1/admin/users/{id}/sessions"), Some(&service), b"");
    assert_eq!((st, v["ended"].as_u64()), (200, Some(2)), "{v}");
    let (_, audit) = get(&s, "/audit?action=user", Some(&service));
    assert!(audit.to_string().contains("user.signout_all"), "{audit}");
}

#[test]
fn signing_and_api_keys_rotate_at_once() {
    let s = TestServer::start_with(&[("BKG_DB_JWT_ALG", "ES256")]);
    let (anon, service) = s.api_keys();
    let (_, v) = get(&s, "/admin/keys", Some(&service));
    let keys = v["signing_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1, "{v}");
    assert_eq!(keys[0]["state"], "signing");
    let old = keys[0]["kid"].as_str().unwrap().to_string();
    assert!(!v.to_string().contains("pkcs8"), "{v}");
    // The only signing key cannot be retired.
    let (st, v) = call(&s, "POST", &format!("/admin/keys/{old}/retire"), Some(&service), b"");
    assert_eq!(st, 400, "{v}");
    let (st, v) = call(&s, "POST", "/admin/keys/rotate", Some(&service), b"");
    assert_eq!(st, 200, "{v}");
    let new = v["kid"].as_str().unwrap().to_string();
    let states: Vec<(String, String)> = v["keys"]["signing_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kid"].as_str().unwrap().into(), k["state"].as_str().unwrap().into()))
        .collect();
    assert_eq!(states, [(old.clone(), "verifying".to_string()), (new.clone(), "signing".to_string())]);
    // New API keys are signed by the new key; once the old key is retired, what it signed stops working.
    let (st, v) = call(&s, "POST", "/admin/keys/rotate-api-keys", Some(&service), b"");
    assert_eq!(st, 200, "{v}");
    let (new_anon, new_service) =
        (v["anon_key"].as_str().unwrap().to_string(), v["service_key"].as_str().unwrap().to_string());
    assert_ne!(new_service, service);
    assert_eq!(get(&s, "/admin/whoami", Some(&new_service)).1["service_role"], true);
    assert_eq!(get(&s, "/admin/whoami", Some(&new_anon)).1["role"], "anon");
    let (st, v) = call(&s, "POST", &format!("/admin/keys/{old}/retire"), Some(&new_service), b"");
    assert_eq!(st, 200, "{v}");
    // The new API keys were signed by the new key: nothing to sign again, and keys.json keeps
    // them (a change used to start from the keys the server started with and write those back).
    assert!(v["api_keys_reissued"].is_null(), "{v}");
    assert_eq!(s.api_keys(), (new_anon.clone(), new_service.clone()));
    assert_eq!(get(&s, "/admin/bootstrap", None).1["anon_key"], new_anon.as_str());
    assert_eq!(get(&s, "/admin/whoami", Some(&service)).0, 401, "a key signed by the retired key still works");
    assert_eq!(get(&s, "/admin/whoami", Some(&anon)).0, 401);
    // The keys.json watcher (every 2 s) sees the server's own writes and changes nothing back.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(get(&s, "/admin/whoami", Some(&service)).0, 401, "the retirement was undone");
    assert_eq!(get(&s, "/admin/whoami", Some(&new_service)).0, 200);
    // Never shown again, and every change audited with its actor.
    assert!(!get(&s, "/admin/keys", Some(&new_service)).1.to_string().contains(&new_service));
    let (_, audit) = get(&s, "/audit?action=keys", Some(&new_service));
    let text = audit.to_string();
    for action in ["keys.rotate", "keys.rotate_api_keys", "keys.retire"] {
        assert!(text.contains(action), "{action} missing: {text}");
    }
    assert!(!text.contains("keys.changed"), "the server's own changes were audited twice: {text}");
    assert!(!text.contains(&new_service), "a key in the audit log");
}

#[test]
fn the_dashboard_is_served_with_a_strict_policy() {
    let s = TestServer::start();
    let (st, head, body) = s.http("GET", "/admin/", &[], b"");
    assert_eq!(st, 200);
    assert!(head.contains("content-security-policy: default-src 'self'; script-src 'self'"), "{head}");
    assert!(!head.contains("'unsafe-eval'") && !head.contains("script-src 'self' 'unsafe-inline'"), "{head}");
    assert!(head.contains("x-frame-options: deny"), "{head}");
    // Either the dashboard or the page saying how to build it.
    assert!(body.contains("bkg-db admin"), "{body}");
    let (st, head, _) = s.http("GET", "/admin", &[], b"");
    assert_eq!(st, 308);
    assert!(head.contains("location: /admin/"), "{head}");
    // The API keeps its paths under /admin/.
    assert_eq!(s.http("GET", "/admin/overview", &[], b"").0, 401);
    assert_eq!(s.http("GET", "/admin/../Cargo.toml", &[], b"").0, 404);
}

/// A policy changed through `/policy` is the caller's change in the audit log, though the
/// superuser's session does the work.
#[tokio::test(flavor = "multi_thread")]
async fn policy_changes_through_the_api_name_the_caller() {
    let s = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET)]);
    let c = s.connect().await;
    c.batch_execute("CREATE TABLE docs (id int PRIMARY KEY, owner uuid)").await.unwrap();
    let service = token(json!({"role": "service_role"}));
    let body = json!({"table": "docs", "name": "own", "command": "select", "roles": ["authenticated"], "using": "owner = auth.uid()"});
    let (st, v) = call(&s, "POST", "/policy", Some(&service), body.to_string().as_bytes());
    assert_eq!(st, 201, "{v}");
    // Pages in a stable order, with the total.
    for name in ["b_two", "a_one", "c_three"] {
        let body = json!({"table": "docs", "name": name, "using": "true"});
        assert_eq!(call(&s, "POST", "/policy", Some(&service), body.to_string().as_bytes()).0, 201);
    }
    let auth = format!("Bearer {service}");
    let (st, head, body) =
        s.http("GET", "/policy?table=docs&limit=2&offset=1", &[("apikey", &service), ("authorization", &auth)], b"");
    assert_eq!(st, 200, "{body}");
    assert!(head.contains("x-total-count: 4"), "{head}");
    let names: Vec<String> = serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["b_two", "c_three"]);
    for name in ["a_one", "b_two", "c_three"] {
        assert_eq!(call(&s, "DELETE", &format!("/policy/public.docs/{name}"), Some(&service), b"").0, 204);
    }
    let (st, v) = call(&s, "DELETE", "/policy/public.docs/own", Some(&service), b"");
    assert_eq!(st, 204, "{v}");
    let (_, audit) = get(&s, "/audit?action=policy", Some(&service));
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 8, "{audit}");
    for e in events {
        assert_eq!(e["actor"]["role"], "service_role", "{e}");
        assert!(e["actor"]["address"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{e}");
    }
}
