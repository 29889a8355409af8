//! Who a failure is on, and the one JSON error body every Ponte HTTP answer uses:
//! `{"error":{"code":"…","message":"…"}}`.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, StatusCode};

/// Who a failed request's failure is on (pingora's `ErrorSource`). It decides the log
/// level and the `source` label of [`crate::metrics::ERRORS`]; the status follows from
/// the error itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The device, or the connector in front of it: offline, unreachable, slow, refusing.
    /// Logged as a warning: an operator may have something to fix on the site.
    Upstream,
    /// The caller: a bad or refused request, a body that failed, a client gone away.
    /// Logged at debug: nothing to fix on our side.
    Downstream,
    /// Ponte itself (the store failed, a bug). Logged as a warning, as every 5xx was
    /// before the source was named: the sites that know more log the detail themselves.
    Internal,
}

impl ErrorSource {
    /// For an answer that names no source: 5xx is ours, anything else the caller's.
    pub fn of_status(status: StatusCode) -> Self {
        match status.is_server_error() {
            true => ErrorSource::Internal,
            false => ErrorSource::Downstream,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ErrorSource::Upstream => "upstream",
            ErrorSource::Downstream => "downstream",
            ErrorSource::Internal => "internal",
        }
    }
}

/// `{"error":{"code":code,"message":message}}`.
pub fn error_body(code: &str, message: &str) -> Bytes {
    serde_json::json!({"error": {"code": code, "message": message}})
        .to_string()
        .into()
}

/// An error answered by `role`: counted in [`crate::metrics::ERRORS`], logged at the
/// level its `source` calls for, with the JSON body. `message` is what the caller reads
/// and what the log says: callers keep secrets and query strings out of it.
pub fn error_response(
    role: &'static str,
    source: ErrorSource,
    status: StatusCode,
    code: &'static str,
    message: &str,
) -> Response {
    report(role, source, status, code, &message);
    error_answer(status, code, message)
}

/// Counts and logs a failure answered by `role` (see [`error_response`]), for an answer
/// whose caller must read less than the log says.
pub fn report(
    role: &'static str,
    source: ErrorSource,
    status: StatusCode,
    code: &'static str,
    detail: &dyn std::fmt::Display,
) {
    crate::metrics::error(role, code, source);
    let status = status.as_u16();
    match source {
        ErrorSource::Upstream => {
            tracing::warn!(role, status, code, "request failed upstream: {detail}")
        }
        ErrorSource::Internal => tracing::warn!(role, status, code, "request failed: {detail}"),
        ErrorSource::Downstream => {
            tracing::debug!(role, status, code, "request refused: {detail}")
        }
    }
}

/// The JSON error answer alone: nothing counted, nothing logged.
pub fn error_answer(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        error_body(code, message),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_body_is_code_and_message_and_escapes_both() {
        let body = error_body("BAD_REQUEST", "a \"quoted\" reason");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "BAD_REQUEST");
        assert_eq!(v["error"]["message"], "a \"quoted\" reason");
        assert_eq!(v.as_object().unwrap().len(), 1);
    }

    #[test]
    fn an_answer_without_a_source_is_ours_when_5xx() {
        assert_eq!(
            ErrorSource::of_status(StatusCode::SERVICE_UNAVAILABLE),
            ErrorSource::Internal
        );
        assert_eq!(
            ErrorSource::of_status(StatusCode::TOO_MANY_REQUESTS),
            ErrorSource::Downstream
        );
    }
}
