//! Phoenix channel frames, as realtime-js sends and reads them.
//!
//! Two serializers, chosen by the client with `vsn` in the WebSocket URL:
//! - `1.0.0`: a JSON object `{"topic", "event", "payload", "ref", "join_ref"}`;
//! - `2.0.0`: a JSON array `[join_ref, ref, topic, event, payload]` (realtime-js 2.x's default).
//!
//! `ref` numbers a client's request so the server's `phx_reply` can name it; `join_ref` is the
//! `ref` of the `phx_join` that opened the channel, and ties every later frame to that join.
//! Both are strings or null. Every frame is checked against [`crate::limits`] before it is
//! parsed.

use serde_json::{Map, Value, json};

use crate::limits::{EVENT_BYTES_MAX, FRAME_BYTES_MAX, JSON_DEPTH_MAX, REF_BYTES_MAX, TOPIC_BYTES_MAX};

/// The serializer version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    V1,
    V2,
}

impl Vsn {
    /// The version a `vsn` query parameter names; realtime-js without one speaks 1.0.0.
    pub fn parse(vsn: Option<&str>) -> Result<Vsn, ProtocolError> {
        match vsn {
            None | Some("1.0.0") => Ok(Vsn::V1),
            Some("2.0.0") => Ok(Vsn::V2),
            Some(other) => Err(ProtocolError::new(format!("unsupported serializer version {other:?}"))),
        }
    }
}

/// One message of the channel protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub join_ref: Option<String>,
    pub ref_: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

/// Why a frame was refused. The connection answers with it and goes on (a bad frame never ends
/// other channels), except for frames over the size limit, which end the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub message: String,
}

impl ProtocolError {
    pub fn new(message: impl Into<String>) -> ProtocolError {
        ProtocolError { message: message.into() }
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProtocolError {}

impl Frame {
    /// A frame the server sends.
    pub fn new(topic: impl Into<String>, event: impl Into<String>, payload: Value) -> Frame {
        Frame { join_ref: None, ref_: None, topic: topic.into(), event: event.into(), payload }
    }

    /// The `phx_reply` to `self` with `status` (`ok` or `error`) and `response`.
    pub fn reply(&self, status: &str, response: Value) -> Frame {
        Frame {
            join_ref: self.join_ref.clone(),
            ref_: self.ref_.clone(),
            topic: self.topic.clone(),
            event: "phx_reply".into(),
            payload: json!({ "status": status, "response": response }),
        }
    }

    /// Reads one text frame in the connection's serializer.
    pub fn decode(text: &str, vsn: Vsn) -> Result<Frame, ProtocolError> {
        if text.len() > FRAME_BYTES_MAX {
            return Err(ProtocolError::new(format!("frame of {} bytes is over {FRAME_BYTES_MAX}", text.len())));
        }
        if json_depth(text) > JSON_DEPTH_MAX {
            return Err(ProtocolError::new(format!("frame nests deeper than {JSON_DEPTH_MAX}")));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| ProtocolError::new(format!("frame is not JSON: {e}")))?;
        let frame = match (vsn, value) {
            (Vsn::V2, Value::Array(items)) => {
                let [join_ref, ref_, topic, event, payload]: [Value; 5] = items
                    .try_into()
                    .map_err(|_| ProtocolError::new("a 2.0.0 frame is [join_ref, ref, topic, event, payload]"))?;
                Frame {
                    join_ref: opt_string(join_ref, "join_ref")?,
                    ref_: opt_string(ref_, "ref")?,
                    topic: string(topic, "topic")?,
                    event: string(event, "event")?,
                    payload,
                }
            }
            (Vsn::V1, Value::Object(mut o)) => Frame {
                join_ref: opt_string(o.remove("join_ref").unwrap_or(Value::Null), "join_ref")?,
                ref_: opt_string(o.remove("ref").unwrap_or(Value::Null), "ref")?,
                topic: string(o.remove("topic").unwrap_or(Value::Null), "topic")?,
                event: string(o.remove("event").unwrap_or(Value::Null), "event")?,
                payload: o.remove("payload").unwrap_or(Value::Object(Map::new())),
            },
            (Vsn::V2, _) => return Err(ProtocolError::new("a 2.0.0 frame is a JSON array")),
            (Vsn::V1, _) => return Err(ProtocolError::new("a 1.0.0 frame is a JSON object")),
        };
        frame.check()?;
        Ok(frame)
    }

    /// Writes the frame in the connection's serializer.
    pub fn encode(&self, vsn: Vsn) -> String {
        match vsn {
            Vsn::V2 => json!([self.join_ref, self.ref_, self.topic, self.event, self.payload]).to_string(),
            Vsn::V1 => json!({
                "join_ref": self.join_ref,
                "ref": self.ref_,
                "topic": self.topic,
                "event": self.event,
                "payload": self.payload,
            })
            .to_string(),
        }
    }

    fn check(&self) -> Result<(), ProtocolError> {
        let too_long = |what: &str, len: usize, max: usize| {
            (len > max).then(|| ProtocolError::new(format!("{what} of {len} bytes is over {max}")))
        };
        let errors = [
            too_long("topic", self.topic.len(), TOPIC_BYTES_MAX),
            too_long("event", self.event.len(), EVENT_BYTES_MAX),
            too_long("ref", self.ref_.as_ref().map_or(0, String::len), REF_BYTES_MAX),
            too_long("join_ref", self.join_ref.as_ref().map_or(0, String::len), REF_BYTES_MAX),
        ];
        if let Some(e) = errors.into_iter().flatten().next() {
            return Err(e);
        }
        if self.topic.is_empty() || self.event.is_empty() {
            return Err(ProtocolError::new("a frame needs a topic and an event"));
        }
        Ok(())
    }
}

impl Frame {
    /// As much of a frame as can be read from text that did not decode (to answer it on its
    /// topic with its ref); `None` when not even that.
    pub fn decode_loose(text: &str, vsn: Vsn) -> Option<Frame> {
        if text.len() > FRAME_BYTES_MAX || json_depth(text) > JSON_DEPTH_MAX {
            return None;
        }
        let value: Value = serde_json::from_str(text).ok()?;
        let short =
            |v: Option<&Value>, max: usize| v.and_then(Value::as_str).filter(|s| s.len() <= max).map(str::to_string);
        let (join_ref, ref_, topic) = match (vsn, &value) {
            (Vsn::V2, Value::Array(a)) => {
                (short(a.first(), REF_BYTES_MAX), short(a.get(1), REF_BYTES_MAX), short(a.get(2), TOPIC_BYTES_MAX))
            }
            (Vsn::V1, Value::Object(o)) => (
                short(o.get("join_ref"), REF_BYTES_MAX),
                short(o.get("ref"), REF_BYTES_MAX),
                short(o.get("topic"), TOPIC_BYTES_MAX),
            ),
            _ => return None,
        };
        Some(Frame {
            join_ref,
            ref_,
            topic: topic.filter(|t| !t.is_empty())?,
            event: "phx_error".into(),
            payload: Value::Null,
        })
    }
}

/// Reads a binary "user broadcast push" (kind 3), as realtime-js 2.x sends a broadcast:
/// `[3, join_ref len, ref len, topic len, event len, metadata len, encoding]` then those fields
/// and the payload (encoding 1: JSON). The result is the `broadcast` frame the JSON form gives.
pub fn decode_broadcast_push(bytes: &[u8]) -> Result<Frame, ProtocolError> {
    if bytes.len() > FRAME_BYTES_MAX {
        return Err(ProtocolError::new(format!("frame of {} bytes is over {FRAME_BYTES_MAX}", bytes.len())));
    }
    let bad = |why: &str| ProtocolError::new(format!("invalid binary frame: {why}"));
    let header = bytes.get(..7).ok_or_else(|| bad("shorter than its header"))?;
    if header[0] != 3 {
        return Err(bad(&format!("kind {} (only 3, a broadcast push, is read)", header[0])));
    }
    let lens = [header[1], header[2], header[3], header[4], header[5]].map(usize::from);
    let mut at = 7;
    let mut fields = Vec::with_capacity(5);
    for len in lens {
        let raw = bytes.get(at..at + len).ok_or_else(|| bad("a field runs past the end"))?;
        fields.push(std::str::from_utf8(raw).map_err(|_| bad("a field is not UTF-8"))?.to_string());
        at += len;
    }
    let body = &bytes[at..];
    let payload: Value = match header[6] {
        1 => {
            if json_depth(std::str::from_utf8(body).map_err(|_| bad("the payload is not UTF-8"))?) > JSON_DEPTH_MAX {
                return Err(ProtocolError::new(format!("frame nests deeper than {JSON_DEPTH_MAX}")));
            }
            serde_json::from_slice(body).map_err(|e| bad(&format!("the payload is not JSON: {e}")))?
        }
        0 => return Err(ProtocolError::new("binary broadcast payloads are not supported; send JSON")),
        other => return Err(bad(&format!("payload encoding {other}"))),
    };
    let [join_ref, ref_, topic, event, meta]: [String; 5] = fields.try_into().map_err(|_| bad("fields"))?;
    let mut inner = json!({"type": "broadcast", "event": event, "payload": payload});
    if !meta.is_empty() {
        inner["meta"] = serde_json::from_str(&meta).map_err(|_| bad("the metadata is not JSON"))?;
    }
    let frame = Frame {
        join_ref: Some(join_ref).filter(|s| !s.is_empty()),
        ref_: Some(ref_).filter(|s| !s.is_empty()),
        topic,
        event: "broadcast".into(),
        payload: inner,
    };
    frame.check()?;
    Ok(frame)
}

fn string(v: Value, what: &str) -> Result<String, ProtocolError> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(ProtocolError::new(format!("{what} must be a string"))),
    }
}

/// A ref: a string, null, or (as some clients send) a number.
fn opt_string(v: Value, what: &str) -> Result<Option<String>, ProtocolError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(ProtocolError::new(format!("{what} must be a string or null"))),
    }
}

/// The deepest nesting of arrays and objects in JSON text (strings skipped), without parsing.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_serializers_round_trip() {
        let join = r#"["1","1","realtime:room","phx_join",{"config":{"private":false}}]"#;
        let f = Frame::decode(join, Vsn::V2).unwrap();
        assert_eq!((f.join_ref.as_deref(), f.ref_.as_deref()), (Some("1"), Some("1")));
        assert_eq!((f.topic.as_str(), f.event.as_str()), ("realtime:room", "phx_join"));
        assert_eq!(Frame::decode(&f.encode(Vsn::V2), Vsn::V2).unwrap(), f);
        assert_eq!(Frame::decode(&f.encode(Vsn::V1), Vsn::V1).unwrap(), f);
        let heartbeat = r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"7"}"#;
        let h = Frame::decode(heartbeat, Vsn::V1).unwrap();
        assert_eq!((h.join_ref.as_deref(), h.ref_.as_deref()), (None, Some("7")));
        let reply: Value = serde_json::from_str(&h.reply("ok", json!({})).encode(Vsn::V2)).unwrap();
        assert_eq!(reply, json!([null, "7", "phoenix", "phx_reply", {"status": "ok", "response": {}}]));
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        let bad = |text: &str, vsn| Frame::decode(text, vsn).unwrap_err().message;
        assert!(bad("not json", Vsn::V2).contains("not JSON"));
        assert!(bad(r#"{"topic":"t","event":"e"}"#, Vsn::V2).contains("JSON array"));
        assert!(bad(r#"["1","1","t","e"]"#, Vsn::V2).contains("[join_ref, ref, topic, event, payload]"));
        assert!(bad(r#"["1","1",3,"e",{}]"#, Vsn::V2).contains("topic must be a string"));
        assert!(bad(r#"[{},"1","t","e",{}]"#, Vsn::V2).contains("join_ref"));
        assert!(bad(r#"["1","1","","e",{}]"#, Vsn::V2).contains("needs a topic"));
        let long_topic = format!(r#"["1","1","{}","e",{{}}]"#, "t".repeat(TOPIC_BYTES_MAX + 1));
        assert!(bad(&long_topic, Vsn::V2).contains("topic of 256 bytes"));
        let deep = format!(r#"["1","1","t","e",{}{}]"#, "[".repeat(100), "]".repeat(100));
        assert!(bad(&deep, Vsn::V2).contains("deeper"));
        let huge = format!(r#"["1","1","t","e","{}"]"#, "x".repeat(FRAME_BYTES_MAX));
        assert!(bad(&huge, Vsn::V2).contains("over"));
        assert!(Vsn::parse(Some("3.0.0")).is_err());
        assert_eq!(Vsn::parse(None).unwrap(), Vsn::V1);
    }

    #[test]
    fn binary_broadcast_pushes_read_as_broadcast_frames() {
        let push = |encoding: u8, payload: &[u8]| {
            let (join_ref, ref_, topic, event, meta) = ("1", "5", "realtime:room", "msg", "");
            let mut b = vec![3, 1, 1, topic.len() as u8, event.len() as u8, meta.len() as u8, encoding];
            for f in [join_ref, ref_, topic, event, meta] {
                b.extend_from_slice(f.as_bytes());
            }
            b.extend_from_slice(payload);
            b
        };
        let f = decode_broadcast_push(&push(1, br#"{"text":"hi"}"#)).unwrap();
        assert_eq!((f.ref_.as_deref(), f.topic.as_str(), f.event.as_str()), (Some("5"), "realtime:room", "broadcast"));
        assert_eq!(f.payload, json!({"type": "broadcast", "event": "msg", "payload": {"text": "hi"}}));
        assert!(decode_broadcast_push(&push(0, b"\x00")).unwrap_err().message.contains("not supported"));
        assert!(decode_broadcast_push(&push(1, b"nope")).is_err());
        assert!(decode_broadcast_push(&[3, 9, 0, 0, 0, 0, 1]).unwrap_err().message.contains("past the end"));
        assert!(decode_broadcast_push(&[4, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(decode_broadcast_push(&[3]).is_err());
    }

    #[test]
    fn loose_decoding_finds_the_topic_to_answer_on() {
        let f = Frame::decode_loose(r#"["1","2","realtime:x",5,{}]"#, Vsn::V2).unwrap();
        assert_eq!((f.ref_.as_deref(), f.topic.as_str()), (Some("2"), "realtime:x"));
        assert!(Frame::decode_loose("[]", Vsn::V2).is_none());
        assert!(Frame::decode_loose("nope", Vsn::V1).is_none());
    }

    #[test]
    fn depth_ignores_brackets_inside_strings() {
        assert_eq!(json_depth(r#"{"a":"[[[[\"]]]]","b":[1,[2]]}"#), 3);
    }
}
