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

pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod flight;
#[cfg(test)]
mod fuzz;
pub mod http;
pub mod metrics;
pub mod migrate;
pub mod openapi;
pub mod pgwire;
pub mod rest;
pub mod server;
pub mod sql;

pub use error::{SqlError, SqlResult};
pub use sql::{Engine, EngineConfig, Output, Session};
