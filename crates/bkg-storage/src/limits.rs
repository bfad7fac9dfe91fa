//! Every fixed limit of the storage door (the ones an operator sets are in [`crate::config`]).

/// Size of one part of a multipart upload to the backend; smaller objects go in one request.
pub const PART_BYTES: usize = 8 << 20;
/// Parts of one upload in flight at once (with [`PART_BYTES`], what an upload holds in memory).
pub const PARTS_IN_FLIGHT: usize = 2;
/// Largest JSON request body (bucket settings, lists of names).
pub const JSON_BODY_BYTES_MAX: usize = 1 << 20;
/// Largest user `metadata` of an object, bytes of JSON.
pub const USER_METADATA_BYTES_MAX: usize = 64 << 10;
/// Largest other text field of an upload form (`cacheControl`).
pub const FORM_FIELD_BYTES_MAX: usize = 256;
/// Longest object name, bytes (as S3's key limit).
pub const NAME_BYTES_MAX: usize = 1024;
/// Names one `remove` may delete at once.
pub const REMOVE_NAMES_MAX: usize = 1000;
/// Entries one `list` returns at most.
pub const LIST_LIMIT_MAX: usize = 1000;
/// Paths one request may sign at once.
pub const SIGN_PATHS_MAX: usize = 1000;
/// Buckets one listing returns at most.
pub const BUCKETS_LIST_MAX: usize = 1000;

// A list of names to remove or sign fits a JSON body.
const _: () = assert!(REMOVE_NAMES_MAX * (NAME_BYTES_MAX + 8) <= JSON_BODY_BYTES_MAX * 2);
const _: () = assert!(USER_METADATA_BYTES_MAX < PART_BYTES);
