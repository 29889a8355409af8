//! `…/connector`: the institution's connector — a pairing code, the public claim that
//! exchanges it for a token, token renewal, status, unpairing.

use super::extract::{J, P};
use super::{ApiResult, St};
use crate::auth::{self, User};
use crate::error::ApiError;
use crate::service::access::tenant;
use crate::service::connector;
use crate::service::{audit, audit_entry};
use crate::store::{self, ConnectorStatus};
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use tracing::{info, warn};

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PairingCode {
    /// One-time code, e.g. `K7QM-4XPD`.
    pub(super) pairing_code: String,
    pub(super) expires_at: String,
}

/// Create a one-time pairing code (15 min) for the institution's connector.
#[utoipa::path(
    post,
    path = "/api/instituicao/{tid}/connector/pair",
    params(("tid" = i32, Path)),
    responses((status = 201, body = PairingCode), (status = 401), (status = 403), (status = 404))
)]
pub(super) async fn pair(
    State(api): St,
    user: User,
    P(tid): P<i32>,
) -> ApiResult<(StatusCode, Json<PairingCode>)> {
    let p = connector::pair(&api, &tenant(&api, &user, tid).await?).await?;
    Ok((
        StatusCode::CREATED,
        Json(PairingCode {
            pairing_code: p.code,
            expires_at: store::rfc3339(p.expires_at),
        }),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct IssuedToken {
    connector_id: i32,
    pub(super) token: String,
    pub(super) relay_url: String,
    pub(super) expires_at: String,
}

/// Issue a new connector token; the previous one is revoked at once (its socket closed).
#[utoipa::path(
    post,
    path = "/api/instituicao/{tid}/connector/token",
    params(("tid" = i32, Path)),
    responses((status = 200, body = IssuedToken), (status = 401), (status = 403), (status = 404))
)]
pub(super) async fn renew_token(
    State(api): St,
    user: User,
    P(tid): P<i32>,
) -> ApiResult<Json<IssuedToken>> {
    let issued = connector::renew(&api, &tenant(&api, &user, tid).await?).await?;
    Ok(Json(IssuedToken {
        connector_id: issued.connector_id,
        token: issued.token,
        relay_url: api.cfg.relay_public_url.clone(),
        expires_at: store::rfc3339(issued.expires_at),
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConnectorStatusView {
    pub(super) paired: bool,
    pub(super) status: ConnectorStatus,
    connector_id: Option<i32>,
    pub(super) name: Option<String>,
    pub(super) version: Option<String>,
    pub(super) last_heartbeat: Option<String>,
    pub(super) connected_since: Option<String>,
    pub(super) token_expires_at: Option<String>,
    /// The token expires within 7 days and this connector cannot be sent a new one
    /// over the tunnel (it does not speak `token-rotate`, or is not connected): renew
    /// it and store the new token on the connector, or it will be locked out.
    pub(super) token_expiring: bool,
    /// Another install with this connector's token tried to connect while this one was
    /// live (two copies of one config): the live connection is kept and the newer ones
    /// are refused. Present for 10 minutes after the last refusal.
    pub(super) duplicate: Option<DuplicateView>,
    #[schema(value_type = Option<Object>)]
    pub(super) metadata: Option<Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DuplicateView {
    /// Connections refused since the duplicate was detected.
    pub(super) refused_connections: u64,
    pub(super) last_refused_at: String,
}

/// The institution's connector: status, name, version, last heartbeat.
#[utoipa::path(
    get,
    path = "/api/instituicao/{tid}/connector/status",
    params(("tid" = i32, Path)),
    responses((status = 200, body = ConnectorStatusView), (status = 401), (status = 403), (status = 404))
)]
pub(super) async fn connector_status(
    State(api): St,
    user: User,
    P(tid): P<i32>,
) -> ApiResult<Json<ConnectorStatusView>> {
    let status = connector::status(&api, &tenant(&api, &user, tid).await?).await?;
    let connected_since = status.connected_since();
    let con = status.connector;
    Ok(Json(ConnectorStatusView {
        paired: status.paired,
        status: status.status,
        connector_id: con.as_ref().map(|c| c.id),
        version: con.as_ref().and_then(|c| c.version.clone()),
        last_heartbeat: con
            .as_ref()
            .and_then(|c| c.last_heartbeat)
            .map(store::rfc3339),
        connected_since: connected_since.map(store::rfc3339),
        token_expiring: status.token_expiring,
        duplicate: status.duplicate.map(|c| DuplicateView {
            refused_connections: c.refused,
            last_refused_at: store::rfc3339(
                chrono::DateTime::<chrono::Utc>::from(c.last_refused).naive_utc(),
            ),
        }),
        token_expires_at: con
            .as_ref()
            .and_then(|c| c.token_expires_at)
            .map(store::rfc3339),
        name: con.as_ref().map(|c| c.name.clone()),
        metadata: con.and_then(|c| c.metadata).map(|m| m.0),
    }))
}

/// Unpair: the token is revoked and the connector's socket closed.
#[utoipa::path(
    delete,
    path = "/api/instituicao/{tid}/connector",
    params(("tid" = i32, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404))
)]
pub(super) async fn unpair(State(api): St, user: User, P(tid): P<i32>) -> ApiResult<StatusCode> {
    connector::unpair(&api, &tenant(&api, &user, tid).await?).await?;
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
pub(super) async fn claim(State(api): St, req: Request) -> ApiResult<Json<IssuedToken>> {
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
