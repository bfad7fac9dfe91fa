//! # bkg-realtime: committed changes, broadcast and presence over WebSocket and SSE
//!
//! The realtime door of bkg-db, as `@supabase/realtime-js` 2.x (inside `supabase-js`) speaks
//! to it: Phoenix channels over a WebSocket at `/realtime/v1/websocket`. Changes come from the
//! kernel's change feed (`bkg_kernel::Database::subscribe`), in commit order, and reach a
//! subscriber only through the same session and policy path every other door uses.
//!
//! Today this crate holds the protocol: frames in both serializer versions ([`protocol`]), the
//! join configuration a channel asks for ([`join`]) and the row filters of `postgres_changes`
//! ([`filter`]), with the limits on each ([`limits`]). The WebSocket and SSE endpoints, the
//! delivery under row-level security, broadcast and presence build on them (docs/bkg-db.md,
//! realtime section, says what works now).
//!
//! Layer rule: like every front door, this crate reaches the database only through `bkg-sql`
//! sessions and `bkg-auth` principals; it never reads the kernel's tables directly.

pub mod filter;
pub mod join;
pub mod limits;
pub mod protocol;

pub use filter::{Filter, FilterOp};
pub use join::{ChangeBinding, ChangeEvent, JoinConfig};
pub use protocol::{Frame, ProtocolError, Vsn};
