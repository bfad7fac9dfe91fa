//! `bkg-db`: the server binary. `bkg-db` and `bkg-db serve` start the server.

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use bkg_db::config::{Cli, Command};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => a,
        Some(Command::Openapi) => {
            println!("{}", bkg_db::openapi::json());
            std::process::exit(0);
        }
        Some(Command::Migrate { action }) => {
            let filter = tracing_subscriber::EnvFilter::try_from_env("BKG_DB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
            std::process::exit(bkg_db::cli::migrate(action));
        }
        Some(Command::Keys { action }) => std::process::exit(bkg_db::cli::keys(action)),
        Some(Command::Audit { action }) => std::process::exit(bkg_db::cli::audit(action)),
        None => cli.serve,
    };
    // Telemetry settings first: an invalid CAVE_OTEL_SAMPLING_RATE stops the server here.
    let otel = match bkg_db::telemetry::config_from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bkg-db: {e}");
            std::process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BKG_DB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log: Box<dyn Layer<Registry> + Send + Sync> = if args.log_format == "json" {
        tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_filter(filter).boxed()
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr).with_filter(filter).boxed()
    };
    let mut layers = vec![log];
    let mut otel_guard = None;
    if let Some(cfg) = &otel {
        let _ = bkg_sql::telemetry::telemetry().set_rate(cfg.rate);
        match bkg_db::telemetry::layer::<Registry>(cfg) {
            Ok((layer, guard)) => {
                layers.push(layer);
                otel_guard = Some(guard);
            }
            Err(e) => {
                eprintln!("bkg-db: {e}");
                std::process::exit(2);
            }
        }
    }
    tracing_subscriber::registry().with(layers).init();
    if let Some(cfg) = &otel {
        tracing::info!(endpoint = %cfg.endpoint, protocol = ?cfg.protocol, sampling_rate = cfg.rate, "exporting traces over OTLP");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bkg-db")
        // Planning walks expression trees recursively; deep (but legal) SQL needs room.
        .thread_stack_size(64 << 20)
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(bkg_db::server::serve(args));
    if let Some(g) = otel_guard {
        g.shutdown();
    }
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("bkg-db: {e}");
            std::process::exit(2);
        }
    }
}
