//! The intake: the one place every input hands a message to, and the bound on
//! how many are accepted but not yet committed.
//!
//! A message is checked (shape, provider, recipients), then dispatched as an
//! execution of the delivery orchestrator through the node's write path, and
//! only once that execution is committed does the input answer (or, for a
//! stream entry, acknowledge). `ingest.queue_size` bounds the messages between
//! "taken in" and "committed": past it, [`Intake::offer`] answers
//! [`IntakeError::QueueFull`] at once (TCP and HTTP tell the sender), while
//! [`Intake::submit`] waits for room (the stream consumer simply stops reading).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use courier_core::{ExecutionId, metric};
use courier_runtime::{Courier, DispatchOptions, RuntimeError};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::deliver::DELIVER;
use crate::message::{InvalidMessage, Message};
use crate::provider::Provider;

/// Where a message came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The TCP listener.
    Tcp,
    /// `POST /v1/notify`.
    Http,
    /// The Redis pub/sub channel.
    PubSub,
    /// An entry of a Redis stream: its id makes a redelivered entry the same execution.
    Stream {
        /// The stream's key.
        stream: String,
        /// The entry's id.
        entry: String,
    },
}

impl Origin {
    /// The `input` label of the ingestion metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Origin::Tcp => "tcp",
            Origin::Http => "http",
            Origin::PubSub => "pubsub",
            Origin::Stream { .. } => "stream",
        }
    }
}

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The message is malformed; the field says where.
    #[error("invalid message: {0}")]
    Invalid(#[from] InvalidMessage),
    /// Too many messages are waiting to be committed; try again after the hint.
    #[error("queue full")]
    QueueFull {
        /// A hint of when there will be room, in milliseconds.
        retry_after_ms: u64,
    },
    /// The node is starting or stopping.
    #[error("the node is not running")]
    NotRunning,
    /// The store refused the execution (the message was not accepted).
    #[error("the message could not be stored: {0}")]
    Store(#[from] RuntimeError),
}

impl IntakeError {
    /// The `reason` label of [`metric::INGEST_REFUSED`].
    pub fn reason(&self) -> &'static str {
        match self {
            IntakeError::Invalid(_) => "invalid",
            IntakeError::QueueFull { .. } => "queue_full",
            IntakeError::NotRunning | IntakeError::Store(_) => "store",
        }
    }

    /// The JSON answer an input gives for this refusal.
    pub fn to_answer(&self) -> Value {
        match self {
            IntakeError::Invalid(e) => {
                serde_json::json!({"error": "invalid message", "detail": {"field": e.field, "reason": e.detail}})
            }
            IntakeError::QueueFull { retry_after_ms } => {
                serde_json::json!({"error": "queue full", "retry_after_ms": retry_after_ms})
            }
            IntakeError::NotRunning => {
                serde_json::json!({"error": "unavailable", "detail": "the node is starting or stopping"})
            }
            IntakeError::Store(e) => serde_json::json!({"error": "unavailable", "detail": e.to_string()}),
        }
    }
}

/// The gate between inputs and the store. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    inner: Arc<Inner>,
}

struct Inner {
    node: Arc<OnceLock<Courier>>,
    room: Arc<Semaphore>,
    capacity: usize,
    providers: Arc<BTreeMap<String, Arc<dyn Provider>>>,
    queue: String,
    /// A smoothed commit time in microseconds, for the "queue full" hint.
    commit_micros: AtomicU64,
    /// The second of the last "queue full" warning.
    last_full_warning: AtomicU64,
    /// What each input took in and refused since the node started.
    counts: Mutex<BTreeMap<&'static str, InputCounts>>,
    /// Stream entries moved to the dead-letter stream since the node started.
    dead_lettered: AtomicU64,
}

/// What one input took in and refused since the node started (the dashboard's
/// view of ingestion; Prometheus has the same as `courier_ingest_*` counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputCounts {
    /// Messages whose delivery execution was committed.
    pub accepted: u64,
    /// Messages refused, for any reason.
    pub refused: u64,
}

impl Intake {
    pub(crate) fn new(
        node: Arc<OnceLock<Courier>>,
        capacity: usize,
        providers: Arc<BTreeMap<String, Arc<dyn Provider>>>,
        queue: String,
    ) -> Self {
        let capacity = capacity.max(1);
        Intake {
            inner: Arc::new(Inner {
                node,
                room: Arc::new(Semaphore::new(capacity)),
                capacity,
                providers,
                queue,
                commit_micros: AtomicU64::new(2_000),
                last_full_warning: AtomicU64::new(0),
                counts: Mutex::default(),
                dead_lettered: AtomicU64::new(0),
            }),
        }
    }

    /// Checks a message as received: its shape, that its provider is
    /// configured, and that the provider can reach every recipient.
    pub fn check(&self, value: Value) -> Result<Message, InvalidMessage> {
        let message = Message::parse(value)?;
        let Some(provider) = self.inner.providers.get(&message.provider) else {
            let known: Vec<&str> = self.inner.providers.keys().map(String::as_str).collect();
            return Err(InvalidMessage::new(
                "provider",
                format!(
                    "`{}` is not configured here (configured: {})",
                    message.provider,
                    known.join(", ")
                ),
            ));
        };
        for (i, recipient) in message.recipient.iter().enumerate() {
            provider
                .check_recipient(recipient)
                .map_err(|detail| InvalidMessage::new(format!("recipient[{i}]"), detail))?;
        }
        Ok(message)
    }

    /// Accepts `message` if there is room now, else answers
    /// [`IntakeError::QueueFull`]. Returns once its execution is committed.
    pub async fn offer(&self, message: Message, origin: Origin) -> Result<ExecutionId, IntakeError> {
        let permit = match self.inner.room.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let error = IntakeError::QueueFull {
                    retry_after_ms: self.retry_after_ms(),
                };
                self.refused(&origin, &error);
                return Err(error);
            }
        };
        self.commit(message, origin, permit).await
    }

    /// Accepts `message`, waiting for room. Returns once its execution is committed.
    pub async fn submit(&self, message: Message, origin: Origin) -> Result<ExecutionId, IntakeError> {
        let permit = self.room().await;
        self.commit(message, origin, permit).await
    }

    /// Waits until one more message can be accepted, and holds that place.
    pub async fn room(&self) -> OwnedSemaphorePermit {
        self.inner
            .room
            .clone()
            .acquire_owned()
            .await
            .expect("the intake semaphore is never closed")
    }

    /// Accepts `message` in the place `permit` holds.
    pub async fn commit(
        &self,
        message: Message,
        origin: Origin,
        permit: OwnedSemaphorePermit,
    ) -> Result<ExecutionId, IntakeError> {
        let result = self.dispatch(message, &origin).await;
        drop(permit);
        self.gauge();
        match &result {
            Ok(_) => {
                metrics::counter!(metric::INGEST_ACCEPTED, "input" => origin.label()).increment(1);
                self.count(&origin, |c| c.accepted += 1);
            }
            Err(error) => self.refused(&origin, error),
        }
        result
    }

    /// Counts (and logs) a refusal.
    pub fn refused(&self, origin: &Origin, error: &IntakeError) {
        metrics::counter!(metric::INGEST_REFUSED, "input" => origin.label(), "reason" => error.reason()).increment(1);
        self.count(origin, |c| c.refused += 1);
        match error {
            IntakeError::Invalid(e) => tracing::debug!(input = origin.label(), %e, "message refused"),
            // A flood is refused thousands of times a second: say so once a second.
            IntakeError::QueueFull { .. } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                if self.inner.last_full_warning.swap(now, Ordering::Relaxed) != now {
                    tracing::warn!(
                        input = origin.label(),
                        queue_size = self.inner.capacity,
                        "messages refused: queue full (every refusal is counted in courier_ingest_refused_total)"
                    );
                }
            }
            other => tracing::warn!(input = origin.label(), error = %other, "message refused"),
        }
    }

    /// Counts a refusal an input decided itself (unauthorized, too large).
    pub fn refused_by_input(&self, origin: &Origin, reason: &'static str) {
        metrics::counter!(metric::INGEST_REFUSED, "input" => origin.label(), "reason" => reason).increment(1);
        self.count(origin, |c| c.refused += 1);
    }

    /// Counts a stream entry moved to the dead-letter stream.
    pub fn dead_lettered(&self, reason: &'static str) {
        metrics::counter!(metric::INGEST_DEAD, "reason" => reason).increment(1);
        self.inner.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// What each input (`http`, `tcp`, `stream`, `pubsub`) took in and refused
    /// since the node started, by input name.
    pub fn counts(&self) -> BTreeMap<&'static str, InputCounts> {
        self.inner.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stream entries moved to the dead-letter stream since the node started.
    pub fn dead_letter_count(&self) -> u64 {
        self.inner.dead_lettered.load(Ordering::Relaxed)
    }

    fn count(&self, origin: &Origin, change: impl FnOnce(&mut InputCounts)) {
        let mut counts = self.inner.counts.lock().unwrap_or_else(|e| e.into_inner());
        change(counts.entry(origin.label()).or_default());
    }

    /// Messages accepted and not yet committed.
    pub fn in_flight(&self) -> usize {
        self.inner.capacity - self.inner.room.available_permits()
    }

    /// The configured bound (`ingest.queue_size`).
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// The node, once started.
    pub fn courier(&self) -> Option<&Courier> {
        self.inner.node.get()
    }

    async fn dispatch(&self, message: Message, origin: &Origin) -> Result<ExecutionId, IntakeError> {
        let courier = self.inner.node.get().ok_or(IntakeError::NotRunning)?;
        self.gauge();
        // A stream entry keeps its identity through redeliveries and reclaims;
        // a sender's own `id` does the same for the other inputs.
        let idempotency_key = match (origin, &message.id) {
            (Origin::Stream { stream, entry }, _) => Some(format!("courier.ingest:stream:{stream}:{entry}")),
            (_, Some(id)) => Some(format!("courier.ingest:id:{id}")),
            _ => None,
        };
        let options = DispatchOptions {
            queue: Some(self.inner.queue.clone()),
            idempotency_key,
            ..DispatchOptions::default()
        };
        let started = Instant::now();
        let dispatched = courier.dispatch_with(DELIVER, &message, options).await?;
        self.observe(started.elapsed());
        Ok(dispatched.id())
    }

    fn observe(&self, took: Duration) {
        let sample = took.as_micros().min(u64::MAX as u128) as u64;
        let old = self.inner.commit_micros.load(Ordering::Relaxed);
        self.inner
            .commit_micros
            .store((old * 7 + sample) / 8, Ordering::Relaxed);
    }

    /// How long until the queue has drained enough to take one more: the time
    /// one commit takes, at least 10 ms.
    fn retry_after_ms(&self) -> u64 {
        (self.inner.commit_micros.load(Ordering::Relaxed) / 1000).clamp(10, 5_000)
    }

    fn gauge(&self) {
        metrics::gauge!(metric::INGEST_IN_FLIGHT).set(self.in_flight() as f64);
    }
}
