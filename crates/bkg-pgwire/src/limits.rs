//! Every fixed limit of the PostgreSQL wire door in one place; how they relate to each other and
//! to the layers below is checked when compiling.

/// Longest message a client may send (its length field included). PostgreSQL allows 1 GiB for
/// a query; a connection here buffers at most this much for one message.
pub const MESSAGE_BYTES_MAX: usize = 256 << 20;

/// Longest startup or cancel message (PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`).
pub const STARTUP_BYTES_MAX: usize = 10_000;

const _: () = {
    assert!(STARTUP_BYTES_MAX < MESSAGE_BYTES_MAX);
    // At most PostgreSQL's 1 GiB, whose clients never send more.
    assert!(MESSAGE_BYTES_MAX <= 1 << 30);
    // A Query message (tag, length, text, terminator) carries the longest SQL text a session takes.
    assert!(bkg_sql::limits::SQL_TEXT_BYTES_MAX + 6 <= MESSAGE_BYTES_MAX);
    // COPY FROM STDIN reads rows out of CopyData messages: the longest row fits in one.
    assert!(bkg_sql::limits::COPY_ROW_BYTES_MAX <= MESSAGE_BYTES_MAX);
    // A JWT sent as the password fits a password message.
    assert!(bkg_auth::limits::TOKEN_BYTES_MAX + 6 <= MESSAGE_BYTES_MAX);
};
