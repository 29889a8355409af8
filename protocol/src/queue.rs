//! A queue of frames toward one peer, bounded by count and by bytes.
//!
//! Frames wait here between the tasks that make them (callers, upload and response pumps,
//! the reader's few control frames) and the connection's writer. A count alone would let
//! a queue of 64 frames of up to [`limits::MAX_FRAME_LEN`] each (64 MiB) wait for a peer
//! that stops reading; the byte budget ([`OUTBOUND_BYTES`] on both ends) holds it to 4 MiB.
//! When either bound is full, `send` waits (the sender slows down, nothing is buffered
//! elsewhere) and `try_send` hands the frame back. Control frames that must neither wait
//! nor be lost (cancels, refusals and errors, WebSocket closes, the HELLO answer, a token
//! rotation) may go past a full count into slots kept for them
//! ([`Sender::send_control`]), in order behind what is queued.
//!
//! No runtime needed (tokio's `sync` primitives only), so both ends and their tests share
//! it.
//!
//! Must never: hold more than its budget for a peer that does not read, lose a frame it
//! accepted while the writer lives, or let a frame overtake one queued before it (a
//! cancel must not reach the peer before the request it cancels).

use std::sync::Arc;

use crate::limits;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Bytes queued for one connection's writer, over all its frames. At least one largest
/// frame, so any legal frame fits on its own; four of them (or 64 body chunks of 64 KiB)
/// keep the socket busy while the writer flushes.
pub const OUTBOUND_BYTES: usize = 4 * limits::MAX_FRAME_LEN;

/// Frames this small are bounded by the count alone (at most a count's worth of KiB), so
/// control frames (WINDOW_UPDATE, PONG, END, errors) never queue behind a large frame
/// that waits for bytes.
pub const SMALL_FRAME: usize = 1024;

/// Slots past the count kept for control frames (each under [`SMALL_FRAME`], so at most
/// this many KiB): [`Sender::send_control`] queues one there when the count is full. A
/// peer that keeps the queue full and stops reading fills these too; then the frame is
/// handed back and the caller drops it: the streams it was about end by their own
/// timeouts, or with the connection at the write deadline.
pub const CONTROL_FRAMES: usize = 1024;

/// A frame, and the share of the byte budget and the slot it holds until the writer
/// drops it.
#[derive(Debug)]
pub struct Queued<T> {
    pub frame: T,
    _bytes: OwnedSemaphorePermit,
    _slot: OwnedSemaphorePermit,
}

/// The sending side, shared by every task that talks to this peer.
#[derive(Debug)]
pub struct Sender<T> {
    /// Room for every slot of both kinds, so a sender holding a slot never waits here.
    tx: mpsc::Sender<Queued<T>>,
    bytes: Arc<Semaphore>,
    /// The count, for every frame but control frames past it.
    slots: Arc<Semaphore>,
    /// [`CONTROL_FRAMES`].
    control: Arc<Semaphore>,
    budget: usize,
    weigh: fn(&T) -> usize,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            bytes: self.bytes.clone(),
            slots: self.slots.clone(),
            control: self.control.clone(),
            budget: self.budget,
            weigh: self.weigh,
        }
    }
}

/// The writer's side. Dropping it (the writer ended) fails every sender, waiting or not.
#[derive(Debug)]
pub struct Receiver<T> {
    rx: mpsc::Receiver<Queued<T>>,
    semaphores: [Arc<Semaphore>; 3],
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The count or the byte budget is used up; the frame is handed back.
    Full(T),
    /// The writer has ended.
    Closed,
}

/// A queue of at most `count` frames (and [`CONTROL_FRAMES`] control frames past them)
/// and `bytes` bytes, a frame weighing `weigh(frame)`.
pub fn channel<T>(count: usize, bytes: usize, weigh: fn(&T) -> usize) -> (Sender<T>, Receiver<T>) {
    let bytes = bytes.clamp(1, Semaphore::MAX_PERMITS);
    let (tx, rx) = mpsc::channel(count + CONTROL_FRAMES);
    let sems = [
        Arc::new(Semaphore::new(bytes)),
        Arc::new(Semaphore::new(count)),
        Arc::new(Semaphore::new(CONTROL_FRAMES)),
    ];
    (
        Sender {
            tx,
            bytes: sems[0].clone(),
            slots: sems[1].clone(),
            control: sems[2].clone(),
            budget: bytes.min(u32::MAX as usize),
            weigh,
        },
        Receiver {
            rx,
            semaphores: sems,
        },
    )
}

fn try_acquire(sem: &Arc<Semaphore>, n: u32) -> Result<OwnedSemaphorePermit, TrySendError<()>> {
    sem.clone().try_acquire_many_owned(n).map_err(|e| match e {
        TryAcquireError::NoPermits => TrySendError::Full(()),
        TryAcquireError::Closed => TrySendError::Closed,
    })
}

impl<T> Sender<T> {
    /// A frame's charge: its weight, capped at the budget so a frame larger than the
    /// whole budget still goes out (alone); nothing for a [`SMALL_FRAME`].
    fn charge(&self, frame: &T) -> u32 {
        match (self.weigh)(frame) {
            w if w < SMALL_FRAME => 0,
            w => w.min(self.budget) as u32,
        }
    }

    /// Queues a frame, waiting for room in the bytes, then in the count (in that order,
    /// so a small frame never waits behind a large one waiting for bytes while holding
    /// a slot). Gives the frame back if the writer has ended.
    pub async fn send(&self, frame: T) -> Result<(), T> {
        let charge = self.charge(&frame);
        let Ok(bytes) = self.bytes.clone().acquire_many_owned(charge).await else {
            return Err(frame);
        };
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return Err(frame);
        };
        self.queue(frame, bytes, slot)
    }

    /// Queues `frames` back to back, room for all of them (bytes and count) taken first,
    /// so the writer finds them together and sends them in one flush. Gives the frames
    /// back if the writer has ended. More than the budget in all waits for an empty queue.
    pub async fn send_all(&self, frames: Vec<T>) -> Result<(), Vec<T>> {
        let charges: Vec<u32> = frames.iter().map(|f| self.charge(f)).collect();
        let total = charges
            .iter()
            .map(|&c| c as usize)
            .sum::<usize>()
            .min(self.budget) as u32;
        let Ok(mut bytes) = self.bytes.clone().acquire_many_owned(total).await else {
            return Err(frames);
        };
        let n = frames.len() as u32;
        let Ok(mut slots) = self.slots.clone().acquire_many_owned(n).await else {
            return Err(frames);
        };
        let Ok(room) = self.tx.reserve_many(frames.len()).await else {
            return Err(frames);
        };
        let mut left = total;
        for ((room, frame), charge) in room.zip(frames).zip(charges) {
            // Each frame carries its share of the bytes taken (the later ones none once
            // a total over the budget is used up), given back as the writer drops it.
            let share = charge.min(left);
            left -= share;
            room.send(Queued {
                frame,
                _bytes: bytes.split(share as usize).expect("shares add up"),
                _slot: slots.split(1).expect("a slot per frame"),
            });
        }
        Ok(())
    }

    /// Queues a frame if there is room now.
    pub fn try_send(&self, frame: T) -> Result<(), TrySendError<T>> {
        let charge = self.charge(&frame);
        self.try_queue(frame, charge, &self.slots)
    }

    /// Queues a control frame without waiting, in order behind what is queued: in the
    /// count when there is room, else in a slot kept for control frames
    /// ([`CONTROL_FRAMES`]). A frame of [`SMALL_FRAME`] or more never takes one of
    /// those. `Full` once they are taken too: the caller drops the frame.
    pub fn send_control(&self, frame: T) -> Result<(), TrySendError<T>> {
        let frame = match self.try_send(frame) {
            Err(TrySendError::Full(frame)) if (self.weigh)(&frame) < SMALL_FRAME => frame,
            other => return other,
        };
        self.try_queue(frame, 0, &self.control)
    }

    /// Queues a frame charged `charge` bytes in one of `slots` if both have room now.
    fn try_queue(
        &self,
        frame: T,
        charge: u32,
        slots: &Arc<Semaphore>,
    ) -> Result<(), TrySendError<T>> {
        let taken =
            try_acquire(&self.bytes, charge).and_then(|bytes| Ok((bytes, try_acquire(slots, 1)?)));
        match taken {
            Ok((bytes, slot)) => self
                .queue(frame, bytes, slot)
                .map_err(|_| TrySendError::Closed),
            Err(TrySendError::Full(())) => Err(TrySendError::Full(frame)),
            Err(TrySendError::Closed) => Err(TrySendError::Closed),
        }
    }

    /// Hands a frame whose room is taken to the writer. The channel holds a slot of
    /// either kind, so it has room; it fails only when the writer has ended.
    fn queue(
        &self,
        frame: T,
        bytes: OwnedSemaphorePermit,
        slot: OwnedSemaphorePermit,
    ) -> Result<(), T> {
        let queued = Queued {
            frame,
            _bytes: bytes,
            _slot: slot,
        };
        self.tx.try_send(queued).map_err(|e| match e {
            mpsc::error::TrySendError::Full(q) | mpsc::error::TrySendError::Closed(q) => q.frame,
        })
    }
}

impl<T> Receiver<T> {
    /// The next frame; `None` once every sender is gone. Its bytes and its slot are
    /// given back when the returned [`Queued`] is dropped, after the writer has fed it
    /// to the socket.
    pub async fn recv(&mut self) -> Option<Queued<T>> {
        self.rx.recv().await
    }

    /// The next frame if one is queued now.
    pub fn try_recv(&mut self) -> Option<Queued<T>> {
        self.rx.try_recv().ok()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        for sem in &self.semaphores {
            sem.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::{pin, Pin};
    use std::task::{Context, Poll, Waker};

    fn frame(len: usize) -> Vec<u8> {
        vec![0u8; len]
    }

    fn queue(bytes: usize) -> (Sender<Vec<u8>>, Receiver<Vec<u8>>) {
        channel(64, bytes, Vec::len)
    }

    /// Polls a future once, without a runtime.
    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn bytes_bound_the_queue_as_well_as_the_count() {
        let (tx, mut rx) = queue(10_000);
        tx.try_send(frame(6000)).unwrap();
        // Count room is left, byte room is not: the frame comes back.
        assert!(matches!(tx.try_send(frame(6000)), Err(TrySendError::Full(f)) if f.len() == 6000));
        tx.try_send(frame(4000)).unwrap();
        // A waiting sender proceeds once the writer has dropped a frame, not before.
        let mut waiter = pin!(tx.send(frame(5000)));
        assert!(poll_once(waiter.as_mut()).is_pending());
        let first = rx.try_recv().unwrap();
        assert_eq!(first.frame.len(), 6000);
        assert!(
            poll_once(waiter.as_mut()).is_pending(),
            "bytes are held until the writer drops the frame"
        );
        drop(first);
        assert_eq!(poll_once(waiter.as_mut()), Poll::Ready(Ok(())));
        assert_eq!(rx.try_recv().unwrap().frame.len(), 4000);
        assert_eq!(rx.try_recv().unwrap().frame.len(), 5000);
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn the_count_bounds_tiny_frames() {
        let (tx, _rx) = channel(2, 1000, Vec::len);
        tx.try_send(frame(1)).unwrap();
        tx.try_send(frame(0)).unwrap();
        assert!(matches!(tx.try_send(frame(1)), Err(TrySendError::Full(_))));
    }

    #[test]
    fn a_frame_larger_than_the_budget_goes_out_alone() {
        let (tx, mut rx) = queue(10_000);
        assert_eq!(poll_once(pin!(tx.send(frame(50_000)))), Poll::Ready(Ok(())));
        assert!(matches!(
            tx.try_send(frame(2000)),
            Err(TrySendError::Full(_))
        ));
        drop(rx.try_recv().unwrap());
        tx.try_send(frame(2000)).unwrap();
    }

    #[test]
    fn small_frames_do_not_wait_behind_a_large_one() {
        let (tx, mut rx) = queue(10_000);
        tx.try_send(frame(8000)).unwrap();
        // A large frame waits for bytes (and holds what it has taken so far)...
        let mut large = pin!(tx.send(frame(5000)));
        assert!(poll_once(large.as_mut()).is_pending());
        // ...and a control frame still goes: the count alone bounds it.
        tx.try_send(frame(SMALL_FRAME - 1)).unwrap();
        assert!(matches!(
            tx.try_send(frame(SMALL_FRAME)),
            Err(TrySendError::Full(_))
        ));
        drop(rx.try_recv().unwrap());
        assert_eq!(poll_once(large.as_mut()), Poll::Ready(Ok(())));
        assert_eq!(rx.try_recv().unwrap().frame.len(), SMALL_FRAME - 1);
        assert_eq!(rx.try_recv().unwrap().frame.len(), 5000);
    }

    #[test]
    fn a_batch_takes_room_for_all_its_frames_at_once() {
        let (tx, mut rx) = queue(10_000);
        tx.try_send(frame(5000)).unwrap();
        let mut batch = pin!(tx.send_all(vec![frame(3000), frame(3000)]));
        assert!(
            poll_once(batch.as_mut()).is_pending(),
            "6000 bytes do not fit in 5000"
        );
        drop(rx.try_recv().unwrap());
        assert_eq!(poll_once(batch.as_mut()), Poll::Ready(Ok(())));
        let (a, b) = (rx.try_recv().unwrap(), rx.try_recv().unwrap());
        assert!(matches!(
            tx.try_send(frame(4001)),
            Err(TrySendError::Full(_))
        ));
        drop(a);
        // Each frame gives back its own share.
        tx.try_send(frame(4001)).unwrap();
        drop(b);
        // A batch over the whole budget still goes, alone.
        drop(rx.try_recv().unwrap());
        assert_eq!(
            poll_once(pin!(tx.send_all(vec![frame(9000), frame(9000)]))),
            Poll::Ready(Ok(()))
        );
        assert!(matches!(
            tx.try_send(frame(2000)),
            Err(TrySendError::Full(_))
        ));
        drop(rx.try_recv().unwrap());
        drop(rx.try_recv().unwrap());
        tx.try_send(frame(10_000)).unwrap();
    }

    #[test]
    fn senders_fail_once_the_writer_is_gone() {
        let (tx, rx) = queue(10_000);
        tx.try_send(frame(10_000)).unwrap();
        let mut waiter = pin!(tx.send(frame(2000)));
        assert!(poll_once(waiter.as_mut()).is_pending());
        drop(rx);
        match poll_once(waiter.as_mut()) {
            Poll::Ready(Err(back)) => assert_eq!(back.len(), 2000),
            other => panic!("expected the frame back, got {other:?}"),
        }
        assert_eq!(tx.try_send(frame(1)), Err(TrySendError::Closed));
    }

    /// A full queue still takes a small control frame, past the count and in order
    /// behind what is queued (a cancel never overtakes its request); the slots kept for
    /// them are bounded, a large frame never takes one, and they come back as the writer
    /// takes the frames.
    #[test]
    fn control_frames_pass_a_full_count_in_order_and_are_bounded() {
        let (tx, mut rx) = channel(2, 10_000, Vec::len);
        tx.send_control(frame(5)).unwrap();
        tx.try_send(frame(6000)).unwrap();
        assert!(matches!(tx.try_send(frame(1)), Err(TrySendError::Full(_))));
        for _ in 0..CONTROL_FRAMES {
            tx.send_control(frame(7)).unwrap();
        }
        assert!(
            matches!(tx.send_control(frame(7)), Err(TrySendError::Full(_))),
            "the control slots are bounded"
        );
        assert!(
            matches!(
                tx.send_control(frame(SMALL_FRAME)),
                Err(TrySendError::Full(_))
            ),
            "a frame that is not small never takes one"
        );
        let mut next = || rx.try_recv().map(|q| q.frame.len());
        assert_eq!(next(), Some(5), "in the order queued");
        assert_eq!(
            next(),
            Some(6000),
            "the control frames behind it, not before"
        );
        for _ in 0..CONTROL_FRAMES {
            assert_eq!(next(), Some(7));
        }
        assert_eq!(next(), None);
        tx.try_send(frame(6000)).unwrap();
        tx.send_control(frame(3)).unwrap();
        assert_eq!(next(), Some(6000));
        assert_eq!(next(), Some(3));
        drop(rx);
        assert_eq!(tx.send_control(frame(3)), Err(TrySendError::Closed));
    }
}
