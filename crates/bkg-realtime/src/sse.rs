//! Server-Sent Events: the same change events as `postgres_changes`, for clients without
//! WebSocket, resumable with `Last-Event-ID`.
//!
//! `GET /realtime/v1/sse?schema=public&table=todos&event=INSERT&filter=room=eq.1` (a key as for
//! the WebSocket) streams `event: postgres_changes` messages whose `data` is the WebSocket
//! payload (`{ids, data: {schema, table, commit_timestamp, type, columns, record, old_record}}`)
//! and whose `id` is the commit's LSN: `<lsn>` on the last change of a commit the client
//! receives, `<lsn>.<n>` on the others. When commits pass that hold nothing for the client, an
//! `event: position` with the last LSN moves its id on (at most once a second).
//!
//! A client that reconnects with `Last-Event-ID: <id>` (EventSource does it by itself) gets
//! every change after that point, none twice: the commits it missed are read back from the WAL,
//! then it follows the live feed. That works across server restarts, as long as the WAL still
//! holds the commits after the id; a checkpoint truncates the WAL, and a resume point before the
//! WAL's start is refused with 410 (`BKG201`): subscribe again without it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use bkg_sql::SqlState;
use bkg_sql::changes::{Change, FeedError};
use serde_json::{Value, json};

use crate::http::{RealtimeError, admit};
use crate::hub::{Hub, Outbox, Subscription, close};
use crate::join::ChangeBinding;

#[derive(serde::Deserialize)]
pub(crate) struct SseQuery {
    apikey: Option<String>,
    schema: Option<String>,
    table: Option<String>,
    event: Option<String>,
    filter: Option<String>,
    last_event_id: Option<String>,
}

/// A resume point: the commit and, when the client saw only part of it, the position of the
/// last change it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resume {
    lsn: u64,
    seen: Option<usize>,
}

impl Resume {
    pub fn parse(id: &str) -> Option<Resume> {
        match id.trim().split_once('.') {
            None => Some(Resume { lsn: id.trim().parse().ok()?, seen: None }),
            Some((l, n)) => Some(Resume { lsn: l.parse().ok()?, seen: Some(n.parse().ok()?) }),
        }
    }

    /// The first commit the client still needs.
    fn first_needed(self) -> u64 {
        if self.seen.is_some() { self.lsn } else { self.lsn + 1 }
    }
}

/// The change stream.
#[utoipa::path(get, path = "/realtime/v1/sse", tag = "realtime",
    params(
        ("schema" = String, Query, description = "Schema of the table(s)"),
        ("table" = Option<String>, Query, description = "Table; every table of the schema without it"),
        ("event" = Option<String>, Query, description = "INSERT, UPDATE, DELETE or * (the default)"),
        ("filter" = Option<String>, Query, description = "column=eq|neq|lt|lte|gt|gte.value or column=in.(a,b)"),
        ("apikey" = Option<String>, Query, description = "The key or a user's JWT (also the apikey header or Authorization: Bearer)"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (also the last_event_id query parameter)"),
    ),
    responses(
        (status = 200, description = "text/event-stream of postgres_changes and position events", content_type = "text/event-stream"),
        (status = 400, description = "A bad binding or resume id", content_type = "application/json"),
        (status = 401, description = "No key, or a key that does not verify", content_type = "application/json"),
        (status = 403, description = "The principal may not read the table", content_type = "application/json"),
        (status = 410, description = "The resume point is no longer in the WAL (BKG201)", content_type = "application/json"),
    ), security(()))]
pub(crate) async fn sse(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<SseQuery>,
    headers: HeaderMap,
) -> Result<Response, RealtimeError> {
    let (grant, slot) = admit(&hub, q.apikey.as_deref(), &headers)?;
    let bad = |m: String| RealtimeError::new(SqlState::PgrstQueryString, 400, m);
    let mut item = serde_json::Map::new();
    for (k, v) in [("schema", &q.schema), ("table", &q.table), ("event", &q.event), ("filter", &q.filter)] {
        if let Some(v) = v {
            item.insert(k.into(), Value::String(v.clone()));
        }
    }
    let binding = ChangeBinding::parse(&Value::Object(item)).map_err(|e| bad(e.message))?;
    let resume_text =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_string).or(q.last_event_id);
    let resume = match resume_text.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(Resume::parse(t).ok_or_else(|| bad(format!("Last-Event-ID {t:?} is not <lsn> or <lsn>.<n>")))?),
    };
    let conn = hub.next_id();
    let (out, rx) = Outbox::new_sse(conn, hub.config.queue_frames);
    let sub = Arc::new(Subscription::new(hub.next_id(), "sse".into(), None, binding, grant.viewer, out.clone()));
    // Refuse now what cannot work: a missing table, no privilege, a filter on a missing column.
    sub.check_now(&hub.engine, &hub.engine.catalog()).map_err(|(missing, e)| match missing {
        true => RealtimeError::new(SqlState::UndefinedTable, 404, e),
        false => RealtimeError::new(SqlState::InsufficientPrivilege, 403, e),
    })?;
    // Take the live feed first, then check the WAL still holds what comes before it.
    let feed = hub.engine.subscribe_changes();
    if let Some(r) = resume {
        let wal_start = hub.engine.last_checkpoint().map_or(0, |c| c.wal_start_lsn);
        if r.first_needed() < wal_start || r.lsn >= feed.next_lsn() {
            return Err(RealtimeError::new(
                SqlState::BkgResumeGone,
                410,
                format!(
                    "cannot resume after {}: the WAL holds commits {wal_start} to {} (a checkpoint truncated it); subscribe again without Last-Event-ID",
                    resume_text.unwrap_or_default(),
                    feed.next_lsn().saturating_sub(1)
                ),
            ));
        }
    }
    hub.register(&out, slot);
    let follower = tokio::spawn(follow(hub.clone(), sub, feed, resume, grant.expires));
    let body = Body::from_stream(events(hub, out, rx, follower));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("a valid response"))
}

/// The event stream: queued events, a comment every 15 s to keep proxies from closing it, and
/// a last `error` event when the server ends it.
fn events(
    hub: Arc<Hub>,
    out: Outbox,
    rx: tokio::sync::mpsc::Receiver<String>,
    follower: tokio::task::JoinHandle<()>,
) -> impl futures::Stream<Item = Result<String, std::convert::Infallible>> {
    struct Ends {
        hub: Arc<Hub>,
        conn: u64,
        follower: tokio::task::JoinHandle<()>,
    }
    impl Drop for Ends {
        // The client went away (or the stream ended): stop following and count it gone.
        fn drop(&mut self) {
            self.follower.abort();
            self.hub.deregister(self.conn);
        }
    }
    let ends = Ends { hub, conn: out.conn, follower };
    let state = (rx, out, ends, false);
    futures::stream::unfold(state, |(mut rx, out, ends, done)| async move {
        if done {
            return None;
        }
        let item = tokio::select! {
            biased;
            _ = out.kill.0.notified() => {
                let reason = out.kill.1.lock().clone().map(|(_, r)| r).unwrap_or_default();
                return Some((Ok(format!("event: error\ndata: {}\n\n", json!({"message": reason}))), (rx, out, ends, true)));
            }
            m = rx.recv() => m,
            _ = tokio::time::sleep(Duration::from_secs(15)) => return Some((Ok(": keep-alive\n\n".to_string()), (rx, out, ends, false))),
        };
        item.map(|t| (Ok(t), (rx, out, ends, false)))
    })
}

/// Follows the change feed for one event-stream client: first what it missed (from the WAL),
/// then live commits; ends its stream when its token expires.
async fn follow(
    hub: Arc<Hub>,
    sub: Arc<Subscription>,
    mut feed: bkg_sql::changes::ChangeSubscription,
    resume: Option<Resume>,
    expires: Option<u64>,
) {
    let subs: HashMap<String, Vec<Arc<Subscription>>> =
        HashMap::from([(sub.binding.schema.clone(), vec![sub.clone()])]);
    let mut position = Position { last_sent: std::time::Instant::now(), pending: None };
    let mut next = feed.next_lsn();
    if let Some(r) = resume {
        next = replay(&hub, &subs, &sub, r.first_needed(), next, r.seen.map(|n| (r.lsn, n)), &mut position);
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let r = tokio::select! {
            r = feed.recv() => r,
            _ = tick.tick() => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
                if expires.is_some_and(|e| e <= now) {
                    sub.out.end(close::POLICY, "Token has expired".into());
                    return;
                }
                position.flush(&sub);
                continue;
            }
        };
        match r {
            Ok(changes) => {
                let Some(lsn) = changes.first().map(|c| c.lsn) else { continue };
                if lsn < next {
                    continue;
                }
                next = lsn + 1;
                position.after(&hub, &subs, &sub, &changes, 0);
            }
            Err(FeedError::Lagged { resume_lsn }) => {
                let upto = u64::MAX;
                next = replay(&hub, &subs, &sub, next.max(resume_lsn), upto, None, &mut position);
            }
            Err(FeedError::Closed) => {
                sub.out.end(close::GOING_AWAY, "server shutting down".into());
                return;
            }
            Err(FeedError::Decode(e)) => tracing::error!(error = %e, "realtime: a committed change did not decode"),
        }
    }
}

/// Tells an event-stream client how far it has seen when commits pass with nothing for it.
struct Position {
    last_sent: std::time::Instant,
    /// The last commit with nothing for the client, not yet announced.
    pending: Option<u64>,
}

impl Position {
    /// Delivers one commit's changes (from position `offset` in the commit) and notes the
    /// position when none was for the client.
    fn after(
        &mut self,
        hub: &Hub,
        subs: &HashMap<String, Vec<Arc<Subscription>>>,
        sub: &Subscription,
        changes: &[Change],
        offset: usize,
    ) {
        let Some(lsn) = changes.first().map(|c| c.lsn) else { return };
        if hub.deliver_to(changes, offset, subs) > 0 {
            self.pending = None;
            self.last_sent = std::time::Instant::now();
        } else {
            self.pending = Some(lsn);
            if self.last_sent.elapsed() >= Duration::from_secs(1) {
                self.flush(sub);
            }
        }
    }

    fn flush(&mut self, sub: &Subscription) {
        if let Some(lsn) = self.pending.take() {
            sub.out.send_text(format!("id: {lsn}\nevent: position\ndata: {{\"lsn\":{lsn}}}\n\n"));
            self.last_sent = std::time::Instant::now();
        }
    }
}

/// Delivers the commits from `from` (inclusive) up to `upto` (exclusive) from the WAL, skipping
/// the changes of `partial` (commit, last position seen) the client already has. Returns the
/// LSN after the last commit delivered.
fn replay(
    hub: &Hub,
    subs: &HashMap<String, Vec<Arc<Subscription>>>,
    sub: &Subscription,
    from: u64,
    upto: u64,
    partial: Option<(u64, usize)>,
    position: &mut Position,
) -> u64 {
    let each = |commit: &[Change]| {
        let skip = match partial {
            Some((l, seen)) if commit.first().is_some_and(|c| c.lsn == l) => (seen + 1).min(commit.len()),
            _ => 0,
        };
        position.after(hub, subs, sub, &commit[skip..], skip);
    };
    match crate::hub::read_commits(&hub.engine, from, upto, each) {
        Ok(next) => next,
        Err((next, e)) => {
            sub.out.end(close::INTERNAL, format!("cannot read changes back from the WAL: {e}"));
            next
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_ids_name_a_whole_or_a_partial_commit() {
        assert_eq!(Resume::parse("41"), Some(Resume { lsn: 41, seen: None }));
        assert_eq!(Resume::parse("41").unwrap().first_needed(), 42);
        assert_eq!(Resume::parse("41.3"), Some(Resume { lsn: 41, seen: Some(3) }));
        assert_eq!(Resume::parse("41.3").unwrap().first_needed(), 41);
        assert_eq!(Resume::parse("x"), None);
        assert_eq!(Resume::parse("1.y"), None);
    }
}
