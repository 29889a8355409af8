//! `…/equipamento/:eid/proxy-http`: one HTTP request to a device through the
//! institution's connector, audited, its response buffered within the API's budget.

use super::extract::{J, P};
use super::{ApiResult, St};
use crate::auth::User;
use crate::error::ApiError;
use crate::service::access::tenant;
use crate::service::audit_entry;
use crate::service::device::{device, Waiter};
use crate::Api;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use ponte_core::{ProxyRequest, RequestBody};
use ponte_protocol::{limits, Headers};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum BodyEncoding {
    #[default]
    Utf8,
    Base64,
}

/// A request for the device.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ProxyHttpRequest {
    /// HTTP method, e.g. `GET`.
    method: String,
    /// Path and query on the device, starting with `/`.
    path: String,
    /// Header values are a string or an array of strings.
    #[serde(default)]
    #[schema(value_type = Object)]
    headers: Headers,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_encoding: BodyEncoding,
    /// Bound on the wait for the device's response status (default 60000, max 600000).
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// The device's response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProxyHttpResponse {
    status_code: u16,
    #[schema(value_type = Object)]
    headers: Headers,
    body: String,
    body_encoding: BodyEncoding,
}

fn valid_method(m: &str) -> bool {
    !m.is_empty() && m.len() <= 16 && m.bytes().all(|b| b.is_ascii_alphabetic())
}

fn valid_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && !p.bytes().any(|b| b.is_ascii_control() || b == b' ')
}

/// Text the caller can read as UTF-8; everything else travels as base64.
fn textual(content_type: Option<&str>) -> bool {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    ct.is_empty()
        || ct.starts_with("text/")
        || ct.contains("json")
        || ct.contains("xml")
        || ct.contains("javascript")
        || ct.contains("x-www-form-urlencoded")
}

/// Send an HTTP request to a device through the institution's connector.
#[utoipa::path(
    post,
    path = "/api/instituicao/{tid}/equipamento/{eid}/proxy-http",
    params(("tid" = i32, Path, description = "institution"), ("eid" = i32, Path, description = "equipment")),
    request_body = ProxyHttpRequest,
    responses(
        (status = 200, description = "the device answered (any status)", body = ProxyHttpResponse),
        (status = 400, description = "bad request"), (status = 401), (status = 403),
        (status = 404), (status = 409, description = "equipment does not use the addon / no paired connector"),
        (status = 413, description = "request or device response over the size cap"),
        (status = 429, description = "rate limited; see Retry-After"),
        (status = 502, description = "connector offline or device unreachable"),
        (status = 504, description = "device did not answer in time"),
    )
)]
pub(super) async fn proxy_http(
    State(api): St,
    user: User,
    P((tid, eid)): P<(i32, i32)>,
    J(req): J<ProxyHttpRequest>,
) -> ApiResult<Json<ProxyHttpResponse>> {
    tenant(&api, &user, tid).await?;
    // The audit row's place is taken first: a call that could not be audited is not made.
    let slot = api.audit.slot()?;
    let started = Instant::now();
    let mut entry = audit_entry("proxy-http", Some(&user), tid);
    entry.equipment_id = Some(eid);
    entry.method = Some(req.method.to_ascii_uppercase());
    // Query strings often carry device session tokens: the audit keeps the path only.
    entry.path = Some(
        req.path
            .split('?')
            .next()
            .unwrap_or("")
            .chars()
            .take(512)
            .collect(),
    );
    let result = proxy(&api, tid, eid, req).await;
    entry.duration_ms = Some(started.elapsed().as_millis().min(i32::MAX as u128) as i32);
    match &result {
        Ok((resp, bytes)) => {
            entry.status = Some(resp.status_code.into());
            entry.bytes = *bytes as i64;
        }
        Err(e) => {
            entry.status = Some(e.status.as_u16().into());
            entry.detail = Some(serde_json::json!({"error": e.code}));
        }
    }
    slot.record(entry);
    result.map(|(r, _)| Json(r))
}

async fn proxy(
    api: &Api,
    tid: i32,
    eid: i32,
    req: ProxyHttpRequest,
) -> ApiResult<(ProxyHttpResponse, usize)> {
    let method = req.method.to_ascii_uppercase();
    if !valid_method(&method) {
        return Err(ApiError::bad_request(
            "method must be an HTTP token such as GET",
        ));
    }
    if !valid_path(&req.path) {
        return Err(ApiError::bad_request(
            "path must start with / and contain no spaces or control characters",
        ));
    }
    let asked = req.timeout_ms.map(Duration::from_millis);
    if asked.is_some_and(|t| t.is_zero() || t > limits::MAX_TIMEOUT) {
        return Err(ApiError::bad_request(format!(
            "timeoutMs must be 1..={}",
            limits::MAX_TIMEOUT.as_millis()
        )));
    }
    let body = match (req.body, req.body_encoding) {
        (None, _) => RequestBody::Empty,
        (Some(s), BodyEncoding::Utf8) => RequestBody::Full(s.into_bytes().into()),
        (Some(s), BodyEncoding::Base64) => RequestBody::Full(
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| ApiError::bad_request(format!("body is not valid base64: {e}")))?
                .into(),
        ),
    };
    let sent = match &body {
        RequestBody::Full(b) => b.len(),
        _ => 0,
    };
    if sent > api.cfg.proxy_max_request {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BODY_TOO_LARGE",
            format!("request body over {} bytes", api.cfg.proxy_max_request),
        ));
    }
    let d = device(api, tid, eid)
        .await
        .map_err(|e| e.into_api(tid, eid))?;
    api.limits.connector(d.connector_id)?;
    // The call's own timeoutMs, else the equipment's, else the API's default.
    let timeout = asked.unwrap_or_else(|| d.timeout(Waiter::Api));
    let mut preq = ProxyRequest::new(d.base_url, &method, req.path);
    preq.tenant_id = Some(tid.into());
    preq.equip_id = Some(eid.into());
    preq.headers = req.headers;
    preq.body = body;
    preq.timeout = timeout;
    preq.tls_insecure = d.tls_insecure;
    let resp = api.router.send(&d.connector_id.to_string(), preq).await?;
    let content_type = resp.headers.get("content-type").map(str::to_owned);
    // The body is buffered, so the whole of it gets a deadline too (a device dripping a
    // byte a second would otherwise hold the call for ever), and the bytes every call
    // holds at once come out of one budget: past it, 503 BUSY.
    let collect = collect_within_budget(api, resp.body);
    let bytes = match tokio::time::timeout(timeout, collect).await {
        Err(_) => {
            let mut e = ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "TIMEOUT",
                format!(
                    "the device did not finish its response within {} ms of starting it",
                    timeout.as_millis()
                ),
            );
            e.source = ponte_core::ErrorSource::Upstream;
            return Err(e);
        }
        Ok(r) => r?,
    };
    let bytes = bytes.0;
    let received = bytes.len();
    let (body, body_encoding) = match std::str::from_utf8(&bytes) {
        Ok(text) if textual(content_type.as_deref()) => (text.to_owned(), BodyEncoding::Utf8),
        _ => (
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            BodyEncoding::Base64,
        ),
    };
    Ok((
        ProxyHttpResponse {
            status_code: resp.status,
            headers: resp.headers,
            body,
            body_encoding,
        },
        sent + received,
    ))
}

/// A device body read whole into memory, its bytes taken from the API's proxy-http
/// budget as they arrive (given back when the returned guard drops).
async fn collect_within_budget(
    api: &Api,
    mut body: ponte_core::ResponseBody,
) -> ApiResult<(Vec<u8>, tokio::sync::SemaphorePermit<'_>)> {
    let limit = api.cfg.proxy_max_response;
    let mut out = Vec::new();
    let mut held = api
        .proxy_budget
        .try_acquire_many(0)
        .map_err(|_| busy_buffers())?;
    while let Some(chunk) = body.chunk().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RESPONSE_TOO_LARGE",
                format!("the device's response is over the {limit}-byte cap of proxy-http"),
            ));
        }
        let more = api
            .proxy_budget
            .try_acquire_many(chunk.len() as u32)
            .map_err(|_| busy_buffers())?;
        held.merge(more);
        out.extend_from_slice(&chunk);
    }
    Ok((out, held))
}

fn busy_buffers() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "BUSY",
        "proxy-http calls are holding all the response memory the API allows; retry shortly",
    )
}
