//! What the API does, under both faces of it: the JSON routes (`routes/`) and the
//! console's pages (`routes/console/`). Each call checks the user's access to the
//! institution, acts, and queues its audit entry; it answers in domain types (store rows,
//! `chrono` times), which each face then writes out as JSON or HTML.
//!
//! Must never: format for a face (JSON strings, HTML), or be reached around: a route that
//! acts on a tenant goes through here, so access and audit are never skipped.

pub(crate) mod access;
pub(crate) mod connector;
pub(crate) mod device;
pub(crate) mod equipment;
pub(crate) mod publish;
pub(crate) mod sessions;

use crate::auth::User;
use crate::error::ApiError;
use crate::store;
use crate::Api;

pub(crate) type Result<T> = std::result::Result<T, ApiError>;

/// Queues an audit entry for an action already done (written in the background).
pub(crate) fn audit(api: &Api, entry: store::AuditEntry) {
    api.audit.record(entry)
}

/// An audit entry of `action` by `user` in institution `tid`, for the caller to fill.
pub(crate) fn audit_entry(action: &str, user: Option<&User>, tid: i32) -> store::AuditEntry {
    store::AuditEntry {
        action: action.into(),
        user_id: user.map(|u| u.id),
        tenant_id: tid,
        ..Default::default()
    }
}
