//! Presence: who is in a channel, as Phoenix Presence shapes it.
//!
//! Each channel member tracks one state (any JSON object) under its presence key; the state of
//! a topic is `{key: {metas: [{phx_ref, ...state}, ...]}}` (one meta per connection tracking that
//! key), and every change goes to the topic's members as a `presence_diff`
//! `{joins: {...}, leaves: {...}}` of the same shape.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::limits::PRESENCE_KEYS_PER_TOPIC_MAX;

#[derive(Debug, Default)]
pub(crate) struct Topic {
    /// key → (connection, phx_ref, state), in tracking order.
    entries: BTreeMap<String, Vec<(u64, String, Map<String, Value>)>>,
}

/// A presence change: `{joins, leaves}`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Diff {
    pub joins: Map<String, Value>,
    pub leaves: Map<String, Value>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }

    pub fn to_json(&self) -> Value {
        json!({"joins": self.joins, "leaves": self.leaves})
    }
}

fn meta(phx_ref: &str, state: &Map<String, Value>) -> Value {
    let mut m = state.clone();
    m.insert("phx_ref".into(), Value::String(phx_ref.to_string()));
    Value::Object(m)
}

fn push_meta(into: &mut Map<String, Value>, key: &str, meta: Value) {
    let entry = into.entry(key.to_string()).or_insert_with(|| json!({"metas": []}));
    if let Some(Value::Array(metas)) = entry.get_mut("metas") {
        metas.push(meta);
    }
}

impl Topic {
    /// Connection `conn` tracks `state` under `key` (replacing what it tracked there before).
    /// `None` when the topic already holds the most keys it may.
    pub fn track(&mut self, conn: u64, key: &str, phx_ref: String, state: Map<String, Value>) -> Option<Diff> {
        if !self.entries.contains_key(key) && self.entries.len() >= PRESENCE_KEYS_PER_TOPIC_MAX {
            return None;
        }
        let mut diff = self.untrack(conn, key);
        push_meta(&mut diff.joins, key, meta(&phx_ref, &state));
        self.entries.entry(key.to_string()).or_default().push((conn, phx_ref, state));
        Some(diff)
    }

    /// Connection `conn` stops tracking `key`.
    pub fn untrack(&mut self, conn: u64, key: &str) -> Diff {
        let mut diff = Diff::default();
        if let Some(metas) = self.entries.get_mut(key) {
            metas.retain(|(c, r, s)| {
                if *c == conn {
                    push_meta(&mut diff.leaves, key, meta(r, s));
                }
                *c != conn
            });
            if metas.is_empty() {
                self.entries.remove(key);
            }
        }
        diff
    }

    /// Connection `conn` left: everything it tracked leaves.
    pub fn leave(&mut self, conn: u64) -> Diff {
        let keys: Vec<String> =
            self.entries.iter().filter(|(_, m)| m.iter().any(|(c, _, _)| *c == conn)).map(|(k, _)| k.clone()).collect();
        let mut diff = Diff::default();
        for k in keys {
            let d = self.untrack(conn, &k);
            diff.leaves.extend(d.leaves);
        }
        diff
    }

    /// The whole state, for `presence_state`.
    pub fn state(&self) -> Value {
        let mut out = Map::new();
        for (key, metas) in &self.entries {
            for (_, r, s) in metas {
                push_meta(&mut out, key, meta(r, s));
            }
        }
        Value::Object(out)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn track_untrack_and_leave_give_phoenix_diffs() {
        let mut t = Topic::default();
        let d = t.track(1, "alice", "r1".into(), state(json!({"online_at": 1}))).unwrap();
        assert_eq!(
            d.to_json(),
            json!({"joins": {"alice": {"metas": [{"online_at": 1, "phx_ref": "r1"}]}}, "leaves": {}})
        );
        // Tracking again replaces: the old meta leaves, the new one joins.
        let d = t.track(1, "alice", "r2".into(), state(json!({"online_at": 2}))).unwrap();
        assert_eq!(d.leaves["alice"]["metas"][0]["phx_ref"], "r1");
        assert_eq!(d.joins["alice"]["metas"][0]["phx_ref"], "r2");
        t.track(2, "alice", "r3".into(), state(json!({}))).unwrap();
        t.track(2, "bob", "r4".into(), state(json!({}))).unwrap();
        assert_eq!(t.state()["alice"]["metas"].as_array().unwrap().len(), 2);
        let d = t.leave(2);
        assert_eq!(d.leaves.keys().collect::<Vec<_>>(), ["alice", "bob"]);
        assert!(t.state().get("bob").is_none());
        assert!(t.untrack(1, "alice").leaves.contains_key("alice"));
        assert!(t.is_empty() && t.untrack(1, "alice").is_empty());
    }
}
