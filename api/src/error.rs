//! `ApiError`: every failure answers `{"error":{"code","message"}}` with the right status.
//! Server-side failures are logged with their detail and answered with a generic message.

use crate::ratelimit::Limited;
use crate::store::StoreError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use ponte_core::{ErrorSource, RouteError};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
    /// Who the failure is on: decides the log level and the metric label.
    pub source: ErrorSource,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            source: ErrorSource::of_status(status),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    /// The store cannot serve now (down, disk full): 503 with a reason and
    /// `Retry-After`; the detail goes to the log.
    pub fn store_unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::warn!(%detail, "store unavailable");
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORE_UNAVAILABLE",
            "the database cannot take this request now (unreachable or out of space); \
             nothing was changed, retry shortly",
        );
        e.retry_after = Some(2);
        e
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error; see the server log",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::conflict("CONFLICT", m),
            e if e.is_unavailable() => ApiError::store_unavailable(e),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::audit::Backlogged> for ApiError {
    fn from(e: crate::audit::Backlogged) -> Self {
        tracing::warn!(%e, "audit queue full");
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORE_UNAVAILABLE",
            "the audit log is behind (the database is slow or not taking writes); nothing \
             was sent to the device, retry shortly",
        );
        e.retry_after = Some(1);
        e
    }
}

impl From<Limited> for ApiError {
    fn from(l: Limited) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("too many requests; retry in {} s", l.retry_after_secs()),
        );
        e.retry_after = Some(l.retry_after_secs());
        e
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        let mut err = ApiError::new(e.status_code(), e.code(), e.to_string());
        err.source = e.source();
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = (self.status, self.code);
        let mut resp = ponte_core::error_response("api", self.source, status, code, &self.message);
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        resp
    }
}
