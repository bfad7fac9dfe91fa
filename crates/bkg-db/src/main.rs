//! `bkg-db`: the server binary. `bkg-db` and `bkg-db serve` start the server.

use clap::Parser;

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
        None => cli.serve,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BKG_DB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_format == "json" {
        tracing_subscriber::fmt().with_env_filter(filter).json().with_writer(std::io::stderr).init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bkg-db")
        // Planning walks expression trees recursively; deep (but legal) SQL needs room.
        .thread_stack_size(64 << 20)
        .build()
        .expect("tokio runtime");
    match rt.block_on(bkg_db::server::serve(args)) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("bkg-db: {e}");
            std::process::exit(2);
        }
    }
}
