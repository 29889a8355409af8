//! Where a request for a piece of equipment goes: its connector, base URL, TLS and
//! timeout. The one resolution for every caller (proxy-http, remote sessions, published
//! routes, and the checks when a session or route is created), so a device that cannot
//! be reached is refused for the same reasons everywhere; each caller only words the
//! refusal its own way ([`Unreachable`] into an API error or a gateway denial).

use crate::error::ApiError;
use crate::store::{self, StoreError};
use crate::Api;
use ponte_core::published::RouteDenied;
use ponte_core::session::Denied;
use ponte_protocol::limits;
use std::time::Duration;

/// How long a browser (a remote session's page, a published route's visitor) waits for
/// a device's response head, once the request (its body included) has been sent, unless
/// the equipment sets `config.timeoutMs`. Shorter than an API call's default
/// ([`limits::DEFAULT_TIMEOUT`], 60 s, which the caller can set per call): a page should
/// show its error before its user gives up on it.
pub(crate) const BROWSER_TIMEOUT: Duration = Duration::from_secs(30);

/// Who waits for the device, which sets the default timeout.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Waiter {
    /// An API caller (proxy-http), who can also ask its own `timeoutMs`.
    Api,
    /// A browser, through the gateway.
    Browser,
}

/// A device that can be sent requests.
#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub connector_id: i32,
    /// `config.localBaseUrl`, else `http://<ip>`, without a trailing `/`.
    pub base_url: String,
    pub tls_insecure: bool,
    /// The equipment's own `config.timeoutMs`, if it sets one.
    pub own_timeout: Option<Duration>,
}

impl Device {
    /// The equipment's timeout, else `waiter`'s default.
    pub fn timeout(&self, waiter: Waiter) -> Duration {
        self.own_timeout.unwrap_or(match waiter {
            Waiter::Api => limits::DEFAULT_TIMEOUT,
            Waiter::Browser => BROWSER_TIMEOUT,
        })
    }
}

/// Why a device cannot be sent requests, in the order it is checked.
#[derive(Debug)]
pub(crate) enum Unreachable {
    /// No such equipment in the institution (or it was removed).
    NoEquipment,
    /// The equipment does not use the connector addon.
    AddonDisabled,
    /// Neither `config.localBaseUrl` nor an IP address.
    NoAddress,
    /// The institution has no connector with a current token.
    NotPaired,
    Store(StoreError),
}

impl From<StoreError> for Unreachable {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoEquipment => "the equipment does not exist (or was removed)",
            Self::AddonDisabled => "the equipment does not use the connector addon",
            Self::NoAddress => "the equipment has no localBaseUrl or IP address",
            Self::NotPaired => "the institution has no paired connector",
            Self::Store(e) => return write!(f, "{e}"),
        })
    }
}

/// The part of [`device`] that asks only the equipment row: it uses the addon and has
/// an address. Its base URL.
pub(crate) fn target(eq: &store::Equipment) -> Result<String, Unreachable> {
    if !eq.uses_addon {
        return Err(Unreachable::AddonDisabled);
    }
    eq.base_url().ok_or(Unreachable::NoAddress)
}

/// Equipment `eid` of institution `tid` as a device: it exists, uses the addon, has an
/// address, and its institution's connector is paired. Whether that connector is
/// connected now is the router's to say (an offline one is a 502 at send time).
pub(crate) async fn device(api: &Api, tid: i32, eid: i32) -> Result<Device, Unreachable> {
    let eq = api
        .store
        .equipment(tid, eid)
        .await?
        .ok_or(Unreachable::NoEquipment)?;
    let base_url = target(&eq)?;
    let con = paired_connector(api, tid).await?;
    Ok(Device {
        connector_id: con.id,
        base_url,
        tls_insecure: eq.tls_insecure(),
        own_timeout: eq.timeout(),
    })
}

/// The institution's connector, if it is paired (has a current token).
async fn paired_connector(api: &Api, tid: i32) -> Result<store::Connector, Unreachable> {
    api.store
        .connector_of(tid)
        .await?
        .filter(|c| c.token_id.is_some())
        .ok_or(Unreachable::NotPaired)
}

impl Unreachable {
    /// For an API caller, who named equipment `eid` of `tid`: 404 for equipment that is
    /// not there, 409 with the reason's code for one that cannot be reached.
    pub fn into_api(self, tid: i32, eid: i32) -> ApiError {
        match self {
            Self::NoEquipment => ApiError::not_found(
                "EQUIPMENT_NOT_FOUND",
                format!("equipment {eid} not found in institution {tid}"),
            ),
            Self::AddonDisabled => ApiError::conflict(
                "ADDON_DISABLED",
                format!("equipment {eid} does not use the connector addon"),
            ),
            Self::NoAddress => ApiError::conflict(
                "NO_DEVICE_ADDRESS",
                format!("equipment {eid} has no localBaseUrl or IP address"),
            ),
            Self::NotPaired => ApiError::conflict(
                "CONNECTOR_NOT_PAIRED",
                format!("institution {tid} has no paired connector"),
            ),
            Self::Store(e) => e.into(),
        }
    }
}

/// For a remote session's browser: the session exists but its device cannot be
/// reached now (503, the reason in the log only).
impl From<Unreachable> for Denied {
    fn from(e: Unreachable) -> Self {
        Denied::Unavailable(e.to_string())
    }
}

/// For a published route's visitor, likewise.
impl From<Unreachable> for RouteDenied {
    fn from(e: Unreachable) -> Self {
        RouteDenied::Unavailable(e.to_string())
    }
}
