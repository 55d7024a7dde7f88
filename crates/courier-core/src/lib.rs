//! Courier's vocabulary: the records, states, events and errors every other crate
//! speaks, and the [`Store`] contract the runtime is written against.
//!
//! This crate does no I/O. It is for code that needs to *name* Courier's things
//! (a task's state, an event type, a retry policy) or to implement a store; it is
//! not the place to run anything. `courier-store` implements [`Store`] for SQLite
//! and Postgres; `courier-runtime` drives work through it.
//!
//! ```
//! use std::time::Duration;
//! use courier_core::{NewExecution, RetryPolicy, TaskKind, TaskSpec, parse_duration};
//!
//! let spec = TaskSpec::new(TaskKind::Activity, "charge_card", serde_json::json!({"cents": 1200}))
//!     .on_queue("payments")
//!     .with_retry(RetryPolicy { max_attempts: 5, ..RetryPolicy::default() });
//! let dispatch = NewExecution::new(spec)
//!     .with_expiry(parse_duration("1h").unwrap())
//!     .with_idempotency_key("order-77");
//! assert_eq!(dispatch.expiry, Some(Duration::from_secs(3600)));
//! ```
#![deny(missing_docs)]

pub mod change;
mod clock;
mod dead_letter;
mod duration;
mod error;
mod event;
mod execution;
mod function;
mod id;
pub mod metric;
mod node;
mod notification;
mod notifier;
mod nul;
#[cfg(feature = "openapi")]
pub mod openapi;
mod pause;
mod priority;
mod progress;
mod rate_limit;
mod retry;
mod schedule;
mod signal;
mod state;
pub mod store;
mod task;
mod webhook;

pub use change::{AttemptEnd, Change, Committed, Requeue, TaskRef, events_of, notices_of};
pub use clock::Clock;
pub use dead_letter::{DeadLetterRecord, Replayed};
pub use duration::{DurationError, format_duration, parse_duration, serde_duration};
pub use error::{LeaseLost, ParseEnumError, StoreError, StoreResult, TaskError};
pub use event::{EVENT_SCAN_WINDOW, Event, EventFilter, EventHead, EventPage, EventType, NewEvent, is_internal};
pub use execution::{
    Cancelled, ChildOutcome, Dispatched, ExecutionFilter, ExecutionRecord, NewExecution, ParentClose, ParentLink,
};
pub use function::{FunctionRecord, FunctionSettings};
pub use id::{ExecutionId, LeaseToken, TaskId};
pub use node::{ExternalWorker, NodeRecord, NodeReport};
pub use notification::{
    Cursor, Dismissal, MAX_KEY as MAX_NOTIFICATION_KEY, NewNotification, NotificationFilter, NotificationMode,
    NotificationNotice, NotificationRecord, NotificationSent, NotificationTtl, Replay, Subscriber, Target, TargetError,
    Viewer, check_key, dismissed_envelope, envelope, epoch_seconds,
};
pub use notifier::{
    DEFAULT_MAILBOX, Delivery, Hub, HubStats, LocalNotifier, Mailbox, Notice, Notifier, NotifierStats, NotifyError,
    Subscription, Topic, TopicListener,
};
pub use nul::{HoldsNul, NulRefusals, nul_refused, text_has_nul, value_has_nul};
pub use pause::{PauseState, PausedQueue};
pub use priority::{PriorityAgeing, PriorityAgeingError};
pub use progress::{Progress, ProgressEntry};
pub use rate_limit::{ConcurrencyKey, MAX_RATE, RateLimit, TokenGrant, take_tokens};
pub use retry::{RetryPolicy, RetryVerdict};
pub use schedule::{
    Firing, MIN_EVERY, NewRun, Overlap, RunOutcome, ScheduleDefinition, ScheduleError, ScheduleRecord, ScheduleRun,
    ScheduleSpec, jitter_of, slot_key,
};
pub use signal::{SignalRecord, SignalSent};
pub use state::{ExecutionState, TaskKind, TaskState};
pub use store::{
    AttemptWrite, CacheStore, ChildGroup, ContextStore, DeadLetterStore, Effect, EffectApplied, EffectWrite,
    EventStore, ExecutionStore, FunctionStore, NodeStore, NotificationStore, PauseStore, RateLimitStore, Release,
    Reservation, ScheduleStore, SeedRecords, Store, TaskStore, WebhookStore, WriteBatch, WriteResults,
};
pub use task::{
    ChildCreated, ClaimRequest, Claimed, Completed, Completion, DEFAULT_QUEUE, Lease, LeaseKey, NewTask, Outcome,
    QueueDepth, Remember, Renewed, TaskFilter, TaskRecord, TaskSpec,
};
pub use webhook::{
    DeliveryAttempt, DeliveryForAttempt, DeliveryRecord, DeliveryReplay, DeliveryState, INTERNAL_PREFIX, NewDelivery,
    WebhookRecord,
};
