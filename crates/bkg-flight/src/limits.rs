//! Every fixed limit of the Flight SQL door in one place; how they relate is checked when
//! compiling.

/// Most handshake tokens, prepared statements and open transactions kept at once.
pub const TOKENS_MAX: usize = 10_000;

pub const PREPARED_MAX: usize = 4_096;

pub const TRANSACTIONS_MAX: usize = 256;

/// Largest result of a non-query statement carried inside its ticket.
pub const INLINE_RESULT_MAX: usize = 1 << 20;

/// Failed password logins a role may have per minute over Flight SQL.
pub const LOGIN_FAILURES_PER_MIN: u32 = 10;

/// tonic's default largest message a client decodes (4 MiB).
const GRPC_MESSAGE_BYTES_DEFAULT: usize = 4 << 20;

const _: () = {
    // A ticket carrying the largest inline result, hex-encoded, reaches clients with default settings.
    assert!(2 * INLINE_RESULT_MAX + (64 << 10) <= GRPC_MESSAGE_BYTES_DEFAULT);
    // Each open transaction and prepared statement belongs to a principal with a token.
    assert!(TRANSACTIONS_MAX <= PREPARED_MAX && PREPARED_MAX <= TOKENS_MAX);
    assert!(LOGIN_FAILURES_PER_MIN >= 1);
};
