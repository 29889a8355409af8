//! The institution's connector: a pairing code, token renewal, its status (the store's
//! row with the relay's live view over it), unpairing. The claim that exchanges a code
//! for a token is public, not a tenant's action, and stays with its route.

use super::access::Tenant;
use super::{audit, audit_entry, Result};
use crate::auth;
use crate::error::ApiError;
use crate::store::{self, ConnectorStatus, Ts};
use crate::Api;
use ponte_core::router::Conflict;
use tracing::info;

/// A one-time pairing code.
pub(crate) struct Pairing {
    pub code: String,
    pub expires_at: Ts,
}

/// Creates a one-time pairing code (`pairing_ttl`, 15 min) for the institution's
/// connector.
pub(crate) async fn pair(api: &Api, t: &Tenant<'_>) -> Result<Pairing> {
    let (user, tid) = (t.user(), t.id());
    let code = auth::pairing_code();
    let expires_at = store::now()
        + chrono::TimeDelta::from_std(api.cfg.pairing_ttl).unwrap_or(chrono::TimeDelta::MAX);
    api.store
        .start_pairing(tid, &auth::digest(&code), expires_at, Some(user.id))
        .await?;
    audit(api, audit_entry("connector.pair", Some(user), tid));
    Ok(Pairing { code, expires_at })
}

/// A connector token, shown once.
pub(crate) struct Issued {
    pub connector_id: i32,
    pub token: String,
    pub expires_at: Ts,
}

/// Issues a new connector token; the previous one is revoked at once (its socket
/// closed).
pub(crate) async fn renew(api: &Api, t: &Tenant<'_>) -> Result<Issued> {
    let (user, tid) = (t.user(), t.id());
    let con = api.store.ensure_connector(tid).await?;
    let new = api.issuer.mint(con.id, con.client_id, tid);
    api.store
        .set_token(con.id, &new.jti, new.expires_at)
        .await?;
    api.router.disconnect(&con.id.to_string(), "token renewed");
    audit(api, audit_entry("connector.token", Some(user), tid));
    info!(
        connector_id = con.id,
        tid, "connector token renewed; the previous one is revoked"
    );
    Ok(Issued {
        connector_id: con.id,
        token: new.token,
        expires_at: new.expires_at,
    })
}

/// The connector as the SaaS and the console show it.
pub(crate) struct Status {
    /// It has a current token.
    pub paired: bool,
    /// The relay's live view wins over a status row that a batch has not written yet.
    pub status: ConnectorStatus,
    /// Its token expires within the rotation horizon and it cannot be sent a new one
    /// over the tunnel ([`Api::token_expiring`]).
    pub token_expiring: bool,
    /// Another install with this connector's token is being refused.
    pub duplicate: Option<Conflict>,
    /// The row; `None` when the institution never had a connector.
    pub connector: Option<store::Connector>,
}

impl Status {
    /// Since when it is connected; `None` unless it is ONLINE now.
    pub fn connected_since(&self) -> Option<Ts> {
        let c = self.connector.as_ref()?;
        (self.status == ConnectorStatus::ONLINE)
            .then_some(c.connected_since)
            .flatten()
    }
}

pub(crate) async fn status(api: &Api, t: &Tenant<'_>) -> Result<Status> {
    let Some(con) = api.store.connector_of(t.id()).await? else {
        return Ok(Status {
            paired: false,
            status: ConnectorStatus::OFFLINE,
            token_expiring: false,
            duplicate: None,
            connector: None,
        });
    };
    let paired = con.token_id.is_some();
    let online = paired && api.router.is_online(&con.id.to_string());
    let status = match (online, con.status) {
        (true, _) => ConnectorStatus::ONLINE,
        (false, ConnectorStatus::ONLINE) => ConnectorStatus::OFFLINE,
        (false, s) => s,
    };
    Ok(Status {
        paired,
        status,
        token_expiring: api.token_expiring(&con),
        duplicate: api.router.conflict(&con.id.to_string()),
        connector: Some(con),
    })
}

/// Unpairs: the token is revoked and the connector's socket closed.
pub(crate) async fn unpair(api: &Api, t: &Tenant<'_>) -> Result<()> {
    let (user, tid) = (t.user(), t.id());
    let con = api.store.unpair(tid, store::now()).await?.ok_or_else(|| {
        ApiError::not_found("CONNECTOR_NOT_FOUND", "the institution has no connector")
    })?;
    api.router.disconnect(&con.id.to_string(), "unpaired");
    audit(api, audit_entry("connector.unpair", Some(user), tid));
    info!(connector_id = con.id, tid, "connector unpaired");
    Ok(())
}
