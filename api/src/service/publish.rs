//! Published routes of a device: publish (its request checked by the route first), list
//! with their use, end one (DESIGN.md "Published routes").

use super::access::{equipment, Tenant};
use super::device::target;
use super::{audit, audit_entry, Result};
use crate::error::ApiError;
use crate::store::{self, NewPublicRoute, PublicRoute};
use crate::Api;
use tracing::info;

/// A new route, checked field by field; `given`: the caller chose the slug (a taken one
/// is then the caller's mistake, where a random one is drawn again).
pub(crate) struct Publish {
    pub route: NewPublicRoute,
    pub given: bool,
}

/// Publishes a route for equipment `eid`, once `checked` has read it (after the checks
/// below, so a request for equipment that cannot be published hears that first). The
/// equipment must use the addon and have an
/// address (a route to it could never be served); its connector need not be paired
/// yet: a route outlives re-pairing and is served once a connector is there.
pub(crate) async fn publish(
    api: &Api,
    t: &Tenant<'_>,
    eid: i32,
    checked: impl FnOnce() -> Result<Publish>,
) -> Result<PublicRoute> {
    let (user, tid) = (t.user(), t.id());
    let eq = equipment(api, tid, eid).await?;
    target(&eq).map_err(|e| e.into_api(tid, eid))?;
    if api.cfg.public_domain.is_none() {
        return Err(ApiError::conflict(
            "PUBLIC_DOMAIN_UNSET",
            "this server has no public domain for routes (set public_domain, \
             --public-domain or PONTE_PUBLIC_DOMAIN)",
        ));
    }
    let Publish {
        route: mut new,
        given,
    } = checked()?;
    let route = loop {
        match api.routes.create(&new).await {
            Ok(r) => break r,
            Err(store::StoreError::Conflict(_)) if given => {
                return Err(ApiError::conflict(
                    "SLUG_TAKEN",
                    format!("slug {:?} is already in use", new.slug),
                ))
            }
            // A random slug taken (about 1 in 10^17): draw another.
            Err(store::StoreError::Conflict(_)) => new.slug = random_slug(),
            Err(e) => return Err(e.into()),
        }
    };
    let mut entry = audit_entry("route.create", Some(user), tid);
    entry.equipment_id = Some(eid);
    entry.detail = Some(serde_json::json!({
        "routeId": route.id, "slug": route.slug, "paths": route.paths.0, "methods": route.methods.0,
    }));
    audit(api, entry);
    info!(route = %route.slug, tid, eid, user_id = user.id, "route published");
    Ok(route)
}

/// A random slug: 12 letters and digits, starting with a letter.
pub(crate) fn random_slug() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";
    let bytes = crate::auth::random_bytes::<12>();
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let n = if i == 0 { 25 } else { ALPHABET.len() };
            ALPHABET[usize::from(*b) % n] as char
        })
        .collect()
}

/// The equipment's routes, oldest first, with their use (what is pending written
/// first: counts are written in batches).
pub(crate) async fn list(api: &Api, t: &Tenant<'_>, eid: i32) -> Result<Vec<PublicRoute>> {
    let tid = t.id();
    equipment(api, tid, eid).await?;
    api.routes.flush().await;
    Ok(api.store.list_routes(tid, eid).await?)
}

/// Ends a route: new requests get 404 at once, open ones are cut.
pub(crate) async fn delete(api: &Api, t: &Tenant<'_>, eid: i32, id: i32) -> Result<()> {
    let (user, tid) = (t.user(), t.id());
    let gone = api.routes.delete(tid, eid, id).await?.ok_or_else(|| {
        ApiError::not_found("ROUTE_NOT_FOUND", "no such route for this equipment")
    })?;
    let mut entry = audit_entry("route.delete", Some(user), tid);
    entry.equipment_id = Some(eid);
    entry.detail = Some(serde_json::json!({"routeId": gone.id, "slug": gone.slug}));
    audit(api, entry);
    info!(route = %gone.slug, tid, eid, user_id = user.id, "route deleted");
    Ok(())
}
