//! The realtime door's settings (each from a `BKG_DB_REALTIME_*` variable, docs/env.md).

/// Limits and timeouts of the realtime door. Every queue and rate it has is bounded here.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// WebSocket connections open at once; one more is refused with 503.
    pub max_connections: usize,
    /// Channels one connection may have joined at once.
    pub channels_per_connection: usize,
    /// `phx_join`s one connection may send per second.
    pub joins_per_second: u32,
    /// Broadcast and presence messages one connection may send per second.
    pub events_per_second: u32,
    /// Frames queued for one connection; a client that lets more pile up is disconnected as
    /// too slow (it re-joins, as realtime-js does, and is not sent what it missed).
    pub queue_frames: usize,
    /// Largest broadcast or presence payload, in bytes.
    pub payload_bytes_max: usize,
    /// A connection that sends nothing (not even a heartbeat) for this long is closed.
    pub idle_timeout_s: u64,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            max_connections: 10_000,
            channels_per_connection: 100,
            joins_per_second: 50,
            events_per_second: 100,
            queue_frames: 1024,
            payload_bytes_max: 256 * 1024,
            idle_timeout_s: 60,
        }
    }
}

impl RealtimeConfig {
    /// The settings clamped to what the protocol's own limits allow.
    pub fn checked(mut self) -> RealtimeConfig {
        self.max_connections = self.max_connections.max(1);
        self.channels_per_connection = self.channels_per_connection.max(1);
        self.joins_per_second = self.joins_per_second.max(1);
        self.events_per_second = self.events_per_second.max(1);
        self.queue_frames = self.queue_frames.max(16);
        self.payload_bytes_max = self.payload_bytes_max.clamp(1, crate::limits::FRAME_BYTES_MAX / 2);
        self.idle_timeout_s = self.idle_timeout_s.max(5);
        self
    }
}
