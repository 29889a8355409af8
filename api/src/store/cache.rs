//! [`CachedStore`]: the rows every proxied request reads (institution, equipment,
//! connector, remote session) kept for a moment in memory, so a page of 50 assets
//! through the gateway costs no store reads instead of 100.
//!
//! Every write through this store drops what it changes before it returns, so in this
//! process a cached row is never staler than the database: a session ended, a token
//! renewed, equipment edited are seen by the very next request. A change made by another
//! process is seen within [`FRESH`]. Only found rows are kept (an unknown id costs a
//! read each time, so probing ids cannot fill the cache).
//!
//! Must never: serve a row this process has changed since it was read, or grow without
//! bound: each table keeps at most [`MAX_ENTRIES`] rows of at most [`MAX_ROW_BYTES`]
//! each; a full table is emptied and refilled from the store.

use super::*;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a row read from the store is served from memory.
pub const FRESH: Duration = Duration::from_secs(2);
/// Rows kept per table.
pub const MAX_ENTRIES: usize = 2048;
/// Rows larger than this (equipment with a huge config, connector metadata) are not
/// kept, so a table holds at most `MAX_ENTRIES × MAX_ROW_BYTES` = 16 MiB.
pub const MAX_ROW_BYTES: usize = 8 * 1024;

struct Table<K, V> {
    rows: HashMap<K, (Instant, V)>,
}

impl<K: Hash + Eq, V: Clone> Table<K, V> {
    fn get(&self, k: &K) -> Option<V> {
        self.rows
            .get(k)
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, k: K, v: V) {
        if self.rows.len() >= MAX_ENTRIES {
            self.rows.clear();
        }
        self.rows.insert(k, (Instant::now(), v));
    }
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self {
            rows: HashMap::new(),
        }
    }
}

#[derive(Default)]
struct Tables {
    institutions: Table<i32, Institution>,
    equipment: Table<(i32, i32), Equipment>,
    connectors: Table<i32, Connector>,
    sessions: Table<String, Session>,
}

/// The store, with a short read cache in front of the per-request lookups.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    tables: Mutex<Tables>,
    /// Bumped by every invalidation: a read that started before one does not fill the
    /// cache with what it fetched (it may predate the write).
    generation: AtomicU64,
}

impl CachedStore {
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(Self {
            inner,
            tables: Mutex::default(),
            generation: AtomicU64::new(0),
        })
    }

    fn forget(&self, f: impl FnOnce(&mut Tables)) {
        let mut t = self.tables.lock().unwrap();
        self.generation.fetch_add(1, Ordering::SeqCst);
        f(&mut t);
    }

    fn forget_connectors(&self) {
        self.forget(|t| t.connectors.rows.clear());
    }

    fn forget_sessions<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        self.forget(|t| {
            for id in ids {
                t.sessions.rows.remove(id);
            }
        });
    }

    /// Reads through the cache: `get` from a table, else `fetch` from the store and keep
    /// it (if no write intervened and it is small).
    async fn through<V: Clone, F>(
        &self,
        get: impl Fn(&Tables) -> Option<V>,
        fetch: F,
        put: impl FnOnce(&mut Tables, V),
        bytes: impl Fn(&V) -> usize,
    ) -> Result<Option<V>>
    where
        F: std::future::Future<Output = Result<Option<V>>>,
    {
        if let Some(v) = get(&self.tables.lock().unwrap()) {
            return Ok(Some(v));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = fetch.await?;
        if let Some(v) = &found {
            let mut t = self.tables.lock().unwrap();
            if self.generation.load(Ordering::SeqCst) == generation && bytes(v) <= MAX_ROW_BYTES {
                put(&mut t, v.clone());
            }
        }
        Ok(found)
    }
}

fn json_len<T: Serialize>(v: &Option<Json<T>>) -> usize {
    v.as_ref()
        .and_then(|j| serde_json::to_vec(&j.0).ok())
        .map_or(0, |b| b.len())
}

fn equipment_bytes(e: &Equipment) -> usize {
    256 + e.name.len()
        + [&e.brand, &e.model, &e.ip]
            .iter()
            .map(|s| s.as_ref().map_or(0, String::len))
            .sum::<usize>()
        + json_len(&e.config)
}

fn connector_bytes(c: &Connector) -> usize {
    256 + c.name.len()
        + c.version.as_ref().map_or(0, String::len)
        + c.metadata.as_ref().map_or(0, |m| m.0.to_string().len())
}

#[async_trait]
impl Store for CachedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn probe(&self) -> Result<()> {
        self.inner.probe().await
    }
    async fn close(&self) {
        self.inner.close().await
    }

    async fn upsert_client(&self, id: i32, name: &str) -> Result<()> {
        self.inner.upsert_client(id, name).await
    }
    async fn upsert_institution(&self, client_id: i32, id: i32, name: &str) -> Result<()> {
        let r = self.inner.upsert_institution(client_id, id, name).await;
        self.forget(|t| {
            t.institutions.rows.remove(&id);
        });
        r
    }
    async fn institution(&self, id: i32) -> Result<Option<Institution>> {
        self.through(
            |t| t.institutions.get(&id),
            self.inner.institution(id),
            |t, v| t.institutions.put(id, v),
            |i| 64 + i.name.len(),
        )
        .await
    }
    async fn ensure_user(&self, id: i32, name: &str, email: Option<&str>) -> Result<()> {
        self.inner.ensure_user(id, name, email).await
    }

    async fn put_equipment(&self, e: &Equipment) -> Result<Equipment> {
        let r = self.inner.put_equipment(e).await;
        self.forget(|t| {
            t.equipment.rows.remove(&(e.tenant_id, e.id));
        });
        r
    }
    async fn equipment(&self, tenant_id: i32, id: i32) -> Result<Option<Equipment>> {
        self.through(
            |t| t.equipment.get(&(tenant_id, id)),
            self.inner.equipment(tenant_id, id),
            |t, v| t.equipment.put((tenant_id, id), v),
            equipment_bytes,
        )
        .await
    }
    async fn list_equipment(&self, tenant_id: i32, limit: i64) -> Result<Vec<Equipment>> {
        self.inner.list_equipment(tenant_id, limit).await
    }

    async fn connector(&self, id: i32) -> Result<Option<Connector>> {
        self.inner.connector(id).await
    }
    async fn connector_of(&self, tenant_id: i32) -> Result<Option<Connector>> {
        self.through(
            |t| t.connectors.get(&tenant_id),
            self.inner.connector_of(tenant_id),
            |t, v| t.connectors.put(tenant_id, v),
            connector_bytes,
        )
        .await
    }
    async fn ensure_connector(&self, tenant_id: i32) -> Result<Connector> {
        let r = self.inner.ensure_connector(tenant_id).await;
        self.forget_connectors();
        r
    }
    async fn start_pairing(
        &self,
        tenant_id: i32,
        code_hash: &str,
        expires_at: Ts,
        user_id: Option<i32>,
    ) -> Result<Connector> {
        let r = self
            .inner
            .start_pairing(tenant_id, code_hash, expires_at, user_id)
            .await;
        self.forget_connectors();
        r
    }
    async fn claim_pairing(
        &self,
        code_hash: &str,
        now: Ts,
        info: &ClaimInfo,
    ) -> Result<Result<Connector, ClaimRefusal>> {
        let r = self.inner.claim_pairing(code_hash, now, info).await;
        self.forget_connectors();
        r
    }
    async fn set_token(
        &self,
        connector_id: i32,
        token_id: &str,
        expires_at: Ts,
    ) -> Result<Option<Connector>> {
        let r = self
            .inner
            .set_token(connector_id, token_id, expires_at)
            .await;
        self.forget_connectors();
        r
    }
    async fn swap_token(
        &self,
        connector_id: i32,
        old: &str,
        new: &str,
        expires_at: Ts,
    ) -> Result<bool> {
        let r = self
            .inner
            .swap_token(connector_id, old, new, expires_at)
            .await;
        self.forget_connectors();
        r
    }
    async fn rotate_token(
        &self,
        connector_id: i32,
        old: &str,
        new: &str,
        expires_at: Ts,
    ) -> Result<bool> {
        let r = self
            .inner
            .rotate_token(connector_id, old, new, expires_at)
            .await;
        self.forget_connectors();
        r
    }
    async fn unpair(&self, tenant_id: i32, now: Ts) -> Result<Option<Connector>> {
        let r = self.inner.unpair(tenant_id, now).await;
        self.forget_connectors();
        r
    }
    async fn token_is_current(&self, connector_id: i32, token_id: &str) -> Result<bool> {
        // Never cached: this is the revocation check. It may retire a rotated-away token.
        let r = self.inner.token_is_current(connector_id, token_id).await;
        self.forget_connectors();
        r
    }
    async fn record_liveness(&self, batch: &[ConnectorLiveness]) -> Result<()> {
        let r = self.inner.record_liveness(batch).await;
        self.forget_connectors();
        r
    }
    async fn mark_all_offline(&self) -> Result<u64> {
        let r = self.inner.mark_all_offline().await;
        self.forget_connectors();
        r
    }
    async fn tokens_expiring(&self, before: Ts) -> Result<Vec<Connector>> {
        self.inner.tokens_expiring(before).await
    }

    async fn create_session(&self, s: &NewSession) -> Result<Session> {
        self.inner.create_session(s).await
    }
    async fn session(&self, id: &str) -> Result<Option<Session>> {
        let key = id.to_owned();
        self.through(
            |t| t.sessions.get(&key),
            self.inner.session(id),
            |t, v| t.sessions.put(key.clone(), v),
            |_| 512,
        )
        .await
    }
    async fn consume_launch(
        &self,
        launch_hash: &str,
        now: Ts,
        session_id: Option<&str>,
    ) -> Result<Option<Session>> {
        let r = self
            .inner
            .consume_launch(launch_hash, now, session_id)
            .await;
        if let Ok(Some(s)) = &r {
            self.forget_sessions([s.id.as_str()]);
        }
        r
    }
    async fn extend_session(&self, id: &str, expires_at: Ts, now: Ts) -> Result<bool> {
        let r = self.inner.extend_session(id, expires_at, now).await;
        self.forget_sessions([id]);
        r
    }
    async fn add_session_usage(&self, batch: &[(String, i32, i64)]) -> Result<()> {
        let r = self.inner.add_session_usage(batch).await;
        self.forget_sessions(batch.iter().map(|(id, _, _)| id.as_str()));
        r
    }
    async fn end_session(
        &self,
        tenant_id: i32,
        equipment_id: i32,
        id: &str,
        now: Ts,
    ) -> Result<Option<Session>> {
        // Forgotten before as well: a request racing the end reads the store.
        self.forget_sessions([id]);
        let r = self
            .inner
            .end_session(tenant_id, equipment_id, id, now)
            .await;
        self.forget_sessions([id]);
        r
    }
    async fn expire_sessions(&self, now: Ts) -> Result<Vec<String>> {
        let r = self.inner.expire_sessions(now).await;
        if let Ok(ids) = &r {
            self.forget_sessions(ids.iter().map(String::as_str));
        }
        r
    }
    async fn list_sessions(&self, tenant_id: i32, limit: i64) -> Result<Vec<SessionListing>> {
        self.inner.list_sessions(tenant_id, limit).await
    }

    async fn create_route(&self, r: &NewPublicRoute) -> Result<PublicRoute> {
        self.inner.create_route(r).await
    }
    /// Not cached here: the published-route service keeps its own short cache, which a
    /// delete clears at once.
    async fn route_by_slug(&self, slug: &str) -> Result<Option<PublicRoute>> {
        self.inner.route_by_slug(slug).await
    }
    async fn list_routes(&self, tenant_id: i32, equipment_id: i32) -> Result<Vec<PublicRoute>> {
        self.inner.list_routes(tenant_id, equipment_id).await
    }
    async fn delete_route(
        &self,
        tenant_id: i32,
        equipment_id: i32,
        id: i32,
    ) -> Result<Option<PublicRoute>> {
        self.inner.delete_route(tenant_id, equipment_id, id).await
    }
    async fn add_route_usage(&self, batch: &[RouteUsage]) -> Result<()> {
        self.inner.add_route_usage(batch).await
    }

    async fn audit(&self, batch: &[AuditEntry]) -> Result<()> {
        self.inner.audit(batch).await
    }
    async fn list_audit(&self, tenant_id: i32, limit: i64) -> Result<Vec<AuditRecord>> {
        self.inner.list_audit(tenant_id, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn equipment(name: &str) -> Equipment {
        Equipment {
            id: 100,
            tenant_id: 2,
            name: name.into(),
            brand: None,
            model: None,
            ip: Some("127.0.0.1".into()),
            active: true,
            uses_addon: true,
            config: None,
        }
    }

    #[tokio::test]
    async fn rows_are_served_from_memory_and_every_own_write_is_seen_at_once() {
        let inner: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
        let cached = CachedStore::wrap(Arc::clone(&inner));
        cached.upsert_client(1, "C").await.unwrap();
        cached.upsert_institution(1, 2, "I").await.unwrap();
        cached.ensure_user(7, "U", None).await.unwrap();
        cached.put_equipment(&equipment("A")).await.unwrap();
        assert_eq!(cached.equipment(2, 100).await.unwrap().unwrap().name, "A");
        // A change behind the cache's back is not seen yet: the row is in memory.
        inner.put_equipment(&equipment("B")).await.unwrap();
        assert_eq!(cached.equipment(2, 100).await.unwrap().unwrap().name, "A");
        // A change through it is seen by the very next read.
        cached.put_equipment(&equipment("C")).await.unwrap();
        assert_eq!(cached.equipment(2, 100).await.unwrap().unwrap().name, "C");

        let con = cached.ensure_connector(2).await.unwrap();
        cached.set_token(con.id, "jti-1", now()).await.unwrap();
        let read = cached.connector_of(2).await.unwrap().unwrap();
        assert_eq!(read.token_id.as_deref(), Some("jti-1"));
        cached.unpair(2, now()).await.unwrap();
        assert_eq!(
            cached.connector_of(2).await.unwrap().unwrap().token_id,
            None
        );

        let t = now();
        let s = cached
            .create_session(&NewSession {
                id: "s1".into(),
                equipment_id: 100,
                connector_id: con.id,
                user_id: 7,
                tenant_id: 2,
                expires_at: t + chrono::TimeDelta::minutes(10),
                hard_limit: t + chrono::TimeDelta::hours(4),
                launch_hash: "h".into(),
                launch_expires_at: t + chrono::TimeDelta::minutes(2),
            })
            .await
            .unwrap();
        assert_eq!(
            cached.session(&s.id).await.unwrap().unwrap().status,
            SessionStatus::ATIVA
        );
        cached.end_session(2, 100, &s.id, now()).await.unwrap();
        assert_eq!(
            cached.session(&s.id).await.unwrap().unwrap().status,
            SessionStatus::ENCERRADA,
            "an ended session is never served as active"
        );
        // Unknown rows are not kept.
        assert!(cached.session("nope").await.unwrap().is_none());
    }
}
