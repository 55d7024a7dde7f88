//! The node's caps on what a client can hold open: event streams (SSE,
//! WebSocket and notification streams, `http.max_streams`) and long-polls
//! (claims and result reads with a `wait`, `http.max_waiters`).
//!
//! A request takes a [`Slot`] before it starts; the slot is held by whatever
//! lives as long as the stream or the wait (the response body, the session
//! actor, the handler's future) and is given back when that is dropped, however
//! it ends. Past a cap the request is refused at once, with `Retry-After`,
//! never queued, and the refusal is counted in `courier_http_refused_total`.

use std::sync::Arc;

use actix_web::http::StatusCode;
use courier_core::metric;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Seconds a client refused a stream is told to wait.
const STREAM_RETRY_AFTER: u64 = 5;
/// Seconds a client refused a long-poll is told to wait.
const WAITER_RETRY_AFTER: u64 = 1;

/// A taken place under a cap, given back when dropped.
pub(crate) type Slot = OwnedSemaphorePermit;

/// The node's caps.
pub(crate) struct Caps {
    streams: Arc<Semaphore>,
    max_streams: usize,
    waiters: Arc<Semaphore>,
    max_waiters: usize,
}

impl Caps {
    pub(crate) fn new(max_streams: usize, max_waiters: usize) -> Self {
        let max_streams = max_streams.clamp(1, Semaphore::MAX_PERMITS);
        let max_waiters = max_waiters.clamp(1, Semaphore::MAX_PERMITS);
        Caps {
            streams: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            waiters: Arc::new(Semaphore::new(max_waiters)),
            max_waiters,
        }
    }

    /// A place for one more stream, or 503 with `Retry-After`.
    pub(crate) fn stream(&self) -> Result<Slot, ApiError> {
        self.streams.clone().try_acquire_owned().map_err(|_| {
            refused("streams");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many streams",
                json!({"limit": self.max_streams, "setting": "http.max_streams"}),
            )
            .retry_after(STREAM_RETRY_AFTER)
        })
    }

    /// A place for one more long-poll, or 429 with `Retry-After`.
    pub(crate) fn waiter(&self) -> Result<Slot, ApiError> {
        self.waiters.clone().try_acquire_owned().map_err(|_| {
            refused("waiters");
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many waiting requests",
                json!({"limit": self.max_waiters, "setting": "http.max_waiters", "hint": "retry, or ask without wait"}),
            )
            .retry_after(WAITER_RETRY_AFTER)
        })
    }
}

/// Counts a refusal at a cap (`courier_http_refused_total{reason}`).
pub(crate) fn refused(reason: &'static str) {
    metrics::counter!(metric::HTTP_REFUSED, "reason" => reason).increment(1);
}
