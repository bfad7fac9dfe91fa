//! What a `phx_join` asks for, as realtime-js 2.x sends it:
//!
//! ```json
//! {"config": {"broadcast": {"ack": false, "self": false},
//!             "presence": {"key": "", "enabled": false},
//!             "postgres_changes": [{"event": "*", "schema": "public", "table": "messages",
//!                                   "filter": "room_id=eq.1"}],
//!             "private": false},
//!  "access_token": "<jwt>"}
//! ```
//!
//! Missing parts take realtime-js's defaults; parts of the wrong type are refused with a reason
//! the join's error reply carries.

use serde_json::{Value, json};

use crate::filter::Filter;
use crate::limits::BINDINGS_PER_CHANNEL_MAX;
use crate::protocol::ProtocolError;

/// Which changes a binding wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeEvent {
    All,
    Insert,
    Update,
    Delete,
}

impl ChangeEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeEvent::All => "*",
            ChangeEvent::Insert => "INSERT",
            ChangeEvent::Update => "UPDATE",
            ChangeEvent::Delete => "DELETE",
        }
    }
}

/// One `postgres_changes` entry of a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeBinding {
    pub event: ChangeEvent,
    /// `*` for every schema.
    pub schema: String,
    /// `None` for every table of the schema (`*` or absent).
    pub table: Option<String>,
    pub filter: Option<Filter>,
    /// `event`, `schema`, `table`, `filter` as the client wrote them.
    pub echo: serde_json::Map<String, Value>,
}

impl ChangeBinding {
    /// The binding as the join reply confirms it, with the id change events will carry:
    /// `event`, `schema`, `table` and `filter` exactly as the client sent them (realtime-js
    /// compares them with its own and drops the channel on any difference).
    pub fn reply_json(&self, id: u64) -> Value {
        let mut v = Value::Object(self.echo.clone());
        v["id"] = json!(id);
        v
    }

    /// Reads one binding (`{"event", "schema", "table", "filter"}`).
    pub fn parse(item: &Value) -> Result<ChangeBinding, ProtocolError> {
        binding(item)
    }

    /// True when changes of `kind` (`INSERT`, `UPDATE`, `DELETE`) are asked for.
    pub fn wants(&self, kind: ChangeEvent) -> bool {
        self.event == ChangeEvent::All || self.event == kind
    }

    /// True when the binding covers table `schema.table` (`*` for either matches any).
    pub fn covers(&self, schema: &str, table: &str) -> bool {
        (self.schema == "*" || self.schema == schema) && self.table.as_deref().is_none_or(|t| t == table)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinConfig {
    /// Broadcasts come back to their sender.
    pub broadcast_self: bool,
    /// Broadcasts are acknowledged with a reply.
    pub broadcast_ack: bool,
    /// The key this client's presence is tracked under (empty: the server picks one).
    pub presence_key: String,
    pub presence_enabled: bool,
    pub postgres_changes: Vec<ChangeBinding>,
    /// Broadcast and presence are authorised by policies on `realtime.messages`.
    pub private: bool,
    pub access_token: Option<String>,
}

impl JoinConfig {
    /// Reads a `phx_join` payload.
    pub fn parse(payload: &Value) -> Result<JoinConfig, ProtocolError> {
        let bad = |what: &str| ProtocolError::new(format!("invalid join: {what}"));
        let empty = json!({});
        let config = payload.get("config").unwrap_or(&empty);
        if !config.is_object() {
            return Err(bad("config must be an object"));
        }
        let flag = |v: Option<&Value>, what: &str| match v {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(&format!("{what} must be true or false"))),
        };
        let broadcast = config.get("broadcast").unwrap_or(&empty);
        let presence = config.get("presence").unwrap_or(&empty);
        let mut out = JoinConfig {
            broadcast_self: flag(broadcast.get("self"), "broadcast.self")?,
            broadcast_ack: flag(broadcast.get("ack"), "broadcast.ack")?,
            presence_key: match presence.get("key") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(k)) => k.clone(),
                Some(_) => return Err(bad("presence.key must be a string")),
            },
            presence_enabled: flag(presence.get("enabled"), "presence.enabled")?,
            private: flag(config.get("private"), "private")?,
            access_token: match payload.get("access_token") {
                None | Some(Value::Null) => None,
                Some(Value::String(t)) => Some(t.clone()),
                Some(_) => return Err(bad("access_token must be a string")),
            },
            postgres_changes: Vec::new(),
        };
        match config.get("postgres_changes") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                if items.len() > BINDINGS_PER_CHANNEL_MAX {
                    return Err(bad(&format!("more than {BINDINGS_PER_CHANNEL_MAX} postgres_changes bindings")));
                }
                for item in items {
                    out.postgres_changes.push(binding(item)?);
                }
            }
            Some(_) => return Err(bad("postgres_changes must be a list")),
        }
        Ok(out)
    }
}

fn binding(item: &Value) -> Result<ChangeBinding, ProtocolError> {
    let bad = |what: &str| ProtocolError::new(format!("invalid postgres_changes binding: {what}"));
    let text = |key: &str| match item.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(bad(&format!("{key} must be a string"))),
    };
    let event = match text("event")?.unwrap_or("*") {
        "*" => ChangeEvent::All,
        e if e.eq_ignore_ascii_case("insert") => ChangeEvent::Insert,
        e if e.eq_ignore_ascii_case("update") => ChangeEvent::Update,
        e if e.eq_ignore_ascii_case("delete") => ChangeEvent::Delete,
        other => return Err(bad(&format!("event {other:?} (INSERT, UPDATE, DELETE or *)"))),
    };
    let schema = text("schema")?.ok_or_else(|| bad("schema is required"))?.to_string();
    let table = text("table")?.filter(|t| *t != "*").map(str::to_string);
    let filter = text("filter")?.map(Filter::parse).transpose()?;
    if filter.is_some() && table.is_none() {
        return Err(bad("a filter needs a table"));
    }
    let echo = ["event", "schema", "table", "filter"]
        .into_iter()
        .filter_map(|k| item.get(k).filter(|v| !v.is_null()).map(|v| (k.to_string(), v.clone())))
        .collect();
    Ok(ChangeBinding { event, schema, table, filter, echo })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_realtime_js_join_parses() {
        let payload = json!({
            "config": {
                "broadcast": {"ack": true, "self": false},
                "presence": {"key": "user-1", "enabled": true},
                "postgres_changes": [
                    {"event": "*", "schema": "public", "table": "messages", "filter": "room_id=eq.1"},
                    {"event": "DELETE", "schema": "public"},
                ],
                "private": true,
            },
            "access_token": "tok",
        });
        let c = JoinConfig::parse(&payload).unwrap();
        assert!(c.broadcast_ack && !c.broadcast_self && c.presence_enabled && c.private);
        assert_eq!((c.presence_key.as_str(), c.access_token.as_deref()), ("user-1", Some("tok")));
        assert_eq!(c.postgres_changes.len(), 2);
        let delete = &c.postgres_changes[1];
        assert_eq!(
            (delete.event, delete.schema.as_str(), &delete.table, &delete.filter),
            (ChangeEvent::Delete, "public", &None, &None)
        );
        assert_eq!(delete.reply_json(7), json!({"id": 7, "event": "DELETE", "schema": "public"}));
        assert!(delete.covers("public", "any") && !delete.covers("other", "any"));
        assert!(delete.wants(ChangeEvent::Delete) && !delete.wants(ChangeEvent::Insert));
        let reply = c.postgres_changes[0].reply_json(42);
        assert_eq!(
            reply,
            json!({"id": 42, "event": "*", "schema": "public", "table": "messages", "filter": "room_id=eq.1"})
        );
        // A filter list comes back in a form that parses to the same values.
        let quoted = json!({"config": {"postgres_changes": [
            {"schema": "public", "table": "t", "filter": r#"c=in.(a,"b, c","say \"hi\"")"#}
        ]}});
        let b = &JoinConfig::parse(&quoted).unwrap().postgres_changes[0];
        let text = b.reply_json(1)["filter"].as_str().unwrap().to_string();
        assert_eq!(Filter::parse(&text).unwrap(), *b.filter.as_ref().unwrap(), "{text}");
        // A bare join (broadcast only) takes the defaults.
        assert_eq!(JoinConfig::parse(&json!({})).unwrap(), JoinConfig::default());
    }

    #[test]
    fn bad_joins_say_why() {
        let bad = |p: Value| JoinConfig::parse(&p).unwrap_err().message;
        assert!(bad(json!({"config": 1})).contains("config must be an object"));
        assert!(bad(json!({"config": {"private": "yes"}})).contains("private must be true or false"));
        assert!(bad(json!({"config": {"postgres_changes": {}}})).contains("must be a list"));
        assert!(bad(json!({"config": {"postgres_changes": [{"event": "*"}]}})).contains("schema is required"));
        assert!(
            bad(json!({"config": {"postgres_changes": [{"event": "TRUNCATE", "schema": "public"}]}}))
                .contains("event \"TRUNCATE\"")
        );
        assert!(
            bad(json!({"config": {"postgres_changes": [{"schema": "public", "filter": "a=eq.1"}]}}))
                .contains("needs a table")
        );
        assert!(bad(json!({"access_token": 5})).contains("access_token"));
        let many: Vec<Value> = (0..=BINDINGS_PER_CHANNEL_MAX).map(|_| json!({"schema": "public"})).collect();
        assert!(bad(json!({"config": {"postgres_changes": many}})).contains("more than"));
    }
}
