//! Recent slow statements, for operators (the admin API and dashboard): every front door hands
//! a finished statement's duration here, and the ones at or over the threshold are kept in a
//! bounded ring, newest last. Nothing else is kept: no parameters, passwords hidden, and the
//! text is cut at [`SLOW_TEXT_BYTES_MAX`]. pgwire and `POST /query` hand their statements here.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::limits::{SLOW_STATEMENTS_MAX, SLOW_TEXT_BYTES_MAX};

/// One statement that took at least the threshold.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlowStatement {
    /// When it finished (RFC 3339, UTC).
    pub time: String,
    pub duration_ms: f64,
    /// `pgwire` or `rest` (`POST /query`).
    pub door: &'static str,
    pub role: String,
    pub statement: String,
    /// The SQLSTATE when it failed.
    pub sqlstate: Option<String>,
}

/// The ring of slow statements (see the module documentation).
#[derive(Debug)]
pub struct SlowLog {
    threshold_ms: AtomicU64,
    ring: parking_lot::Mutex<VecDeque<SlowStatement>>,
}

/// Default of `BKG_DB_SLOW_STATEMENT_MS`.
pub const DEFAULT_THRESHOLD_MS: u64 = 200;

impl Default for SlowLog {
    fn default() -> Self {
        SlowLog { threshold_ms: AtomicU64::new(DEFAULT_THRESHOLD_MS), ring: Default::default() }
    }
}

impl SlowLog {
    /// Statements at least this long are kept; 0 turns the log off.
    pub fn threshold_ms(&self) -> u64 {
        self.threshold_ms.load(Ordering::Relaxed)
    }

    pub fn set_threshold_ms(&self, ms: u64) {
        self.threshold_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether a statement that took `took` is kept (callers skip gathering its details if not).
    pub fn is_slow(&self, took: Duration) -> bool {
        let threshold = self.threshold_ms();
        threshold > 0 && took >= Duration::from_millis(threshold)
    }

    /// Keeps the statement if it took at least the threshold. Cheap when it did not.
    pub fn record(&self, door: &'static str, role: &str, statement: &str, took: Duration, sqlstate: Option<&str>) {
        if !self.is_slow(took) {
            return;
        }
        // Passwords are hidden as in the audit log (CREATE/ALTER ROLE ... PASSWORD '...').
        let redacted = crate::audit::redact_passwords(statement);
        let mut text = redacted.trim();
        if text.len() > SLOW_TEXT_BYTES_MAX {
            let mut end = SLOW_TEXT_BYTES_MAX;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text = &text[..end];
        }
        let entry = SlowStatement {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            duration_ms: (took.as_secs_f64() * 1e6).round() / 1e3,
            door,
            role: role.to_string(),
            statement: text.to_string(),
            sqlstate: sqlstate.map(str::to_string),
        };
        let mut ring = self.ring.lock();
        if ring.len() == SLOW_STATEMENTS_MAX {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// The newest `limit` slow statements, newest first.
    pub fn recent(&self, limit: usize) -> Vec<SlowStatement> {
        self.ring.lock().iter().rev().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_slow_statements_newest_first_and_bounded() {
        let log = SlowLog::default();
        log.set_threshold_ms(10);
        log.record("pgwire", "postgres", "SELECT 1", Duration::from_millis(9), None);
        assert!(log.recent(10).is_empty());
        for i in 0..SLOW_STATEMENTS_MAX + 5 {
            log.record("rest", "anon", &format!("SELECT {i}"), Duration::from_millis(10), Some("57014"));
        }
        let r = log.recent(usize::MAX);
        assert_eq!(r.len(), SLOW_STATEMENTS_MAX);
        assert_eq!(r[0].statement, format!("SELECT {}", SLOW_STATEMENTS_MAX + 4));
        assert_eq!(r[0].sqlstate.as_deref(), Some("57014"));
        assert_eq!(r.last().unwrap().statement, "SELECT 5");
        log.set_threshold_ms(0);
        log.record("rest", "anon", "SELECT 'off'", Duration::from_secs(5), None);
        assert_eq!(log.recent(1)[0].statement, format!("SELECT {}", SLOW_STATEMENTS_MAX + 4));
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let log = SlowLog::default();
        log.set_threshold_ms(1);
        let text = "é".repeat(SLOW_TEXT_BYTES_MAX);
        log.record("pgwire", "postgres", &text, Duration::from_millis(2), None);
        let kept = &log.recent(1)[0].statement;
        assert!(kept.len() <= SLOW_TEXT_BYTES_MAX && kept.len() >= SLOW_TEXT_BYTES_MAX - 1);
    }
}
