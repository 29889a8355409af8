//! What every tenant call looks up first: the user's grant for the institution, then
//! the equipment the call names; a miss is answered as the API's error.

use super::Result as ApiResult;
use crate::auth::User;
use crate::error::ApiError;
use crate::store;
use crate::Api;

/// A user's access to one institution, checked: what every tenant call takes, so none
/// can be made without the check.
pub(crate) struct Tenant<'u> {
    user: &'u User,
    id: i32,
    institution: store::Institution,
}

impl<'u> Tenant<'u> {
    pub fn user(&self) -> &'u User {
        self.user
    }
    pub fn id(&self) -> i32 {
        self.id
    }
    pub fn institution(&self) -> &store::Institution {
        &self.institution
    }
}

/// 403 unless the user may act on institution `tid`; then 404 if it does not exist.
pub(crate) async fn tenant<'u>(api: &Api, user: &'u User, tid: i32) -> ApiResult<Tenant<'u>> {
    if !user.may_access(tid) {
        return Err(ApiError::forbidden(format!(
            "no access to institution {tid}"
        )));
    }
    let institution = api.store.institution(tid).await?.ok_or_else(|| {
        ApiError::not_found(
            "INSTITUTION_NOT_FOUND",
            format!("institution {tid} does not exist"),
        )
    })?;
    Ok(Tenant {
        user,
        id: tid,
        institution,
    })
}

pub(crate) async fn equipment(api: &Api, tid: i32, eid: i32) -> ApiResult<store::Equipment> {
    api.store.equipment(tid, eid).await?.ok_or_else(|| {
        ApiError::not_found(
            "EQUIPMENT_NOT_FOUND",
            format!("equipment {eid} not found in institution {tid}"),
        )
    })
}
