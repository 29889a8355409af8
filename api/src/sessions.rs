//! Remote UI sessions: creation, the one-time launch code, the per-request check the
//! gateway runs, sliding idle expiry, usage counters and ending a session's streams.
//!
//! Writes are coarse on purpose: the idle expiry moves at most once per `slide_step`
//! per session, and request/byte counters are summed in memory and flushed by
//! [`Sessions::maintain`], so a page that loads 80 assets costs no 80 database writes.

use crate::auth;
use crate::store::{self, NewSession, Session, SessionStatus, Store, StoreError, Ts};
use chrono::TimeDelta;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Idle TTL, sliding with use.
    pub idle: Duration,
    /// Absolute cap from creation.
    pub max: Duration,
    /// How long a launch URL stays usable.
    pub launch_ttl: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(10 * 60),
            max: Duration::from_secs(4 * 3600),
            launch_ttl: Duration::from_secs(120),
        }
    }
}

/// Why a session cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no such session")]
    NotFound,
    #[error("the session has expired")]
    Expired,
    #[error("the session was ended")]
    Ended,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Sessions {
    store: Arc<dyn Store>,
    cfg: SessionConfig,
    /// One token per session with live streams; cancelled when the session ends. Entries
    /// leave when the session ends or expires, so the map is bounded by live sessions.
    live: Mutex<HashMap<String, CancellationToken>>,
    /// Unflushed (requests, bytes) per session; bounded the same way.
    usage: Mutex<HashMap<String, (i32, i64)>>,
    /// When WebSocket traffic last slid each session's expiry; entries leave with
    /// [`Sessions::release`], so bounded by live sessions.
    slid: Mutex<HashMap<String, std::time::Instant>>,
    /// One [`Sessions::maintain`] at a time: a list's pass waits for one in flight (the
    /// maintenance loop's), so what it reads afterwards includes every count before it.
    maintaining: tokio::sync::Mutex<()>,
}

/// A twentieth of the idle TTL, at most 30 s: the expiry is written at most that often.
pub(crate) fn slide_step(idle: Duration) -> TimeDelta {
    delta(idle / 20).min(TimeDelta::seconds(30))
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Sessions {
    pub fn new(store: Arc<dyn Store>, cfg: SessionConfig) -> Self {
        Self {
            store,
            cfg,
            live: Mutex::default(),
            usage: Mutex::default(),
            slid: Mutex::default(),
            maintaining: tokio::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Creates a session; returns it and its one-time launch code.
    pub async fn create(
        &self,
        tenant_id: i32,
        equipment_id: i32,
        connector_id: i32,
        user_id: i32,
    ) -> Result<(Session, String), StoreError> {
        let now = store::now();
        let hard_limit = now + delta(self.cfg.max);
        let code = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            auth::random_bytes::<32>(),
        );
        let s = NewSession {
            id: uuid_v4(),
            equipment_id,
            connector_id,
            user_id,
            tenant_id,
            expires_at: (now + delta(self.cfg.idle)).min(hard_limit),
            hard_limit,
            launch_hash: auth::digest(&code),
            launch_expires_at: now + delta(self.cfg.launch_ttl),
        };
        Ok((self.store.create_session(&s).await?, code))
    }

    /// Exchanges a launch code (once) for its session; with `only`, only a code of that
    /// session is spent (another session's stays usable).
    pub async fn launch(&self, code: &str, only: Option<&str>) -> Result<Session, SessionError> {
        self.store
            .consume_launch(&auth::digest(code), store::now(), only)
            .await?
            .ok_or(SessionError::NotFound)
    }

    /// Why a session can no longer be used, read without sliding its expiry: `None`
    /// while it can (or when there is no such session).
    pub async fn over(&self, id: &str) -> Result<Option<SessionError>, StoreError> {
        let now = store::now();
        Ok(match self.store.session(id).await? {
            Some(s) if s.status == SessionStatus::ENCERRADA => Some(SessionError::Ended),
            Some(s) if s.status == SessionStatus::EXPIRADA || s.expires_at <= now => {
                Some(SessionError::Expired)
            }
            _ => None,
        })
    }

    /// The gateway's check for every request: the session exists, is ATIVA and not
    /// expired. Slides the idle expiry. The caller compares user and tenant.
    pub async fn check(&self, id: &str) -> Result<Session, SessionError> {
        let now = store::now();
        let mut s = self
            .store
            .session(id)
            .await?
            .ok_or(SessionError::NotFound)?;
        match s.status {
            SessionStatus::ENCERRADA => return Err(SessionError::Ended),
            SessionStatus::EXPIRADA => return Err(SessionError::Expired),
            SessionStatus::ATIVA if s.expires_at <= now => {
                self.expire(now).await;
                return Err(SessionError::Expired);
            }
            SessionStatus::ATIVA => {}
        }
        let wanted = (now + delta(self.cfg.idle)).min(s.hard_limit);
        if wanted - s.expires_at >= self.slide_step()
            && self.store.extend_session(id, wanted, now).await?
        {
            s.expires_at = wanted;
        }
        Ok(s)
    }

    /// Moving the expiry by less than this is not worth a write.
    fn slide_step(&self) -> TimeDelta {
        slide_step(self.cfg.idle)
    }

    /// A token cancelled when the session ends or expires: the gateway ties every
    /// stream of the session to it.
    pub fn streams(&self, id: &str) -> CancellationToken {
        self.live
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .child_token()
    }

    /// Counts one request and its bytes (flushed by [`Sessions::maintain`]).
    pub fn record(&self, id: &str, bytes: u64) {
        let mut usage = self.usage.lock().unwrap();
        let e = usage.entry(id.to_owned()).or_default();
        e.0 = e.0.saturating_add(1);
        e.1 = e.1.saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Traffic on a stream that outlives its request (a device WebSocket): counts its
    /// bytes (flushed by [`Sessions::maintain`]; not a request). True when the idle expiry
    /// is due to slide ([`Sessions::keep_alive`]): at most once per slide step per
    /// session, so a busy socket costs no store work per message.
    pub fn activity(&self, id: &str, bytes: u64) -> bool {
        {
            let mut usage = self.usage.lock().unwrap();
            let e = usage.entry(id.to_owned()).or_default();
            e.1 = e.1.saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let step = self.slide_step().to_std().unwrap_or_default();
        let now = std::time::Instant::now();
        let mut slid = self.slid.lock().unwrap();
        match slid.get(id) {
            Some(t) if now.duration_since(*t) < step => false,
            _ => {
                slid.insert(id.to_owned(), now);
                true
            }
        }
    }

    /// Slides the idle expiry of a session still in use, as a request's check does (an
    /// ended or expired one stays so).
    pub async fn keep_alive(&self, id: &str) {
        if let Err(SessionError::Store(err)) = self.check(id).await {
            warn!(%err, session_id = id, "could not slide the session's expiry");
        }
    }

    /// Ends a session (ATIVA → ENCERRADA) and its open streams.
    pub async fn end(
        &self,
        tenant_id: i32,
        equipment_id: i32,
        id: &str,
    ) -> Result<Option<Session>, StoreError> {
        let s = self
            .store
            .end_session(tenant_id, equipment_id, id, store::now())
            .await?;
        if s.is_some() {
            self.release(id);
        }
        Ok(s)
    }

    /// Ends a session's open streams and drops its entry (ended, expired, or found no
    /// longer usable by the gateway).
    pub fn release(&self, id: &str) {
        if let Some(token) = self.live.lock().unwrap().remove(id) {
            token.cancel();
        }
        self.slid.lock().unwrap().remove(id);
    }

    async fn expire(&self, now: Ts) {
        match self.store.expire_sessions(now).await {
            Ok(ids) => ids.iter().for_each(|id| self.release(id)),
            Err(err) => warn!(%err, "could not expire sessions"),
        }
    }

    /// Periodic work: mark expired sessions EXPIRADA (ending their streams) and flush
    /// usage counters.
    pub async fn maintain(&self) {
        let _one = self.maintaining.lock().await;
        self.expire(store::now()).await;
        let batch: Vec<(String, i32, i64)> = {
            let mut usage = self.usage.lock().unwrap();
            std::mem::take(&mut *usage)
                .into_iter()
                .map(|(id, (r, b))| (id, r, b))
                .collect()
        };
        if let Err(err) = self.store.add_session_usage(&batch).await {
            // Merged back and retried on the next pass: counts are not lost while the
            // store is down (the map stays bounded by live sessions).
            warn!(%err, sessions = batch.len(), "could not record session usage; will retry");
            let mut usage = self.usage.lock().unwrap();
            for (id, r, b) in batch {
                let e = usage.entry(id).or_default();
                e.0 = e.0.saturating_add(r);
                e.1 = e.1.saturating_add(b);
            }
        }
    }
}

/// A random (version 4) UUID.
pub fn uuid_v4() -> String {
    let mut b = auth::random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = auth::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
