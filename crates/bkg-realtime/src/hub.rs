//! The hub: every connection, channel and `postgres_changes` subscription of the server, the
//! tailer that reads committed changes and the delivery of each change to the subscribers
//! allowed to see it.
//!
//! Delivery of one commit:
//! 1. its changes are grouped by table; a table in no publication (or whose publication does not
//!    publish that kind of change) is skipped;
//! 2. the rows of each table's changes become one column batch ([`ChangeRows`]): the new rows
//!    of INSERT and UPDATE, the old rows of DELETE, and apart the old rows of UPDATE;
//! 3. each subscription covering the table has a [`RowGate`] (privileges, row-level security,
//!    its filter) compiled for the catalog of the commit; gates with the same key are
//!    evaluated once on the batch, whatever the number of subscribers sharing them;
//! 4. the changes go out in commit order, one frame per change and channel, naming every binding
//!    of the channel that matched. An UPDATE's old row is sent only to subscribers who could also
//!    see the old row (an update that moves a row into someone's view does not reveal what it
//!    was before).
//!
//! A subscriber whose queue is full is disconnected (see [`RealtimeConfig::queue_frames`]); the
//! tailer never waits for a client.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bkg_auth::limits::RateLimiter;
use bkg_kernel::{Catalog, PublishKinds, TableDef, Value as KernelValue};
use bkg_sql::Engine;
use bkg_sql::changes::{
    Change, ChangeKind, ChangeRows, ChangeSubscription, FeedError, RowGate, ScalarValue, Viewer, columns_json,
};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::config::RealtimeConfig;
use crate::join::{ChangeBinding, ChangeEvent};
use crate::limits::CATCH_UP_CHANGES;
use crate::presence;
use crate::protocol::{Frame, Vsn};
use crate::rooms::Member;

/// WebSocket close codes a connection ends with.
pub(crate) mod close {
    /// The server stops.
    pub const GOING_AWAY: u16 = 1001;
    /// Refused input (a bad frame, no message for too long, an expired token).
    pub const POLICY: u16 = 1008;
    /// A frame over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server could not go on (the WAL could not be read back).
    pub const INTERNAL: u16 = 1011;
    /// A reader that let its queue fill up ("slow consumer").
    pub const SLOW: u16 = 1013;
}

/// The sending side of a connection: a bounded queue and a way to end it.
#[derive(Clone)]
pub(crate) struct Outbox {
    pub conn: u64,
    pub vsn: Vsn,
    /// A Server-Sent Events stream: frames are written as events (changes with their `id`).
    pub sse: bool,
    tx: mpsc::Sender<String>,
    /// Set (with the close code and reason) when the connection must end; the writer ends it.
    pub kill: Arc<(Notify, Mutex<Option<(u16, String)>>)>,
}

impl Outbox {
    pub fn new(conn: u64, vsn: Vsn, capacity: usize) -> (Outbox, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Outbox { conn, vsn, sse: false, tx, kill: Arc::new((Notify::new(), Mutex::new(None))) }, rx)
    }

    pub fn new_sse(conn: u64, capacity: usize) -> (Outbox, mpsc::Receiver<String>) {
        let (mut out, rx) = Outbox::new(conn, Vsn::V2, capacity);
        out.sse = true;
        (out, rx)
    }

    /// Queues a frame; false (and the connection is ended as too slow) when the queue is full.
    pub fn send(&self, frame: &Frame) -> bool {
        if self.sse {
            return self.send_text(format!("event: {}\ndata: {}\n\n", frame.event, frame.payload));
        }
        self.send_text(frame.encode(self.vsn))
    }

    pub fn send_text(&self, text: String) -> bool {
        match self.tx.try_send(text) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.end(
                    close::SLOW,
                    format!(
                        "slow consumer: more than {} messages waiting to be read; re-join to resume",
                        self.tx.max_capacity()
                    ),
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Ends the connection with close `code` and `reason` (the first one given wins).
    pub fn end(&self, code: u16, reason: String) {
        let mut r = self.kill.1.lock();
        if r.is_none() {
            *r = Some((code, reason));
        }
        drop(r);
        self.kill.0.notify_one();
    }
}

/// One `postgres_changes` binding of a joined channel.
pub(crate) struct Subscription {
    pub id: u64,
    pub topic: String,
    pub join_ref: Option<String>,
    pub binding: ChangeBinding,
    pub viewer: RwLock<Viewer>,
    pub out: Outbox,
    /// Compiled gates by table id: (catalog version, gate or why there is none).
    gates: Mutex<HashMap<u64, (u64, Result<Arc<RowGate>, String>)>>,
}

impl Subscription {
    pub fn new(
        id: u64,
        topic: String,
        join_ref: Option<String>,
        binding: ChangeBinding,
        viewer: Viewer,
        out: Outbox,
    ) -> Self {
        Subscription {
            id,
            topic,
            join_ref,
            binding,
            viewer: RwLock::new(viewer),
            out,
            gates: Mutex::new(HashMap::new()),
        }
    }

    /// A new token for the same subscriber: gates are compiled again for it.
    pub fn set_viewer(&self, viewer: Viewer) {
        *self.viewer.write() = viewer;
        self.gates.lock().clear();
    }

    /// What makes the subscription send nothing now, for the client to be told: its table does
    /// not exist (`Err(true, ..)`), or the gate does not compile (no privilege, a filter on a
    /// missing column: `Err(false, ..)`). A binding on every table of a schema is not checked.
    pub fn check_now(&self, engine: &Arc<Engine>, catalog: &Catalog) -> Result<(), (bool, String)> {
        let b = &self.binding;
        let Some(table) = b.table.as_deref().filter(|_| b.schema != "*") else { return Ok(()) };
        let def = catalog
            .find_table(&b.schema, table)
            .ok_or_else(|| (true, format!("table {}.{table} does not exist", b.schema)))?;
        self.gate(engine, catalog, def).map(|_| ()).map_err(|e| (false, e))
    }

    /// The gate of this subscription on `def` under `catalog`.
    pub fn gate(&self, engine: &Arc<Engine>, catalog: &Catalog, def: &TableDef) -> Result<Arc<RowGate>, String> {
        let mut gates = self.gates.lock();
        if let Some((version, g)) = gates.get(&def.id)
            && *version == catalog.version
        {
            return g.clone();
        }
        let filter = self.binding.filter.as_ref().map(|f| f.to_sql());
        let viewer = self.viewer.read().clone();
        let g = RowGate::compile(engine, catalog, &viewer, def, filter.as_deref()).map(Arc::new).map_err(|e| e.message);
        gates.insert(def.id, (catalog.version, g.clone()));
        g
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RealtimeMetrics {
    pub connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    pub channels: AtomicU64,
    pub events_delivered: AtomicU64,
    pub events_dropped: AtomicU64,
    pub slow_disconnects: AtomicU64,
    pub policy_errors: AtomicU64,
    /// Commit-to-queue delay of delivered changes, in milliseconds: sum and count.
    pub lag_ms_sum: AtomicU64,
    pub lag_count: AtomicU64,
    pub lag_ms_max: AtomicU64,
}

pub struct Hub {
    pub(crate) engine: Arc<Engine>,
    pub(crate) auth: Arc<bkg_auth::AuthConfig>,
    pub config: RealtimeConfig,
    pub metrics: RealtimeMetrics,
    next_id: AtomicU64,
    /// `postgres_changes` subscriptions, by schema (`*` for every schema).
    subs: RwLock<HashMap<String, Vec<Arc<Subscription>>>>,
    /// Channel members by room (see [`crate::rooms`]), by connection.
    pub(crate) members: RwLock<HashMap<String, HashMap<u64, Member>>>,
    pub(crate) presence: Mutex<HashMap<String, presence::Topic>>,
    /// Joins, and broadcast and presence messages, per connection and second.
    pub(crate) joins: RateLimiter<u64>,
    pub(crate) events: RateLimiter<u64>,
    /// Every open connection, to close them when the server stops.
    conns: Mutex<HashMap<u64, Outbox>>,
    /// The feed handed to the tailer when the first subscription arrives (taken at registration,
    /// so no commit after a join reply can be missed).
    feed: Mutex<Option<ChangeSubscription>>,
    feed_ready: Notify,
}

impl Hub {
    pub fn new(engine: Arc<Engine>, auth: Arc<bkg_auth::AuthConfig>, config: RealtimeConfig) -> Arc<Hub> {
        let config = config.checked();
        Arc::new(Hub {
            engine,
            auth,
            joins: RateLimiter::new(config.joins_per_second, config.joins_per_second),
            events: RateLimiter::new(config.events_per_second, config.events_per_second),
            config,
            metrics: RealtimeMetrics::default(),
            next_id: AtomicU64::new(1),
            subs: RwLock::new(HashMap::new()),
            members: RwLock::new(HashMap::new()),
            presence: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            feed: Mutex::new(None),
            feed_ready: Notify::new(),
        })
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A connection (WebSocket or event stream) opens in the place it was admitted to: counted
    /// until [`Hub::deregister`], and closed at shutdown.
    pub(crate) fn register(&self, out: &Outbox, slot: crate::http::Slot) {
        self.conns.lock().insert(out.conn, out.clone());
        slot.keep();
        self.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn deregister(&self, conn: u64) {
        if self.conns.lock().remove(&conn).is_some() {
            self.metrics.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Ends every connection (close code 1001), as the server stops.
    pub fn close_all(&self) {
        for out in self.conns.lock().values() {
            out.end(close::GOING_AWAY, "server shutting down".into());
        }
    }

    fn has_subscriptions(&self) -> bool {
        self.subs.read().values().any(|v| !v.is_empty())
    }

    /// Registers a subscription; the tailer starts reading the change feed if it was idle.
    pub(crate) fn subscribe(&self, sub: Arc<Subscription>) {
        let schema = sub.binding.schema.clone();
        let mut subs = self.subs.write();
        let idle = subs.values().all(|v| v.is_empty());
        subs.entry(schema).or_default().push(sub);
        drop(subs);
        if idle {
            let mut feed = self.feed.lock();
            if feed.is_none() {
                *feed = Some(self.engine.subscribe_changes());
            }
            drop(feed);
            self.feed_ready.notify_one();
        }
    }

    /// Removes the subscriptions of channel `topic` on connection `conn` (every channel of the
    /// connection when `topic` is `None`).
    pub(crate) fn unsubscribe(&self, conn: u64, topic: Option<&str>) {
        let mut subs = self.subs.write();
        for list in subs.values_mut() {
            list.retain(|s| !(s.out.conn == conn && topic.is_none_or(|t| s.topic == t)));
        }
        subs.retain(|_, v| !v.is_empty());
    }

    /// The subscriptions of channel `topic` on connection `conn` act for `viewer` from now on.
    pub(crate) fn set_viewer(&self, conn: u64, topic: &str, viewer: Viewer) {
        for list in self.subs.read().values() {
            for s in list.iter().filter(|s| s.out.conn == conn && s.topic == topic) {
                s.set_viewer(viewer.clone());
            }
        }
    }

    /// Runs the tailer until `stop` is set (then closes every connection): reads committed
    /// changes while anyone subscribes and delivers them.
    pub async fn run_tailer(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        self.clone().tail(stop).await;
        self.close_all();
    }

    async fn tail(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut next_lsn = 0u64;
        loop {
            let feed = self.feed.lock().take();
            let Some(mut feed) = feed else {
                tokio::select! {
                    _ = self.feed_ready.notified() => continue,
                    _ = stop.changed() => return,
                }
            };
            loop {
                if !self.has_subscriptions() {
                    break;
                }
                let r = tokio::select! {
                    r = feed.recv() => r,
                    _ = stop.changed() => return,
                    // Notices a last unsubscribe while no commit comes.
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                };
                match r {
                    Ok(changes) => {
                        let Some(lsn) = changes.first().map(|c| c.lsn) else { continue };
                        if lsn >= next_lsn {
                            next_lsn = lsn + 1;
                            self.deliver(&changes);
                        }
                    }
                    Err(FeedError::Lagged { resume_lsn }) => {
                        next_lsn = self.catch_up(next_lsn.max(resume_lsn));
                    }
                    Err(FeedError::Closed) => return,
                    Err(FeedError::Decode(e)) => {
                        tracing::error!(error = %e, "realtime: a committed change did not decode")
                    }
                }
            }
            // Idle: let the kernel stop publishing until the next subscription.
            drop(feed);
            let mut slot = self.feed.lock();
            if self.has_subscriptions() && slot.is_none() {
                *slot = Some(self.engine.subscribe_changes());
            }
        }
    }

    /// Delivers every commit from `from_lsn` on from the WAL; returns the LSN after the last.
    fn catch_up(&self, from_lsn: u64) -> u64 {
        match read_commits(&self.engine, from_lsn, u64::MAX, |commit| self.deliver(commit)) {
            Ok(next) => next,
            Err((next, e)) => {
                tracing::error!(error = %e, "realtime: cannot read changes back from the WAL");
                next
            }
        }
    }

    /// Delivers the changes of one commit (see the module documentation).
    pub(crate) fn deliver(&self, changes: &[Change]) {
        let subs = self.subs.read().clone();
        self.deliver_to(changes, 0, &subs);
    }

    /// Delivers changes of one commit to `subs` (by schema); `offset` is the position of the
    /// first of `changes` in its commit (the rest of a commit resumed in the middle). Returns
    /// how many messages were queued.
    pub(crate) fn deliver_to(
        &self,
        changes: &[Change],
        offset: usize,
        subs: &HashMap<String, Vec<Arc<Subscription>>>,
    ) -> usize {
        let Some(first) = changes.first() else { return 0 };
        let catalog = self.engine.catalog_at(first.commit_ts);
        // Per change: who receives it, and whether with the old row.
        let mut outgoing: Vec<Vec<(Arc<Subscription>, bool)>> = vec![Vec::new(); changes.len()];
        let mut by_table: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, c) in changes.iter().enumerate() {
            if c.kind != ChangeKind::Ddl {
                by_table.entry(c.table_id).or_default().push(i);
            }
        }
        // Change index → the rows of its table and its position among them.
        let mut payloads: HashMap<usize, (Arc<TableRows>, usize)> = HashMap::new();
        for (table_id, idx) in by_table {
            let Some(def) = catalog.table(table_id) else { continue };
            let idx = published(&catalog, def, changes, idx);
            if idx.is_empty() {
                continue;
            }
            let interested: Vec<&Arc<Subscription>> = [def.schema.as_str(), "*"]
                .iter()
                .filter_map(|s| subs.get(*s))
                .flatten()
                .filter(|s| s.binding.covers(&def.schema, &def.name))
                .collect();
            if interested.is_empty() {
                continue;
            }
            let rows = match TableRows::new(def, changes, &idx) {
                Ok(r) => Arc::new(r),
                Err(e) => {
                    tracing::error!(error = %e, table = %def.qualified_name(), "realtime: cannot build change rows");
                    continue;
                }
            };
            // Gates that are `column = constant` are found by looking each row's value up;
            // the others are evaluated once per distinct gate.
            let mut by_value: HashMap<usize, HashMap<ScalarValue, Vec<Arc<Subscription>>>> = HashMap::new();
            let mut masks: HashMap<String, Option<(Vec<bool>, Vec<bool>)>> = HashMap::new();
            for sub in interested {
                let gate = match sub.gate(&self.engine, &catalog, def) {
                    Ok(g) => g,
                    Err(_) => continue,
                };
                if let Some((column, value)) = gate.equality() {
                    by_value.entry(column).or_default().entry(value.clone()).or_default().push(sub.clone());
                    continue;
                }
                let mask = masks
                    .entry(gate.key().to_string())
                    .or_insert_with(|| match (gate.evaluate(&rows.rows), gate.evaluate(&rows.old_rows)) {
                        (Ok(a), Ok(b)) => Some((a, b)),
                        (Err(e), _) | (_, Err(e)) => {
                            self.metrics.policy_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, table = %def.qualified_name(), "realtime: a row policy failed for a subscriber");
                            None
                        }
                    });
                let Some((visible, old_visible)) = mask.as_ref() else { continue };
                for (k, &i) in idx.iter().enumerate() {
                    if visible[k] && sub.binding.wants(event_of(changes[i].kind)) {
                        let with_old = rows.old_pos[k].is_some_and(|p| old_visible[p]);
                        outgoing[i].push((sub.clone(), with_old));
                    }
                }
            }
            for (column, subs_by_value) in by_value {
                for (k, &i) in idx.iter().enumerate() {
                    let (Ok(value), kind) = (rows.rows.value(column, k), event_of(changes[i].kind)) else { continue };
                    let Some(subs) = subs_by_value.get(&value) else { continue };
                    let old_same =
                        rows.old_pos[k].is_some_and(|p| rows.old_rows.value(column, p).is_ok_and(|o| o == value));
                    for sub in subs.iter().filter(|s| s.binding.wants(kind)) {
                        outgoing[i].push((sub.clone(), old_same));
                    }
                }
            }
            for (k, &i) in idx.iter().enumerate() {
                payloads.insert(i, (rows.clone(), k));
            }
        }
        self.send(changes, offset, outgoing, &payloads)
    }

    /// Queues the messages of one commit: per change, one per channel that receives it.
    fn send(
        &self,
        changes: &[Change],
        offset: usize,
        outgoing: Vec<Vec<(Arc<Subscription>, bool)>>,
        payloads: &HashMap<usize, (Arc<TableRows>, usize)>,
    ) -> usize {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        // The last change of the commit each event-stream subscription receives: its event id
        // says the commit is complete for it.
        let mut last_of: HashMap<u64, usize> = HashMap::new();
        for (i, recipients) in outgoing.iter().enumerate() {
            for (sub, _) in recipients.iter().filter(|(s, _)| s.out.sse) {
                last_of.insert(sub.id, i);
            }
        }
        let mut sent = 0;
        for (i, recipients) in outgoing.into_iter().enumerate() {
            if recipients.is_empty() {
                continue;
            }
            let Some((rows, k)) = payloads.get(&i) else { continue };
            let change = &changes[i];
            let (with_old, without_old) = match rows.data_json(change, *k) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "realtime: cannot render a change");
                    continue;
                }
            };
            // One message per channel, naming every binding of it that matched.
            let mut channels: HashMap<(u64, &str, bool), (Arc<Subscription>, Vec<u64>)> = HashMap::new();
            for (sub, old) in &recipients {
                channels
                    .entry((sub.out.conn, sub.topic.as_str(), *old))
                    .or_insert_with(|| (sub.clone(), vec![]))
                    .1
                    .push(sub.id);
            }
            for ((_, _, old), (sub, ids)) in channels {
                let data = if old { &with_old } else { without_old.as_ref().unwrap_or(&with_old) };
                let payload = format!("{{\"ids\":{},\"data\":{data}}}", json!(ids));
                let text = if sub.out.sse {
                    let id = if last_of.get(&sub.id) == Some(&i) {
                        change.lsn.to_string()
                    } else {
                        format!("{}.{}", change.lsn, offset + i)
                    };
                    format!("id: {id}\nevent: postgres_changes\ndata: {payload}\n\n")
                } else {
                    encode_raw(sub.out.vsn, sub.join_ref.as_deref(), &sub.topic, "postgres_changes", &payload)
                };
                if sub.out.send_text(text) {
                    sent += 1;
                    self.metrics.events_delivered.fetch_add(1, Ordering::Relaxed);
                    let lag = now_ms.saturating_sub(change.wall_ms);
                    self.metrics.lag_ms_sum.fetch_add(lag, Ordering::Relaxed);
                    self.metrics.lag_count.fetch_add(1, Ordering::Relaxed);
                    self.metrics.lag_ms_max.fetch_max(lag, Ordering::Relaxed);
                } else {
                    self.metrics.events_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        sent
    }

    /// The realtime metrics in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let m = &self.metrics;
        let mut out = String::new();
        let table: [(&str, &str, &str, &AtomicU64); 8] = [
            (
                "bkg_realtime_connections",
                "gauge",
                "Realtime connections (WebSocket and event streams) open now.",
                &m.connections,
            ),
            ("bkg_realtime_connections_total", "counter", "Realtime connections accepted.", &m.connections_total),
            (
                "bkg_realtime_connections_refused_total",
                "counter",
                "Realtime connections refused (bad key, connection limit).",
                &m.connections_refused,
            ),
            ("bkg_realtime_channels", "gauge", "Realtime channels joined now.", &m.channels),
            (
                "bkg_realtime_events_delivered_total",
                "counter",
                "Realtime messages queued to clients (changes, broadcast, presence).",
                &m.events_delivered,
            ),
            (
                "bkg_realtime_events_dropped_total",
                "counter",
                "Realtime messages not delivered because the client's queue was full or closed.",
                &m.events_dropped,
            ),
            (
                "bkg_realtime_slow_disconnects_total",
                "counter",
                "Realtime connections ended because they did not read fast enough.",
                &m.slow_disconnects,
            ),
            (
                "bkg_realtime_policy_errors_total",
                "counter",
                "Row policy evaluations that failed for a group of subscribers (they got nothing).",
                &m.policy_errors,
            ),
        ];
        for (name, kind, help, value) in table {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", value.load(Ordering::Relaxed));
        }
        // Commit-to-delivery lag as a summary without quantiles (sum and count, in seconds as
        // the exposition format's conventions want), and its largest value seen.
        let seconds = |v: &AtomicU64| v.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "# HELP bkg_realtime_delivery_lag_seconds Seconds from commit to delivery of changes.\n\
             # TYPE bkg_realtime_delivery_lag_seconds summary\n\
             bkg_realtime_delivery_lag_seconds_sum {}\n\
             bkg_realtime_delivery_lag_seconds_count {}\n\
             # HELP bkg_realtime_delivery_lag_max_seconds Largest commit-to-delivery lag seen, in seconds.\n\
             # TYPE bkg_realtime_delivery_lag_max_seconds gauge\n\
             bkg_realtime_delivery_lag_max_seconds {}",
            seconds(&m.lag_ms_sum),
            m.lag_count.load(Ordering::Relaxed),
            seconds(&m.lag_ms_max),
        );
        out
    }
}

fn event_of(kind: ChangeKind) -> ChangeEvent {
    match kind {
        ChangeKind::Insert => ChangeEvent::Insert,
        ChangeKind::Update => ChangeEvent::Update,
        _ => ChangeEvent::Delete,
    }
}

/// Hands `each` every commit with an LSN from `from` up to `upto` (exclusive) that the WAL
/// holds, whole and in order, reading at most about `CATCH_UP_CHANGES` changes at a time (more
/// for one larger commit). Returns the LSN after the last commit handed over; on a read error,
/// that LSN with the error.
pub(crate) fn read_commits(
    engine: &Engine,
    from: u64,
    upto: u64,
    mut each: impl FnMut(&[Change]),
) -> Result<u64, (u64, bkg_sql::SqlError)> {
    let mut next = from;
    let mut limit = CATCH_UP_CHANGES;
    loop {
        let changes = engine.changes_since(next, limit).map_err(|e| (next, e))?;
        let full = changes.len() >= limit;
        let Some(last_lsn) = changes.last().map(|c| c.lsn) else { return Ok(next) };
        if full && changes.iter().all(|c| c.lsn == last_lsn) {
            // One commit larger than the step: read it whole.
            limit = limit.saturating_mul(2);
            continue;
        }
        limit = CATCH_UP_CHANGES;
        let mut start = 0;
        while start < changes.len() {
            let lsn = changes[start].lsn;
            let end = changes[start..].iter().position(|c| c.lsn != lsn).map_or(changes.len(), |p| start + p);
            // The last commit of a full read may be cut by the limit: read it again next time.
            if lsn >= upto || (full && lsn == last_lsn) {
                break;
            }
            each(&changes[start..end]);
            next = lsn + 1;
            start = end;
        }
        if !full || next >= upto {
            return Ok(next);
        }
    }
}

/// The changes (positions `idx` in `changes`) of `def` that a publication publishes.
fn published(catalog: &Catalog, def: &TableDef, changes: &[Change], idx: Vec<usize>) -> Vec<usize> {
    let mut kinds = PublishKinds { insert: false, update: false, delete: false, truncate: false };
    for p in catalog.publications_of(def) {
        kinds.insert |= p.publish.insert;
        kinds.update |= p.publish.update;
        kinds.delete |= p.publish.delete;
    }
    idx.into_iter()
        .filter(|&i| match changes[i].kind {
            ChangeKind::Insert => kinds.insert,
            ChangeKind::Update => kinds.update,
            ChangeKind::Delete => kinds.delete,
            ChangeKind::Ddl => false,
        })
        .collect()
}

/// A frame built from an already-encoded JSON payload (the hot path: no re-parsing).
pub(crate) fn encode_raw(vsn: Vsn, join_ref: Option<&str>, topic: &str, event: &str, payload: &str) -> String {
    let s = |v: Option<&str>| v.map_or_else(|| "null".to_string(), |v| json!(v).to_string());
    match vsn {
        Vsn::V2 => format!("[{},null,{},{},{payload}]", s(join_ref), json!(topic), json!(event)),
        Vsn::V1 => format!(
            "{{\"join_ref\":{},\"ref\":null,\"topic\":{},\"event\":{},\"payload\":{payload}}}",
            s(join_ref),
            json!(topic),
            json!(event)
        ),
    }
}

/// The rows of one table's changes in a commit, shared by every gate.
struct TableRows {
    schema: String,
    table: String,
    columns: Value,
    /// New rows (INSERT, UPDATE) and old rows (DELETE), one per change, in change order.
    rows: ChangeRows,
    /// Old rows of the UPDATEs.
    old_rows: ChangeRows,
    /// Per change: its old row's position in `old_rows` (UPDATE only).
    old_pos: Vec<Option<usize>>,
}

impl TableRows {
    fn new(def: &TableDef, changes: &[Change], idx: &[usize]) -> bkg_sql::SqlResult<TableRows> {
        let mut rows: Vec<&[KernelValue]> = Vec::with_capacity(idx.len());
        let mut old_rows = Vec::new();
        let mut old_pos = Vec::with_capacity(idx.len());
        for &i in idx {
            let c = &changes[i];
            let row = match c.kind {
                ChangeKind::Delete => c.old.as_deref(),
                _ => c.new.as_deref(),
            };
            rows.push(row.unwrap_or_default());
            if c.kind == ChangeKind::Update
                && let Some(old) = c.old.as_deref()
            {
                old_pos.push(Some(old_rows.len()));
                old_rows.push(old);
            } else {
                old_pos.push(None);
            }
        }
        Ok(TableRows {
            schema: def.schema.clone(),
            table: def.name.clone(),
            columns: columns_json(def),
            rows: ChangeRows::new(def, &rows)?,
            old_rows: ChangeRows::new(def, &old_rows)?,
            old_pos,
        })
    }

    /// The `data` of `change`, the `k`th of the table: with its old row, and for an UPDATE
    /// without it (with `old_record` empty).
    fn data_json(&self, change: &Change, k: usize) -> bkg_sql::SqlResult<(String, Option<String>)> {
        let kind = match change.kind {
            ChangeKind::Insert => "INSERT",
            ChangeKind::Update => "UPDATE",
            ChangeKind::Delete => "DELETE",
            ChangeKind::Ddl => "DDL",
        };
        let ts = chrono::DateTime::from_timestamp_millis(change.wall_ms as i64)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let head = format!(
            "{{\"schema\":{},\"table\":{},\"commit_timestamp\":{},\"type\":\"{kind}\",\"columns\":{},\"errors\":null",
            json!(self.schema),
            json!(self.table),
            json!(ts),
            self.columns
        );
        let (record, old) = match change.kind {
            ChangeKind::Delete => ("{}".to_string(), Some(self.rows.record_json(k)?)),
            ChangeKind::Update => {
                (self.rows.record_json(k)?, self.old_pos[k].map(|p| self.old_rows.record_json(p)).transpose()?)
            }
            _ => (self.rows.record_json(k)?, None),
        };
        let with_old = match &old {
            Some(o) => format!("{head},\"record\":{record},\"old_record\":{o}}}"),
            None => format!("{head},\"record\":{record}}}"),
        };
        // A DELETE's old row is the row itself: whoever may see the change sees it.
        let without_old =
            (change.kind == ChangeKind::Update).then(|| format!("{head},\"record\":{record},\"old_record\":{{}}}}"));
        Ok((with_old, without_old))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_frames_read_back_in_both_serializers() {
        let text = encode_raw(Vsn::V2, Some("3"), "realtime:t", "postgres_changes", r#"{"ids":[1]}"#);
        let f = Frame::decode(&text, Vsn::V2).unwrap();
        assert_eq!(
            (f.join_ref.as_deref(), f.topic.as_str(), f.payload["ids"][0].as_u64()),
            (Some("3"), "realtime:t", Some(1))
        );
        let text = encode_raw(Vsn::V1, None, "realtime:t", "e", "{}");
        let f = Frame::decode(&text, Vsn::V1).unwrap();
        assert_eq!((f.join_ref, f.event.as_str()), (None, "e"));
    }
}
