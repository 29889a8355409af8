//! Connector authentication: RS256 JWT in the upgrade request, checked before the
//! upgrade, plus the question only the store can answer — is this `jti` still current?

use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ponte_core::connector::{ConnectorClaims, ConnectorDirectory, ConnectorEvent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use std::time::{SystemTime, UNIX_EPOCH};

    const KEY: &[u8] = include_bytes!("../../tests/fixtures/connector-key.pem");
    const PUB: &[u8] = include_bytes!("../../tests/fixtures/connector-key.pub.pem");
    const OTHER_KEY: &[u8] = include_bytes!("../../tests/fixtures/other-key.pem");
    const OTHER_PUB: &[u8] = include_bytes!("../../tests/fixtures/other-key.pub.pem");

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// Signs `claims` as the API's issuer does (RS256) with the private key `pem`.
    fn sign(pem: &[u8], claims: &serde_json::Value) -> String {
        let key = EncodingKey::from_rsa_pem(pem).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
    }

    fn claims(exp: i64) -> serde_json::Value {
        serde_json::json!({"sub": "5", "cli": 6, "tid": 7, "jti": "j1", "exp": exp})
    }

    #[test]
    fn a_token_signed_by_the_issuer_yields_its_claims() {
        let v = TokenVerifier::from_rsa_pems(&[PUB]).unwrap();
        let exp = now() + 600;
        let c = v.verify(&sign(KEY, &claims(exp))).unwrap();
        assert_eq!(
            c,
            ConnectorClaims {
                sub: "5".into(),
                cli: Some(6),
                tid: Some(7),
                jti: "j1".into(),
                exp: exp as u64,
            }
        );
    }

    #[test]
    fn expiry_is_refused_as_such_after_the_leeway() {
        let v = TokenVerifier::from_rsa_pems(&[PUB]).unwrap();
        // Within the 30 s leeway a slightly skewed clock is forgiven.
        assert!(v.verify(&sign(KEY, &claims(now() - 5))).is_ok());
        assert!(matches!(
            v.verify(&sign(KEY, &claims(now() - 120))),
            Err(AuthError::Expired)
        ));
    }

    #[test]
    fn a_token_signed_by_another_key_or_mangled_is_invalid() {
        let v = TokenVerifier::from_rsa_pems(&[PUB]).unwrap();
        let exp = now() + 600;
        assert!(matches!(
            v.verify(&sign(OTHER_KEY, &claims(exp))),
            Err(AuthError::Invalid(_))
        ));
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(exp),
            &EncodingKey::from_secret(PUB),
        )
        .unwrap();
        assert!(matches!(v.verify(&hs), Err(AuthError::Invalid(_))));
        assert!(matches!(v.verify("not.a.jwt"), Err(AuthError::Invalid(_))));
        let no_jti = serde_json::json!({"sub": "5", "exp": exp});
        assert!(matches!(
            v.verify(&sign(KEY, &no_jti)),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn during_a_key_rollover_either_key_verifies() {
        let v = TokenVerifier::from_rsa_pems(&[OTHER_PUB, PUB]).unwrap();
        let exp = now() + 600;
        assert_eq!(v.verify(&sign(KEY, &claims(exp))).unwrap().sub, "5");
        assert_eq!(v.verify(&sign(OTHER_KEY, &claims(exp))).unwrap().sub, "5");
        // An expired token is expired whichever key comes first.
        assert!(matches!(
            v.verify(&sign(KEY, &claims(now() - 120))),
            Err(AuthError::Expired)
        ));
        let none = TokenVerifier::from_rsa_pems(&[]).unwrap();
        assert!(matches!(
            none.verify(&sign(KEY, &claims(exp))),
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn only_the_connectors_current_jti_is_accepted() {
        let dir = StaticDirectory::new();
        let c = |sub: &str, jti: &str| ConnectorClaims {
            sub: sub.into(),
            cli: None,
            tid: None,
            jti: jti.into(),
            exp: 0,
        };
        assert!(!dir.token_is_current(&c("5", "j1")).await.unwrap());
        dir.set_current("5", "j1");
        assert!(dir.token_is_current(&c("5", "j1")).await.unwrap());
        assert!(!dir.token_is_current(&c("5", "j0")).await.unwrap());
        assert!(!dir.token_is_current(&c("6", "j1")).await.unwrap());
        // Renewal replaces the jti: the old token is revoked at once.
        dir.set_current("5", "j2");
        assert!(!dir.token_is_current(&c("5", "j1")).await.unwrap());
        assert!(dir.token_is_current(&c("5", "j2")).await.unwrap());
    }

    #[test]
    fn the_directory_keeps_the_latest_ten_thousand_events() {
        let dir = StaticDirectory::new();
        for i in 0..10_001 {
            dir.on_event(ConnectorEvent::Heartbeat {
                connector_id: i.to_string(),
            });
        }
        let events = dir.events();
        assert_eq!(events.len(), 10_000);
        let id = |e: &ConnectorEvent| match e {
            ConnectorEvent::Heartbeat { connector_id } => connector_id.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(id(&events[0]), "1");
        assert_eq!(id(&events[9_999]), "10000");
    }
}
