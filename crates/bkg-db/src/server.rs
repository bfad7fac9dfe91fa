//! Starting and stopping the whole server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bkg_kernel::{Limits, Options};

use crate::config::ServeArgs;
use bkg_http::{HttpState, router};
use bkg_pgwire::{CatalogAuth, PgServer, TlsSettings};
use bkg_sql::metrics::Metrics;
use bkg_sql::{Engine, EngineConfig};

/// Runs until SIGTERM/SIGINT, then drains and exits cleanly.
pub async fn serve(args: ServeArgs) -> Result<(), String> {
    let password = args.validate()?;
    let dir = args.data_path();
    let started = Instant::now();
    let engine = open_engine(&args, &dir, started).await?;
    // The audit log first: the built-in migrations below are audited too.
    let audit_opts = bkg_audit::LogOptions { segment_bytes_max: args.audit_segment_mb.max(1) << 20 };
    let audit_log = bkg_audit::AuditLog::open(&dir.join("audit"), audit_opts)
        .map_err(|e| format!("cannot open the audit log: {e}"))?;
    engine.enable_audit(audit_log).await.map_err(|e| format!("cannot start the audit log: {}", e.message))?;
    let (auth_config, fresh_keys) = bkg_auth::AuthConfig::load_or_create(&dir, &args.key_settings())?;
    if fresh_keys {
        announce_keys(&dir, &auth_config);
    }
    let rest_config = args.rest_config();
    // The server's own schema changes (crates/bkg-db/migrations), before anything uses them.
    let applied = bkg_sql::migrate::apply(&engine, &bkg_sql::migrate::builtin())
        .await
        .map_err(|e| format!("built-in migration failed: {e}"))?;
    if !applied.is_empty() {
        tracing::info!(count = applied.len(), "built-in migrations applied");
    }
    bkg_auth::ensure_api_roles(&engine, &rest_config.schemas, args.rls_default == "on").await?;
    let metrics = Arc::new(Metrics::default());
    let auth_config = Arc::new(auth_config);
    reload_keys_on_change(engine.clone(), auth_config.clone(), dir.clone());
    // Over TLS with cleartext passwords, a JWT is accepted as the password of its role.
    let hook = bkg_auth::TokenPasswordHook::new(engine.clone(), auth_config.clone());
    let auth = Arc::new(CatalogAuth::new(engine.clone(), &password, Some(Arc::new(hook))));
    let tls = match (&args.pg_tls_cert, &args.pg_tls_key) {
        (Some(cert), Some(key)) => {
            let mut t = TlsSettings::load(cert, key)?;
            t.required = args.pg_tls_required;
            t.cleartext_over_tls = args.pg_cleartext_over_tls;
            Some(t)
        }
        _ => None,
    };
    let flight = bkg_flight::BkgFlight::new(engine.clone(), auth_config.clone(), auth.clone(), args.flight_config());
    let pg = PgServer::new(engine.clone(), metrics.clone(), auth, args.max_connections, tls);
    let pg_listener = listen(args.pg_listen).await?;
    let http_listener = listen(args.http_listen).await?;
    let flight_listener = listen(args.flight_listen).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let flight_open = flight.open_connections();
    let flight_task = tokio::spawn(bkg_flight::serve(flight, flight_listener, stop_rx.clone()));

    let pg_task = tokio::spawn(pg.clone().serve(pg_listener, stop_rx.clone()));
    let rest = bkg_http::rest::RestState::new(engine.clone(), auth_config.clone(), rest_config);
    let users = bkg_http::gotrue::router(engine.clone(), auth_config.clone(), args.gotrue_config());
    let pg_active = {
        let pg = pg.clone();
        Arc::new(move || pg.active_connections())
    };
    let storage = bkg_storage::Storage::open(engine.clone(), auth_config.clone(), args.storage_config()?)?;
    let gc_task = tokio::spawn(bkg_storage::gc::run(storage.clone(), stop_rx.clone()));
    let hub = bkg_realtime::Hub::new(engine.clone(), auth_config.clone(), args.realtime_config());
    let tailer_task = tokio::spawn(hub.clone().run_tailer(stop_rx.clone()));
    let extra_metrics = {
        let (hub, storage) = (hub.clone(), storage.clone());
        Arc::new(move || hub.render_metrics() + &storage.metrics.render())
    };
    let http_open = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let door_stats = {
        let (hub, storage, http_open, flight_open) = (hub.clone(), storage.clone(), http_open.clone(), flight_open);
        Arc::new(move || {
            use std::sync::atomic::Ordering::Relaxed;
            bkg_http::admin::DoorStats {
                http_connections: http_open.load(Relaxed),
                flight_connections: flight_open.load(Relaxed),
                realtime_clients: hub.metrics.connections.load(Relaxed),
                storage_bytes_in: storage.metrics.upload_bytes.load(Relaxed),
                storage_bytes_out: storage.metrics.download_bytes.load(Relaxed),
            }
        })
    };
    engine.slow.set_threshold_ms(args.slow_statement_ms);
    let http_state = HttpState {
        engine: engine.clone(),
        metrics,
        pg_active,
        started,
        rest,
        openapi: Arc::new(crate::openapi::json()),
        extra_metrics,
        listeners: Arc::new(serde_json::json!({
            "http": args.http_listen.to_string(),
            "pgwire": args.pg_listen.to_string(),
            "flight": args.flight_listen.to_string(),
        })),
        door_stats,
        history: Default::default(),
    };
    let history_task = tokio::spawn(bkg_http::admin::sample_history(http_state.clone(), stop_rx.clone()));
    let app = router(
        http_state,
        users
            .merge(bkg_realtime::router(hub.clone()))
            .merge(bkg_storage::router(storage.clone()))
            .merge(crate::admin_ui::router()),
    )
    .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let mut http_stop = stop_rx.clone();
    let http_task = tokio::spawn(async move {
        let _ = axum::serve(lingering(http_listener, http_open), app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.changed().await;
            })
            .await;
    });
    let ckpt_task = tokio::spawn(checkpoints(engine.clone(), stop_rx.clone(), args.snapshot_age_warn_s * 1000));
    tracing::info!(pg = %args.pg_listen, http = %args.http_listen, flight = %args.flight_listen, "bkg-db is ready");

    wait_for_signal().await;
    tracing::info!("shutting down: no new connections");
    let _ = stop_tx.send(true);
    let _ = pg_task.await;
    let deadline = Instant::now() + Duration::from_secs(args.shutdown_grace_s);
    while pg.active_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if pg.active_connections() > 0 {
        tracing::warn!(open = pg.active_connections(), "closing connections still open after the grace period");
    }
    let _ = http_task.await;
    match flight_task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "flight server stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "flight server task failed"),
        Ok(Ok(())) => {}
    }
    let _ = ckpt_task.await;
    let _ = tailer_task.await;
    let _ = gc_task.await;
    let _ = history_task.await;
    // A clean stop signs the open audit segment.
    if let Some(a) = engine.auditor()
        && let Err(e) = a.seal().await
    {
        tracing::warn!("could not seal the audit log: {}", e.message);
    }
    let db = engine.kernel().clone();
    tokio::task::spawn_blocking(move || db.close()).await.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the database in `dir` with the limits and engine settings of `args`, recovering it.
async fn open_engine(args: &ServeArgs, dir: &std::path::Path, started: Instant) -> Result<Arc<Engine>, String> {
    let limits = Limits {
        checkpoint_wal_bytes: args.checkpoint_wal_mb << 20,
        checkpoint_interval_ms: args.checkpoint_interval_s * 1000,
        ..Limits::default()
    };
    let mut opts = Options::new(dir);
    opts.limits = limits;
    let config = EngineConfig {
        query_memory_bytes_max: args.query_memory_mb << 20,
        idle_in_transaction_timeout_ms: args.idle_in_transaction_timeout_s * 1000,
        idle_session_timeout_ms: args.idle_session_timeout_s * 1000,
        export: args.export_config(),
        ..Default::default()
    };
    let engine = tokio::task::spawn_blocking(move || Engine::open(opts, config))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot open the database in {}: {e}", dir.display()))?;
    tracing::info!(
        data_dir = %engine.kernel().dir().display(),
        records_replayed = engine.recovery.records_replayed,
        torn_bytes_cut = engine.recovery.torn_bytes_cut,
        recovery_ms = started.elapsed().as_millis() as u64,
        "database open"
    );
    Ok(engine)
}

/// Tells where newly created API keys are. The keys stay in <data-dir>/auth/keys.json (mode
/// 0600). They are shown once, and only to a person at a terminal: never into a log, where the
/// service key would be read by whoever reads logs.
fn announce_keys(dir: &std::path::Path, auth_config: &bkg_auth::AuthConfig) {
    let keys_file = dir.join("auth/keys.json");
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!(
            "bkg-db: API keys (stored in {}):\n  anon:         {}\n  service_role: {}",
            keys_file.display(),
            auth_config.anon_key,
            auth_config.service_key
        );
    } else {
        tracing::info!(keys_file = %keys_file.display(), "API keys created; read them from the keys file");
    }
}

async fn listen(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// The HTTP listener ([`crate::listener`]), with the client's address for `ConnectInfo`.
fn lingering(
    l: tokio::net::TcpListener,
    open: Arc<std::sync::atomic::AtomicU64>,
) -> axum::serve::TapIo<crate::listener::HttpListener, fn(&mut crate::listener::Lingering)> {
    use axum::serve::ListenerExt;
    fn nothing(_: &mut crate::listener::Lingering) {}
    crate::listener::HttpListener(l, open).tap_io(nothing as fn(&mut crate::listener::Lingering))
}

/// Once a second until `stop`: runs a checkpoint when one is due, and warns (at most once a
/// minute) when a snapshot has been held longer than `snapshot_age_warn_ms`.
async fn checkpoints(engine: Arc<Engine>, mut stop: tokio::sync::watch::Receiver<bool>, snapshot_age_warn_ms: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut warned_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        // A snapshot held for long keeps every version replaced since from being collected.
        let stats = engine.stats();
        if snapshot_age_warn_ms > 0
            && let Some(age_ms) = stats.oldest_snapshot_age_ms.filter(|a| *a > snapshot_age_warn_ms)
            && warned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            warned_at = Some(Instant::now());
            tracing::warn!(
                age_s = age_ms / 1000,
                gc_horizon_lag = stats.gc_horizon_lag,
                "a transaction has held its snapshot for long: old row versions cannot be collected until it ends"
            );
        }
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || e.kernel().maybe_checkpoint()).await {
            Ok(Err(err)) => tracing::error!(error = %err, "checkpoint failed"),
            Err(err) => tracing::error!(error = %err, "checkpoint task failed"),
            _ => {}
        }
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Picks up `bkg-db keys rotate|retire` while the server runs: keys.json is checked every two
/// seconds and the signing keys are read again when it changed.
fn reload_keys_on_change(engine: Arc<Engine>, auth: Arc<bkg_auth::AuthConfig>, dir: std::path::PathBuf) {
    let path = dir.join("auth").join("keys.json");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = modified(&path);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let now = modified(&path);
            if now != seen {
                seen = now;
                match auth.reload(&dir) {
                    // This process's own change (the admin API), audited where it was made.
                    Ok(false) => {}
                    Ok(true) => {
                        tracing::info!("signing keys reloaded from keys.json");
                        let actor = bkg_audit::Actor { role: "operator".into(), ..Default::default() };
                        let kids: Vec<String> =
                            auth.jwt().keys.iter().filter(|k| !k.retired).map(|k| k.kid.clone()).collect();
                        let event =
                            bkg_audit::Event::new(actor, "keys.changed", "auth/keys.json", bkg_audit::Outcome::Success)
                                .with_detail(serde_json::json!({ "active_key_ids": kids }));
                        engine.audit_now(event).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "keys.json changed but could not be read; keeping the keys"),
                }
            }
        }
    });
}
