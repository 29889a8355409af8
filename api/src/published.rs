//! Published routes, the API's side: the checks of a new route, the gateway's lookup of
//! a route by its host ([`RouteAuthority`]), its rate limits, usage counters, and its
//! end (a delete cuts its open streams at once).
//!
//! A route read from the store is kept for [`ROUTE_CACHE_TTL`], so a page and its
//! assets cost one read; deleting it here drops it from that cache at once. Counters are
//! summed in memory and written by [`PublicRoutes::flush`] (the maintenance loop, the
//! list, and the graceful stop).

use crate::ratelimit::RouteBuckets;
use crate::service::device::{device, Waiter};
use crate::store::{self, NewPublicRoute, PublicRoute, RouteUsage, Store, StoreError, Ts};
use crate::Api;
use ponte_core::published::{Published, RouteAuthority, RouteDenied};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long a route read from the store answers lookups without reading it again.
pub const ROUTE_CACHE_TTL: Duration = Duration::from_secs(2);
/// Routes kept in the lookup cache; past this it starts over (one read each).
const ROUTE_CACHE_MAX: usize = 4096;
/// Methods a route may publish.
pub const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// Globs per route, at most.
pub const MAX_PATHS: usize = 32;
/// `requestsPerMinute` when a route names none, and the most it may name.
pub const DEFAULT_RPM: u32 = 120;
pub const MAX_RPM: u32 = 60_000;

/// What a route's traffic adds up to between flushes.
#[derive(Debug, Clone, Copy)]
struct Pending {
    requests: i32,
    bytes: i64,
    last: Ts,
}

/// Deleted route ids remembered, so a lookup that read a route just before its delete
/// neither serves it nor caches it again (ids are never reused). The oldest is forgotten
/// first; a lookup that slow is long over.
const TOMBSTONES: usize = 4096;

#[derive(Default)]
struct State {
    /// slug → (route or its absence, when read). Bounded by [`ROUTE_CACHE_MAX`].
    cache: HashMap<String, (Option<Arc<PublicRoute>>, Instant)>,
    /// Ids deleted here, newest last; at most [`TOMBSTONES`].
    deleted: std::collections::VecDeque<i32>,
    /// route id → token its streams hang on, and when the route expires. An entry per
    /// route looked up since it was created: bounded by the routes in the store (a
    /// delete drops it).
    live: HashMap<i32, (CancellationToken, Option<Ts>)>,
    /// route id → its buckets (rate as created); bounded the same way.
    buckets: HashMap<i32, Arc<RouteBuckets>>,
    /// route id → counts not yet written; bounded the same way.
    usage: HashMap<i32, Pending>,
}

pub struct PublicRoutes {
    store: Arc<dyn Store>,
    state: Mutex<State>,
    /// One flush at a time: a list's flush waits for one in flight (the maintenance
    /// loop's), so what it reads afterwards includes every count taken before it.
    flushing: tokio::sync::Mutex<()>,
}

impl PublicRoutes {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            state: Mutex::default(),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn create(&self, r: &NewPublicRoute) -> Result<PublicRoute, StoreError> {
        let route = self.store.create_route(r).await?;
        // A slug deleted and published again must not be served from a stale entry.
        self.state().cache.remove(&route.slug);
        Ok(route)
    }

    /// The route on `slug`'s host, while it exists and has not expired. A slug found
    /// (or not) in the last [`ROUTE_CACHE_TTL`] is answered from memory; otherwise
    /// `may_read` decides whether the store is asked (the client's lookup budget).
    pub async fn live(
        &self,
        slug: &str,
        may_read: impl FnOnce() -> bool,
    ) -> Result<Option<Arc<PublicRoute>>, LiveError> {
        let cached = self
            .state()
            .cache
            .get(slug)
            .filter(|(_, at)| at.elapsed() < ROUTE_CACHE_TTL)
            .map(|(r, _)| r.clone());
        let route = match cached {
            Some(r) => r,
            None => {
                if !may_read() {
                    return Err(LiveError::Limited);
                }
                let read = self
                    .store
                    .route_by_slug(slug)
                    .await
                    .map_err(LiveError::Store)?
                    .map(Arc::new);
                let mut st = self.state();
                // Deleted while this read was on its way: gone.
                let read = read.filter(|r| !st.deleted.contains(&r.id));
                if st.cache.len() >= ROUTE_CACHE_MAX {
                    st.cache.clear();
                }
                st.cache
                    .insert(slug.to_owned(), (read.clone(), Instant::now()));
                read
            }
        };
        Ok(route.filter(|r| r.expires_at.is_none_or(|e| e > store::now())))
    }

    /// Removes a route: new requests get 404 at once and its open streams are cut.
    pub async fn delete(
        &self,
        tenant_id: i32,
        equipment_id: i32,
        id: i32,
    ) -> Result<Option<PublicRoute>, StoreError> {
        let gone = self.store.delete_route(tenant_id, equipment_id, id).await?;
        if let Some(r) = &gone {
            let mut st = self.state();
            st.cache.remove(&r.slug);
            if st.deleted.len() >= TOMBSTONES {
                st.deleted.pop_front();
            }
            st.deleted.push_back(r.id);
            st.buckets.remove(&r.id);
            if let Some((token, _)) = st.live.remove(&r.id) {
                token.cancel();
            }
        }
        Ok(gone)
    }

    /// A token for one stream of `route`, cancelled when the route is deleted or when it
    /// expires (a timer per route, which ends with the route's token); `None` when the
    /// route was deleted already.
    fn streams(&self, route: &PublicRoute) -> Option<CancellationToken> {
        let mut st = self.state();
        if st.deleted.contains(&route.id) {
            return None;
        }
        let entry = st.live.entry(route.id).or_insert_with(|| {
            let token = CancellationToken::new();
            if let Some(at) = route.expires_at {
                let left = (at - store::now()).to_std().unwrap_or_default();
                let t = token.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(left) => t.cancel(),
                        () = t.cancelled() => {}
                    }
                });
            }
            (token, route.expires_at)
        });
        Some(entry.0.child_token())
    }

    fn buckets(&self, route: &Published) -> Arc<RouteBuckets> {
        Arc::clone(
            self.state()
                .buckets
                .entry(route.id)
                .or_insert_with(|| Arc::new(RouteBuckets::new(route.requests_per_minute))),
        )
    }

    fn count(&self, route_id: i32, requests: i32, bytes: u64) {
        let mut st = self.state();
        let now = store::now();
        let e = st.usage.entry(route_id).or_insert(Pending {
            requests: 0,
            bytes: 0,
            last: now,
        });
        e.requests = e.requests.saturating_add(requests);
        e.bytes = e
            .bytes
            .saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
        e.last = now;
    }

    /// Writes the pending counters; on a store error they are merged back and retried
    /// on the next pass. Also cuts the streams of routes that have expired.
    pub async fn flush(&self) {
        let _one = self.flushing.lock().await;
        let now = store::now();
        let batch: Vec<RouteUsage> = {
            let mut st = self.state();
            st.live.retain(|_, (token, expires)| {
                let over = expires.is_some_and(|e| e <= now);
                if over {
                    token.cancel();
                }
                !over
            });
            for b in st.buckets.values() {
                b.prune();
            }
            std::mem::take(&mut st.usage)
                .into_iter()
                .map(|(route_id, p)| RouteUsage {
                    route_id,
                    requests: p.requests,
                    bytes: p.bytes,
                    last_used_at: p.last,
                })
                .collect()
        };
        if let Err(err) = self.store.add_route_usage(&batch).await {
            warn!(%err, routes = batch.len(), "could not record route usage; will retry");
            let mut st = self.state();
            for u in batch {
                let e = st.usage.entry(u.route_id).or_insert(Pending {
                    requests: 0,
                    bytes: 0,
                    last: u.last_used_at,
                });
                e.requests = e.requests.saturating_add(u.requests);
                e.bytes = e.bytes.saturating_add(u.bytes);
                e.last = e.last.max(u.last_used_at);
            }
        }
    }
}

/// Why [`PublicRoutes::live`] gave no answer.
#[derive(Debug)]
pub enum LiveError {
    /// The client spent its lookup budget.
    Limited,
    Store(StoreError),
}

/// The gateway's view of the published routes.
pub struct RouteDesk {
    api: Arc<Api>,
}

impl RouteDesk {
    pub fn new(api: Arc<Api>) -> Arc<Self> {
        Arc::new(Self { api })
    }
}

fn unavailable(e: impl std::fmt::Display) -> RouteDenied {
    RouteDenied::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl RouteAuthority for RouteDesk {
    async fn route(&self, slug: &str, client: IpAddr) -> Result<Published, RouteDenied> {
        let routes = &self.api.routes;
        let lookups = &self.api.limits;
        let r = routes
            .live(slug, || lookups.route_lookup(client).is_ok())
            .await
            .map_err(|e| match e {
                LiveError::Limited => RouteDenied::Limited {
                    retry_after_secs: 1,
                },
                LiveError::Store(e) => unavailable(e),
            })?
            .ok_or(RouteDenied::NotFound)?;
        // Taken before the reads below: a delete from here on cancels it, and one that
        // came first is seen.
        let ended = routes.streams(&r).ok_or(RouteDenied::NotFound)?;
        let device = device(&self.api, r.tenant_id, r.equipment_id).await?;
        Ok(Published {
            id: r.id,
            slug: r.slug.clone(),
            connector_id: device.connector_id.to_string(),
            timeout: device.timeout(Waiter::Browser),
            base_url: device.base_url,
            tls_insecure: device.tls_insecure,
            paths: r.paths.0.clone().into(),
            methods: r.methods.0.clone().into(),
            websocket: r.websocket,
            requests_per_minute: u32::try_from(r.requests_per_minute).unwrap_or(1),
            ended,
        })
    }

    fn admit(&self, route: &Published, client: IpAddr) -> Result<(), RouteDenied> {
        self.api
            .routes
            .buckets(route)
            .check(client)
            .map_err(|l| RouteDenied::Limited {
                retry_after_secs: l.retry_after_secs(),
            })
    }

    fn record(&self, route_id: i32, bytes: u64) {
        self.api.routes.count(route_id, 1, bytes);
    }

    fn activity(&self, route_id: i32, bytes: u64) {
        self.api.routes.count(route_id, 0, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Equipment, SqlStore};

    async fn routes_with_one() -> (PublicRoutes, PublicRoute) {
        let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
        store.upsert_client(1, "C").await.unwrap();
        store.upsert_institution(1, 2, "I").await.unwrap();
        store
            .put_equipment(&Equipment {
                id: 100,
                tenant_id: 2,
                name: "POS".into(),
                brand: None,
                model: None,
                ip: None,
                active: true,
                uses_addon: true,
                config: None,
            })
            .await
            .unwrap();
        let routes = PublicRoutes::new(store);
        let r = routes
            .create(&NewPublicRoute {
                slug: "nexora".into(),
                equipment_id: 100,
                tenant_id: 2,
                user_id: None,
                paths: vec!["/approve/*".into()],
                methods: vec!["GET".into()],
                websocket: false,
                requests_per_minute: 120,
                expires_at: None,
            })
            .await
            .unwrap();
        (routes, r)
    }

    /// A lookup that read the route just before its delete neither serves it, nor puts
    /// it back in the cache, nor gets a stream token that nothing would cancel.
    #[tokio::test]
    async fn a_delete_overtaking_a_lookup_wins() {
        let (routes, r) = routes_with_one().await;
        let read = routes.live("nexora", || true).await.unwrap().unwrap();
        let token = routes.streams(&read).unwrap();
        routes.delete(2, 100, r.id).await.unwrap().unwrap();
        assert!(
            token.is_cancelled(),
            "a stream taken before the delete is cut"
        );
        assert!(
            routes.streams(&read).is_none(),
            "no new stream after the delete"
        );
        assert!(routes.live("nexora", || true).await.unwrap().is_none());
        // A stale read landing after the delete is not cached.
        routes.state().cache.clear();
        assert!(routes.live("nexora", || true).await.unwrap().is_none());
        assert!(!routes.state().live.contains_key(&r.id));
    }

    /// Names are answered from memory, found or not; past that the client's budget
    /// decides whether the store is read.
    #[tokio::test]
    async fn lookups_cost_a_read_only_when_not_in_memory() {
        let (routes, _) = routes_with_one().await;
        assert!(routes.live("nexora", || true).await.unwrap().is_some());
        assert!(routes.live("nexora", || false).await.unwrap().is_some());
        assert!(routes.live("nada", || true).await.unwrap().is_none());
        assert!(routes.live("nada", || false).await.unwrap().is_none());
        assert!(matches!(
            routes.live("outra", || false).await,
            Err(LiveError::Limited)
        ));
    }

    /// A route with an expiry cuts its open streams at that moment.
    #[tokio::test]
    async fn an_expiry_cuts_the_streams_at_once() {
        let (routes, mut r) = routes_with_one().await;
        r.expires_at = Some(store::now() + chrono::TimeDelta::milliseconds(200));
        let token = routes.streams(&r).unwrap();
        tokio::time::timeout(Duration::from_secs(5), token.cancelled())
            .await
            .expect("cut at the expiry");
    }
}
