//! Errors of the audit log.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("audit signing key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    /// The log does not verify: the first place where it goes wrong.
    #[error("{file}, line {line}: {reason}")]
    Tampered { file: String, line: usize, reason: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// Attaches the path to an I/O error.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io { path: path.to_path_buf(), source }
}
