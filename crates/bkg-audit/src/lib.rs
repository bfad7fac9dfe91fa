//! The audit log: who changed what, when, and whether it worked, in a form nobody can quietly
//! edit.
//!
//! ```text
//!  session (bkg-sql) ── event row in bkg_audit.outbox, same transaction as the change
//!        │ commit
//!        ▼
//!  shipper (bkg-sql::audit) ── AuditLog::append ──► <data>/audit/audit-000001.jsonl   (open)
//!                                                    <data>/audit/audit-000000.jsonl + .sig
//! ```
//!
//! This crate knows no SQL: it owns the files. Events are JSON Lines, one object per line, in
//! segments rotated by size. Every line carries `seq` (one more than the line before, across
//! segments) and `prev`, the SHA-256 of the previous line's bytes, so editing, deleting,
//! reordering or truncating a line breaks the chain at the next line. Each segment opens with an
//! `audit.segment_open` line naming the format and the signing key; a closed segment is signed
//! with an ECDSA P-256 key in the format of `cosign sign-blob` (a base64 DER signature over the
//! file's bytes in `<segment>.sig`), so it verifies with `cosign verify-blob --key` and with
//! `openssl dgst -sha256 -verify`. [`verify`] checks all of it offline.
//!
//! Invariants:
//! 1. Lines are appended and fsynced before [`AuditLog::append`] returns; a line is never
//!    rewritten. The only bytes ever removed are an incomplete last line after a crash.
//! 2. A segment is closed by writing its signature (temporary file, fsync, rename) before the
//!    next segment is created; only the newest segment may be unsigned.
//! 3. An event id is written at most once (ids already in the two newest segments are skipped),
//!    so a shipper that crashed between appending and forgetting its events may send them again.

mod error;
mod event;
mod keys;
mod log;
mod read;
mod verify;

pub use error::{AuditError, Result};
pub use event::{Actor, Event, Line, Outcome};
pub use keys::{KeyInfo, SigningKey, key_id_of_pem, sign_blob, verify_blob};
pub use log::{AuditLog, LogOptions};
pub use read::{Page, Query, read_page};
pub use verify::{Report, verify};

/// The format named by every segment's first line.
pub const FORMAT: &str = "bkg-audit/1";

/// The action of the line that opens a segment.
pub const SEGMENT_OPEN: &str = "audit.segment_open";

#[cfg(test)]
mod tests;
