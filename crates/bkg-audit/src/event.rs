//! One audit event, and the line it becomes in a segment.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who did it: the database role, and where known the user (`sub`), the token (`session_id`
/// or `jti`) and the client's address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

/// An event before it is written: what a component records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique and ordered by creation: the shipper's key, written at most once.
    pub id: String,
    /// RFC 3339 UTC, microseconds.
    pub time: String,
    pub actor: Actor,
    /// Dotted name from the catalogue in docs/bkg-db.md (`policy.create`, `auth.signin`, ...).
    pub action: String,
    /// What it was done to (`public.notes`, a user id, a bucket), empty when nothing.
    pub object: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

impl Event {
    /// A new event now, with an id that sorts after every id this process made before.
    pub fn new(actor: Actor, action: &str, object: &str, outcome: Outcome) -> Event {
        let now = chrono::Utc::now();
        Event {
            id: next_id(now),
            time: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            actor,
            action: action.to_string(),
            object: object.to_string(),
            outcome,
            request_id: None,
            detail: Value::Null,
        }
    }

    pub fn with_detail(mut self, detail: Value) -> Event {
        self.detail = detail;
        self
    }
}

/// `<unix nanos, 20 digits>-<counter, 6 digits>`: ordered by creation within a process, and
/// across restarts as long as the clock does not go back.
fn next_id(now: chrono::DateTime<chrono::Utc>) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = now.timestamp_nanos_opt().unwrap_or(0).max(0);
    format!("{nanos:020}-{:06}", COUNTER.fetch_add(1, Ordering::Relaxed) % 1_000_000)
}

/// An event as written: its place in the chain first, then the event, then `prev`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
    /// Hex SHA-256 of the previous line's bytes (without its newline); 64 zeros for the first.
    pub prev: String,
}

/// Hex SHA-256 of a line's bytes.
pub(crate) fn line_hash(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `prev` of the very first line.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
