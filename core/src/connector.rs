//! Connectors as the cloud roles share them: the claims of a connector token (the API
//! signs them, the relay verifies them) and the directory the relay asks and tells about
//! connectors (the API implements it over the store).

use futures_util::future::BoxFuture;
use ponte_protocol::Hello;
use serde::{Deserialize, Serialize};

/// Claims of a connector token (DESIGN.md "Connector JWT").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorClaims {
    /// Connector id.
    pub sub: String,
    /// Client (cliente) id.
    #[serde(default)]
    pub cli: Option<i64>,
    /// Institution (tenant) id.
    #[serde(default)]
    pub tid: Option<i64>,
    /// Token id; must be the connector's current one.
    pub jti: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

/// What the relay reports about connectors. Implementations must not block: the store
/// batches these (a heartbeat per PING per connector must not become a database write).
#[derive(Debug, Clone)]
pub enum ConnectorEvent {
    Connected { claims: ConnectorClaims },
    Hello { connector_id: String, hello: Hello },
    Heartbeat { connector_id: String },
    Disconnected { connector_id: String },
}

/// The relay's view of the connector store.
pub trait ConnectorDirectory: Send + Sync + 'static {
    /// Is `claims.jti` the current token of connector `claims.sub`?
    fn token_is_current(&self, claims: &ConnectorClaims) -> BoxFuture<'_, Result<bool, String>>;

    /// Fire-and-forget notification.
    fn on_event(&self, _event: ConnectorEvent) {}
}
