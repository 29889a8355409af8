//! `…/auditoria`: the institution's audit log, newest first.

use super::extract::P;
use super::{ApiResult, St};
use crate::auth::User;
use crate::service::access::tenant;
use crate::store;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AuditView {
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
pub(super) async fn list_audit(
    State(api): St,
    user: User,
    P(tid): P<i32>,
) -> ApiResult<Json<Vec<AuditView>>> {
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
