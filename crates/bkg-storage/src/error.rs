//! Refusals as storage-js reads them: an HTTP status and `{statusCode, error, message}` (plus a
//! stable SQLSTATE-style `code`).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bkg_sql::{SqlError, SqlState};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct StorageError {
    pub status: u16,
    /// Short name (`not_found`, `Unauthorized`, `Duplicate`, `EntityTooLarge`, ...).
    pub error: &'static str,
    pub code: SqlState,
    pub message: String,
}

pub type StorageResult<T> = Result<T, StorageError>;

impl StorageError {
    pub fn new(status: u16, error: &'static str, code: SqlState, message: impl Into<String>) -> StorageError {
        StorageError { status, error, code, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> StorageError {
        StorageError::new(400, "InvalidRequest", SqlState::PgrstBody, message)
    }

    pub fn invalid_key(message: impl Into<String>) -> StorageError {
        StorageError::new(400, "InvalidKey", SqlState::PgrstBody, message)
    }

    pub fn bucket_not_found() -> StorageError {
        StorageError::new(404, "Bucket not found", SqlState::UndefinedObject, "Bucket not found")
    }

    pub fn object_not_found() -> StorageError {
        StorageError::new(404, "not_found", SqlState::UndefinedObject, "Object not found")
    }

    pub fn duplicate() -> StorageError {
        StorageError::new(409, "Duplicate", SqlState::UniqueViolation, "The resource already exists")
    }

    pub fn too_large(limit: u64) -> StorageError {
        StorageError::new(
            413,
            "Payload too large",
            SqlState::PgrstTooLarge,
            format!("The object exceeded the maximum allowed size ({limit} bytes)"),
        )
    }

    pub fn backend(e: impl std::fmt::Display) -> StorageError {
        StorageError::new(500, "InternalError", SqlState::InternalError, format!("object store: {e}"))
    }

    pub fn unauthenticated(message: impl Into<String>) -> StorageError {
        StorageError::new(401, "Unauthorized", SqlState::PgrstNoCredentials, message)
    }

    /// A statement's error, with what was being done (for refusals by row-level security:
    /// which bucket, operation and role, and that no policy allowed it).
    pub fn from_sql(e: SqlError, what: &Op) -> StorageError {
        match e.code {
            SqlState::InsufficientPrivilege => {
                let message = format!(
                    "new row violates row-level security policy: {} on {} ({}, role {}): no policy allows {} on {}",
                    what.action,
                    what.bucket,
                    what.object.as_deref().unwrap_or("bucket"),
                    what.role,
                    what.command,
                    what.table
                );
                StorageError::new(403, "Unauthorized", e.code, message)
            }
            SqlState::UniqueViolation => StorageError::duplicate(),
            SqlState::QueryCanceled => StorageError::new(504, "Timeout", e.code, e.message),
            _ => StorageError::new(500, "DatabaseError", e.code, e.message),
        }
    }
}

/// What a statement was doing, for error messages.
#[derive(Debug, Clone)]
pub struct Op {
    /// `upload`, `move`, `create bucket`, ...
    pub action: &'static str,
    pub bucket: String,
    pub object: Option<String>,
    pub role: String,
    /// The SQL command policies are checked for (`INSERT`, `UPDATE`, `DELETE`, `SELECT`).
    pub command: &'static str,
    /// `storage.objects` or `storage.buckets`.
    pub table: &'static str,
}

impl IntoResponse for StorageError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({
            "statusCode": self.status.to_string(),
            "error": self.error,
            "message": self.message,
            "code": self.code.code(),
        });
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}
