//! The relay's [`ConnectorDirectory`] backed by the store.
//!
//! Liveness is written in batches, never once per PING: events only update an in-memory
//! map of the latest state per connector (bounded by the number of connectors, not by
//! the number of events), and a flusher writes the map in one transaction. Connects,
//! disconnects and HELLOs wake the flusher at once (the console should see ONLINE
//! within a second); heartbeats wait for the next tick (`heartbeat_flush`, default 15 s),
//! so `CONUltimoHeartbeat` is at most that stale and 10,000 connectors PINGing every
//! 30 s cost one transaction per tick instead of 333 writes a second.

use crate::store::{self, ConnectorLiveness, Store};
use futures_util::future::BoxFuture;
use ponte_core::connector::{ConnectorClaims, ConnectorDirectory, ConnectorEvent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub struct StoreDirectory {
    store: Arc<dyn Store>,
    pending: Mutex<HashMap<i32, ConnectorLiveness>>,
    wake: Notify,
}

impl StoreDirectory {
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            store,
            pending: Mutex::default(),
            wake: Notify::new(),
        })
    }

    fn update(&self, connector_id: &str, urgent: bool, f: impl FnOnce(&mut ConnectorLiveness)) {
        let Ok(id) = connector_id.parse::<i32>() else {
            return;
        };
        let mut pending = self.pending.lock().unwrap();
        let entry = pending.entry(id).or_insert_with(|| ConnectorLiveness {
            connector_id: id,
            connected: None,
            hello: None,
            heartbeat: None,
        });
        f(entry);
        drop(pending);
        if urgent {
            self.wake.notify_one();
        }
    }

    /// Writes everything pending. On a database error the batch is merged back (newer
    /// state that arrived meanwhile wins) and retried on the next tick.
    pub async fn flush(&self) {
        let batch: Vec<ConnectorLiveness> = {
            let mut pending = self.pending.lock().unwrap();
            std::mem::take(&mut *pending).into_values().collect()
        };
        if batch.is_empty() {
            return;
        }
        if let Err(err) = self.store.record_liveness(&batch).await {
            warn!(%err, connectors = batch.len(), "could not record connector liveness; will retry");
            let mut pending = self.pending.lock().unwrap();
            for old in batch {
                let e = pending
                    .entry(old.connector_id)
                    .or_insert_with(|| ConnectorLiveness {
                        connector_id: old.connector_id,
                        connected: None,
                        hello: None,
                        heartbeat: None,
                    });
                e.connected = e.connected.or(old.connected);
                e.hello = e.hello.take().or(old.hello);
                e.heartbeat = e.heartbeat.or(old.heartbeat);
            }
        }
    }

    /// Runs the flusher until `shutdown`, then flushes once more.
    pub async fn run(self: Arc<Self>, heartbeat_flush: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(heartbeat_flush) => {}
                _ = shutdown.cancelled() => break,
            }
            self.flush().await;
        }
        self.flush().await;
    }
}

impl ConnectorDirectory for StoreDirectory {
    fn token_is_current(&self, claims: &ConnectorClaims) -> BoxFuture<'_, Result<bool, String>> {
        let id = claims.sub.parse::<i32>().ok();
        let jti = claims.jti.clone();
        Box::pin(async move {
            match id {
                Some(id) => self
                    .store
                    .token_is_current(id, &jti)
                    .await
                    .map_err(|e| e.to_string()),
                None => Ok(false),
            }
        })
    }

    fn on_event(&self, event: ConnectorEvent) {
        let now = store::now();
        match event {
            ConnectorEvent::Connected { claims } => self.update(&claims.sub, true, |e| {
                e.connected = Some((true, now));
                e.heartbeat = Some(now);
            }),
            ConnectorEvent::Hello {
                connector_id,
                hello,
            } => {
                let metadata = hello.metadata;
                self.update(&connector_id, true, |e| {
                    e.hello = Some((Some(hello.version), metadata));
                })
            }
            ConnectorEvent::Heartbeat { connector_id } => {
                self.update(&connector_id, false, |e| e.heartbeat = Some(now))
            }
            ConnectorEvent::Disconnected { connector_id } => {
                self.update(&connector_id, true, |e| {
                    e.connected = Some((false, now));
                })
            }
        }
    }
}
