//! Storage counters for `/metrics` (Prometheus text format).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct StorageMetrics {
    pub uploads: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub uploads_refused: AtomicU64,
    pub downloads: AtomicU64,
    pub download_bytes: AtomicU64,
    pub versions_released: AtomicU64,
    pub versions_collected: AtomicU64,
}

impl StorageMetrics {
    pub fn render(&self) -> String {
        let table: [(&str, &str, &AtomicU64); 7] = [
            ("bkg_storage_uploads_total", "Uploads stored (their metadata row committed).", &self.uploads),
            ("bkg_storage_upload_bytes_total", "Bytes of the uploads stored.", &self.upload_bytes),
            (
                "bkg_storage_uploads_refused_total",
                "Uploads refused or failed (policies, limits, MIME types, the client, the backend).",
                &self.uploads_refused,
            ),
            ("bkg_storage_downloads_total", "Downloads started (whole objects and ranges).", &self.downloads),
            (
                "bkg_storage_download_bytes_total",
                "Bytes of the downloads started (what their Content-Length announced).",
                &self.download_bytes,
            ),
            (
                "bkg_storage_versions_released_total",
                "Stored versions deleted when an object was replaced or removed.",
                &self.versions_released,
            ),
            (
                "bkg_storage_versions_collected_total",
                "Stored versions and staging files without a metadata row collected by the sweeper.",
                &self.versions_collected,
            ),
        ];
        let mut out = String::new();
        for (name, help, value) in table {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
