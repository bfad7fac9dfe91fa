//! One WebSocket connection: its channels, what each client frame does, and its end.
//!
//! The reader (this task) handles client frames in order and queues every answer on the
//! connection's [`Outbox`]; a writer task drains that queue to the socket, so a slow client
//! never holds up the tailer or other connections. The connection ends when the client closes
//! it, sends nothing for `idle_timeout_s`, falls behind by `queue_frames`, or sends a frame over
//! the size limit; each end but the first gets a close frame with the reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bkg_sql::changes::Viewer;
use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};

use crate::hub::{Hub, Outbox, Subscription, close};
use crate::join::JoinConfig;
use crate::limits::FRAME_BYTES_MAX;
use crate::protocol::{Frame, ProtocolError, Vsn};
use crate::rooms::{Access, Hears, Member, room};

/// A joined channel.
struct Channel {
    join_ref: Option<String>,
    config: JoinConfig,
    /// When the channel's token expires (seconds since the epoch).
    expires: Option<u64>,
    presence_key: String,
    /// Where its broadcast and presence go (see [`crate::rooms`]).
    room: String,
    /// What the policies on `realtime.messages` allow on a private channel; everything on a
    /// public one.
    access: Access,
}

/// The principal a token gives: the viewer changes are filtered for and its expiry.
#[derive(Clone)]
pub(crate) struct Grant {
    pub viewer: Viewer,
    /// When the token expires (seconds since the epoch).
    pub expires: Option<u64>,
}

pub(crate) struct Connection {
    hub: Arc<Hub>,
    out: Outbox,
    /// The principal of the connection's apikey (channels without their own token use it).
    grant: Grant,
    channels: HashMap<String, Channel>,
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Verifies a token and turns it into a viewer: the role must exist and not be a superuser.
pub(crate) fn grant_of(hub: &Hub, token: &str) -> Result<Grant, String> {
    let principal = hub.auth.authenticate(None, Some(token)).map_err(|e| match e {
        bkg_auth::AuthFailure::Missing => "no token".to_string(),
        bkg_auth::AuthFailure::Invalid(m) => m,
    })?;
    bkg_auth::token_role(&hub.engine, &principal.role).map_err(|e| match e {
        bkg_auth::TokenRoleRefusal::Missing(r) => format!("role \"{r}\" does not exist"),
        bkg_auth::TokenRoleRefusal::Superuser(r) => {
            format!("role \"{r}\" is a superuser and cannot act through a token")
        }
    })?;
    let expires = principal.claims.get("exp").and_then(Value::as_u64);
    let viewer = hub.engine.viewer(&principal.role, Some(Value::Object(principal.claims))).map_err(|e| e.message)?;
    Ok(Grant { viewer, expires })
}

/// Runs a connection until it ends.
pub(crate) async fn run(hub: Arc<Hub>, socket: WebSocket, vsn: Vsn, grant: Grant, slot: crate::http::Slot) {
    let conn_id = hub.next_id();
    let (out, mut rx) = Outbox::new(conn_id, vsn, hub.config.queue_frames);
    hub.register(&out, slot);
    let (mut sink, mut stream) = socket.split();
    let kill = out.kill.clone();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = kill.0.notified() => break,
                msg = rx.recv() => match msg {
                    Some(t) => {
                        if sink.send(Message::Text(Utf8Bytes::from(t))).await.is_err() {
                            return;
                        }
                    }
                    None => break,
                },
            }
        }
        let end = kill.1.lock().clone();
        if let Some((code, reason)) = end {
            let reason: String = reason.chars().take(120).collect();
            let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason) }))).await;
        }
        let _ = sink.close().await;
    });
    let mut conn = Connection { hub: hub.clone(), out: out.clone(), grant, channels: HashMap::new() };
    let idle = Duration::from_secs(hub.config.idle_timeout_s);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_seen = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = stream.next() => {
                last_seen = tokio::time::Instant::now();
                match msg {
                    Some(Ok(Message::Text(t))) => conn.on_text(t.as_str()),
                    Some(Ok(Message::Binary(b))) => conn.on_binary(&b),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        // The library's only word for a frame over max_message_size.
                        let e = e.to_string();
                        let code = if e.contains("too long") { close::TOO_BIG } else { close::POLICY };
                        out.end(code, format!("bad WebSocket frame: {e}"));
                        break;
                    }
                }
            }
            _ = tick.tick() => {
                if last_seen.elapsed() > idle {
                    out.end(close::POLICY, format!("no message for {} s (heartbeats are expected)", idle.as_secs()));
                    break;
                }
                conn.expire_tokens();
            }
            _ = out.kill.0.notified() => {
                // Ended from elsewhere (a full queue); let the writer see it too.
                out.kill.0.notify_one();
                break;
            }
        }
        if out.kill.1.lock().is_some() {
            break;
        }
    }
    if out.kill.1.lock().as_ref().is_some_and(|(code, _)| *code == close::SLOW) {
        hub.metrics.slow_disconnects.fetch_add(1, Ordering::Relaxed);
    }
    conn.leave_all();
    hub.deregister(conn_id);
    out.kill.0.notify_one();
    drop(conn);
    drop(out);
    let _ = writer.await;
}

impl Connection {
    fn send(&self, frame: Frame) {
        self.out.send(&frame);
    }

    fn on_text(&mut self, text: &str) {
        if text.len() > FRAME_BYTES_MAX {
            self.out.end(close::TOO_BIG, format!("frame of {} bytes is over {FRAME_BYTES_MAX}", text.len()));
            return;
        }
        match Frame::decode(text, self.out.vsn) {
            Ok(f) => self.on_frame(f),
            Err(e) => self.refuse_unparsed(text, &e),
        }
    }

    /// A binary frame: realtime-js 2.x sends broadcasts this way (kind 3, "user broadcast push").
    fn on_binary(&mut self, bytes: &[u8]) {
        match crate::protocol::decode_broadcast_push(bytes) {
            Ok(f) => self.on_frame(f),
            Err(e) => self.send(Frame::new("phoenix", "phx_error", json!({"reason": e.message}))),
        }
    }

    /// A frame that did not decode: answered on its topic when one can be read from it.
    fn refuse_unparsed(&self, text: &str, e: &ProtocolError) {
        let loose = Frame::decode_loose(text, self.out.vsn);
        let f = loose.unwrap_or_else(|| Frame::new("phoenix", "phx_error", Value::Null));
        self.send(f.reply("error", json!({"reason": e.message})));
    }

    fn on_frame(&mut self, f: Frame) {
        match (f.topic.as_str(), f.event.as_str()) {
            ("phoenix", "heartbeat") => self.send(f.reply("ok", json!({}))),
            (_, "phx_join") => self.join(f),
            (_, "phx_leave") => {
                self.leave(&f.topic);
                self.send(f.reply("ok", json!({})));
            }
            (_, "access_token") => self.refresh_token(f),
            (_, "broadcast") => self.broadcast(f),
            (_, "presence") => self.presence(f),
            _ if !self.channels.contains_key(&f.topic) => {
                self.send(f.reply("error", json!({"reason": "unmatched topic"})));
            }
            (_, other) => {
                let reason = format!("unknown event {other:?}");
                self.send(f.reply("error", json!({"reason": reason})));
            }
        }
    }

    fn join(&mut self, f: Frame) {
        let _span = bkg_sql::telemetry::door_span(None, || {
            tracing::debug_span!(
                target: bkg_sql::telemetry::SPAN_TARGET,
                "realtime.join",
                otel.kind = "server",
                messaging.destination.name = f.topic.as_str(),
            )
        })
        .entered();
        let refuse = |s: &Self, reason: String| s.send(f.reply("error", json!({"reason": reason})));
        if !f.topic.starts_with("realtime:") {
            return refuse(self, format!("topic {:?} is not a realtime channel (realtime:<name>)", f.topic));
        }
        if self.hub.joins.check(self.out.conn).is_err() {
            return refuse(self, format!("more than {} joins per second", self.hub.config.joins_per_second));
        }
        let config = match JoinConfig::parse(&f.payload) {
            Ok(c) => c,
            Err(e) => return refuse(self, e.message),
        };
        if !self.channels.contains_key(&f.topic) && self.channels.len() >= self.hub.config.channels_per_connection {
            return refuse(
                self,
                format!("more than {} channels on one connection", self.hub.config.channels_per_connection),
            );
        }
        let grant = match &config.access_token {
            Some(t) => match grant_of(&self.hub, t) {
                Ok(g) => g,
                Err(e) => return refuse(self, format!("invalid access token: {e}")),
            },
            None => self.grant.clone(),
        };
        if grant.expires.is_some_and(|e| e <= now_s()) {
            return refuse(self, "Token has expired".into());
        }
        let access = if config.private {
            match Access::of(&self.hub, &grant.viewer, channel_name(&f.topic)) {
                Ok(a) => a,
                Err(reason) => return refuse(self, reason),
            }
        } else {
            Access::PUBLIC
        };
        // Joining a topic again replaces the earlier join.
        if self.channels.contains_key(&f.topic) {
            self.leave(&f.topic);
        }
        let mut bindings = Vec::new();
        let mut problems = Vec::new();
        let catalog = self.hub.engine.catalog();
        for b in &config.postgres_changes {
            let id = self.hub.next_id();
            let sub = Arc::new(Subscription::new(
                id,
                f.topic.clone(),
                f.join_ref.clone(),
                b.clone(),
                grant.viewer.clone(),
                self.out.clone(),
            ));
            // Report what cannot work now (missing table, no privilege, bad filter column);
            // the binding stays, as a table created later starts sending.
            if let Err((_, problem)) = sub.check_now(&self.hub.engine, &catalog) {
                problems.push(problem);
            }
            bindings.push(b.reply_json(id));
            self.hub.subscribe(sub);
        }
        let presence_key = if config.presence_key.is_empty() {
            format!("{:x}", self.hub.next_id())
        } else {
            config.presence_key.clone()
        };
        let room = room(&f.topic, config.private);
        self.hub.add_member(
            &room,
            self.out.conn,
            Member {
                join_ref: f.join_ref.clone(),
                echo: config.broadcast_self,
                hears: access.into(),
                out: self.out.clone(),
            },
        );
        self.hub.metrics.channels.fetch_add(1, Ordering::Relaxed);
        let has_changes = !config.postgres_changes.is_empty();
        let presence = config.presence_enabled && access.presence.read;
        let state = presence.then(|| self.hub.presence_state(&room));
        self.channels.insert(
            f.topic.clone(),
            Channel { join_ref: f.join_ref.clone(), config, expires: grant.expires, presence_key, room, access },
        );
        self.send(f.reply("ok", json!({"postgres_changes": bindings})));
        if has_changes {
            let (status, message) = if problems.is_empty() {
                ("ok", "Subscribed to PostgreSQL".to_string())
            } else {
                ("error", problems.join("; "))
            };
            let mut sys = Frame::new(
                f.topic.clone(),
                "system",
                json!({"extension": "postgres_changes", "status": status, "message": message, "channel": channel_name(&f.topic)}),
            );
            sys.join_ref = f.join_ref.clone();
            self.send(sys);
        }
        if let Some(state) = state {
            let mut state = Frame::new(f.topic.clone(), "presence_state", state);
            state.join_ref = f.join_ref.clone();
            self.send(state);
        }
    }

    fn leave(&mut self, topic: &str) {
        if let Some(channel) = self.channels.remove(topic) {
            self.hub.unsubscribe(self.out.conn, Some(topic));
            self.hub.remove_member(&channel.room, self.out.conn);
            self.hub.metrics.channels.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn leave_all(&mut self) {
        let topics: Vec<String> = self.channels.keys().cloned().collect();
        for t in topics {
            self.leave(&t);
        }
    }

    /// `access_token` on a channel: the channel continues as the new token's principal.
    fn refresh_token(&mut self, f: Frame) {
        let Some(token) = f.payload.get("access_token").and_then(Value::as_str) else {
            return self.send(f.reply("error", json!({"reason": "access_token must be a string"})));
        };
        let Some(private) = self.channels.get(&f.topic).map(|c| c.config.private) else {
            return self.send(f.reply("error", json!({"reason": "unmatched topic"})));
        };
        match grant_of(&self.hub, token) {
            Ok(Grant { viewer, expires }) if expires.is_none_or(|e| e > now_s()) => {
                // A private channel is authorised again for the new principal.
                let access = if private {
                    match Access::of(&self.hub, &viewer, channel_name(&f.topic)) {
                        Ok(a) => a,
                        Err(reason) => return self.close_channel(&f.topic, &reason),
                    }
                } else {
                    Access::PUBLIC
                };
                self.hub.set_viewer(self.out.conn, &f.topic, viewer);
                if let Some(ch) = self.channels.get_mut(&f.topic) {
                    ch.expires = expires;
                    ch.access = access;
                    self.hub.set_hears(&ch.room, self.out.conn, Hears::from(access));
                }
                self.send(f.reply("ok", json!({})));
            }
            Ok(_) => self.close_channel(&f.topic, "Token has expired"),
            Err(e) => self.close_channel(&f.topic, &format!("invalid access token: {e}")),
        }
    }

    /// Ends channels whose token has expired, each with a message saying so.
    fn expire_tokens(&mut self) {
        let now = now_s();
        let expired: Vec<String> =
            self.channels.iter().filter(|(_, c)| c.expires.is_some_and(|e| e <= now)).map(|(t, _)| t.clone()).collect();
        for t in expired {
            self.close_channel(&t, "Token has expired");
        }
    }

    /// Tells the client why a channel ends (`system` with status error), then closes it.
    fn close_channel(&mut self, topic: &str, reason: &str) {
        let join_ref = self.channels.get(topic).and_then(|c| c.join_ref.clone());
        let mut sys = Frame::new(
            topic,
            "system",
            json!({"extension": "system", "status": "error", "message": reason, "channel": channel_name(topic)}),
        );
        sys.join_ref = join_ref.clone();
        self.send(sys);
        let mut close = Frame::new(topic, "phx_close", json!({}));
        close.join_ref = join_ref;
        self.send(close);
        self.leave(topic);
    }

    /// A broadcast or presence message on a joined channel within the message rate, from a
    /// member allowed to send it: the channel's (broadcast ack, presence key, room); else the
    /// refusal is sent and `None`.
    fn admit(&mut self, f: &Frame, presence: bool) -> Option<(bool, String, String)> {
        let Some(channel) = self.channels.get(&f.topic) else {
            self.send(f.reply("error", json!({"reason": "unmatched topic"})));
            return None;
        };
        let may = if presence { channel.access.presence.write } else { channel.access.broadcast.write };
        if !may {
            let reason = format!(
                "Unauthorized: You do not have permissions to write to this Channel topic: {}",
                channel_name(&f.topic)
            );
            self.send(f.reply("error", json!({"reason": reason})));
            return None;
        }
        let admitted = (channel.config.broadcast_ack, channel.presence_key.clone(), channel.room.clone());
        if self.hub.events.check(self.out.conn).is_err() {
            let reason = format!("more than {} messages per second", self.hub.config.events_per_second);
            self.send(f.reply("error", json!({"reason": reason})));
            return None;
        }
        Some(admitted)
    }

    fn broadcast(&mut self, f: Frame) {
        let Some((ack, _, room)) = self.admit(&f, false) else { return };
        let size = f.payload.to_string().len();
        if size > self.hub.config.payload_bytes_max {
            let reason = format!("payload of {size} bytes is over {}", self.hub.config.payload_bytes_max);
            return self.send(f.reply("error", json!({"reason": reason})));
        }
        self.hub.fan_out(&room, Some(self.out.conn), "broadcast", f.payload.clone());
        if ack && f.ref_.is_some() {
            self.send(f.reply("ok", json!({})));
        }
    }

    fn presence(&mut self, f: Frame) {
        let Some((_, key, room)) = self.admit(&f, true) else { return };
        match f.payload.get("event").and_then(Value::as_str) {
            Some("track") => {
                let state = match f.payload.get("payload") {
                    Some(Value::Object(m)) => m.clone(),
                    None | Some(Value::Null) => Map::new(),
                    Some(_) => return self.send(f.reply("error", json!({"reason": "a presence state is an object"}))),
                };
                let size = Value::Object(state.clone()).to_string().len();
                if size > self.hub.config.payload_bytes_max {
                    let reason =
                        format!("presence state of {size} bytes is over {}", self.hub.config.payload_bytes_max);
                    return self.send(f.reply("error", json!({"reason": reason})));
                }
                if self.hub.track(&room, self.out.conn, &key, state) {
                    self.send(f.reply("ok", json!({})));
                } else {
                    self.send(f.reply("error", json!({"reason": "too many presence keys in this channel"})));
                }
            }
            Some("untrack") => {
                self.hub.untrack(&room, self.out.conn, &key);
                self.send(f.reply("ok", json!({})));
            }
            _ => self.send(f.reply("error", json!({"reason": "presence event must be track or untrack"}))),
        }
    }
}

/// `realtime:room` → `room`.
pub(crate) fn channel_name(topic: &str) -> &str {
    topic.strip_prefix("realtime:").unwrap_or(topic)
}
