//! The storage door's settings (each from a `BKG_DB_STORAGE_*` variable, docs/env.md).

use std::path::PathBuf;

/// Where object bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// A directory of the local file system (by default `<data dir>/storage`).
    Local(PathBuf),
    /// An S3-compatible bucket; credentials and region come from the `AWS_*` variables, the
    /// endpoint from `endpoint` (or `AWS_ENDPOINT_URL`).
    S3 { bucket: String, endpoint: Option<String>, region: Option<String>, prefix: String },
}

/// Limits and lifetimes of the storage door.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub backend: BackendConfig,
    /// Largest object, bytes (a bucket's `file_size_limit` may lower it, never raise it).
    pub file_size_max: u64,
    /// Longest lifetime of a signed download URL, seconds.
    pub signed_url_max_s: u64,
    /// Lifetime of a signed upload URL, seconds.
    pub upload_url_ttl_s: u64,
    /// Stored bytes no metadata row refers to are deleted once this old, seconds.
    pub gc_grace_s: u64,
    /// How often orphaned bytes are looked for, seconds (0: only at start).
    pub gc_interval_s: u64,
}

impl StorageConfig {
    pub fn local(dir: PathBuf) -> StorageConfig {
        StorageConfig {
            backend: BackendConfig::Local(dir),
            file_size_max: 50 << 20,
            signed_url_max_s: 7 * 24 * 3600,
            upload_url_ttl_s: 2 * 3600,
            gc_grace_s: 900,
            gc_interval_s: 3600,
        }
    }
}
