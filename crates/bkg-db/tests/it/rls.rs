//! Row-level security from the outside: the bypass matrix over pgwire (a JWT as the password,
//! psql over TLS) and REST, for anon, two users and the service role; and the token rules of
//! the pgwire login.

use std::process::Command;

use bkg_db::auth::jwt::{Alg, JwtConfig};
use serde_json::{Map, Value, json};

use crate::server::TestServer;

pub const SECRET: &str = "rls-test-secret-rls-test-secret-0123456789";

fn tls_files() -> (String, String) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/tls");
    (format!("{dir}/server.crt"), format!("{dir}/server.key"))
}

fn start() -> TestServer {
    let (cert, key) = tls_files();
    TestServer::start_with(&[
        ("BKG_DB_JWT_SECRET", SECRET),
        ("BKG_DB_PG_TLS_CERT", &cert),
        ("BKG_DB_PG_TLS_KEY", &key),
        ("BKG_DB_PG_CLEARTEXT_OVER_TLS", "true"),
        ("BKG_DB_REST_RATE_PER_S", "0"),
    ])
}

pub fn token(claims: Value) -> String {
    let jwt = JwtConfig {
        alg: Alg::HS256,
        keys: vec![],
        secret: SECRET.as_bytes().to_vec(),
        audience: None,
        issuer: None,
        leeway_s: 60,
    };
    let mut c: Map<String, Value> = claims.as_object().cloned().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    c.entry("exp").or_insert(json!(now + 3600));
    jwt.sign(&c)
}

/// Who asks: the pgwire user name and the token (also the REST key).
struct Principal {
    name: &'static str,
    role: &'static str,
    token: String,
}

fn principals() -> Vec<Principal> {
    vec![
        Principal { name: "anon", role: "anon", token: token(json!({"role": "anon"})) },
        Principal { name: "A", role: "authenticated", token: token(json!({"role": "authenticated", "sub": "A"})) },
        Principal { name: "B", role: "authenticated", token: token(json!({"role": "authenticated", "sub": "B"})) },
        Principal { name: "service", role: "service_role", token: token(json!({"role": "service_role"})) },
    ]
}

/// Runs `sql` with psql over TLS, logged in with `password` (a token); the result rows, one
/// per line, or `error:<SQLSTATE>`.
fn psql_as(server: &TestServer, user: &str, password: &str, sql: &str) -> String {
    let dsn = format!("host=127.0.0.1 port={} user={user} dbname=postgres sslmode=require", server.pg_port);
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "VERBOSITY=verbose", &dsn, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql is installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(at) = stderr.find("ERROR:  ") {
        return format!("error:{}", &stderr[at + 8..at + 13]);
    }
    if !out.status.success() {
        return format!("failed:{stderr}");
    }
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    lines.sort();
    lines.join(",")
}

/// Sends a REST request as `p`; the sorted `id`s of the JSON answer, or `error:<code>`.
fn rest_as(server: &TestServer, p: &Principal, method: &str, path: &str, body: &str) -> String {
    let auth = format!("Bearer {}", p.token);
    let headers = [
        ("apikey", p.token.as_str()),
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Prefer", "return=representation"),
    ];
    let (status, _, body) = server.http(method, path, &headers, body.as_bytes());
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if status >= 400 {
        return format!("error:{}", v["code"].as_str().unwrap_or("?"));
    }
    let rows = v.as_array().cloned().or_else(|| v["results"][0]["rows"].as_array().cloned()).unwrap_or_default();
    let mut ids: Vec<String> = rows.iter().map(|r| r["id"].to_string()).collect();
    ids.sort();
    ids.join(",")
}

const SETUP: &str = "
    CREATE TABLE todos (id int PRIMARY KEY, owner text NOT NULL, task text NOT NULL);
    CREATE POLICY todos_owner ON todos TO authenticated
        USING (owner = auth.uid()) WITH CHECK (owner = auth.uid());
    GRANT SELECT, INSERT, UPDATE, DELETE ON todos TO anon, authenticated;
    CREATE VIEW todo_view AS SELECT id, owner FROM todos;
    GRANT SELECT ON todo_view TO anon, authenticated;
";

const RESET: &str = "DELETE FROM todos; INSERT INTO todos VALUES (1, 'A', 'a1'), (2, 'A', 'a2'), (3, 'B', 'b1')";

/// The rows each principal may touch: A owns 1 and 2, B owns 3; anon has no policy.
fn visible(who: &str) -> &'static str {
    match who {
        "A" => "1,2",
        "B" => "3",
        "service" => "1,2,3",
        _ => "",
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bypass_matrix_over_pgwire_and_rest() {
    let server = start();
    let admin = server.connect().await;
    admin.batch_execute(SETUP).await.unwrap();
    let mut failures = Vec::new();
    for p in principals() {
        let v = visible(p.name);
        let denied_insert = if p.name == "B" || p.name == "service" { "10" } else { "error:42501" };
        // (query, expected) over pgwire; every write is undone by RESET before the next case.
        let pg_cases: Vec<(&str, String)> = vec![
            ("SELECT id FROM todos", v.into()),
            ("SELECT id FROM todo_view", v.into()),
            ("WITH t AS (SELECT * FROM todos) SELECT id FROM t", v.into()),
            ("SELECT id FROM (SELECT id FROM todos) s", v.into()),
            ("SELECT t.id FROM todos t JOIN todos u ON t.id = u.id", v.into()),
            ("SELECT id FROM todos UNION SELECT id FROM todos", v.into()),
            ("SELECT id FROM todos WHERE id = 3", if v.contains('3') { "3" } else { "" }.into()),
            ("SELECT id FROM todos WHERE owner = 'B'", if v.contains('3') { "3" } else { "" }.into()),
            (
                "SELECT 3 WHERE EXISTS (SELECT 1 FROM todos WHERE task = 'b1')",
                if v.contains('3') { "3" } else { "" }.into(),
            ),
            (
                "SELECT count(*) || ':' || coalesce(min(id), 0) || ':' || coalesce(max(id), 0) FROM todos",
                match p.name {
                    "A" => "2:1:2",
                    "B" => "1:3:3",
                    "service" => "3:1:3",
                    _ => "0:0:0",
                }
                .into(),
            ),
            ("COPY (SELECT id FROM todos) TO STDOUT", v.into()),
            // A user predicate never runs on hidden rows: it would divide by zero on b1.
            (
                "SELECT id FROM todos WHERE 1 / (CASE WHEN task = 'b1' THEN 0 ELSE 1 END) = 1",
                if v.contains('3') { "error:22012".into() } else { v.into() },
            ),
            ("UPDATE todos SET task = 'x' RETURNING id", v.into()),
            ("DELETE FROM todos RETURNING id", v.into()),
            (
                "UPDATE todos SET owner = 'B' WHERE id = 1 RETURNING id",
                match p.name {
                    "A" => "error:42501",
                    "service" => "1",
                    _ => "",
                }
                .into(),
            ),
            ("INSERT INTO todos VALUES (10, 'B', 'forged') RETURNING id", denied_insert.into()),
            (
                "INSERT INTO todos SELECT id + 100, owner, task FROM todos RETURNING id",
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|i| (100 + i.parse::<i32>().unwrap()).to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "DELETE FROM todos WHERE id IN (SELECT id FROM todos WHERE owner = 'B') RETURNING id",
                if v.contains('3') { "3" } else { "" }.into(),
            ),
        ];
        for (sql, want) in pg_cases {
            admin.batch_execute(RESET).await.unwrap();
            let got = psql_as(&server, p.role, &p.token, sql);
            if got != want {
                failures.push(format!("pgwire {} {sql}: got {got:?}, want {want:?}", p.name));
            }
        }
        let rest_cases: Vec<(&str, &str, &str, String)> = vec![
            ("GET", "/rest/v1/todos?select=id", "", v.into()),
            ("GET", "/rest/v1/todo_view?select=id", "", v.into()),
            ("GET", "/rest/v1/todos?select=id&id=eq.3", "", if v.contains('3') { "3" } else { "" }.into()),
            (
                "GET",
                "/rest/v1/todos?select=id&or=(owner.eq.B,task.eq.b1)",
                "",
                if v.contains('3') { "3" } else { "" }.into(),
            ),
            ("PATCH", "/rest/v1/todos?id=gte.0", r#"{"task": "x"}"#, v.into()),
            ("DELETE", "/rest/v1/todos?id=gte.0", "", v.into()),
            (
                "PATCH",
                "/rest/v1/todos?id=eq.1",
                r#"{"owner": "B"}"#,
                match p.name {
                    "A" => "error:42501",
                    "service" => "1",
                    _ => "",
                }
                .into(),
            ),
            ("POST", "/rest/v1/todos", r#"{"id": 10, "owner": "B", "task": "forged"}"#, denied_insert.into()),
            ("POST", "/query", r#"{"query": "SELECT id FROM todos"}"#, v.into()),
        ];
        for (method, path, body, want) in rest_cases {
            admin.batch_execute(RESET).await.unwrap();
            let got = rest_as(&server, &p, method, path, body);
            if got != want {
                failures.push(format!("REST {} {method} {path}: got {got:?}, want {want:?}", p.name));
            }
        }
    }
    // Nothing any principal did leaked into another's rows: the table is as RESET left it
    // after the last case, and EXPLAIN shows no row data.
    let explain = psql_as(&server, "authenticated", &principals()[1].token, "EXPLAIN SELECT * FROM todos");
    if explain.contains("b1") || explain.starts_with("error") {
        failures.push(format!("EXPLAIN: {explain}"));
    }
    assert!(failures.is_empty(), "{} of the matrix differ:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_a_pgwire_password_for_its_role_only() {
    let server = start();
    let admin = server.connect().await;
    admin.batch_execute(SETUP).await.unwrap();
    admin.batch_execute(RESET).await.unwrap();
    let a = token(json!({"role": "authenticated", "sub": "A", "email": "a@example.com"}));
    assert_eq!(psql_as(&server, "authenticated", &a, "SELECT auth.uid() || ' ' || auth.email()"), "A a@example.com");
    assert_eq!(psql_as(&server, "authenticated", &a, "SELECT current_user"), "authenticated");
    // The principal is fixed: no other role, no other claims.
    assert_eq!(psql_as(&server, "authenticated", &a, "SET ROLE service_role"), "error:42501");
    assert_eq!(psql_as(&server, "authenticated", &a, "SET ROLE anon"), "error:42501");
    assert_eq!(psql_as(&server, "authenticated", &a, "SET request.jwt.claims = '{\"sub\": \"B\"}'"), "error:42501");
    // The service role may act for a user, as a server-side job would.
    let service = token(json!({"role": "service_role"}));
    assert_eq!(
        psql_as(
            &server,
            "service_role",
            &service,
            "SET request.jwt.claims = '{\"sub\": \"B\", \"role\": \"authenticated\"}'; SET ROLE authenticated; SELECT id FROM todos"
        ),
        "3"
    );
    // Refused: a token for another role than the user, an expired one, one signed with another
    // key, one naming a superuser, and a token over a connection without TLS (SCRAM).
    let refused = |user: &str, password: &str| {
        let got = psql_as(&server, user, password, "SELECT 1");
        assert!(got.starts_with("failed:") && got.contains("password authentication failed"), "{user}: {got}");
    };
    refused("service_role", &a);
    refused("authenticated", &token(json!({"role": "authenticated", "sub": "A", "exp": 1000})));
    let other = JwtConfig {
        alg: Alg::HS256,
        keys: vec![],
        secret: b"another-secret-another-secret-xxxxxxxx".to_vec(),
        audience: None,
        issuer: None,
        leeway_s: 60,
    };
    refused(
        "authenticated",
        &other.sign(&json!({"role": "authenticated", "exp": 4_000_000_000u64}).as_object().cloned().unwrap()),
    );
    refused("postgres", &token(json!({"role": "postgres"})));
    let dsn = format!("host=127.0.0.1 port={} user=authenticated dbname=postgres sslmode=disable", server.pg_port);
    let out = Command::new("psql").args(["-X", "-c", "SELECT 1", &dsn]).env("PGPASSWORD", &a).output().unwrap();
    assert!(!out.status.success());
}

/// The /auth/v1 endpoints answer hostile input with 4xx and GoTrue's error shape, never 5xx,
/// and limit sign-in attempts per client.
#[tokio::test(flavor = "multi_thread")]
async fn auth_endpoints_refuse_bad_input_and_limit_attempts() {
    let server = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET), ("BKG_DB_AUTH_RATE_PER_MIN", "0")]);
    let (anon, service) = server.api_keys();
    let user = token(json!({"role": "authenticated", "sub": "0b0e8a4e-5f0c-4a36-8d5e-1c1f6a3b9c01"}));
    let big = format!(r#"{{"email": "a@example.com", "password": "{}"}}"#, "x".repeat(100_000));
    let (user_bearer, anon_bearer, service_bearer) =
        (format!("Bearer {user}"), format!("Bearer {anon}"), format!("Bearer {service}"));
    let cases: Vec<(&str, &str, Vec<(&str, &str)>, &str, u16, &str)> = vec![
        (
            "POST",
            "/auth/v1/signup",
            vec![],
            r#"{"email":"a@example.com","password":"secret1"}"#,
            401,
            "no_authorization",
        ),
        ("POST", "/auth/v1/signup", vec![("apikey", "forged.token.here")], "{}", 401, "bad_jwt"),
        ("POST", "/auth/v1/signup", vec![("apikey", &anon)], "{not json", 400, "bad_json"),
        ("POST", "/auth/v1/signup", vec![("apikey", &anon)], "[1, 2]", 400, "bad_json"),
        (
            "POST",
            "/auth/v1/signup",
            vec![("apikey", &anon)],
            r#"{"email": 5, "password": "secret1"}"#,
            400,
            "validation_failed",
        ),
        ("POST", "/auth/v1/signup", vec![("apikey", &anon)], &big, 413, ""),
        ("POST", "/auth/v1/token?grant_type=magic", vec![("apikey", &anon)], "{}", 400, "unsupported_grant_type"),
        ("GET", "/auth/v1/user", vec![("apikey", &anon)], "", 401, "no_authorization"),
        // A valid token whose session never existed.
        (
            "GET",
            "/auth/v1/user",
            vec![("apikey", &anon), ("Authorization", &user_bearer)],
            "",
            403,
            "session_not_found",
        ),
        ("GET", "/auth/v1/admin/users", vec![("Authorization", &anon_bearer)], "", 403, "not_admin"),
        (
            "GET",
            "/auth/v1/admin/users/..%2F..%2Fetc",
            vec![("Authorization", &service_bearer)],
            "",
            404,
            "user_not_found",
        ),
        (
            "DELETE",
            "/auth/v1/admin/users/not-a-uuid",
            vec![("Authorization", &service_bearer)],
            "",
            404,
            "user_not_found",
        ),
    ];
    for (method, path, headers, body, status, code) in cases {
        let (got, _, resp) = server.http(method, path, &headers, body.as_bytes());
        assert_eq!(got, status, "{method} {path}: {resp}");
        assert!(resp.contains(code), "{method} {path}: {resp}");
    }
    // Five attempts a minute per address, then 429, whatever the outcome of the attempts.
    let server = TestServer::start_with(&[("BKG_DB_AUTH_RATE_PER_MIN", "5")]);
    let (anon, _) = server.api_keys();
    let body = r#"{"email": "nobody@example.com", "password": "wrong-one"}"#;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let (s, _, _) =
            server.http("POST", "/auth/v1/token?grant_type=password", &[("apikey", &anon)], body.as_bytes());
        statuses.push(s);
    }
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 2, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 400 || *s == 429), "{statuses:?}");
    let (s, _, resp) = server.http("GET", "/auth/v1/settings", &[], b"");
    assert_eq!(s, 200, "{resp}");
}

/// Scoped tokens: `ns:<schema>:read|write` limit a token to named schemas, `admin` allows
/// everything; outside its scopes a request is refused with 403 (42501).
#[tokio::test(flavor = "multi_thread")]
async fn token_scopes_limit_schemas_and_writes() {
    let server = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET), ("BKG_DB_REST_SCHEMAS", "public,app")]);
    let admin = server.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE notes (id int PRIMARY KEY, body text);
             ALTER TABLE notes DISABLE ROW LEVEL SECURITY;
             INSERT INTO notes VALUES (1, 'n');
             CREATE SCHEMA app;
             CREATE TABLE app.items (id int PRIMARY KEY);
             ALTER TABLE app.items DISABLE ROW LEVEL SECURITY;
             INSERT INTO app.items VALUES (1);
             GRANT USAGE ON SCHEMA app TO service_role;
             GRANT ALL ON notes, app.items TO service_role;",
        )
        .await
        .unwrap();
    let as_scoped = |scope: &str| token(json!({"role": "service_role", "scope": scope}));
    let call = |tok: &str, method: &str, path: &str, profile: &str, body: &str| {
        let auth = format!("Bearer {tok}");
        let headers = [
            ("apikey", tok),
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
            ("Accept-Profile", profile),
            ("Content-Profile", profile),
        ];
        server.http(method, path, &headers, body.as_bytes()).0
    };
    let read = as_scoped("ns:public:read");
    assert_eq!(call(&read, "GET", "/rest/v1/notes", "public", ""), 200);
    assert_eq!(call(&read, "POST", "/rest/v1/notes", "public", r#"{"id": 2}"#), 403);
    assert_eq!(call(&read, "GET", "/rest/v1/items", "app", ""), 403);
    assert_eq!(call(&read, "POST", "/query", "public", r#"{"query": "SELECT count(*) FROM app.items"}"#), 403);
    assert_eq!(call(&read, "POST", "/query", "public", r#"{"query": "CREATE TABLE t2 (id int)"}"#), 403);
    let write = as_scoped("ns:app:write");
    assert_eq!(call(&write, "POST", "/rest/v1/items", "app", r#"{"id": 2}"#), 201);
    assert_eq!(call(&write, "GET", "/rest/v1/items", "app", ""), 200);
    assert_eq!(call(&write, "GET", "/rest/v1/notes", "public", ""), 403);
    assert_eq!(call(&write, "POST", "/migrate/apply", "public", ""), 403);
    let all = as_scoped("admin");
    assert_eq!(call(&all, "GET", "/rest/v1/items", "app", ""), 200);
    assert_eq!(call(&all, "POST", "/query", "public", r#"{"query": "CREATE TABLE t3 (id int)"}"#), 200);
    // No scope claim: the role's privileges alone decide.
    let plain = token(json!({"role": "service_role"}));
    assert_eq!(call(&plain, "GET", "/rest/v1/notes", "public", ""), 200);
}

/// `/policy`: the admin manages policies as JSON (the same catalog objects as CREATE POLICY)
/// and asks `/policy/explain` why a principal may or may not touch a row.
#[tokio::test(flavor = "multi_thread")]
async fn policies_as_json_and_explain() {
    let server = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET), ("BKG_DB_REST_RATE_PER_S", "0")]);
    let admin = server.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE todos (id int PRIMARY KEY, owner text NOT NULL, task text NOT NULL);
             GRANT SELECT, INSERT, UPDATE, DELETE ON todos TO authenticated;
             INSERT INTO todos VALUES (1, 'A', 'a1'), (2, 'B', 'b1');",
        )
        .await
        .unwrap();
    let (anon, service) = server.api_keys();
    let call = |key: &str, method: &str, path: &str, body: &str| {
        let auth = format!("Bearer {key}");
        let h = [("apikey", key), ("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        let (status, _, body) = server.http(method, path, &h, body.as_bytes());
        (status, serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };
    let (status, v) = call(
        &service,
        "POST",
        "/policy",
        r#"{"table": "todos", "name": "own", "roles": ["authenticated"], "using": "owner = auth.uid()", "with_check": "owner = auth.uid()"}"#,
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["command"], "all");
    assert_eq!(v["roles"], json!(["authenticated"]));
    // It is a real policy: user A now sees only row 1.
    let a = token(json!({"role": "authenticated", "sub": "A"}));
    let (status, rows) = call(&a, "GET", "/rest/v1/todos?select=id", "");
    assert_eq!((status, rows), (200, json!([{"id": 1}])));
    let (status, v) = call(&service, "GET", "/policy", "");
    assert_eq!(status, 200);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let (status, v) = call(&service, "GET", "/policy/public.todos/own", "");
    assert_eq!((status, v["using"].as_str()), (200, Some("owner = auth.uid()")));
    // Not for others; no statement can hide in an expression.
    assert_eq!(call(&anon, "GET", "/policy", "").0, 403);
    assert_eq!(call(&a, "DELETE", "/policy/todos/own", "").0, 403);
    let evil = r#"{"table": "todos", "name": "x", "using": "true) ; DROP TABLE todos; --"}"#;
    assert_eq!(call(&service, "POST", "/policy", evil).0, 400);
    let (status, v) = call(&service, "POST", "/policy", r#"{"table": "todos", "name": "y", "using": "nosuch = 1"}"#);
    assert_eq!((status, v["code"].as_str()), (400, Some("42703")), "{v}");
    assert_eq!(call(&service, "POST", "/policy", r#"{"table": "nosuch", "name": "z"}"#).0, 404);
    assert_eq!(call(&service, "POST", "/policy", r#"{"table": "todos", "name": "z", "bogus": 1}"#).0, 400);

    // Explain: a row the user owns, one they do not, and anon.
    let explain = |body: Value| call(&service, "POST", "/policy/explain", &body.to_string());
    let (status, v) =
        explain(json!({"table": "todos", "command": "update", "claims": {"sub": "A", "role": "authenticated"},
        "row": {"id": 1, "owner": "A", "task": "a1"}}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["policies"][0]["using_bound"], "owner = 'A'");
    assert_eq!(v["policies"][0]["using_result"], true);
    let (_, v) =
        explain(json!({"table": "todos", "command": "select", "claims": {"sub": "A", "role": "authenticated"},
        "row": {"id": 2, "owner": "B", "task": "b1"}}));
    assert_eq!(v["allowed"], false, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("visible"), "{v}");
    let (_, v) = explain(json!({"table": "todos", "command": "select", "claims": {"role": "anon"}}));
    assert_eq!(v["allowed"], false, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("denied by default"), "{v}");
    let (_, v) = explain(json!({"table": "todos", "command": "delete", "claims": {"role": "service_role"}}));
    assert_eq!(v["allowed"], true, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("bypasses"), "{v}");

    // Change and remove.
    let (status, v) = call(
        &service,
        "PATCH",
        "/policy/todos/own",
        r#"{"name": "mine", "using": "owner = auth.uid() OR task = 'public'"}"#,
    );
    assert_eq!((status, v["name"].as_str()), (200, Some("mine")), "{v}");
    assert_eq!(call(&service, "DELETE", "/policy/todos/mine", "").0, 204);
    assert_eq!(call(&service, "GET", "/policy/todos/mine", "").0, 404);
    let (_, rows) = call(&a, "GET", "/rest/v1/todos?select=id", "");
    assert_eq!(rows, json!([]), "no policy left: default deny");
}

/// ES256: the public keys are published as a JWKS; `bkg-db keys rotate` adds a key the running
/// server signs with from then on, older tokens verify until `bkg-db keys retire`.
#[tokio::test(flavor = "multi_thread")]
async fn es256_keys_are_published_rotated_and_retired() {
    let server = TestServer::start_with(&[("BKG_DB_JWT_ALG", "ES256"), ("BKG_DB_REST_RATE_PER_S", "0")]);
    let admin = server.connect().await;
    admin.batch_execute("CREATE TABLE pub (id int PRIMARY KEY); GRANT SELECT ON pub TO anon").await.unwrap();
    let jwks = || -> Vec<String> {
        let (status, body) = server.http_get("/auth/v1/.well-known/jwks.json");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
    };
    let first = jwks();
    assert_eq!(first.len(), 1);
    let (anon, _) = server.api_keys();
    let kid_of = |t: &str| -> String {
        use base64::Engine as _;
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.split('.').next().unwrap()).unwrap();
        serde_json::from_slice::<Value>(&h).unwrap()["kid"].as_str().unwrap().to_string()
    };
    assert_eq!(kid_of(&anon), first[0]);
    let get = |key: &str| server.http("GET", "/rest/v1/pub", &[("apikey", key)], b"").0;
    assert_eq!(get(&anon), 200);
    let keys = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_bkg-db"))
            .arg("keys")
            .args(args)
            .arg("--data-dir")
            .arg(&server.dir)
            .env("BKG_DB_JWT_ALG", "ES256")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    keys(&["rotate"]);
    let wait_for = |n: usize| {
        for _ in 0..100 {
            if jwks().len() == n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the server did not reload its keys");
    };
    wait_for(2);
    let second: String = jwks().into_iter().find(|k| *k != first[0]).unwrap();
    // The server now signs with the new key; the old anon key still works.
    let body = r#"{"email": "es@example.com", "password": "es-secret"}"#;
    let (status, _, resp) = server.http("POST", "/auth/v1/signup", &[("apikey", &anon)], body.as_bytes());
    assert_eq!(status, 200, "{resp}");
    let session: Value = serde_json::from_str(&resp).unwrap();
    let access = session["access_token"].as_str().unwrap();
    assert_eq!(kid_of(access), second);
    assert_eq!(get(&anon), 200);
    // Retiring the first key ends its tokens; the API keys are signed again with the second.
    let listing = keys(&["retire", "--kid", &first[0]]);
    assert!(listing.contains(&format!("key {} ES256 retired", first[0])), "{listing}");
    wait_for(1);
    assert_eq!(get(&anon), 401);
    let (new_anon, _) = server.api_keys();
    assert_eq!(kid_of(&new_anon), second);
    assert_eq!(get(&new_anon), 200);
    // The commands refuse another algorithm than the keys were made for, and list only reads.
    let before = std::fs::read(server.dir.join("auth/keys.json")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bkg-db"))
        .args(["keys", "list", "--data-dir"])
        .arg(&server.dir)
        .env("BKG_DB_JWT_ALG", "HS256")
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("BKG_DB_JWT_ALG=ES256"));
    assert!(keys(&["list"]).contains(&format!("key {second} ES256 active")));
    assert_eq!(std::fs::read(server.dir.join("auth/keys.json")).unwrap(), before);
    // The last key cannot be retired.
    let out = Command::new(env!("CARGO_BIN_EXE_bkg-db"))
        .args(["keys", "retire", "--kid", &second, "--data-dir"])
        .arg(&server.dir)
        .env("BKG_DB_JWT_ALG", "ES256")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// RS256: the server signs with a configured RSA key and publishes it; its tokens work.
#[tokio::test(flavor = "multi_thread")]
async fn rs256_with_a_configured_key() {
    let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/jwt/rsa-a.pem");
    let server = TestServer::start_with(&[("BKG_DB_JWT_ALG", "RS256"), ("BKG_DB_JWT_RSA_KEY_FILE", pem)]);
    let (status, body) = server.http_get("/auth/v1/.well-known/jwks.json");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["keys"][0]["kty"], "RSA", "{v}");
    let (anon, service) = server.api_keys();
    assert!(anon.starts_with("eyJhbGciOiJSUzI1Ni"), "an RS256 header: {anon}");
    let (status, _, resp) = server.http("GET", "/policy", &[("apikey", &service)], b"");
    assert_eq!(status, 200, "{resp}");
    let (status, _, _) = server.http("GET", "/policy", &[("apikey", &anon)], b"");
    assert_eq!(status, 403);
    // An HS256 token (even with a good secret) is not accepted by an RS256 server.
    let hs = token(json!({"role": "service_role"}));
    assert_eq!(server.http("GET", "/policy", &[("apikey", &hs)], b"").0, 401);
}

/// Without autoconfirm, a sign-up answers the same whether or not the email is taken; the user
/// signs in once the service role confirmed it.
#[tokio::test(flavor = "multi_thread")]
async fn signup_without_autoconfirm_does_not_tell_taken_emails() {
    let server = TestServer::start_with(&[("BKG_DB_AUTH_AUTOCONFIRM", "false"), ("BKG_DB_AUTH_RATE_PER_MIN", "0")]);
    let (anon, service) = server.api_keys();
    let post = |path: &str, body: Value| {
        let (status, _, resp) = server.http("POST", path, &[("apikey", &anon)], body.to_string().as_bytes());
        (status, serde_json::from_str::<Value>(&resp).unwrap_or(Value::Null))
    };
    let (s1, first) = post("/auth/v1/signup", json!({"email": "taken@example.com", "password": "first-secret"}));
    let (s2, again) = post("/auth/v1/signup", json!({"email": "Taken@example.com", "password": "other-secret"}));
    assert_eq!((s1, s2), (200, 200), "{first} {again}");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&first), keys(&again));
    assert_ne!(first["id"], again["id"]);
    assert!(first.get("access_token").is_none() && first["email_confirmed_at"].is_null(), "{first}");
    let grant =
        |pw: &str| post("/auth/v1/token?grant_type=password", json!({"email": "taken@example.com", "password": pw}));
    assert_eq!(grant("first-secret").1["error_code"], "email_not_confirmed");
    assert_eq!(grant("other-secret").1["error_code"], "invalid_credentials", "the second sign-up changed nothing");
    let auth = format!("Bearer {service}");
    let path = format!("/auth/v1/admin/users/{}", first["id"].as_str().unwrap());
    let (status, _, resp) =
        server.http("PUT", &path, &[("Authorization", &auth)], json!({"email_confirm": true}).to_string().as_bytes());
    assert_eq!(status, 200, "{resp}");
    let (status, session) = grant("first-secret");
    assert_eq!(status, 200, "{session}");
    assert!(session["access_token"].is_string());
    assert!(server.http_get("/auth/v1/settings").1.contains("\"mailer_autoconfirm\":false"));
}

/// A prepared statement is bound to whoever executes it: its cached plan is not reused for
/// another principal, so changing role between executions changes what it may see.
#[tokio::test(flavor = "multi_thread")]
async fn prepared_statements_answer_for_the_current_principal() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(
        "CREATE ROLE p_alice; CREATE ROLE p_bob;
         CREATE TABLE docs (id int PRIMARY KEY, owner text NOT NULL);
         CREATE POLICY own ON docs USING (owner = current_user);
         GRANT SELECT ON docs TO p_alice, p_bob;
         INSERT INTO docs VALUES (1, 'p_alice'), (2, 'p_bob');",
    )
    .await
    .unwrap();
    let point = c.prepare("SELECT owner FROM docs WHERE id = $1").await.unwrap();
    let scan = c.prepare("SELECT count(*) FROM docs").await.unwrap();
    let owner = |rows: Vec<tokio_postgres::Row>| rows.first().map(|r| r.get::<_, String>(0));
    assert_eq!(owner(c.query(&point, &[&1i32]).await.unwrap()), Some("p_alice".into()));
    assert_eq!(c.query_one(&scan, &[]).await.unwrap().get::<_, i64>(0), 2);
    c.batch_execute("SET ROLE p_bob").await.unwrap();
    assert_eq!(owner(c.query(&point, &[&1i32]).await.unwrap()), None, "alice's row is hidden from bob");
    assert_eq!(owner(c.query(&point, &[&2i32]).await.unwrap()), Some("p_bob".into()));
    assert_eq!(c.query_one(&scan, &[]).await.unwrap().get::<_, i64>(0), 1);
    c.batch_execute("SET ROLE p_alice").await.unwrap();
    assert_eq!(owner(c.query(&point, &[&1i32]).await.unwrap()), Some("p_alice".into()));
    assert_eq!(owner(c.query(&point, &[&2i32]).await.unwrap()), None);
}
