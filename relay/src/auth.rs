//! Connector authentication: RS256 JWT in the upgrade request, checked before the
//! upgrade, plus the question only the store can answer — is this `jti` still current?

use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ponte_protocol::Hello;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization: Bearer header")]
    Missing,
    #[error("invalid connector token: {0}")]
    Invalid(String),
    #[error("connector token expired")]
    Expired,
    #[error("connector token was revoked or replaced")]
    Revoked,
    #[error("token check failed: {0}")]
    Directory(String),
}

/// Verifies connector JWTs against one or more RS256 public keys (several during a key
/// rollover).
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<Vec<DecodingKey>>,
    validation: Validation,
}

impl TokenVerifier {
    pub fn from_rsa_pems(pems: &[&[u8]]) -> Result<Self, jsonwebtoken::errors::Error> {
        let keys = pems
            .iter()
            .map(|pem| DecodingKey::from_rsa_pem(pem))
            .collect::<Result<Vec<_>, _>>()?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Ok(Self {
            keys: Arc::new(keys),
            validation,
        })
    }

    pub fn verify(&self, token: &str) -> Result<ConnectorClaims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let mut last = AuthError::Invalid("no verification key configured".into());
        for key in self.keys.iter() {
            match jsonwebtoken::decode::<ConnectorClaims>(token, key, &self.validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                    return Err(AuthError::Expired)
                }
                Err(e) => last = AuthError::Invalid(e.to_string()),
            }
        }
        Err(last)
    }
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

/// In-memory directory: connector id → current `jti`. Used by tests and by deployments
/// that have no store yet; records events so tests can observe them.
#[derive(Default)]
pub struct StaticDirectory {
    current: Mutex<HashMap<String, String>>,
    events: Mutex<std::collections::VecDeque<ConnectorEvent>>,
}

impl StaticDirectory {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set_current(&self, connector_id: &str, jti: &str) {
        self.current
            .lock()
            .unwrap()
            .insert(connector_id.to_owned(), jti.to_owned());
    }

    pub fn events(&self) -> Vec<ConnectorEvent> {
        self.events.lock().unwrap().iter().cloned().collect()
    }
}

impl ConnectorDirectory for StaticDirectory {
    fn token_is_current(&self, claims: &ConnectorClaims) -> BoxFuture<'_, Result<bool, String>> {
        let ok = self.current.lock().unwrap().get(&claims.sub) == Some(&claims.jti);
        Box::pin(async move { Ok(ok) })
    }

    fn on_event(&self, event: ConnectorEvent) {
        // Bounded: tests only; keep the most recent events.
        let mut events = self.events.lock().unwrap();
        if events.len() >= 10_000 {
            events.pop_front();
        }
        events.push_back(event);
    }
}
