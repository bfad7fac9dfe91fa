//! Idle sessions kept for the front doors that serve one request at a time (REST, Flight).

use std::sync::Arc;

use crate::limits::POOLED_SESSIONS_PER_ROLE_MAX;
use crate::{Engine, Session};

/// Idle sessions per role, so a request does not build a planner state from scratch. A session
/// goes back only without an open transaction and after DISCARD ALL, so the next caller cannot
/// tell it from a new one.
#[derive(Default)]
pub struct SessionPool {
    idle: parking_lot::Mutex<std::collections::HashMap<String, Vec<Session>>>,
}

impl SessionPool {
    pub fn new() -> SessionPool {
        SessionPool::default()
    }

    pub fn take(&self, engine: &Arc<Engine>, role: &str, timeout_ms: u64) -> crate::error::SqlResult<Session> {
        let pooled = self.idle.lock().get_mut(role).and_then(Vec::pop);
        let mut session = pooled.unwrap_or_else(|| engine.session(role));
        if timeout_ms > 0 {
            session.set_var("statement_timeout", timeout_ms.to_string())?;
        }
        Ok(session)
    }

    pub fn give(&self, role: &str, mut s: Session) {
        // Only a session that is as good as new goes back: no open transaction, and every
        // setting, the role and the request's principal reset (DISCARD ALL).
        if s.in_transaction() || s.in_failed_transaction() || s.discard_all().is_err() {
            return;
        }
        s.set_claims(None);
        s.client_address = None;
        let mut idle = self.idle.lock();
        let v = idle.entry(role.to_string()).or_default();
        if v.len() < POOLED_SESSIONS_PER_ROLE_MAX {
            v.push(s);
        }
    }
}
