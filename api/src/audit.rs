//! The audit log's writer: entries are queued in memory and written in batches by one
//! task, off the request path, so a slow or full store never holds a proxied call.
//!
//! Nothing queued is dropped: while the store cannot write, the batch is retried with
//! backoff; on a graceful stop [`Auditor::close`] writes what is left. A caller takes a
//! [`Slot`] *before* doing the audited thing, so when the queue is full the action is
//! refused (503 `STORE_UNAVAILABLE`) rather than done without its audit row.
//!
//! Must never: hold an unbounded backlog, or answer success for an action whose audit
//! entry had nowhere to go.

use crate::store::{self, AuditEntry, Store, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex, Notify};
use tracing::{error, info, warn};

/// Entries waiting to be written. Each entry is at most ~[`MAX_ENTRY_BYTES`] (paths are
/// cut to [`MAX_PATH`] bytes and details are small objects this crate builds), so the
/// queue holds at most ~32 MiB (a typical entry is ~300 bytes). When full, new audited actions are refused with 503
/// until the writer catches up (the store is down or far too slow).
pub const AUDIT_QUEUE: usize = 8192;

/// Longest path kept in an audit entry; longer ones are cut (on a char boundary).
pub const MAX_PATH: usize = 2048;

/// Upper bound of one queued entry, for the memory bound above.
pub const MAX_ENTRY_BYTES: usize = 4096;

/// Entries written per transaction: one commit (one fsync) per batch, so the writer
/// keeps up with thousands of audited calls a second even where an fsync takes tens of
/// milliseconds.
pub(crate) const BATCH: usize = 1024;

/// A place in the queue, taken before the audited action.
pub struct Slot(mpsc::OwnedPermit<AuditEntry>, Arc<Progress>);

/// Entries queued and entries done with (written or given up), so a reader of the log
/// can wait for what was queued before it asked.
#[derive(Default)]
struct Progress {
    queued: AtomicU64,
    done: AtomicU64,
    moved: Notify,
}

impl Slot {
    /// Queues the entry (stamped now).
    pub fn record(self, mut entry: AuditEntry) {
        entry.at = store::now();
        if let Some(p) = &mut entry.path {
            truncate(p, MAX_PATH);
        }
        self.1.queued.fetch_add(1, Ordering::SeqCst);
        self.0.send(entry);
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The audit queue is full: the store has not been writable for a while.
#[derive(Debug, thiserror::Error)]
#[error("the audit log cannot keep up (the database is not taking writes); retry shortly")]
pub struct Backlogged;

pub struct Auditor {
    tx: mpsc::Sender<AuditEntry>,
    /// The writer's end; taken by [`Auditor::run`], given back to [`Auditor::close`].
    rx: Mutex<Option<mpsc::Receiver<AuditEntry>>>,
    stop: tokio_util::sync::CancellationToken,
    store: Arc<dyn Store>,
    progress: Arc<Progress>,
}

impl Auditor {
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
        Arc::new(Self {
            tx,
            rx: Mutex::new(Some(rx)),
            stop: Default::default(),
            store,
            progress: Arc::default(),
        })
    }

    /// A slot for one entry, or [`Backlogged`] when the queue is full.
    pub fn slot(&self) -> Result<Slot, Backlogged> {
        self.tx
            .clone()
            .try_reserve_owned()
            .map(|permit| Slot(permit, Arc::clone(&self.progress)))
            .map_err(|_| Backlogged)
    }

    /// Queues `entry` if there is room; for actions already done (background work),
    /// where refusing is not possible: a full queue drops it, loudly.
    pub fn record(&self, entry: AuditEntry) {
        match self.slot() {
            Ok(slot) => slot.record(entry),
            Err(_) => {
                error!(action = %entry.action, tid = entry.tenant_id, "audit queue full; entry dropped")
            }
        }
    }

    /// Waits (up to `limit`) until every entry queued before this call is written, so
    /// a listing of the log shows the actions that preceded it. False on time-out.
    pub async fn settled(&self, limit: Duration) -> bool {
        let target = self.progress.queued.load(Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let moved = self.progress.moved.notified();
            if self.progress.done.load(Ordering::SeqCst) >= target {
                return true;
            }
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return false;
            }
        }
    }

    /// Entries queued and not yet written.
    pub fn backlog(&self) -> usize {
        AUDIT_QUEUE - self.tx.capacity()
    }

    /// The writer: batches entries and writes them until [`Auditor::close`].
    pub async fn run(self: Arc<Self>) {
        let Some(mut rx) = self.rx.lock().await.take() else {
            return;
        };
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                n = rx.recv_many(&mut batch, BATCH) => if n == 0 { break },
            }
            let n = batch.len() as u64;
            self.write(&mut batch, None).await;
            self.progress.done.fetch_add(n, Ordering::SeqCst);
            self.progress.moved.notify_waiters();
        }
        // Hand the rest to `close`, which writes it within its deadline.
        *self.rx.lock().await = Some(rx);
    }

    /// Writes `batch` (leaving it empty), retrying while the store is unavailable, until
    /// `deadline` if any. Entries the store refuses for another reason are written one
    /// by one, so one bad entry cannot block the others. Returns how many were lost.
    async fn write(
        &self,
        batch: &mut Vec<AuditEntry>,
        deadline: Option<tokio::time::Instant>,
    ) -> usize {
        let mut backoff = Duration::from_millis(50);
        let mut warned = false;
        loop {
            match self.store.audit(batch).await {
                Ok(()) => {
                    if warned {
                        info!(written = batch.len(), "audit log writable again");
                    }
                    batch.clear();
                    return 0;
                }
                Err(e) if e.is_unavailable() => {
                    if !warned {
                        warn!(err = %e, pending = batch.len() + self.backlog(), "audit log not writable; retrying");
                        warned = true;
                    }
                    if deadline.is_some_and(|d| tokio::time::Instant::now() + backoff > d) {
                        let lost = batch.len();
                        error!(lost, "audit entries not written before the deadline");
                        batch.clear();
                        return lost;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return self.one_by_one(batch, e).await,
            }
        }
    }

    async fn one_by_one(&self, batch: &mut Vec<AuditEntry>, first: StoreError) -> usize {
        warn!(err = %first, entries = batch.len(), "audit batch refused; writing entries one by one");
        let mut lost = 0;
        for e in batch.drain(..) {
            if let Err(err) = self.store.audit(std::slice::from_ref(&e)).await {
                error!(%err, action = %e.action, tid = e.tenant_id, "audit entry refused by the store; dropped");
                lost += 1;
            }
        }
        lost
    }

    /// Graceful stop: the writer's loop ends after its current batch, then everything
    /// still queued is written, retrying until `grace` has passed. Returns how many
    /// entries were not written (the store stayed unavailable, or the writer was stuck
    /// on it past the deadline).
    pub async fn close(&self, grace: Duration) -> usize {
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        // The writer hands the queue back once its batch is written.
        let mut rx = loop {
            if let Some(rx) = self.rx.lock().await.take() {
                break rx;
            }
            if tokio::time::Instant::now() >= deadline {
                let left = self.backlog();
                error!(
                    left,
                    "audit writer still blocked on the store; entries not written"
                );
                return left;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        rx.close();
        let mut rest = Vec::new();
        while let Some(e) = rx.recv().await {
            rest.push(e);
        }
        let mut lost = 0;
        for chunk in rest.chunks(BATCH) {
            lost += self.write(&mut chunk.to_vec(), Some(deadline)).await;
        }
        if !rest.is_empty() {
            info!(written = rest.len() - lost, lost, "audit log flushed");
        }
        lost
    }
}
