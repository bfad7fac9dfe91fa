//! Every fixed limit of the realtime door in one place; how they relate is checked when
//! compiling.

/// Largest frame a client may send, in bytes (a join with its token and filters, a broadcast).
pub const FRAME_BYTES_MAX: usize = 1 << 20;
/// Longest topic (`realtime:<name>`), in bytes.
pub const TOPIC_BYTES_MAX: usize = 255;
/// Longest event name, in bytes.
pub const EVENT_BYTES_MAX: usize = 255;
/// Longest `ref` or `join_ref`, in bytes.
pub const REF_BYTES_MAX: usize = 64;
/// Most `postgres_changes` bindings one channel may ask for.
pub const BINDINGS_PER_CHANNEL_MAX: usize = 100;
/// Most values in one `in.(...)` filter.
pub const FILTER_VALUES_MAX: usize = 100;
/// Longest filter text (`column=op.value`), in bytes.
pub const FILTER_BYTES_MAX: usize = 4096;
/// Deepest JSON nesting accepted in a frame.
pub const JSON_DEPTH_MAX: usize = 64;
/// Most presence keys one topic holds.
pub const PRESENCE_KEYS_PER_TOPIC_MAX: usize = 10_000;
/// Most messages one `POST /realtime/v1/api/broadcast` may carry.
pub const BROADCAST_MESSAGES_MAX: usize = 100;
/// Changes read from the WAL per step when the change feed has to catch up.
pub const CATCH_UP_CHANGES: usize = 10_000;

const _: () = {
    assert!(TOPIC_BYTES_MAX + EVENT_BYTES_MAX + 2 * REF_BYTES_MAX < FRAME_BYTES_MAX);
    assert!(BINDINGS_PER_CHANNEL_MAX * FILTER_BYTES_MAX <= FRAME_BYTES_MAX);
    assert!(FILTER_VALUES_MAX >= 1 && JSON_DEPTH_MAX >= 8);
};
