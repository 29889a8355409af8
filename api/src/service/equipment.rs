//! Equipment: read one, register or update one (its `config.password` write-only: an
//! update without one keeps the stored one).

use super::access::{equipment, Tenant};
use super::{audit, audit_entry, Result};
use crate::error::ApiError;
use crate::store::{self, Equipment};
use crate::Api;

/// Equipment `eid` of `tid`, its password left out.
pub(crate) async fn get(api: &Api, t: &Tenant<'_>, eid: i32) -> Result<Equipment> {
    Ok(without_password(equipment(api, t.id(), eid).await?))
}

/// Saves `eq` (checked by the caller) as equipment `eq.id` of the institution; the
/// saved row without its password.
pub(crate) async fn put(api: &Api, t: &Tenant<'_>, mut eq: Equipment) -> Result<Equipment> {
    let (user, tid, eid) = (t.user(), t.id(), eq.id);
    eq.tenant_id = tid;
    if let Some(c) = eq.config.as_mut().filter(|c| c.password.is_none()) {
        let old = api.store.equipment(tid, eid).await?;
        c.password = old.and_then(|o| o.config).and_then(|o| o.0.password);
    }
    let saved = api.store.put_equipment(&eq).await.map_err(|e| match e {
        // The id belongs to another institution: answered like any id this tenant does
        // not have, so nobody learns which ids exist elsewhere.
        store::StoreError::Conflict(_) => ApiError::not_found(
            "EQUIPMENT_NOT_FOUND",
            format!("equipment {eid} not found in institution {tid}"),
        ),
        other => other.into(),
    })?;
    let mut entry = audit_entry("equipment.put", Some(user), tid);
    entry.equipment_id = Some(eid);
    audit(api, entry);
    Ok(without_password(saved))
}

fn without_password(mut e: Equipment) -> Equipment {
    if let Some(c) = e.config.as_mut() {
        c.password = None;
    }
    e
}
