//! `…/remoto/sessoes`: open a remote UI session to a device, end one, list the
//! institution's sessions.

use super::extract::P;
use super::{ApiResult, St};
use crate::auth::User;
use crate::service::access::tenant;
use crate::service::sessions;
use crate::store::{self, SessionStatus};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

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
        (status = 409, description = "equipment does not use the addon or has no address, or the connector is not paired and ONLINE"),
    )
)]
pub(super) async fn create_session(
    State(api): St,
    user: User,
    P((tid, eid)): P<(i32, i32)>,
) -> ApiResult<(StatusCode, Json<CreatedSession>)> {
    let opened = sessions::open(&api, &tenant(&api, &user, tid).await?, eid).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedSession {
            session_id: opened.session.id,
            url: opened.url,
            expires_at: store::rfc3339(opened.session.expires_at),
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
    sessions::end(&api, &tenant(&api, &user, tid).await?, eid, &sid).await?;
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
    let rows = sessions::list(&api, &tenant(&api, &user, tid).await?).await?;
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
