//! Broadcast and presence: who is in a channel, and who hears what.
//!
//! Members are grouped by *room*: the topic itself for a public channel, `private:<topic>` for a
//! private one, so a message sent on a private channel never reaches public members of the same
//! topic and the other way round (as realtime clients expect: private and public channels of one
//! name are different channels). On a private channel each member hears broadcasts and presence
//! only as far as the policies on `realtime.messages` let it read them ([`Hears`]); on a public
//! channel every member hears everything.

use std::sync::atomic::Ordering;

use bkg_sql::changes::{ChannelAccess, Viewer};
use serde_json::{Value, json};

use crate::hub::{Hub, Outbox};
use crate::protocol::Frame;

const PRIVATE_PREFIX: &str = "private:";

/// The room of channel `topic` (`realtime:<name>`).
pub(crate) fn room(topic: &str, private: bool) -> String {
    if private { format!("{PRIVATE_PREFIX}{topic}") } else { topic.to_string() }
}

/// The topic frames of `room` carry.
fn topic_of(room: &str) -> &str {
    room.strip_prefix(PRIVATE_PREFIX).unwrap_or(room)
}

/// What a member of a private channel may do there, per extension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Access {
    pub broadcast: ChannelAccess,
    pub presence: ChannelAccess,
}

impl Access {
    /// Everything (a public channel).
    pub const PUBLIC: Access = Access {
        broadcast: ChannelAccess { read: true, write: true },
        presence: ChannelAccess { read: true, write: true },
    };

    /// What `viewer` may do on private channel `name` (the topic without `realtime:`), by the
    /// policies on `realtime.messages`; the refusal text when it may read neither extension.
    pub fn of(hub: &Hub, viewer: &Viewer, name: &str) -> Result<Access, String> {
        let decide = |ext: &str| {
            hub.engine.channel_access(viewer, name, ext).map_err(|e| {
                hub.metrics.policy_errors.fetch_add(1, Ordering::Relaxed);
                format!("Unauthorized: {}", e.message)
            })
        };
        let access = Access { broadcast: decide("broadcast")?, presence: decide("presence")? };
        if !access.broadcast.read && !access.presence.read {
            return Err(format!("Unauthorized: You do not have permissions to read from this Channel topic: {name}"));
        }
        Ok(access)
    }
}

/// What a member receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hears {
    pub broadcast: bool,
    pub presence: bool,
}

impl From<Access> for Hears {
    fn from(a: Access) -> Hears {
        Hears { broadcast: a.broadcast.read, presence: a.presence.read }
    }
}

/// A channel member, for broadcast and presence.
#[derive(Clone)]
pub(crate) struct Member {
    pub join_ref: Option<String>,
    /// Receives its own broadcasts (`broadcast.self`).
    pub echo: bool,
    pub hears: Hears,
    pub out: Outbox,
}

impl Hub {
    /// Adds (or replaces) `conn`'s membership of `room`.
    pub(crate) fn add_member(&self, room: &str, conn: u64, member: Member) {
        self.members.write().entry(room.to_string()).or_default().insert(conn, member);
    }

    /// Changes what a member hears (after its token changed); false when it is not a member.
    pub(crate) fn set_hears(&self, room: &str, conn: u64, hears: Hears) -> bool {
        match self.members.write().get_mut(room).and_then(|m| m.get_mut(&conn)) {
            Some(m) => {
                m.hears = hears;
                true
            }
            None => false,
        }
    }

    /// Removes a member; presence it tracked leaves (the diff goes to the others).
    pub(crate) fn remove_member(&self, room: &str, conn: u64) {
        let mut members = self.members.write();
        if let Some(m) = members.get_mut(room) {
            m.remove(&conn);
            if m.is_empty() {
                members.remove(room);
            }
        }
        drop(members);
        let diff = {
            let mut p = self.presence.lock();
            let d = p.get_mut(room).map(|t| t.leave(conn));
            if p.get(room).is_some_and(|t| t.is_empty()) {
                p.remove(room);
            }
            d
        };
        if let Some(d) = diff.filter(|d| !d.is_empty()) {
            self.fan_out(room, None, "presence_diff", d.to_json());
        }
    }

    /// Sends `event` with `payload` to the members of `room` that hear it, except connection
    /// `skip` (unless it asked to hear itself).
    pub(crate) fn fan_out(&self, room: &str, skip: Option<u64>, event: &str, payload: Value) -> usize {
        let presence = event.starts_with("presence");
        let members: Vec<(u64, Member)> = self
            .members
            .read()
            .get(room)
            .map(|m| {
                m.iter()
                    .filter(|(_, m)| if presence { m.hears.presence } else { m.hears.broadcast })
                    .map(|(c, m)| (*c, m.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut sent = 0;
        for (conn, m) in members {
            if Some(conn) == skip && !m.echo {
                continue;
            }
            let mut f = Frame::new(topic_of(room), event, payload.clone());
            f.join_ref = m.join_ref.clone();
            if m.out.send(&f) {
                sent += 1;
            } else {
                self.metrics.events_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.metrics.events_delivered.fetch_add(sent as u64, Ordering::Relaxed);
        sent
    }

    /// Presence: `conn` tracks `state` under `key` in `room`; the diff goes to every member.
    pub(crate) fn track(&self, room: &str, conn: u64, key: &str, state: serde_json::Map<String, Value>) -> bool {
        let phx_ref = format!("{:x}", self.next_id());
        let diff = self.presence.lock().entry(room.to_string()).or_default().track(conn, key, phx_ref, state);
        match diff {
            Some(d) => {
                self.fan_out(room, None, "presence_diff", d.to_json());
                true
            }
            None => false,
        }
    }

    pub(crate) fn untrack(&self, room: &str, conn: u64, key: &str) {
        let diff = self.presence.lock().get_mut(room).map(|t| t.untrack(conn, key));
        if let Some(d) = diff.filter(|d| !d.is_empty()) {
            self.fan_out(room, None, "presence_diff", d.to_json());
        }
    }

    pub(crate) fn presence_state(&self, room: &str) -> Value {
        self.presence.lock().get(room).map(|t| t.state()).unwrap_or_else(|| json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_public_channels_of_one_topic_are_different_rooms() {
        assert_eq!(room("realtime:a", false), "realtime:a");
        assert_eq!(room("realtime:a", true), "private:realtime:a");
        assert_ne!(room("realtime:a", true), room("realtime:a", false));
        // Topics start with realtime:, so no public topic is a private room.
        assert_eq!(topic_of(&room("realtime:a", true)), "realtime:a");
        assert_eq!(topic_of("realtime:private:x"), "realtime:private:x");
        assert_eq!(Hears::from(Access::PUBLIC), Hears { broadcast: true, presence: true });
    }
}
