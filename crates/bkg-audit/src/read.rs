//! Reading events back, newest first, a page at a time (for `GET /audit`).

use std::path::Path;

use crate::error::{Result, io};
use crate::event::{Line, Outcome};
use crate::log::segments;

/// A page request. `before` is a cursor: only lines with a smaller `seq`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub limit: usize,
    pub before: Option<u64>,
    /// Actions equal to this or under it (`policy` matches `policy.create`).
    pub action: Option<String>,
    /// The actor's role or user id.
    pub actor: Option<String>,
    pub outcome: Option<Outcome>,
    /// RFC 3339 bounds on `time` (inclusive, compared as UTC text).
    pub since: Option<String>,
    pub until: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<Line>,
    /// The cursor for the next (older) page, when there may be one.
    pub next_before: Option<u64>,
}

impl Query {
    fn matches(&self, l: &Line) -> bool {
        let e = &l.event;
        self.before.is_none_or(|b| l.seq < b)
            && self.action.as_ref().is_none_or(|a| e.action == *a || e.action.starts_with(&format!("{a}.")))
            && self.actor.as_ref().is_none_or(|a| e.actor.role == *a || e.actor.user_id.as_ref() == Some(a))
            && self.outcome.is_none_or(|o| e.outcome == o)
            && self.since.as_ref().is_none_or(|s| e.time.as_str() >= s.as_str())
            && self.until.as_ref().is_none_or(|u| e.time.as_str() <= u.as_str())
    }
}

/// One page of events, newest first. Reads one segment at a time (bounded by the segment size);
/// lines that do not parse are skipped here (`verify` reports them).
pub fn read_page(dir: &Path, q: &Query) -> Result<Page> {
    let limit = q.limit.max(1);
    let mut events = Vec::new();
    for (_, path) in segments(dir)?.iter().rev() {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let mut lines: Vec<Line> =
            bytes.split(|b| *b == b'\n').filter_map(|raw| serde_json::from_slice::<Line>(raw).ok()).collect();
        if let (Some(b), Some(first)) = (q.before, lines.first())
            && first.seq >= b
        {
            continue;
        }
        lines.reverse();
        for l in lines {
            if q.matches(&l) {
                events.push(l);
                if events.len() == limit {
                    let next_before = events.last().map(|l| l.seq);
                    return Ok(Page { events, next_before });
                }
            }
        }
    }
    Ok(Page { events, next_before: None })
}
