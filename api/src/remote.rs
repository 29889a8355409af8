//! The API's side of the remote-UI gateway ([`SessionAuthority`]): a launch code becomes
//! a signed grant naming session, user and tenant; every gateway request is checked
//! against the session (ATIVA, not expired, same user and tenant) and the rate limits.

use crate::service::device::{device, Waiter};
use crate::sessions::SessionError;
use crate::store;
use crate::Api;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ponte_core::session::{Admitted, Denied, Launched, SessionAuthority};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tracing::info;

/// What the `__ponte_rs` cookie carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Grant {
    sid: String,
    uid: i32,
    tid: i32,
    /// The session's absolute cap.
    exp: i64,
}

pub struct RemoteAuthority {
    api: Arc<Api>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Grants whose signature was checked, by their exact text: the HMAC and JSON of
    /// a check were a sixth of the cloud's instructions per gateway request. Their
    /// expiry is still checked on every use; cleared when [`MAX_VERIFIED`] is reached.
    verified: std::sync::Mutex<std::collections::HashMap<String, Grant>>,
}

/// Verified grants remembered (a few hundred bytes each).
const MAX_VERIFIED: usize = 4096;

impl RemoteAuthority {
    /// `secret` is the data directory's secret; grants get a key derived from it, so
    /// every node with the same data directory accepts them and nothing else does.
    pub fn new(api: Arc<Api>, secret: &[u8]) -> Arc<Self> {
        let key = Sha256::new()
            .chain_update(b"ponte remote-ui grant v1\0")
            .chain_update(secret)
            .finalize();
        Arc::new(Self {
            api,
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            verified: Default::default(),
        })
    }
}

fn denied(e: SessionError) -> Denied {
    match e {
        SessionError::NotFound => Denied::NotFound,
        SessionError::Expired => Denied::Expired,
        SessionError::Ended => Denied::Ended,
        SessionError::Store(e) => Denied::Unavailable(e.to_string()),
    }
}

fn limited(l: crate::ratelimit::Limited) -> Denied {
    Denied::Limited {
        retry_after_secs: l.retry_after_secs(),
    }
}

impl RemoteAuthority {
    /// The grant's claims if its signature is ours and it has not expired.
    fn verify(&self, grant: &str) -> Result<Grant, Denied> {
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(grant)
            .cloned();
        if let Some(g) = known {
            // As jsonwebtoken checks it, without leeway.
            if u64::try_from(g.exp).unwrap_or(0) < jsonwebtoken::get_current_timestamp() {
                return Err(Denied::Expired);
            }
            return Ok(g);
        }
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.validate_aud = false;
        let g = jsonwebtoken::decode::<Grant>(grant, &self.decoding, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Denied::Expired,
                _ => Denied::WrongGrant,
            })?
            .claims;
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= MAX_VERIFIED {
            verified.clear();
        }
        verified.insert(grant.to_owned(), g.clone());
        Ok(g)
    }
}

#[async_trait::async_trait]
impl SessionAuthority for RemoteAuthority {
    async fn launch(&self, code: &str, session_id: Option<&str>) -> Result<Launched, Denied> {
        let s = self
            .api
            .sessions
            .launch(code, session_id)
            .await
            .map_err(|e| match e {
                SessionError::NotFound => Denied::LaunchUsed,
                other => denied(other),
            })?;
        let grant = Grant {
            sid: s.id.clone(),
            uid: s.user_id,
            tid: s.tenant_id,
            exp: s.hard_limit.and_utc().timestamp(),
        };
        let grant = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &grant, &self.encoding)
            .map_err(|e| Denied::Unavailable(e.to_string()))?;
        let max_age = (s.hard_limit - store::now()).to_std().unwrap_or_default();
        let entry = store::AuditEntry {
            action: "session.launch".into(),
            user_id: Some(s.user_id),
            tenant_id: s.tenant_id,
            equipment_id: Some(s.equipment_id),
            detail: Some(serde_json::json!({"sessionId": s.id})),
            ..Default::default()
        };
        self.api.audit.record(entry);
        info!(session_id = %s.id, user_id = s.user_id, tid = s.tenant_id, "remote session launched");
        Ok(Launched {
            session_id: s.id,
            grant,
            max_age,
        })
    }

    async fn admit(&self, session_id: &str, grant: Option<&str>) -> Result<Admitted, Denied> {
        let Some(grant) = grant else {
            // Without its grant, a request to a session that is over (a service worker of
            // that session fetching without credentials) hears that it is over, as one
            // with the grant does: 410.
            return Err(match self.api.sessions.over(session_id).await {
                Ok(Some(e)) => denied(e),
                _ => Denied::NoGrant,
            });
        };
        let g = self.verify(grant)?;
        if g.sid != session_id {
            return Err(Denied::WrongGrant);
        }
        // Taken before the check: a session ended after the check still cancels it, and
        // one ended before is refused by the check (and its entry dropped).
        let ended = self.api.sessions.streams(session_id);
        let s = match self.api.sessions.check(session_id).await {
            Ok(s) => s,
            Err(e) => {
                if !matches!(e, SessionError::Store(_)) {
                    self.api.sessions.release(session_id);
                }
                return Err(denied(e));
            }
        };
        if s.user_id != g.uid || s.tenant_id != g.tid {
            return Err(Denied::WrongGrant);
        }
        self.api.limits.session(session_id).map_err(limited)?;
        self.api.limits.connector(s.connector_id).map_err(limited)?;
        let device = device(&self.api, s.tenant_id, s.equipment_id).await?;
        Ok(Admitted {
            connector_id: device.connector_id.to_string(),
            timeout: device.timeout(Waiter::Browser),
            base_url: device.base_url,
            tls_insecure: device.tls_insecure,
            ended,
        })
    }

    fn record(&self, session_id: &str, bytes: u64) {
        self.api.sessions.record(session_id, bytes);
    }

    fn activity(&self, session_id: &str, bytes: u64) {
        if self.api.sessions.activity(session_id, bytes) {
            // Off the WebSocket's copy loop: a store write must not stall its messages.
            let api = Arc::clone(&self.api);
            let id = session_id.to_owned();
            tokio::spawn(async move { api.sessions.keep_alive(&id).await });
        }
    }
}
