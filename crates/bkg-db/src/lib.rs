//! # bkg-db
//!
//! ```text
//!  psql / drivers ──► pgwire ─┐
//!  apps (HTTP)   ──► http   ──┼──► sql::Session ──► DataFusion plan ──► MvccTable scan ──► kernel
//!                             │    (txn control,     (queries, DML        (snapshot of the    (WAL, MVCC,
//!                             │     DDL, DML)         row selection)       transaction)        snapshots)
//! ```
//!
//! Layer rule: `bkg_kernel` knows nothing above it; [`sql`] is the one session/plan path every
//! front door uses; front doors ([`pgwire`], [`http`]) only translate their protocol to it.

pub mod admin_ui;
pub mod cli;
pub mod config;
pub mod listener;
pub mod openapi;
pub mod server;
pub mod telemetry;

// The layers below, under the names the binary's modules and tests have always used.
pub use bkg_auth as auth;
pub use bkg_flight as flight;
pub use bkg_http as http;
pub use bkg_http::rest;
pub use bkg_pgwire as pgwire;
pub use bkg_sql as sql;
pub use bkg_sql::{Engine, EngineConfig, Output, Session, SqlError, SqlResult, error, metrics, migrate};
