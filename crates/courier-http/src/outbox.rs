//! A stream's outbox: the frames queued towards one client, bounded. Every
//! long-lived stream has one: the event streams (SSE) and the notification
//! streams.
//!
//! Not tokio's `mpsc`: its channel allocates a 32-slot block and two
//! cache-padded halves up front, about 1.5 KiB, which for tens of thousands of
//! idle streams is a large share of their memory. This one is a mutex around a
//! queue that allocates only when frames wait, and a `Notify` for senders
//! waiting for room or for the reader to go (a notification replay, a stalled
//! event stream's session; the hub and the log tail never wait).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::Notify;

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The client has not read what was queued before.
    Full,
    /// Nobody reads the stream any more.
    Closed,
}

struct State {
    queue: VecDeque<Bytes>,
    capacity: usize,
    senders: usize,
    reading: bool,
    waker: Option<Waker>,
}

struct Shared {
    state: Mutex<State>,
    room: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves a consistent queue behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An outbox holding at most `capacity` frames.
pub(crate) fn outbox(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            capacity,
            senders: 1,
            reading: true,
            waker: None,
        }),
        room: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// Queues frames; cloned for each writer.
pub(crate) struct Sender(Arc<Shared>);

impl Sender {
    /// Queues `frame` if there is room.
    pub(crate) fn try_send(&self, frame: Bytes) -> Result<(), Refused> {
        self.offer(frame).map_err(|(refused, _)| refused)
    }

    /// Queues `frame`, waiting for room.
    pub(crate) async fn send(&self, frame: Bytes) -> Result<(), Refused> {
        let mut frame = frame;
        loop {
            // Registered before the attempt, so a read in between still wakes it.
            let room = self.0.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.offer(frame) {
                Ok(()) => return Ok(()),
                Err((Refused::Closed, _)) => return Err(Refused::Closed),
                Err((Refused::Full, back)) => frame = back,
            }
            room.await;
        }
    }

    /// Queues `frame`, or gives it back with the reason.
    fn offer(&self, frame: Bytes) -> Result<(), (Refused, Bytes)> {
        let mut state = self.0.lock();
        if !state.reading {
            return Err((Refused::Closed, frame));
        }
        if state.queue.len() >= state.capacity {
            return Err((Refused::Full, frame));
        }
        state.queue.push_back(frame);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        Ok(())
    }

    /// Waits until a frame would fit; `false` if the reader went away instead.
    pub(crate) async fn room(&self) -> bool {
        loop {
            let notified = self.0.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.0.lock();
                if !state.reading {
                    return false;
                }
                if state.queue.len() < state.capacity {
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Waits until the stream's reader is gone (the connection ended).
    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.0.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.0.lock().reading {
                return;
            }
            notified.await;
        }
    }

    /// Whether the stream's reader is gone.
    pub(crate) fn is_closed(&self) -> bool {
        !self.0.lock().reading
    }

    /// Whether nothing waits to be written (the connection is idle).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.lock().queue.is_empty()
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Sender(self.0.clone())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.senders -= 1;
        if state.senders == 0
            && let Some(waker) = state.waker.take()
        {
            waker.wake();
        }
    }
}

/// The stream's end of the outbox.
pub(crate) struct Receiver(Arc<Shared>);

impl Receiver {
    /// The next frame; `None` once every sender is gone and the queue is empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut state = self.0.lock();
        if let Some(frame) = state.queue.pop_front() {
            if state.queue.is_empty() && state.queue.capacity() > 8 {
                // Give back what a burst grew, so an idle stream holds little.
                state.queue = VecDeque::new();
            }
            drop(state);
            self.0.room.notify_waiters();
            return Poll::Ready(Some(frame));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.reading = false;
        state.queue.clear();
        drop(state);
        self.0.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn frames_come_out_in_order_and_the_end_follows_the_last_sender() {
        let (tx, mut rx) = outbox(2);
        let second = tx.clone();
        tx.try_send(Bytes::from_static(b"a")).unwrap();
        second.try_send(Bytes::from_static(b"b")).unwrap();
        assert_eq!(tx.try_send(Bytes::from_static(b"c")), Err(Refused::Full));
        assert!(!tx.is_empty());
        assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await.as_deref(), Some(&b"a"[..]));
        assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await.as_deref(), Some(&b"b"[..]));
        assert!(tx.is_empty());
        drop((tx, second));
        assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await, None);
    }

    #[tokio::test]
    async fn a_sender_waits_for_room_and_learns_when_the_reader_is_gone() {
        let (tx, mut rx) = outbox(1);
        tx.try_send(Bytes::from_static(b"a")).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(Bytes::from_static(b"b")).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "no room yet");
        assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await.as_deref(), Some(&b"a"[..]));
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await.as_deref(), Some(&b"b"[..]));

        tx.try_send(Bytes::from_static(b"c")).unwrap();
        let blocked = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(Bytes::from_static(b"d")).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(blocked.await.unwrap(), Err(Refused::Closed));
        assert!(tx.is_closed());
        assert_eq!(tx.try_send(Bytes::from_static(b"e")), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn room_and_closed_wait_for_the_reader() {
        let (tx, mut rx) = outbox(1);
        assert!(tx.room().await, "an empty outbox has room");
        tx.try_send(Bytes::from_static(b"a")).unwrap();
        let room = tokio::spawn({
            let tx = tx.clone();
            async move { tx.room().await }
        });
        let closed = tokio::spawn({
            let tx = tx.clone();
            async move { tx.closed().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!room.is_finished() && !closed.is_finished());
        assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await.as_deref(), Some(&b"a"[..]));
        assert!(room.await.unwrap(), "a read makes room");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!closed.is_finished(), "a read is not the end");
        tx.try_send(Bytes::from_static(b"b")).unwrap();
        let no_room = tokio::spawn({
            let tx = tx.clone();
            async move { tx.room().await }
        });
        drop(rx);
        closed.await.unwrap();
        assert!(!no_room.await.unwrap(), "no room once the reader is gone");
    }
}
