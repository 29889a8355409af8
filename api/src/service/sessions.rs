//! Remote UI sessions: open one to a device (its one-time launch link), end one, list
//! the institution's.

use super::access::Tenant;
use super::device::device;
use super::{audit, audit_entry, Result};
use crate::error::ApiError;
use crate::store::{Session, SessionListing};
use crate::Api;
use tracing::info;

/// A session just opened, and the one-time launch URL on the gateway's origin.
pub(crate) struct Opened {
    pub session: Session,
    pub url: String,
}

/// Opens a remote session to equipment `eid`: it must be a device ([`device`]) whose
/// connector is ONLINE now, so a session is never created only to fail when launched.
pub(crate) async fn open(api: &Api, t: &Tenant<'_>, eid: i32) -> Result<Opened> {
    let (user, tid) = (t.user(), t.id());
    let d = device(api, tid, eid)
        .await
        .map_err(|e| e.into_api(tid, eid))?;
    if !api.router.is_online(&d.connector_id.to_string()) {
        return Err(ApiError::conflict(
            "CONNECTOR_OFFLINE",
            "the institution's connector is not ONLINE",
        ));
    }
    let (session, code) = api
        .sessions
        .create(tid, eid, d.connector_id, user.id)
        .await?;
    let mut entry = audit_entry("session.create", Some(user), tid);
    entry.equipment_id = Some(eid);
    entry.detail = Some(serde_json::json!({"sessionId": session.id}));
    audit(api, entry);
    info!(session_id = %session.id, tid, eid, user_id = user.id, "remote session created");
    let url = api.cfg.launch_url(&session.id, &code);
    Ok(Opened { session, url })
}

/// Ends a session and its open streams.
pub(crate) async fn end(api: &Api, t: &Tenant<'_>, eid: i32, sid: &str) -> Result<()> {
    let (user, tid) = (t.user(), t.id());
    api.sessions.end(tid, eid, sid).await?.ok_or_else(|| {
        ApiError::not_found("SESSION_NOT_FOUND", "no such session for this equipment")
    })?;
    let mut entry = audit_entry("session.end", Some(user), tid);
    entry.equipment_id = Some(eid);
    entry.detail = Some(serde_json::json!({"sessionId": sid}));
    audit(api, entry);
    Ok(())
}

/// The institution's sessions, newest first (at most 500), with true statuses: what is
/// due is expired and what is pending counted first.
pub(crate) async fn list(api: &Api, t: &Tenant<'_>) -> Result<Vec<SessionListing>> {
    api.sessions.maintain().await;
    Ok(api.store.list_sessions(t.id(), 500).await?)
}
