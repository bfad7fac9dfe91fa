//! HTTP errors: `{code,message,details,hint}` with PostgREST's status for each SQLSTATE.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

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
    pub code: String,
    pub message: String,
    pub details: Option<String>,
    pub hint: Option<String>,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl RestError {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> RestError {
        RestError { status, code: code.into(), message: message.into(), details: None, hint: None, retry_after: None }
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
        let status = sql_status(e.code, anonymous);
        let message = if e.code == "XX000" { "internal error".to_string() } else { e.message };
        RestError { status, code: e.code.to_string(), message, details: e.detail, hint: e.hint, retry_after: None }
    }
}

/// PostgREST's mapping from SQLSTATE to HTTP status.
pub fn sql_status(code: &str, anonymous: bool) -> u16 {
    match code {
        "23503" | "23505" => 409,
        "25006" => 405,
        "42883" | "42P01" => 404,
        "42501" => {
            if anonymous {
                401
            } else {
                403
            }
        }
        "57014" => 504,
        "P0001" => 400,
        "42P17" => 500,
        _ => match &code[..2.min(code.len())] {
            "08" | "53" => 503,
            "0L" | "0P" | "28" => 403,
            "54" => 413,
            "09" | "25" | "2D" | "38" | "39" | "3B" | "40" | "55" | "57" | "58" | "F0" | "HV" | "P0" | "XX" => 500,
            _ => 400,
        },
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
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(sql_status("23505", false), 409);
        assert_eq!(sql_status("42P01", false), 404);
        assert_eq!(sql_status("42501", true), 401);
        assert_eq!(sql_status("42501", false), 403);
        assert_eq!(sql_status("22P02", false), 400);
        assert_eq!(sql_status("42703", false), 400);
        assert_eq!(sql_status("40001", false), 500);
        assert_eq!(sql_status("53300", false), 503);
        assert_eq!(sql_status("54001", false), 413);
    }
}
