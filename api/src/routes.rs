//! The `/api` routes (DESIGN.md "Cloud API"). Every tenant route checks the user's grant
//! for `:tid` before it reads anything, so a user of one institution learns nothing
//! about another (403 whether or not the resource exists there).

use crate::auth::{self, User};
use crate::error::ApiError;
use crate::store::{self, ConnectorStatus, EquipmentConfig, SessionStatus};
use crate::Api;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine as _;
use ponte_core::{ProxyRequest, RequestBody};
use ponte_protocol::{limits, Headers};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

mod console;
mod public;

type St = State<Arc<Api>>;
type ApiResult<T> = Result<T, ApiError>;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Ponte API", description = "Tenant-scoped API of Ponte: proxy HTTP to devices behind a connector, remote UI sessions, connector pairing."),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

fn router() -> OpenApiRouter<Arc<Api>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(proxy_http))
        .routes(routes!(create_session))
        .routes(routes!(end_session))
        .routes(routes!(list_sessions))
        .routes(routes!(pair))
        .routes(routes!(renew_token))
        .routes(routes!(connector_status))
        .routes(routes!(unpair))
        .routes(routes!(put_equipment, get_equipment))
        .routes(routes!(list_audit))
        .routes(routes!(public::create_route, public::list_routes))
        .routes(routes!(public::delete_route))
        .routes(routes!(claim))
}

/// The OpenAPI document, generated from the handlers below.
pub fn openapi() -> utoipa::openapi::OpenApi {
    router().split_for_parts().1
}

/// The API's routes: `/api/…`, `/api/openapi.json`, `/health`, `/ready`, and the
/// reference console at `/`.
pub fn app(api: Arc<Api>) -> axum::Router {
    let (routes, doc) = router().split_for_parts();
    let doc = Arc::new(doc);
    // Largest proxy-http JSON: the body base64-encoded plus headers and envelope.
    let body_limit = api.cfg.proxy_max_request / 3 * 4 + 4 + limits::MAX_HEADER_BYTES * 2;
    routes
        .merge(console::routes())
        .route(
            "/api/openapi.json",
            axum::routing::get(move || async move { Json(doc.as_ref().clone()) }),
        )
        .route(
            "/health",
            axum::routing::get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/ready", axum::routing::get(ready))
        .fallback(|| async { ApiError::not_found("NOT_FOUND", "no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(|req, next| {
            ponte_core::metrics::track("api", req, next)
        }))
        .with_state(api)
}

/// Ready when the store takes a write now (a store that reads but cannot write, a
/// full disk, is not ready), within the store's own 2 s bound.
async fn ready(State(api): St) -> axum::response::Response {
    let probe = tokio::time::timeout(Duration::from_secs(2), api.store.probe()).await;
    let reason = match probe {
        Ok(Ok(())) => {
            return Json(serde_json::json!({
                "status": "ready",
                "store": api.store.backend(),
                "auditBacklog": api.audit.backlog(),
            }))
            .into_response()
        }
        Ok(Err(err)) => err.to_string(),
        Err(_) => "the store did not answer within 2 s".to_owned(),
    };
    warn!(%reason, "store not ready");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "NOT_READY",
        format!("the store cannot take writes: {reason}"),
    )
    .into_response()
}

// ---- extractors: rejections answer the same JSON error shape as everything else ----

/// `Path` with JSON errors.
struct P<T>(T);

impl<T, S> FromRequestParts<S> for P<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| P(t))
            .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
    }
}

/// `Json` with JSON errors (413 for a body over the limit).
struct J<T>(T);

impl<T, S> FromRequest<S> for J<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(t)| J(t))
            .map_err(|e| {
                let status = e.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(status, "BODY_TOO_LARGE", "request body too large")
                } else {
                    // Syntax and shape errors alike are 400 (axum says 422 for shape).
                    ApiError::bad_request(e.body_text())
                }
            })
    }
}

impl FromRequestParts<Arc<Api>> for User {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <user token>"))?;
        let user = api.users.verify(token).map_err(|e| match e {
            auth::TokenError::Expired => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "TOKEN_EXPIRED",
                "user token expired",
            ),
            auth::TokenError::Invalid(m) => {
                ApiError::unauthorized(format!("invalid user token: {m}"))
            }
        })?;
        api.remember_user(&user).await?;
        Ok(user)
    }
}

/// 403 unless the user may act on institution `tid`; then 404 if it does not exist.
async fn tenant(api: &Api, user: &User, tid: i32) -> ApiResult<store::Institution> {
    if !user.may_access(tid) {
        return Err(ApiError::forbidden(format!(
            "no access to institution {tid}"
        )));
    }
    api.store.institution(tid).await?.ok_or_else(|| {
        ApiError::not_found(
            "INSTITUTION_NOT_FOUND",
            format!("institution {tid} does not exist"),
        )
    })
}

async fn equipment(api: &Api, tid: i32, eid: i32) -> ApiResult<store::Equipment> {
    api.store.equipment(tid, eid).await?.ok_or_else(|| {
        ApiError::not_found(
            "EQUIPMENT_NOT_FOUND",
            format!("equipment {eid} not found in institution {tid}"),
        )
    })
}

/// The institution's connector, if it is paired (has a current token).
async fn paired_connector(api: &Api, tid: i32) -> ApiResult<store::Connector> {
    api.store
        .connector_of(tid)
        .await?
        .filter(|c| c.token_id.is_some())
        .ok_or_else(|| {
            ApiError::conflict(
                "CONNECTOR_NOT_PAIRED",
                format!("institution {tid} has no paired connector"),
            )
        })
}

/// Queues an audit entry for an action already done (written in the background).
fn audit(api: &Api, entry: store::AuditEntry) {
    api.audit.record(entry)
}

fn audit_entry(action: &str, user: Option<&User>, tid: i32) -> store::AuditEntry {
    store::AuditEntry {
        action: action.into(),
        user_id: user.map(|u| u.id),
        tenant_id: tid,
        ..Default::default()
    }
}

// ---- proxy-http ----

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
struct ProxyHttpRequest {
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
struct ProxyHttpResponse {
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
async fn proxy_http(
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
    let eq = equipment(api, tid, eid).await?;
    if !eq.uses_addon {
        return Err(ApiError::conflict(
            "ADDON_DISABLED",
            format!("equipment {eid} does not use the connector addon"),
        ));
    }
    let base_url = eq.base_url().ok_or_else(|| {
        ApiError::conflict(
            "NO_DEVICE_ADDRESS",
            format!("equipment {eid} has no localBaseUrl or IP address"),
        )
    })?;
    let con = paired_connector(api, tid).await?;
    api.limits.connector(con.id)?;
    // The call's own timeoutMs, else the equipment's, else the protocol default.
    let timeout = asked.or(eq.timeout()).unwrap_or(limits::DEFAULT_TIMEOUT);
    let mut preq = ProxyRequest::new(base_url, &method, req.path);
    preq.tenant_id = Some(tid.into());
    preq.equip_id = Some(eid.into());
    preq.headers = req.headers;
    preq.body = body;
    preq.timeout = timeout;
    preq.tls_insecure = eq.tls_insecure();
    let resp = api.router.send(&con.id.to_string(), preq).await?;
    let content_type = resp.headers.get("content-type").map(str::to_owned);
    // The body is buffered, so the whole of it gets a deadline too (a device dripping a
    // byte a second would otherwise hold the call for ever), and the bytes every call
    // holds at once come out of one budget: past it, 503 BUSY.
    let collect = collect_within_budget(api, resp.body);
    let bytes = match tokio::time::timeout(timeout, collect).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "TIMEOUT",
                format!(
                    "the device did not finish its response within {} ms of starting it",
                    timeout.as_millis()
                ),
            ))
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

// ---- remote sessions ----

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreatedSession {
    session_id: String,
    /// One-time launch URL on the gateway origin.
    url: String,
    expires_at: String,
}

/// Open a remote UI session to a device.
#[utoipa::path(
    post,
    path = "/api/instituicao/{tid}/equipamento/{eid}/remoto/sessoes",
    params(("tid" = i32, Path), ("eid" = i32, Path)),
    responses(
        (status = 201, body = CreatedSession), (status = 401), (status = 403), (status = 404),
        (status = 409, description = "equipment does not use the addon, or the connector is not ONLINE"),
    )
)]
async fn create_session(
    State(api): St,
    user: User,
    P((tid, eid)): P<(i32, i32)>,
) -> ApiResult<(StatusCode, Json<CreatedSession>)> {
    tenant(&api, &user, tid).await?;
    let eq = equipment(&api, tid, eid).await?;
    if !eq.uses_addon {
        return Err(ApiError::conflict(
            "ADDON_DISABLED",
            format!("equipment {eid} does not use the connector addon"),
        ));
    }
    let con = paired_connector(&api, tid).await?;
    if !api.router.is_online(&con.id.to_string()) {
        return Err(ApiError::conflict(
            "CONNECTOR_OFFLINE",
            "the institution's connector is not ONLINE",
        ));
    }
    let (s, code) = api.sessions.create(tid, eid, con.id, user.id).await?;
    let mut entry = audit_entry("session.create", Some(&user), tid);
    entry.equipment_id = Some(eid);
    entry.detail = Some(serde_json::json!({"sessionId": s.id}));
    audit(&api, entry);
    info!(session_id = %s.id, tid, eid, user_id = user.id, "remote session created");
    let url = api.cfg.launch_url(&s.id, &code);
    Ok((
        StatusCode::CREATED,
        Json(CreatedSession {
            session_id: s.id,
            url,
            expires_at: store::rfc3339(s.expires_at),
        }),
    ))
}

/// End a remote session and its open streams.
#[utoipa::path(
    delete,
    path = "/api/instituicao/{tid}/equipamento/{eid}/remoto/sessoes/{sid}",
    params(("tid" = i32, Path), ("eid" = i32, Path), ("sid" = String, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404))
)]
async fn end_session(
    State(api): St,
    user: User,
    P((tid, eid, sid)): P<(i32, i32, String)>,
) -> ApiResult<StatusCode> {
    tenant(&api, &user, tid).await?;
    api.sessions.end(tid, eid, &sid).await?.ok_or_else(|| {
        ApiError::not_found("SESSION_NOT_FOUND", "no such session for this equipment")
    })?;
    let mut entry = audit_entry("session.end", Some(&user), tid);
    entry.equipment_id = Some(eid);
    entry.detail = Some(serde_json::json!({"sessionId": sid}));
    audit(&api, entry);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    session_id: String,
    status: SessionStatus,
    user_id: i32,
    user_name: String,
    equipment_id: i32,
    equipment_name: String,
    created_at: String,
    expires_at: String,
    ended_at: Option<String>,
    requests: i32,
    bytes: i64,
}

/// Remote sessions of the institution, newest first (audit).
#[utoipa::path(
    get,
    path = "/api/instituicao/{tid}/remoto/sessoes",
    params(("tid" = i32, Path)),
    responses((status = 200, body = Vec<SessionView>), (status = 401), (status = 403))
)]
async fn list_sessions(
    State(api): St,
    user: User,
    P(tid): P<i32>,
) -> ApiResult<Json<Vec<SessionView>>> {
    tenant(&api, &user, tid).await?;
    // Statuses are kept true: expire what is due and count what is pending first.
    api.sessions.maintain().await;
    let rows = api.store.list_sessions(tid, 500).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| SessionView {
                session_id: r.session.id,
                status: r.session.status,
                user_id: r.session.user_id,
                user_name: r.user_name,
                equipment_id: r.session.equipment_id,
                equipment_name: r.equipment_name,
                created_at: store::rfc3339(r.session.created_at),
                expires_at: store::rfc3339(r.session.expires_at),
                ended_at: r.session.ended_at.map(store::rfc3339),
                requests: r.session.requests,
                bytes: r.session.bytes,
            })
            .collect(),
    ))
}

// ---- connector ----

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct PairingCode {
    /// One-time code, e.g. `K7QM-4XPD`.
    pairing_code: String,
    expires_at: String,
}

/// Create a one-time pairing code (15 min) for the institution's connector.
#[utoipa::path(
    post,
    path = "/api/instituicao/{tid}/connector/pair",
    params(("tid" = i32, Path)),
    responses((status = 201, body = PairingCode), (status = 401), (status = 403), (status = 404))
)]
async fn pair(
    State(api): St,
    user: User,
    P(tid): P<i32>,
) -> ApiResult<(StatusCode, Json<PairingCode>)> {
    tenant(&api, &user, tid).await?;
    let code = auth::pairing_code();
    let expires_at = store::now()
        + chrono::TimeDelta::from_std(api.cfg.pairing_ttl).unwrap_or(chrono::TimeDelta::MAX);
    api.store
        .start_pairing(tid, &auth::digest(&code), expires_at, Some(user.id))
        .await?;
    audit(&api, audit_entry("connector.pair", Some(&user), tid));
    Ok((
        StatusCode::CREATED,
        Json(PairingCode {
            pairing_code: code,
            expires_at: store::rfc3339(expires_at),
        }),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct IssuedToken {
    connector_id: i32,
    token: String,
    relay_url: String,
    expires_at: String,
}

/// Issue a new connector token; the previous one is revoked at once (its socket closed).
#[utoipa::path(
    post,
    path = "/api/instituicao/{tid}/connector/token",
    params(("tid" = i32, Path)),
    responses((status = 200, body = IssuedToken), (status = 401), (status = 403), (status = 404))
)]
async fn renew_token(State(api): St, user: User, P(tid): P<i32>) -> ApiResult<Json<IssuedToken>> {
    tenant(&api, &user, tid).await?;
    let con = api.store.ensure_connector(tid).await?;
    let new = api.issuer.mint(con.id, con.client_id, tid);
    api.store
        .set_token(con.id, &new.jti, new.expires_at)
        .await?;
    api.router.disconnect(&con.id.to_string(), "token renewed");
    audit(&api, audit_entry("connector.token", Some(&user), tid));
    info!(
        connector_id = con.id,
        tid, "connector token renewed; the previous one is revoked"
    );
    Ok(Json(IssuedToken {
        connector_id: con.id,
        token: new.token,
        relay_url: api.cfg.relay_public_url.clone(),
        expires_at: store::rfc3339(new.expires_at),
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ConnectorStatusView {
    paired: bool,
    status: ConnectorStatus,
    connector_id: Option<i32>,
    name: Option<String>,
    version: Option<String>,
    last_heartbeat: Option<String>,
    connected_since: Option<String>,
    token_expires_at: Option<String>,
    /// The token expires within 7 days and this connector cannot be sent a new one
    /// over the tunnel (it does not speak `token-rotate`, or is not connected): renew
    /// it and store the new token on the connector, or it will be locked out.
    token_expiring: bool,
    /// Another install with this connector's token tried to connect while this one was
    /// live (two copies of one config): the live connection is kept and the newer ones
    /// are refused. Present for 10 minutes after the last refusal.
    duplicate: Option<DuplicateView>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct DuplicateView {
    /// Connections refused since the duplicate was detected.
    refused_connections: u64,
    last_refused_at: String,
}

/// The institution's connector: status, name, version, last heartbeat.
#[utoipa::path(
    get,
    path = "/api/instituicao/{tid}/connector/status",
    params(("tid" = i32, Path)),
    responses((status = 200, body = ConnectorStatusView), (status = 401), (status = 403), (status = 404))
)]
async fn connector_status(
    State(api): St,
    user: User,
    P(tid): P<i32>,
) -> ApiResult<Json<ConnectorStatusView>> {
    tenant(&api, &user, tid).await?;
    let Some(con) = api.store.connector_of(tid).await? else {
        return Ok(Json(ConnectorStatusView {
            paired: false,
            status: ConnectorStatus::OFFLINE,
            connector_id: None,
            name: None,
            version: None,
            last_heartbeat: None,
            connected_since: None,
            token_expires_at: None,
            token_expiring: false,
            duplicate: None,
            metadata: None,
        }));
    };
    // The relay's live view wins over a status row that a batch has not written yet.
    let online = con.token_id.is_some() && api.router.is_online(&con.id.to_string());
    let status = match (online, con.status) {
        (true, _) => ConnectorStatus::ONLINE,
        (false, ConnectorStatus::ONLINE) => ConnectorStatus::OFFLINE,
        (false, s) => s,
    };
    let token_expiring = api.token_expiring(&con);
    let duplicate = api
        .router
        .conflict(&con.id.to_string())
        .map(|c| DuplicateView {
            refused_connections: c.refused,
            last_refused_at: store::rfc3339(
                chrono::DateTime::<chrono::Utc>::from(c.last_refused).naive_utc(),
            ),
        });
    Ok(Json(ConnectorStatusView {
        paired: con.token_id.is_some(),
        status,
        connector_id: Some(con.id),
        name: Some(con.name),
        version: con.version,
        last_heartbeat: con.last_heartbeat.map(store::rfc3339),
        connected_since: if online {
            con.connected_since.map(store::rfc3339)
        } else {
            None
        },
        token_expiring,
        duplicate,
        token_expires_at: con.token_expires_at.map(store::rfc3339),
        metadata: con.metadata.map(|m| m.0),
    }))
}

/// Unpair: the token is revoked and the connector's socket closed.
#[utoipa::path(
    delete,
    path = "/api/instituicao/{tid}/connector",
    params(("tid" = i32, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404))
)]
async fn unpair(State(api): St, user: User, P(tid): P<i32>) -> ApiResult<StatusCode> {
    tenant(&api, &user, tid).await?;
    let con = api.store.unpair(tid, store::now()).await?.ok_or_else(|| {
        ApiError::not_found("CONNECTOR_NOT_FOUND", "the institution has no connector")
    })?;
    api.router.disconnect(&con.id.to_string(), "unpaired");
    audit(&api, audit_entry("connector.unpair", Some(&user), tid));
    info!(connector_id = con.id, tid, "connector unpaired");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClaimRequest {
    pairing_code: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

fn source_ip(
    parts_headers: &axum::http::HeaderMap,
    peer: Option<SocketAddr>,
    trust_xff: bool,
) -> Option<IpAddr> {
    ponte_core::published::client_ip(parts_headers, peer, trust_xff)
}

/// Exchange a pairing code (once) for a connector token. Public; rate-limited per source address and for all addresses together.
#[utoipa::path(
    post,
    path = "/api/connector/claim",
    request_body = ClaimRequest,
    security(()),
    responses(
        (status = 200, body = IssuedToken),
        (status = 400, description = "unknown code"), (status = 409, description = "code already used"),
        (status = 410, description = "code expired"), (status = 429, description = "too many attempts"),
    )
)]
async fn claim(State(api): St, req: Request) -> ApiResult<Json<IssuedToken>> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = source_ip(req.headers(), peer, api.cfg.trust_forwarded_for)
        .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    api.limits.claim(ip)?;
    let J(body): J<ClaimRequest> = J::from_request(req, &api).await?;
    let code = auth::normalize_code(&body.pairing_code);
    let name = body
        .name
        .map(|n| n.trim().chars().take(100).collect::<String>())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Connector".into());
    // The connector id is known only once the code is; mint after, store in one step.
    let hash = auth::digest(&code);
    let placeholder = auth::random_id();
    let info_ = store::ClaimInfo {
        name,
        version: body.version.map(|v| v.chars().take(64).collect()),
        metadata: body.metadata,
        token_id: placeholder.clone(),
        token_expires_at: store::now(),
    };
    let con = match api.store.claim_pairing(&hash, store::now(), &info_).await? {
        Ok(con) => con,
        Err(refusal) => {
            warn!(%ip, ?refusal, "pairing code refused");
            return Err(match refusal {
                store::ClaimRefusal::Unknown => ApiError::bad_request("unknown pairing code"),
                store::ClaimRefusal::AlreadyUsed => {
                    ApiError::conflict("PAIRING_CODE_USED", "this pairing code was already used")
                }
                store::ClaimRefusal::Expired => ApiError::new(
                    StatusCode::GONE,
                    "PAIRING_CODE_EXPIRED",
                    "this pairing code has expired",
                ),
            });
        }
    };
    let new = api.issuer.mint(con.id, con.client_id, con.tenant_id);
    if !api
        .store
        .swap_token(con.id, &placeholder, &new.jti, new.expires_at)
        .await?
    {
        return Err(ApiError::conflict(
            "CONFLICT",
            "the connector changed while pairing; try a new code",
        ));
    }
    // A previous connector of this institution loses its token now.
    api.router.disconnect(&con.id.to_string(), "re-paired");
    let mut entry = audit_entry("connector.claim", None, con.tenant_id);
    entry.detail = Some(serde_json::json!({"source": ip.to_string(), "name": con.name}));
    audit(&api, entry);
    info!(connector_id = con.id, tid = con.tenant_id, %ip, "pairing code claimed");
    Ok(Json(IssuedToken {
        connector_id: con.id,
        token: new.token,
        relay_url: api.cfg.relay_public_url.clone(),
        expires_at: store::rfc3339(new.expires_at),
    }))
}

// ---- equipment ----

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EquipmentView {
    /// Read-only: the id is in the path.
    #[serde(default, skip_deserializing)]
    id: i32,
    name: String,
    #[serde(default)]
    usa_addon: bool,
    /// `{localBaseUrl, tlsInsecure, login, password, modo}`. `password` is write-only:
    /// reads omit it, and a write without it keeps the stored one.
    #[serde(default)]
    config: Option<EquipmentConfig>,
    #[serde(default)]
    brand: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    ip: Option<String>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

fn view(e: store::Equipment) -> EquipmentView {
    EquipmentView {
        id: e.id,
        name: e.name,
        usa_addon: e.uses_addon,
        config: e.config.map(|c| EquipmentConfig {
            password: None,
            ..c.0
        }),
        brand: e.brand,
        model: e.model,
        ip: e.ip,
        active: e.active,
    }
}

/// Register or update equipment.
#[utoipa::path(
    put,
    path = "/api/instituicao/{tid}/equipamento/{eid}",
    params(("tid" = i32, Path), ("eid" = i32, Path)),
    request_body = EquipmentView,
    responses((status = 200, body = EquipmentView), (status = 400), (status = 401), (status = 403), (status = 409))
)]
async fn put_equipment(
    State(api): St,
    user: User,
    P((tid, eid)): P<(i32, i32)>,
    J(body): J<EquipmentView>,
) -> ApiResult<Json<EquipmentView>> {
    tenant(&api, &user, tid).await?;
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    let mut config = body.config;
    if let Some(url) = config.as_ref().and_then(|c| c.local_base_url.as_deref()) {
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && !url.contains(char::is_whitespace);
        if !ok {
            return Err(ApiError::bad_request(
                "config.localBaseUrl must be an http:// or https:// URL",
            ));
        }
    }
    if let Some(ms) = config.as_ref().and_then(|c| c.timeout_ms) {
        if ms == 0 || ms > limits::MAX_TIMEOUT.as_millis() as u64 {
            return Err(ApiError::bad_request(format!(
                "config.timeoutMs must be 1..={} (milliseconds the device may take to \
                 start its answer)",
                limits::MAX_TIMEOUT.as_millis()
            )));
        }
    }
    if let Some(c) = config.as_mut().filter(|c| c.password.is_none()) {
        let old = api.store.equipment(tid, eid).await?;
        c.password = old.and_then(|o| o.config).and_then(|o| o.0.password);
    }
    let saved = api
        .store
        .put_equipment(&store::Equipment {
            id: eid,
            tenant_id: tid,
            name: body.name.trim().to_owned(),
            brand: body.brand,
            model: body.model,
            ip: body.ip,
            active: body.active,
            uses_addon: body.usa_addon,
            config: config.map(sqlx::types::Json),
        })
        .await
        .map_err(|e| match e {
            // The id belongs to another institution: answered like any id this tenant
            // does not have, so nobody learns which ids exist elsewhere.
            store::StoreError::Conflict(_) => ApiError::not_found(
                "EQUIPMENT_NOT_FOUND",
                format!("equipment {eid} not found in institution {tid}"),
            ),
            other => other.into(),
        })?;
    let mut entry = audit_entry("equipment.put", Some(&user), tid);
    entry.equipment_id = Some(eid);
    audit(&api, entry);
    Ok(Json(view(saved)))
}

/// Read equipment.
#[utoipa::path(
    get,
    path = "/api/instituicao/{tid}/equipamento/{eid}",
    params(("tid" = i32, Path), ("eid" = i32, Path)),
    responses((status = 200, body = EquipmentView), (status = 401), (status = 403), (status = 404))
)]
async fn get_equipment(
    State(api): St,
    user: User,
    P((tid, eid)): P<(i32, i32)>,
) -> ApiResult<Json<EquipmentView>> {
    tenant(&api, &user, tid).await?;
    Ok(Json(view(equipment(&api, tid, eid).await?)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AuditView {
    id: i32,
    action: String,
    user_id: Option<i32>,
    equipment_id: Option<i32>,
    method: Option<String>,
    path: Option<String>,
    status: Option<i32>,
    bytes: i64,
    duration_ms: Option<i32>,
    #[schema(value_type = Option<Object>)]
    detail: Option<Value>,
    created_at: String,
}

/// The institution's audit log, newest first.
#[utoipa::path(
    get,
    path = "/api/instituicao/{tid}/auditoria",
    params(("tid" = i32, Path)),
    responses((status = 200, body = Vec<AuditView>), (status = 401), (status = 403))
)]
async fn list_audit(State(api): St, user: User, P(tid): P<i32>) -> ApiResult<Json<Vec<AuditView>>> {
    tenant(&api, &user, tid).await?;
    // The log shows what was done before it was asked for, written or not yet.
    api.audit.settled(Duration::from_secs(2)).await;
    let rows = api.store.list_audit(tid, 500).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| AuditView {
                id: r.id,
                action: r.action,
                user_id: r.user_id,
                equipment_id: r.equipment_id,
                method: r.method,
                path: r.path,
                status: r.status,
                bytes: r.bytes,
                duration_ms: r.duration_ms,
                detail: r.detail.map(|d| d.0),
                created_at: store::rfc3339(r.created_at),
            })
            .collect(),
    ))
}
