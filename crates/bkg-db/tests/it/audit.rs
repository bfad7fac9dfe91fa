//! The signed audit log through a real server: an event exists if and only if its change
//! committed (also across kill -9), the outbox is closed to SQL writes, auth events, `GET /audit`, sealing and key rotation, and
//! verification offline with `bkg-db audit verify` and with plain openssl.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::rls::{SECRET, token};
use crate::server::TestServer;

fn service() -> String {
    token(json!({"role": "service_role"}))
}

/// Every event of `GET /audit` (all pages), oldest first.
fn events(s: &TestServer, filter: &str) -> Vec<Value> {
    let key = service();
    let mut out = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let cursor = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let (st, _, body) =
            s.http("GET", &format!("/audit?limit=50{filter}{cursor}"), &[("apikey", key.as_str())], b"");
        assert_eq!(st, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        out.extend(v["events"].as_array().unwrap().iter().cloned());
        match v["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    out.reverse();
    out
}

fn has(events: &[Value], action: &str, needle: &str) -> bool {
    events.iter().any(|e| e["action"] == action && e.to_string().contains(needle))
}

fn verify(dir: &Path, keys: &[&Path]) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bkg-db"));
    c.args(["audit", "verify", "--data-dir"]).arg(dir);
    for k in keys {
        c.arg("--key").arg(k);
    }
    let out = c.output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn events_exist_if_and_only_if_their_change_committed() {
    let mut s = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET)]);
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE notes (id int PRIMARY KEY, owner text);
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
         CREATE ROLE auditor LOGIN PASSWORD 'do-not-log-me';
         GRANT SELECT ON notes TO auditor;",
    )
    .await
    .unwrap();
    c.batch_execute("BEGIN; CREATE POLICY rolled_back ON notes USING (owner = current_user); ROLLBACK;").await.unwrap();
    c.batch_execute("BEGIN; CREATE POLICY kept ON notes USING (owner = current_user); COMMIT;").await.unwrap();
    // A failing statement after the change in the same block: nothing of the block commits.
    let failed = c.batch_execute("BEGIN; CREATE POLICY doomed ON notes USING (true); SELECT 1/0; COMMIT;").await;
    assert!(failed.is_err());
    c.batch_execute("ROLLBACK").await.unwrap();
    let all = events(&s, "");
    assert!(has(&all, "migration.apply", "storage"), "built-in migrations are audited");
    assert!(has(&all, "ddl.create_table", "notes"));
    assert!(has(&all, "rls.enable", "notes"));
    assert!(has(&all, "role.create", "auditor"));
    assert!(has(&all, "privilege.grant", "auditor"));
    assert!(has(&all, "policy.create", "\"kept\""));
    assert!(!all.iter().any(|e| e.to_string().contains("rolled_back") || e.to_string().contains("doomed")));
    assert!(!all.iter().any(|e| e.to_string().contains("do-not-log-me")), "passwords never reach the log");
    let kept = all.iter().find(|e| e["action"] == "policy.create").unwrap();
    assert_eq!(kept["actor"]["role"], "postgres");
    assert_eq!(kept["object"], "public.notes");
    assert_eq!(kept["detail"]["using"], "owner = current_user");
    // Filters.
    let policies = events(&s, "&action=policy");
    assert!(policies.iter().all(|e| e["action"].as_str().unwrap().starts_with("policy.")) && !policies.is_empty());
    // The outbox is the server's: a superuser may read it but not empty it (the engine's unit
    // test covers every other statement and shipping an event a crash left in it).
    let e = c.batch_execute("DELETE FROM bkg_audit.outbox").await.unwrap_err();
    assert_eq!(e.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    let left = c.query_one("SELECT count(*) FROM bkg_audit.outbox", &[]).await.unwrap().get::<_, i64>(0);
    assert_eq!(left, 0, "shipped events leave the outbox");
    drop(c);
    // Policy changes racing a crash: each policy that exists after restart has its event, and
    // no event names a policy that does not exist.
    for round in 0..6u64 {
        let conn = s.conn_string();
        let work = tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            for i in 0..200 {
                if c.batch_execute(&format!("CREATE POLICY race_{round}_{i} ON notes USING (id > {i})")).await.is_err()
                {
                    break;
                }
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(40 + round * 35)).await;
        s.kill9();
        let _ = work.await;
        s.spawn();
        let c = s.connect().await;
        let made: Vec<String> = c
            .query("SELECT policyname FROM pg_policies WHERE policyname LIKE $1", &[&format!("race\\_{round}\\_%")])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let logged: Vec<String> = events(&s, "&action=policy.create")
            .iter()
            .filter_map(|e| e["detail"]["policy"].as_str().map(str::to_string))
            .filter(|p| p.starts_with(&format!("race_{round}_")))
            .collect();
        let mut m = made.clone();
        let mut l = logged.clone();
        m.sort();
        l.sort();
        assert_eq!(m, l, "round {round}: policies and their events");
    }
    let (ok, out) = verify(&s.dir, &[]);
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_events_and_a_log_that_verifies_with_openssl() {
    let s = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET), ("BKG_DB_AUTH_AUTOCONFIRM", "true")]);
    let anon = token(json!({"role": "anon"}));
    let h = [("apikey", anon.as_str()), ("Content-Type", "application/json")];
    let (st, _, body) =
        s.http("POST", "/auth/v1/signup", &h, br#"{"email":"a@example.com","password":"correct horse"}"#);
    assert_eq!(st, 200, "{body}");
    let (st, _, _) =
        s.http("POST", "/auth/v1/token?grant_type=password", &h, br#"{"email":"a@example.com","password":"wrong"}"#);
    assert_eq!(st, 400);
    let (st, _, body) = s.http(
        "POST",
        "/auth/v1/token?grant_type=password",
        &h,
        br#"{"email":"a@example.com","password":"correct horse"}"#,
    );
    assert_eq!(st, 200, "{body}");
    let session: Value = serde_json::from_str(&body).unwrap();
    let uid = session["user"]["id"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {}", session["access_token"].as_str().unwrap());
    let (st, _, _) = s.http("POST", "/auth/v1/logout", &[("apikey", anon.as_str()), ("Authorization", &bearer)], b"");
    assert_eq!(st, 204);
    let auth = events(&s, "&action=auth");
    let find = |action: &str, outcome: &str| {
        auth.iter().find(|e| e["action"] == action && e["outcome"] == outcome).cloned().unwrap_or_else(|| {
            panic!("no {action} {outcome} in {auth:#?}");
        })
    };
    assert_eq!(find("auth.signup", "success")["actor"]["user_id"], uid.as_str());
    let refused = find("auth.signin", "failure");
    assert_eq!(refused["detail"]["reason"], "invalid_credentials");
    assert!(refused["actor"]["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(!refused.to_string().contains("wrong"), "no password in the log");
    assert_eq!(find("auth.signin", "success")["object"], uid.as_str());
    assert_eq!(find("auth.logout", "success")["actor"]["user_id"], uid.as_str());
    // Only the admin scope reads the log.
    let user_token = token(json!({"role": "authenticated", "sub": uid}));
    assert_eq!(s.http("GET", "/audit", &[("apikey", user_token.as_str())], b"").0, 403);

    // Seal: the open segment is signed now, in cosign's format; openssl verifies it.
    let key = service();
    let (st, _, body) = s.http("POST", "/audit/seal", &[("apikey", key.as_str())], b"");
    assert_eq!(st, 200, "{body}");
    let sealed = serde_json::from_str::<Value>(&body).unwrap()["sealed"].as_str().unwrap().to_string();
    let (_, _, body) = s.http("GET", "/audit/key", &[("apikey", key.as_str())], b"");
    let published: Value = serde_json::from_str(&body).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let pem = tmp.path().join("audit.pub.pem");
    std::fs::write(&pem, published["public_key"].as_str().unwrap()).unwrap();
    let segment = s.dir.join("audit").join(&sealed);
    openssl_verifies(&segment, &pem, tmp.path(), true);
    let (ok, out) = verify(&s.dir, &[&pem]);
    assert!(ok, "{out}");

    // Rotation: sealed with the old key, signed by the new one from now on; both verify.
    let (st, _, body) = s.http("POST", "/audit/rotate-key", &[("apikey", key.as_str())], b"");
    assert_eq!(st, 200, "{body}");
    let rotated: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rotated["previous_key_id"], published["key_id"]);
    let new_pem = tmp.path().join("new.pub.pem");
    std::fs::write(&new_pem, rotated["public_key"].as_str().unwrap()).unwrap();
    assert!(has(&events(&s, "&action=audit.key_rotate"), "audit.key_rotate", rotated["key_id"].as_str().unwrap()));
    s.http("POST", "/audit/seal", &[("apikey", key.as_str())], b"");
    let (ok, out) = verify(&s.dir, &[&pem, &new_pem]);
    assert!(ok, "{out}");
    let (ok, out) = verify(&s.dir, &[&new_pem]);
    assert!(!ok && out.contains("not among the given keys"), "{out}");

    // A copy with one line edited fails verification, named by file and line; so does openssl.
    let copy = tmp.path().join("copy");
    std::fs::create_dir_all(copy.join("audit/keys")).unwrap();
    for entry in walk(&s.dir.join("audit")) {
        let rel = entry.strip_prefix(s.dir.join("audit")).unwrap();
        std::fs::copy(&entry, copy.join("audit").join(rel)).unwrap();
    }
    let target = copy.join("audit").join(&sealed);
    let text = std::fs::read_to_string(&target).unwrap();
    let edited = text.replacen("\"outcome\":\"failure\"", "\"outcome\":\"success\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&target, edited).unwrap();
    let (ok, out) = verify(&copy, &[]);
    assert!(!ok && out.contains(&sealed) && out.contains("line"), "{out}");
    openssl_verifies(&target, &pem, tmp.path(), false);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// `openssl dgst -sha256 -verify <pem> -signature <DER from the base64 .sig> <segment>`.
fn openssl_verifies(segment: &Path, pem: &Path, tmp: &Path, expect: bool) {
    use base64::Engine as _;
    let sig = std::fs::read_to_string(format!("{}.sig", segment.display())).unwrap();
    let der = base64::engine::general_purpose::STANDARD.decode(sig.trim()).unwrap();
    let der_path = tmp.join("sig.der");
    std::fs::write(&der_path, der).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(pem)
        .arg("-signature")
        .arg(&der_path)
        .arg(segment)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.success(), expect, "openssl: {text}{}", String::from_utf8_lossy(&out.stderr));
    if expect {
        assert!(text.contains("Verified OK"), "{text}");
    }
}
