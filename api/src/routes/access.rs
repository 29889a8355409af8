//! What every tenant route looks up first: the user's grant for the institution, then
//! the equipment or connector the call names; a miss is answered as the API's error.

use super::ApiResult;
use crate::auth::User;
use crate::error::ApiError;
use crate::store;
use crate::Api;

/// 403 unless the user may act on institution `tid`; then 404 if it does not exist.
pub(super) async fn tenant(api: &Api, user: &User, tid: i32) -> ApiResult<store::Institution> {
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

pub(super) async fn equipment(api: &Api, tid: i32, eid: i32) -> ApiResult<store::Equipment> {
    api.store.equipment(tid, eid).await?.ok_or_else(|| {
        ApiError::not_found(
            "EQUIPMENT_NOT_FOUND",
            format!("equipment {eid} not found in institution {tid}"),
        )
    })
}

/// The institution's connector, if it is paired (has a current token).
pub(super) async fn paired_connector(api: &Api, tid: i32) -> ApiResult<store::Connector> {
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
