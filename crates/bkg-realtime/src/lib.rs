//! # bkg-realtime: committed changes, broadcast and presence over WebSocket and SSE
//!
//! The realtime door of bkg-db, as `@supabase/realtime-js` 2.x (inside `supabase-js`) speaks
//! to it: Phoenix channels over a WebSocket at `/realtime/v1/websocket`. Changes come from the
//! kernel's change feed (`bkg_kernel::Database::subscribe`), in commit order, and reach a
//! subscriber only through the same session and policy path every other door uses.
//!
//! - [`protocol`]: frames in both serializer versions (and realtime-js's binary broadcast push);
//!   [`join`]: the configuration a channel asks for; [`filter`]: `postgres_changes` filters;
//!   [`limits`] and [`config`]: every bound.
//! - [`hub`]: connections, channels, subscriptions, the tailer of the change feed and the
//!   delivery of each change to the subscribers whose policies let them see it.
//! - `rooms`: channel members for broadcast and presence; private channels are authorised by
//!   the policies on `realtime.messages` (`realtime.topic()` in a policy is the channel's name).
//! - [`http`]: `/realtime/v1/websocket`, `/realtime/v1/sse` (Server-Sent Events, resumable
//!   with `Last-Event-ID`) and `POST /realtime/v1/api/broadcast`.
//!
//! docs/bkg-db.md (realtime section) says what is delivered, to whom, and what is missing.
//!
//! Layer rule: like every front door, this crate reaches the database only through `bkg-sql`
//! sessions and `bkg-auth` principals; it never reads the kernel's tables directly.

pub mod config;
pub mod filter;
pub mod http;
pub mod hub;
pub mod join;
pub mod limits;
mod presence;
pub mod protocol;
mod rooms;
mod socket;
mod sse;

pub use config::RealtimeConfig;
pub use filter::{Filter, FilterOp};
pub use http::router;
pub use hub::Hub;
pub use join::{ChangeBinding, ChangeEvent, JoinConfig};
pub use protocol::{Frame, ProtocolError, Vsn};
