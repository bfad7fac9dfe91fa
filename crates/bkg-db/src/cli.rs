//! Commands besides `serve`: `migrate apply|status`, `keys list|rotate|retire|import|rotate-api-keys`
//! and `audit verify|seal|rotate-key|public-key`.

use std::io::{Read, Write};
use std::sync::Arc;

use crate::config::{KeysAction, KeysArgs, MigrateAction, MigrateArgs};
use bkg_sql::migrate::{self, Migration, StatusRow};
use bkg_sql::{Engine, EngineConfig};

/// Runs a migrate command; returns the process exit code.
pub fn migrate(action: MigrateAction) -> i32 {
    let (apply, args) = match action {
        MigrateAction::Apply(a) => (true, a),
        MigrateAction::Status(a) => (false, a),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(64 << 20)
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(apply, &args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bkg-db migrate: {e}");
            1
        }
    }
}

fn print_status(rows: &[StatusRow]) {
    println!("{:<16} {:<10} {:<32} name", "version", "state", "applied_at");
    for r in rows {
        println!("{:<16} {:<10} {:<32} {}", r.version, r.state, r.applied_at.as_deref().unwrap_or("-"), r.name);
    }
}

async fn run(apply: bool, args: &MigrateArgs) -> Result<(), String> {
    let files = match &args.dir {
        Some(d) => migrate::load_dir(d).map_err(|e| e.to_string())?,
        None => vec![],
    };
    if let Some(url) = &args.url {
        return remote(apply, url, args.key.as_deref(), &files);
    }
    let dir = std::path::PathBuf::from(args.data_dir.strip_prefix("file://").unwrap_or(&args.data_dir));
    let opts = bkg_kernel::Options::new(&dir);
    let dir_audit = dir.join("audit");
    let engine: Arc<Engine> = tokio::task::spawn_blocking(move || Engine::open(opts, EngineConfig::default()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    // Migrations change the schema: audited as when the server applies them.
    let log = bkg_audit::AuditLog::open(&dir_audit, bkg_audit::LogOptions::default()).map_err(|e| e.to_string())?;
    engine.enable_audit(log).await.map_err(|e| e.to_string())?;
    let mut all = migrate::builtin();
    all.extend(files);
    let all = migrate::sort(all).map_err(|e| e.to_string())?;
    let result = async {
        if apply {
            let done = migrate::apply(&engine, &all).await.map_err(|e| e.to_string())?;
            println!("applied {} migration(s)", done.len());
        }
        print_status(&migrate::status(&engine, &all).await.map_err(|e| e.to_string())?);
        Ok::<(), String>(())
    }
    .await;
    let db = engine.kernel().clone();
    let _ = tokio::task::spawn_blocking(move || db.close()).await;
    result
}

/// POSTs the files to a running server (plain HTTP/1.1; put TLS in front with a proxy).
fn remote(apply: bool, url: &str, key: Option<&str>, files: &[Migration]) -> Result<(), String> {
    let key = key.ok_or("--url needs the service key (--key or BKG_DB_SERVICE_KEY)")?;
    let hostport = url.strip_prefix("http://").ok_or("--url must start with http://")?.trim_end_matches('/');
    let body = serde_json::json!({
        "migrations": files.iter().map(|m| serde_json::json!({"name": m.file_name(), "sql": m.sql})).collect::<Vec<_>>()
    })
    .to_string();
    let path = if apply { "/migrate/apply" } else { "/migrate/status" };
    let mut s = std::net::TcpStream::connect(hostport).map_err(|e| format!("cannot connect to {hostport}: {e}"))?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\napikey: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let resp = String::from_utf8_lossy(&resp);
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("malformed HTTP response")?;
    let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let v: serde_json::Value = serde_json::from_str(body).map_err(|_| format!("HTTP {status}: {body}"))?;
    if status != 200 {
        return Err(format!(
            "HTTP {status} {}: {}{}",
            v["code"].as_str().unwrap_or("?"),
            v["message"].as_str().unwrap_or(""),
            v["details"].as_str().map(|d| format!(" ({d})")).unwrap_or_default()
        ));
    }
    if apply {
        println!("applied {} migration(s)", v["applied"].as_array().map_or(0, Vec::len));
    }
    let rows: Vec<StatusRow> = v["status"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| StatusRow {
                    version: r["version"].as_str().unwrap_or_default().into(),
                    name: r["name"].as_str().unwrap_or_default().into(),
                    state: match r["state"].as_str() {
                        Some("applied") => "applied",
                        Some("pending") => "pending",
                        Some("edited") => "edited",
                        _ => "missing",
                    },
                    applied_at: r["applied_at"].as_str().map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    print_status(&rows);
    Ok(())
}

/// Runs a keys command on `<data-dir>/auth/keys.json`; returns the process exit code.
pub fn keys(action: KeysAction) -> i32 {
    match run_keys(action) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bkg-db keys: {e}");
            1
        }
    }
}

fn run_keys(action: KeysAction) -> Result<(), String> {
    let args: KeysArgs = match &action {
        KeysAction::List(a)
        | KeysAction::Rotate(a)
        | KeysAction::Retire(a)
        | KeysAction::RotateApiKeys(a)
        | KeysAction::Import(a) => a.clone(),
    };
    let dir = std::path::PathBuf::from(args.data_dir.strip_prefix("file://").unwrap_or(&args.data_dir));
    let path = dir.join("auth").join("keys.json");
    let stored: serde_json::Value = match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?,
        Err(_) => return Err(format!("no keys in {} (start the server once to create them)", dir.display())),
    };
    // The commands load keys.json as the server does; with another algorithm they would
    // re-sign the API keys into ones the server refuses.
    if let Some(alg) = stored.get("jwt_alg").and_then(|a| a.as_str())
        && alg != args.jwt.jwt_alg
    {
        return Err(format!("the keys are for {alg}: set BKG_DB_JWT_ALG={alg} (as the server has it)"));
    }
    if let KeysAction::List(_) = action {
        // Only read: show what is stored.
        println!("algorithm: {}", stored.get("jwt_alg").and_then(|a| a.as_str()).unwrap_or("HS256"));
        for k in stored.get("signing_keys").and_then(|k| k.as_array()).cloned().unwrap_or_default() {
            println!(
                "key {} {} {} created_at={}",
                k["kid"].as_str().unwrap_or("?"),
                k["alg"].as_str().unwrap_or("?"),
                if k["retired"].as_bool().unwrap_or(false) { "retired" } else { "active" },
                k["created_at"].as_u64().unwrap_or(0)
            );
        }
        println!("anon:         {}", stored["anon_key"].as_str().unwrap_or(""));
        println!("service_role: {}", stored["service_key"].as_str().unwrap_or(""));
        return Ok(());
    }
    let (mut cfg, _) = bkg_auth::AuthConfig::load_or_create(&dir, &args.jwt.key_settings())?;
    match action {
        KeysAction::List(_) => {}
        KeysAction::Rotate(_) => {
            let kid = cfg.rotate_signing_key(&dir)?;
            println!("new signing key {kid}; older keys verify until retired (bkg-db keys retire --kid <kid>)");
        }
        KeysAction::Retire(a) => {
            let kid = a.kid.ok_or("--kid names the key to retire")?;
            cfg.retire_signing_key(&dir, &kid)?;
            println!("retired {kid}: tokens it signed no longer verify");
        }
        KeysAction::Import(a) => {
            let pem = a.pem.ok_or("--pem names the PKCS#8 PEM file of the RSA key")?;
            let kid = cfg.import_rsa_key(&dir, &pem)?;
            println!("imported {kid}; it signs from now on, older keys verify until retired");
        }
        KeysAction::RotateApiKeys(_) => {
            cfg.rotate_api_keys(&dir)?;
            println!("new API keys (the old ones verify while the key that signed them is not retired)");
        }
    }
    let jwt = cfg.jwt();
    println!("algorithm: {}", jwt.alg.name());
    let signer = jwt.signing_key().map(|k| k.kid.clone());
    for k in &jwt.keys {
        let state = if k.retired {
            "retired"
        } else if k.alg != jwt.alg {
            "unused"
        } else if Some(&k.kid) == signer.as_ref() {
            "signing"
        } else {
            "verifying"
        };
        println!("key {} {} {state} created_at={}", k.kid, k.alg.name(), k.created_at);
    }
    println!("anon:         {}", cfg.anon_key);
    println!("service_role: {}", cfg.service_key);
    Ok(())
}

/// Runs an audit command; returns the process exit code (1: the log does not verify).
pub fn audit(action: crate::config::AuditAction) -> i32 {
    match run_audit(action) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bkg-db audit: {e}");
            1
        }
    }
}

fn run_audit(action: crate::config::AuditAction) -> Result<(), String> {
    use crate::config::AuditAction as A;
    match action {
        A::Verify(a) => {
            let dir = a.audit_dir();
            if !dir.exists() {
                return Err(format!("{} does not exist: no audit log here", dir.display()));
            }
            let mut pinned = Vec::new();
            for k in &a.keys {
                pinned.push(std::fs::read_to_string(k).map_err(|e| format!("{}: {e}", k.display()))?);
            }
            let r = bkg_audit::verify(&dir, &pinned).map_err(|e| format!("verification failed: {e}"))?;
            println!(
                "ok: {} segment(s), {} signed, {} line(s); head seq {} hash {}",
                r.segments, r.signed, r.lines, r.head_seq, r.head_hash
            );
            if let Some(open) = r.open_segment {
                println!("{open} is open: its lines are chained but not signed yet (bkg-db audit seal signs it)");
            }
            if r.starts_at > 1 {
                println!("the log starts at segment {} (older segments were moved away)", r.starts_at);
            }
            Ok(())
        }
        A::Seal(a) => {
            let mut log = offline_log(&a)?;
            match log.seal().map_err(|e| e.to_string())? {
                Some(p) => println!("sealed {}", p.display()),
                None => println!("no open segment: every line is in a signed segment"),
            }
            Ok(())
        }
        A::RotateKey(a) => {
            let mut log = offline_log(&a)?;
            let old = log.public_key().key_id.clone();
            let new = log.rotate_key().map_err(|e| e.to_string())?;
            println!("audit signing key {} replaces {old}; public key:\n{}", new.key_id, new.public_pem);
            Ok(())
        }
        A::PublicKey(a) => {
            let log = offline_log(&a)?;
            print!("{}", log.public_key().public_pem);
            Ok(())
        }
    }
}

/// The audit log of a stopped server (the database's LOCK tells a running one).
fn offline_log(a: &crate::config::AuditArgs) -> Result<bkg_audit::AuditLog, String> {
    let data = a.audit_dir().parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    if let Ok(f) = std::fs::File::open(data.join("LOCK"))
        && f.try_lock().is_err()
    {
        return Err("the server is running on this data directory: use POST /audit/seal or /audit/rotate-key".into());
    }
    bkg_audit::AuditLog::open(&a.audit_dir(), bkg_audit::LogOptions::default()).map_err(|e| e.to_string())
}
