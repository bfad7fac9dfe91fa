//! The SQL layer: one session/plan path for every front door.
//!
//! A [`Session`] owns a connection's DataFusion state, its settings and its transaction. Text is
//! parsed with the PostgreSQL dialect; transaction control, SET/SHOW, DDL and DML are executed
//! here against the kernel; queries (and the row-selecting part of UPDATE/DELETE) are planned and
//! run by DataFusion over [`provider::MvccTable`]s that read the transaction's snapshot.

pub mod audit;
pub mod changes;
pub mod checks;
pub mod copy;
pub mod ddl;
pub mod describe;
pub mod dml;
pub mod error;
pub mod export;
pub mod fast_path;
#[cfg(test)]
mod fuzz;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod migrate;
pub mod output_names;
pub mod pg_catalog;
pub mod pg_format;
pub mod pg_semantics;
pub mod policy;
pub mod pool;
pub mod provider;
pub mod publication;
pub mod quote;
pub mod roles;
pub mod session;
pub mod slow;
pub mod sqlstate;
pub mod telemetry;
mod tokens;
pub mod types;

pub use error::{SqlError, SqlResult};
pub use session::{CancelSignal, Engine, EngineConfig, Output, Session, TxnEvent};
pub use sqlstate::SqlState;
