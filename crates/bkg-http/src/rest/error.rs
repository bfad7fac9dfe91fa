//! HTTP errors: `{code,message,details,hint}` with PostgREST's status for each SQLSTATE.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use bkg_sql::SqlState;
use bkg_sql::error::SqlError;

/// The body of every error answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// SQLSTATE (`23505`), PostgREST code (`PGRST116`) or bkg-db code (`BKG101`).
    code: String,
    message: String,
    details: Option<String>,
    hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestError {
    pub status: u16,
    pub code: SqlState,
    pub message: String,
    pub details: Option<String>,
    pub hint: Option<String>,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl RestError {
    pub fn new(status: u16, code: SqlState, message: impl Into<String>) -> RestError {
        RestError { status, code, message: message.into(), details: None, hint: None, retry_after: None }
    }
    pub fn details(mut self, d: impl Into<String>) -> RestError {
        let d = d.into();
        self.details = (!d.is_empty()).then_some(d);
        self
    }
    pub fn hint(mut self, h: impl Into<String>) -> RestError {
        self.hint = Some(h.into());
        self
    }

    /// A database error, with the status PostgREST gives its SQLSTATE. `anonymous` decides
    /// 42501: 401 for a request without a user token, 403 for a user who lacks the privilege.
    pub fn from_sql(e: SqlError, anonymous: bool) -> RestError {
        let status = e.code.http_status(anonymous);
        let message = if e.code == SqlState::InternalError { "internal error".to_string() } else { e.message };
        RestError { status, code: e.code, message, details: e.detail, hint: e.hint, retry_after: None }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        if self.status >= 500 {
            tracing::warn!(code = %self.code, message = %self.message, "REST request failed");
        }
        let body = serde_json::json!({
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "hint": self.hint,
        });
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, axum::Json(body)).into_response();
        r.extensions_mut().insert(crate::ErrorCode(self.code.code()));
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}
