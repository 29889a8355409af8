//! `…/remoto/sessoes`: open a remote UI session to a device, end one, list the
//! institution's sessions.

use super::access::{equipment, paired_connector, tenant};
use super::audit_log::{audit, audit_entry};
use super::extract::P;
use super::{ApiResult, St};
use crate::auth::User;
use crate::error::ApiError;
use crate::store::{self, SessionStatus};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use tracing::info;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreatedSession {
    session_id: String,
    /// One-time launch URL on the gateway origin.
    pub(super) url: String,
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
pub(super) async fn create_session(
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
pub(super) async fn end_session(
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
pub(super) struct SessionView {
    pub(super) session_id: String,
    pub(super) status: SessionStatus,
    user_id: i32,
    pub(super) user_name: String,
    pub(super) equipment_id: i32,
    pub(super) equipment_name: String,
    pub(super) created_at: String,
    pub(super) expires_at: String,
    pub(super) ended_at: Option<String>,
    pub(super) requests: i32,
    pub(super) bytes: i64,
}

/// Remote sessions of the institution, newest first (audit).
#[utoipa::path(
    get,
    path = "/api/instituicao/{tid}/remoto/sessoes",
    params(("tid" = i32, Path)),
    responses((status = 200, body = Vec<SessionView>), (status = 401), (status = 403))
)]
pub(super) async fn list_sessions(
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
