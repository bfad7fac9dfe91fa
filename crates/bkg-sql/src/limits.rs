//! Every fixed limit of the SQL layer in one place (the kernel's are in `bkg_kernel::Limits`),
//! with units last in the names; how they must relate is checked when compiling.

/// Longest SQL text accepted in one message.
pub const SQL_TEXT_BYTES_MAX: usize = 16 << 20;

/// Deepest expression nesting accepted (`a+b+c+...` chains count one level per operator).
pub const EXPR_DEPTH_MAX: usize = 1500;

/// Most bytes of one row (one line, or one CSV record with quoted newlines) of COPY FROM STDIN.
pub const COPY_ROW_BYTES_MAX: usize = 256 << 20;

/// Largest migration file accepted, bytes.
pub const FILE_BYTES_MAX: usize = 8 << 20;

/// Most migrations in one set.
pub const MIGRATIONS_MAX: usize = 10_000;

/// Most idle sessions kept per role.
pub const POOLED_SESSIONS_PER_ROLE_MAX: usize = 64;

/// Inserts at least this many rows at once column by column (see [`insert_batches`]); fewer go
/// in as rows, so small inserts do not leave many tiny column segments behind.
pub const BULK_ROWS_MIN: usize = 512;

/// Slow statements kept for operators ([`crate::slow`]), the newest.
pub const SLOW_STATEMENTS_MAX: usize = 200;

/// Longest statement text kept in the slow-statement ring, bytes.
pub const SLOW_TEXT_BYTES_MAX: usize = 2048;

/// Distinct (front door, error code) pairs counted in `/metrics`; more are counted as `other`.
pub const ERROR_CODES_MAX: usize = 512;

const _: () = {
    // A migration file is run as one SQL text.
    assert!(FILE_BYTES_MAX <= SQL_TEXT_BYTES_MAX);
    // COPY takes a row holding a value as long as the longest statement could write.
    assert!(COPY_ROW_BYTES_MAX >= SQL_TEXT_BYTES_MAX);
    assert!(EXPR_DEPTH_MAX >= 100 && BULK_ROWS_MIN >= 1 && POOLED_SESSIONS_PER_ROLE_MAX >= 1);
};
