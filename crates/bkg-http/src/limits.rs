//! Every fixed limit of the HTTP doors (REST, `/query`, `/auth/v1`) in one place; how they
//! relate to each other and to the SQL layer is checked when compiling. Limits an operator sets
//! (body sizes, rows per response) are in `RestConfig` and `docs/env.md`.

/// Most statements in one request.
pub const BATCH_STATEMENTS_MAX: usize = 1000;

/// Most parameters of one statement.
pub const PARAMS_MAX: usize = 10_000;

/// Deepest `or=(and(or(...)))` nesting accepted.
pub const LOGIC_DEPTH_MAX: usize = 16;

/// Most items in one `in.(...)` list, `select=` or `order=`.
pub const LIST_ITEMS_MAX: usize = 1000;

/// Deepest nesting of embedded resources in `select=` (`a(b(c(…)))`).
pub const EMBED_DEPTH_MAX: usize = 8;

/// Largest request body the auth endpoints read.
pub const BODY_BYTES_MAX: usize = 64 << 10;

/// Shortest password accepted (GoTrue's default).
pub const PASSWORD_CHARS_MIN: usize = 6;

/// Longest password accepted (Argon2 accepts more; nobody needs it).
pub const PASSWORD_BYTES_MAX: usize = 1024;

/// Largest `user_metadata` / `app_metadata`, as JSON text.
pub const METADATA_BYTES_MAX: usize = 16 << 10;

/// Most users one admin list page returns.
pub const PAGE_USERS_MAX: usize = 1000;

const _: () = {
    // PostgreSQL numbers parameters with 16 bits.
    assert!(PARAMS_MAX <= u16::MAX as usize);
    // Each `or=(and(...))` level and each embedding adds a few expression levels to the SQL.
    assert!(4 * (LOGIC_DEPTH_MAX + EMBED_DEPTH_MAX) < bkg_sql::limits::EXPR_DEPTH_MAX);
    assert!(PASSWORD_CHARS_MIN <= PASSWORD_BYTES_MAX);
    // A sign-up or user update carries a password and both metadata objects.
    assert!(PASSWORD_BYTES_MAX + 2 * METADATA_BYTES_MAX + 1024 <= BODY_BYTES_MAX);
    assert!(BATCH_STATEMENTS_MAX >= 1 && LIST_ITEMS_MAX >= 1 && PAGE_USERS_MAX >= 1);
};
