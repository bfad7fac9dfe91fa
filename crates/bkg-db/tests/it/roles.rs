//! Roles, passwords, GRANT/REVOKE and TLS, with real clients (tokio-postgres and psql).

use std::process::Command;

use crate::server::{PASSWORD, TestServer};

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no sqlstate: {e}"))
}

async fn connect_as(server: &TestServer, user: &str, password: &str) -> Result<tokio_postgres::Client, String> {
    let dsn = format!("host=127.0.0.1 port={} user={user} password={password} dbname=postgres", server.pg_port);
    match tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        }
        Err(e) => Err(code(&e)),
    }
}

async fn sqlstate(c: &tokio_postgres::Client, sql: &str) -> String {
    match c.batch_execute(sql).await {
        Ok(()) => "ok".into(),
        Err(e) => code(&e),
    }
}

#[tokio::test]
async fn roles_passwords_and_grants_are_enforced_and_survive_a_crash() {
    // PostgreSQL's privilege model alone: new tables without row-level security.
    let mut server = TestServer::start_with(&[("BKG_DB_RLS_DEFAULT", "off")]);
    let admin = server.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, v text);
             INSERT INTO items VALUES (1, 'a'), (2, 'b');
             CREATE ROLE reader;
             CREATE USER alice PASSWORD 'alice-pass';
             CREATE ROLE bob LOGIN PASSWORD 'bob-pass' CREATEROLE;",
        )
        .await
        .unwrap();
    // Wrong passwords, unknown roles and roles without LOGIN all fail the same way.
    assert_eq!(connect_as(&server, "alice", "nope").await.err().unwrap(), "28P01");
    assert_eq!(connect_as(&server, "nobody", "x").await.err().unwrap(), "28P01");
    assert_eq!(connect_as(&server, "reader", "").await.err().unwrap(), "28P01");
    let alice = connect_as(&server, "alice", "alice-pass").await.unwrap();
    let row = alice.query_one("SELECT current_user, session_user", &[]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("alice".into(), "alice".into()));
    // Nothing granted: every path is refused, the point-query fast path included.
    for sql in [
        "SELECT * FROM items",
        "SELECT v FROM items WHERE id = 1",
        "INSERT INTO items VALUES (3, 'c')",
        "UPDATE items SET v = 'x' WHERE id = 1",
        "DELETE FROM items",
        "TRUNCATE items",
        "COPY items TO STDOUT",
        "SELECT * FROM (SELECT id FROM items) s",
        "CREATE TABLE mine (x int)",
        "CREATE ROLE x",
        "GRANT SELECT ON items TO alice",
        "DROP TABLE items",
        "ALTER TABLE items ADD COLUMN w int",
    ] {
        assert_eq!(sqlstate(&alice, sql).await, "42501", "{sql}");
    }
    let e = alice.query("SELECT * FROM items", &[]).await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().message(), "permission denied for table items");
    // Grants through a group role.
    admin.batch_execute("GRANT SELECT ON items TO reader; GRANT reader TO alice").await.unwrap();
    let n: i64 = alice.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
    let v: String = alice.query_one("SELECT v FROM items WHERE id = $1", &[&1i32]).await.unwrap().get(0);
    assert_eq!(v, "a");
    assert_eq!(sqlstate(&alice, "INSERT INTO items VALUES (3, 'c')").await, "42501");
    let can: Vec<bool> = alice
        .query_one(
            "SELECT has_table_privilege('items', 'SELECT'), has_table_privilege('alice', 'items', 'INSERT'),
                    has_schema_privilege('public', 'USAGE'), has_schema_privilege('public', 'CREATE')",
            &[],
        )
        .await
        .map(|r| (0..4).map(|i| r.get(i)).collect())
        .unwrap();
    assert_eq!(can, vec![true, false, true, false]);
    // Creating in public needs CREATE on it (PostgreSQL 15's default); the creator owns the table.
    admin
        .batch_execute("GRANT CREATE ON SCHEMA public TO alice; GRANT INSERT, UPDATE ON items TO alice")
        .await
        .unwrap();
    alice
        .batch_execute(
            "CREATE TABLE mine (x int PRIMARY KEY); INSERT INTO mine VALUES (1);
             INSERT INTO items VALUES (3, 'c'); UPDATE items SET v = 'cc' WHERE id = 3",
        )
        .await
        .unwrap();
    let owner: String = admin
        .query_one("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'mine'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "alice");
    let acl: String = admin
        .query_one("SELECT array_to_string(relacl, ',') FROM pg_class WHERE relname = 'items'", &[])
        .await
        .unwrap()
        .get(0);
    // service_role holds every table privilege in `public` by the schema's default privileges.
    assert_eq!(acl, "postgres=arwdDxt/postgres,service_role=arwdDxt/postgres,reader=r/postgres,alice=aw/postgres");
    // Anyone may change their own password; only role admins anything else about a role.
    alice.batch_execute("ALTER USER alice PASSWORD 'new-pass'").await.unwrap();
    assert_eq!(sqlstate(&alice, "ALTER ROLE alice CREATEDB").await, "42501");
    assert_eq!(connect_as(&server, "alice", "alice-pass").await.err().unwrap(), "28P01");
    // A CREATEROLE role manages roles but cannot make superusers.
    let bob = connect_as(&server, "bob", "bob-pass").await.unwrap();
    assert_eq!(sqlstate(&bob, "CREATE ROLE carol LOGIN PASSWORD 'c'").await, "ok");
    assert_eq!(sqlstate(&bob, "CREATE ROLE root SUPERUSER").await, "42501");
    assert_eq!(sqlstate(&bob, "ALTER ROLE postgres PASSWORD 'x'").await, "42501");
    // SET ROLE needs membership, and then checks the role's privileges.
    assert_eq!(sqlstate(&alice, "SET ROLE bob").await, "42501");
    alice.batch_execute("SET ROLE reader").await.unwrap();
    assert_eq!(sqlstate(&alice, "INSERT INTO items VALUES (4, 'd')").await, "42501");
    let who: String = alice.query_one("SELECT current_user", &[]).await.unwrap().get(0);
    assert_eq!(who, "reader");
    alice.batch_execute("RESET ROLE").await.unwrap();
    // Role DDL is transactional.
    admin.batch_execute("BEGIN; CREATE ROLE ghost; ROLLBACK").await.unwrap();
    assert_eq!(sqlstate(&admin, "DROP ROLE ghost").await, "42704");
    // Dependencies and cycles.
    assert_eq!(sqlstate(&admin, "DROP ROLE alice").await, "2BP01");
    assert_eq!(sqlstate(&admin, "GRANT alice TO reader").await, "0LP01");
    assert_eq!(sqlstate(&admin, "CREATE ROLE alice").await, "42710");
    drop(alice);
    drop(bob);
    drop(admin);

    // Roles, verifiers and grants are in the WAL: they survive kill -9.
    server.kill9();
    server.spawn();
    let alice = connect_as(&server, "alice", "new-pass").await.unwrap();
    let n: i64 = alice.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
    assert_eq!(sqlstate(&alice, "DELETE FROM items").await, "42501");
    let admin = server.connect().await;
    admin.batch_execute("REVOKE reader FROM alice; REVOKE ALL ON items FROM alice").await.unwrap();
    assert_eq!(sqlstate(&alice, "SELECT * FROM items").await, "42501");
    admin.batch_execute("DROP TABLE mine; REVOKE CREATE ON SCHEMA public FROM alice; DROP USER alice").await.unwrap();
    assert_eq!(connect_as(&server, "alice", "new-pass").await.err().unwrap(), "28P01");
    // A verifier made by PostgreSQL can be given as the password, as pg_dumpall writes it.
    admin
        .batch_execute(
            "CREATE ROLE dumped LOGIN PASSWORD 'SCRAM-SHA-256$4096:j1e6vkili/3yDbImd6VquQ==$miYHJ1bw2hCrNv/UN4SxcR9nU8PktQ/VXjhAiQdE9/8=:VgEeEI2c8zVFlcTddIQuiq+0vX+x1yitfJELVj3aXho='",
        )
        .await
        .unwrap();
    connect_as(&server, "dumped", "pencil").await.unwrap();
}

#[test]
fn psql_lists_roles_and_privileges() {
    let server = TestServer::start();
    let (ok, _, err) = crate::psql::psql(
        &server,
        &["-v", "ON_ERROR_STOP=1"],
        "CREATE TABLE t (id int); CREATE ROLE readers; CREATE USER ann PASSWORD 'p' IN ROLE readers;
         GRANT SELECT ON t TO readers; GRANT USAGE ON SCHEMA public TO ann;",
    );
    assert!(ok, "{err}");
    let (ok, out, err) = crate::psql::psql(&server, &["-c", "\\du"], "");
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l == "ann||{readers}"), "{out}");
    assert!(out.lines().any(|l| l == "readers|Cannot login|{}"), "{out}");
    let (ok, out, err) = crate::psql::psql(&server, &["-c", "\\dp t"], "");
    assert!(ok && !err.contains("ERROR"), "{err}");
    assert!(
        out.contains("public|t|table|postgres=arwdDxt/postgres\nservice_role=arwdDxt/postgres\nreaders=r/postgres||"),
        "{out}"
    );
}

fn tls_files() -> (String, String) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/tls");
    (format!("{dir}/server.crt"), format!("{dir}/server.key"))
}

/// psql with a libpq connection string; returns (success, stdout, stderr).
fn psql_dsn(dsn: &str, password: &str, sql: &str) -> (bool, String, String) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", dsn, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql is installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tls_is_negotiated_and_can_be_required() {
    let (cert, key) = tls_files();
    let server = TestServer::start_with(&[
        ("BKG_DB_PG_TLS_CERT", &cert),
        ("BKG_DB_PG_TLS_KEY", &key),
        ("BKG_DB_PG_TLS_REQUIRED", "true"),
    ]);
    let base = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", server.pg_port);
    let (ok, out, err) = psql_dsn(
        &format!(
            "{base} sslmode=verify-full sslrootcert={cert} sslcert=/nonexistent sslkey=/nonexistent host=localhost hostaddr=127.0.0.1"
        ),
        PASSWORD,
        "SELECT 1",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1");
    // SCRAM with channel binding over TLS, and a wrong password still fails.
    let (ok, _, err) = psql_dsn(&format!("{base} sslmode=require channel_binding=require"), PASSWORD, "SELECT 1");
    assert!(ok, "{err}");
    let (ok, _, err) = psql_dsn(&format!("{base} sslmode=require"), "wrong", "SELECT 1");
    assert!(!ok && err.contains("password authentication failed for user \"postgres\""), "{err}");
    // A plain connection is refused.
    let (ok, _, err) = psql_dsn(&format!("{base} sslmode=disable"), PASSWORD, "SELECT 1");
    assert!(!ok && err.contains("SSL connection is required"), "{err}");
}

#[test]
fn cleartext_passwords_only_over_tls() {
    let (cert, key) = tls_files();
    let server = TestServer::start_with(&[
        ("BKG_DB_PG_TLS_CERT", &cert),
        ("BKG_DB_PG_TLS_KEY", &key),
        ("BKG_DB_PG_CLEARTEXT_OVER_TLS", "true"),
    ]);
    let base = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", server.pg_port);
    // Over TLS the server asks for the password itself, so SCRAM channel binding is impossible.
    let (ok, _, err) = psql_dsn(&format!("{base} sslmode=require"), PASSWORD, "SELECT 1");
    assert!(ok, "{err}");
    let (ok, _, err) = psql_dsn(&format!("{base} sslmode=require channel_binding=require"), PASSWORD, "SELECT 1");
    assert!(!ok && err.contains("channel binding"), "{err}");
    let (ok, _, _) = psql_dsn(&format!("{base} sslmode=require"), "wrong", "SELECT 1");
    assert!(!ok);
    // Without TLS the password never travels: SCRAM as usual.
    let (ok, _, err) = psql_dsn(&format!("{base} sslmode=disable"), PASSWORD, "SELECT 1");
    assert!(ok, "{err}");
    // The server refuses cleartext without TLS at start.
    let out = Command::new(env!("CARGO_BIN_EXE_bkg-db"))
        .args(["serve", "--pg-cleartext-over-tls", "--data-dir"])
        .arg(server.dir.join("unused"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("need TLS"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The hook a token issuer plugs in: a password the role does not have, checked by the hook.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_hook_admits_tokens_over_tls_only() {
    use std::sync::Arc;

    use bkg_db::pgwire::{CatalogAuth, PasswordHook, PgServer, TlsSettings};

    struct Tokens;
    impl PasswordHook for Tokens {
        fn verify(&self, user: &str, password: &str) -> Option<serde_json::Value> {
            (password == format!("token-for-{user}")).then(|| serde_json::json!({"sub": user}))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let engine =
        bkg_db::sql::Engine::open(bkg_kernel::Options::new(dir.path()), bkg_db::sql::EngineConfig::default()).unwrap();
    let auth = Arc::new(CatalogAuth::new(engine.clone(), "boot-pass", Some(Arc::new(Tokens))));
    let (cert, key) = tls_files();
    let mut tls = TlsSettings::load(cert.as_ref(), key.as_ref()).unwrap();
    tls.cleartext_over_tls = true;
    let server = PgServer::new(engine, Arc::new(bkg_db::metrics::Metrics::default()), auth, 10, Some(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server.serve(listener, stopped));
    let base = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let run = |mode: &str, password: &str| {
        let (dsn, password) = (format!("{base} sslmode={mode}"), password.to_string());
        tokio::task::spawn_blocking(move || psql_dsn(&dsn, &password, "SELECT current_user"))
    };
    let (ok, out, err) = run("require", "token-for-postgres").await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "postgres");
    let (ok, _, err) = run("require", "boot-pass").await.unwrap();
    assert!(ok, "the role's own password still works: {err}");
    let (ok, _, _) = run("require", "token-for-someone-else").await.unwrap();
    assert!(!ok);
    // Without TLS the exchange is SCRAM: a token cannot be checked, and is refused.
    let (ok, _, err) = run("disable", "token-for-postgres").await.unwrap();
    assert!(!ok && err.contains("password authentication failed"), "{err}");
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// A role's CONNECTION LIMIT holds: one connection more is refused with 53300 until one closes.
#[tokio::test]
async fn connection_limit_per_role() {
    let server = TestServer::start();
    let admin = server.connect().await;
    admin.batch_execute("CREATE USER lim PASSWORD 'lim-pass' CONNECTION LIMIT 1").await.unwrap();
    let dsn = format!("host=127.0.0.1 port={} user=lim password=lim-pass dbname=postgres", server.pg_port);
    let connect = || async {
        let (c, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await?;
        let task = tokio::spawn(conn);
        Ok::<_, tokio_postgres::Error>((c, task))
    };
    let (first, first_task) = connect().await.unwrap();
    first.simple_query("SELECT 1").await.unwrap();
    let Err(e) = connect().await else { panic!("a second connection is refused") };
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("53300"), "{e}");
    assert_eq!(e.as_db_error().unwrap().message(), "too many connections for role \"lim\"");
    // Other roles are not affected; closing the first frees its place.
    server.connect().await.simple_query("SELECT 1").await.unwrap();
    drop(first);
    let _ = first_task.await;
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = connect().await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (second, _t) = again.expect("the place is free again");
    admin.batch_execute("ALTER ROLE lim CONNECTION LIMIT 2").await.unwrap();
    let (third, _t3) = connect().await.unwrap();
    third.simple_query("SELECT 1").await.unwrap();
    second.simple_query("SELECT 1").await.unwrap();
}

/// VALID UNTIL: after that instant the role's password no longer logs in.
#[tokio::test]
async fn valid_until_ends_password_logins() {
    let server = TestServer::start();
    let admin = server.connect().await;
    admin.batch_execute("CREATE USER old PASSWORD 'old-pass' VALID UNTIL '2000-01-01'").await.unwrap();
    let dsn = format!("host=127.0.0.1 port={} user=old password=old-pass dbname=postgres", server.pg_port);
    let login = || async {
        tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.map(|(c, conn)| (c, tokio::spawn(conn)))
    };
    let Err(e) = login().await else { panic!("an expired password is refused") };
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("28P01"), "{e}");
    let until: Option<String> =
        admin.query_one("SELECT rolvaliduntil FROM pg_roles WHERE rolname = 'old'", &[]).await.unwrap().get(0);
    assert_eq!(until.as_deref(), Some("2000-01-01 00:00:00+00"));
    admin.batch_execute("ALTER ROLE old VALID UNTIL '2999-12-31 23:59:59+00'").await.unwrap();
    let (c, _t) = login().await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    admin.batch_execute("ALTER ROLE old VALID UNTIL 'infinity'").await.unwrap();
    login().await.unwrap();
    assert_eq!(sqlstate(&admin, "ALTER ROLE old VALID UNTIL 'soon'").await, "22007");
}

/// ALTER TABLE|SCHEMA … OWNER TO: who may hand an object over, what the new owner gains, and
/// that the change is durable.
#[tokio::test]
async fn owner_to_moves_ownership() {
    let mut server = TestServer::start_with(&[("BKG_DB_RLS_DEFAULT", "off")]);
    let admin = server.connect().await;
    admin
        .batch_execute(
            "CREATE USER alice PASSWORD 'alice-pass';
             CREATE USER bob PASSWORD 'bob-pass';
             CREATE ROLE team;
             GRANT team TO alice;
             CREATE SCHEMA app;
             CREATE TABLE app.t (id int PRIMARY KEY);
             CREATE VIEW app.v AS SELECT id FROM app.t;
             GRANT USAGE ON SCHEMA app TO alice, bob;
             GRANT SELECT ON app.t TO bob;",
        )
        .await
        .unwrap();
    let alice = connect_as(&server, "alice", "alice-pass").await.unwrap();
    // Not the owner yet.
    assert_eq!(sqlstate(&alice, "ALTER TABLE app.t OWNER TO alice").await, "42501");
    assert_eq!(sqlstate(&admin, "ALTER TABLE app.t OWNER TO nobody").await, "42704");
    admin.batch_execute("ALTER TABLE app.t OWNER TO alice; ALTER TABLE app.v OWNER TO alice").await.unwrap();
    // The owner may now alter it, and may give it to a role it belongs to, but not to others.
    alice.batch_execute("ALTER TABLE app.t ADD COLUMN note text").await.unwrap();
    assert_eq!(sqlstate(&alice, "ALTER TABLE app.t OWNER TO bob").await, "42501");
    alice.batch_execute("ALTER TABLE app.t OWNER TO team").await.unwrap();
    // A member of the owning role still counts as owner; grants made before stay in force.
    alice.batch_execute("INSERT INTO app.t VALUES (1, 'x')").await.unwrap();
    let bob = connect_as(&server, "bob", "bob-pass").await.unwrap();
    assert_eq!(bob.query("SELECT id FROM app.t", &[]).await.unwrap().len(), 1);
    assert_eq!(sqlstate(&bob, "ALTER SCHEMA app OWNER TO bob").await, "42501");
    admin.batch_execute("ALTER SCHEMA app OWNER TO bob").await.unwrap();
    assert_eq!(sqlstate(&admin, "ALTER SCHEMA nope OWNER TO bob").await, "3F000");
    admin.batch_execute("ALTER SCHEMA IF EXISTS nope OWNER TO bob").await.unwrap();
    let owners = "SELECT (SELECT tableowner FROM pg_tables WHERE schemaname = 'app' AND tablename = 't'),
                         (SELECT viewowner FROM pg_views WHERE schemaname = 'app' AND viewname = 'v'),
                         (SELECT r.rolname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
                           WHERE n.nspname = 'app')";
    let read = |row: tokio_postgres::Row| (row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, String>(2));
    let expected = ("team".to_string(), "alice".to_string(), "bob".to_string());
    assert_eq!(read(admin.query_one(owners, &[]).await.unwrap()), expected);
    // A role that owns nothing any more can be dropped.
    assert_eq!(sqlstate(&admin, "DROP ROLE bob").await, "2BP01");
    drop((alice, bob));
    server.kill9();
    server.spawn();
    let admin = server.connect().await;
    assert_eq!(read(admin.query_one(owners, &[]).await.unwrap()), expected);
}
