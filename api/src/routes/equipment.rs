//! `…/equipamento/:eid`: register, update and read equipment, its `config` with the
//! password write-only.

use super::extract::{J, P};
use super::{ApiResult, St};
use crate::auth::User;
use crate::error::ApiError;
use crate::service::access::tenant;
use crate::service::equipment;
use crate::store::{self, EquipmentConfig};
use axum::extract::State;
use axum::Json;
use ponte_protocol::limits;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct EquipmentView {
    /// Read-only: the id is in the path.
    #[serde(default, skip_deserializing)]
    id: i32,
    pub(super) name: String,
    #[serde(default)]
    pub(super) usa_addon: bool,
    /// `{localBaseUrl, tlsInsecure, login, password, modo}`. `password` is write-only:
    /// reads omit it, and a write without it keeps the stored one.
    #[serde(default)]
    pub(super) config: Option<EquipmentConfig>,
    #[serde(default)]
    pub(super) brand: Option<String>,
    #[serde(default)]
    pub(super) model: Option<String>,
    #[serde(default)]
    pub(super) ip: Option<String>,
    #[serde(default = "yes")]
    pub(super) active: bool,
}

fn yes() -> bool {
    true
}

/// `e` as the API shows it: never its password (the service leaves it out already).
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
pub(super) async fn put_equipment(
    State(api): St,
    user: User,
    P((tid, eid)): P<(i32, i32)>,
    J(body): J<EquipmentView>,
) -> ApiResult<Json<EquipmentView>> {
    let t = tenant(&api, &user, tid).await?;
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    let config = body.config;
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
    let eq = store::Equipment {
        id: eid,
        tenant_id: tid,
        name: body.name.trim().to_owned(),
        brand: body.brand,
        model: body.model,
        ip: body.ip,
        active: body.active,
        uses_addon: body.usa_addon,
        config: config.map(sqlx::types::Json),
    };
    let saved = equipment::put(&api, &t, eq).await?;
    Ok(Json(view(saved)))
}

/// Read equipment.
#[utoipa::path(
    get,
    path = "/api/instituicao/{tid}/equipamento/{eid}",
    params(("tid" = i32, Path), ("eid" = i32, Path)),
    responses((status = 200, body = EquipmentView), (status = 401), (status = 403), (status = 404))
)]
pub(super) async fn get_equipment(
    State(api): St,
    user: User,
    P((tid, eid)): P<(i32, i32)>,
) -> ApiResult<Json<EquipmentView>> {
    let t = tenant(&api, &user, tid).await?;
    Ok(Json(view(equipment::get(&api, &t, eid).await?)))
}
