//! Collecting stored bytes no metadata row refers to: the old version of a replaced or deleted
//! object (released at once, see [`release`]), and what a crash left between an upload's last
//! byte and its metadata commit, or mid-upload ([`collect`], at start and then periodically).
//! Bytes are only ever deleted when no row names their version, and a version younger than the
//! grace period is left alone (its upload may be about to commit).

use std::sync::Arc;

use crate::{Storage, meta};

/// Deletes the bytes of `version` if no row refers to them any more.
pub async fn release(s: &Storage, version: &str) {
    match meta::version_in_use(&s.engine, version).await {
        Ok(false) => match s.backend.delete(version).await {
            Ok(()) => crate::metrics::add(&s.metrics.versions_released, 1),
            Err(e) => {
                tracing::warn!(version, error = %e.message, "could not delete released object bytes; collection will retry")
            }
        },
        Ok(true) => {}
        Err(e) => tracing::warn!(version, error = %e, "could not check object bytes for release"),
    }
}

/// What one collection did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    pub orphans: usize,
    pub staging: usize,
}

/// Deletes every version older than the grace period that no row refers to.
pub async fn collect(s: &Storage) -> Result<Collected, String> {
    let cutoff = chrono::Utc::now().timestamp() - s.config.gc_grace_s as i64;
    let staging = s.backend.sweep_staging(cutoff);
    let stored = s.backend.versions().await.map_err(|e| e.message)?;
    // Read the rows after listing: a version committed in between is in the set.
    let live = meta::live_versions(&s.engine).await.map_err(|e| e.to_string())?;
    let mut orphans = 0;
    for (version, modified) in stored {
        if modified < cutoff && !live.contains(&version) && s.backend.delete(&version).await.is_ok() {
            orphans += 1;
        }
    }
    crate::metrics::add(&s.metrics.versions_collected, (orphans + staging) as u64);
    Ok(Collected { orphans, staging })
}

/// Collects at start, then every `gc_interval_s` until `stop`.
pub async fn run(s: Arc<Storage>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        match collect(&s).await {
            Ok(c) if c.orphans + c.staging > 0 => {
                tracing::info!(orphans = c.orphans, staging = c.staging, "collected object bytes without metadata")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "object collection failed"),
        }
        if s.config.gc_interval_s == 0 {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(s.config.gc_interval_s)) => {}
            _ = stop.changed() => return,
        }
    }
}
