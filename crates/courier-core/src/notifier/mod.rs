//! The `Notifier` contract: who to wake when something changed. Seed 000's
//! operations (notify / subscribe to a task or an execution, with expiry), on
//! top of a batch `publish` and a `subscribe` that is active when it returns.
//!
//! Notices say *that* something changed, never *what* it now is: a woken
//! subscriber reads the store. That is why delivery may be lossy (Redis pub/sub
//! is) without losing wake-ups: a subscriber that may have missed notices gets a
//! [`Notice::Resync`] and re-checks, and every waiter also polls as a safety net.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::id::{ExecutionId, TaskId};
use crate::notification::NotificationNotice;
use crate::state::{ExecutionState, TaskState};

mod hub;
mod local;

pub use hub::{DEFAULT_MAILBOX, Hub, HubStats, TopicListener};
pub use local::LocalNotifier;

/// What a subscriber can listen to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// One task's state changes.
    Task(TaskId),
    /// One execution's state changes, and its children settling.
    Execution(ExecutionId),
    /// New claimable work on any queue.
    Work,
    /// The event log grew.
    Events,
    /// Notifications for people were sent or dismissed, or subscriptions changed.
    Notifications,
}

/// A change worth waking someone for.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// A task changed state.
    Task {
        /// The task.
        task_id: TaskId,
        /// Its new state.
        state: TaskState,
    },
    /// An execution changed state, or (with `child`) one of its tasks settled.
    Execution {
        /// The execution.
        execution_id: ExecutionId,
        /// Its state (unchanged if only a child settled).
        state: ExecutionState,
        /// The child task that settled, and how.
        child: Option<(TaskId, TaskState)>,
    },
    /// Work became claimable on `queue`.
    Work {
        /// The queue.
        queue: String,
    },
    /// Events were appended to the log.
    Events,
    /// Notifications for people were sent or dismissed, or subscriptions changed.
    Notification(Box<NotificationNotice>),
    /// Notices may have been missed (the subscriber fell behind, or the transport
    /// reconnected): re-check the store.
    Resync,
}

impl Notice {
    /// The topic whose subscribers receive this notice (`None` for `Resync`, which
    /// goes to every subscription it concerns directly).
    pub fn topic(&self) -> Option<Topic> {
        match self {
            Notice::Task { task_id, .. } => Some(Topic::Task(*task_id)),
            Notice::Execution { execution_id, .. } => Some(Topic::Execution(*execution_id)),
            Notice::Work { .. } => Some(Topic::Work),
            Notice::Events => Some(Topic::Events),
            Notice::Notification(_) => Some(Topic::Notifications),
            Notice::Resync => None,
        }
    }
}

/// Why a notifier call failed.
#[derive(Debug, Clone, Error)]
pub enum NotifyError {
    /// The transport (Redis, Postgres) cannot be reached now.
    #[error("notifier unavailable: {0}")]
    Unavailable(String),
    /// The notifier was shut down.
    #[error("notifier closed")]
    Closed,
}

/// What a notifier has done so far, for metrics (`GET /metrics`) and health checks.
///
/// Counters only grow; `connected` and `subscribed_channels` are gauges. A backend
/// that has no such thing reports the default (for example, the in-process notifier
/// never reconnects).
///
/// ```
/// use courier_core::NotifierStats;
/// let stats = NotifierStats { published: 3, connected: true, ..NotifierStats::default() };
/// assert_eq!(stats.publish_failures, 0);
/// assert!(stats.connected);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotifierStats {
    /// Notices sent: to the transport for a cluster backend, to local subscribers for
    /// the in-process one.
    pub published: u64,
    /// Publish calls whose notices could not be sent to the transport (they were
    /// still delivered to this node's subscribers).
    pub publish_failures: u64,
    /// Messages that arrived on the subscription connection (including this node's
    /// own echoes, which are then ignored).
    pub received: u64,
    /// Times the subscription connection was re-established after it was lost.
    pub reconnects: u64,
    /// Messages that arrived but could not be understood (logged and ignored).
    pub malformed: u64,
    /// Whether the subscription connection is up now (always true in process).
    pub connected: bool,
    /// Channels (topics) currently subscribed for this node.
    pub subscribed_channels: usize,
}

/// The receiving end of a subscription. Dropping it unsubscribes.
///
/// Its mailbox is bounded: when a publisher finds it full, the notice is not
/// queued but the subscription is marked as lagging, and the next [`next`](Self::next)
/// returns [`Notice::Resync`] first. Nothing is dropped silently.
pub struct Subscription {
    rx: mpsc::Receiver<Notice>,
    lagged: std::sync::Arc<std::sync::atomic::AtomicBool>,
    deadline: Option<Instant>,
    _registration: Box<dyn Any + Send + Sync>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// The sending end a notifier keeps for one subscription.
#[derive(Clone, Debug)]
pub struct Mailbox {
    tx: mpsc::Sender<Notice>,
    lagged: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What [`Mailbox::deliver`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Queued.
    Delivered,
    /// The mailbox was full: the subscriber will be told to resync.
    Lagged,
    /// The subscriber is gone.
    Closed,
}

impl Mailbox {
    /// Queues `notice` without waiting; marks the subscription as lagging if full.
    pub fn deliver(&self, notice: Notice) -> Delivery {
        match self.tx.try_send(notice) {
            Ok(()) => Delivery::Delivered,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lagged.store(true, std::sync::atomic::Ordering::SeqCst);
                Delivery::Lagged
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Closed,
        }
    }

    /// Whether the subscriber has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl Subscription {
    /// A subscription with a mailbox of `capacity`, and the mailbox to deliver into.
    /// `registration` is kept alive as long as the subscription (a notifier puts
    /// whatever unregisters it on drop there).
    pub fn channel(capacity: usize, registration: Box<dyn Any + Send + Sync>) -> (Subscription, Mailbox) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let lagged = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        (
            Subscription {
                rx,
                lagged: lagged.clone(),
                deadline: None,
                _registration: registration,
            },
            Mailbox { tx, lagged },
        )
    }

    /// Ends the subscription after `expiry` (seed 000's `expiry`).
    pub fn expire_after(mut self, expiry: Option<Duration>) -> Self {
        self.deadline = expiry.map(|e| Instant::now() + e);
        self
    }

    /// The next notice; `None` once expired or closed.
    pub async fn next(&mut self) -> Option<Notice> {
        if self.lagged.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Some(Notice::Resync);
        }
        let notice = match self.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, self.rx.recv()).await.ok().flatten(),
            None => self.rx.recv().await,
        };
        // A lag may have been flagged while we waited for this one.
        if notice.is_some() && self.lagged.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Some(Notice::Resync);
        }
        notice
    }

    /// The next notice, or `None` if none arrives within `wait` (or the subscription ended).
    pub async fn next_within(&mut self, wait: Duration) -> Option<Notice> {
        tokio::time::timeout(wait, self.next()).await.ok().flatten()
    }
}

/// Wakes waiters when tasks and executions change: in-process, over Redis
/// pub/sub, or over Postgres LISTEN/NOTIFY.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// `"memory"`, `"redis"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Publishes notices (to this process's subscribers at once, and to other
    /// nodes if the backend spans nodes).
    async fn publish(&self, notices: Vec<Notice>) -> Result<(), NotifyError>;

    /// Subscribes to `topics`; the subscription is active when this returns, so a
    /// caller that subscribes, then checks the store, then waits misses nothing.
    async fn subscribe(&self, topics: Vec<Topic>) -> Result<Subscription, NotifyError>;

    /// Counters and gauges for metrics; the default reports nothing.
    fn stats(&self) -> NotifierStats {
        NotifierStats::default()
    }

    /// The most bytes one message may carry between nodes, if the transport
    /// limits them (Postgres NOTIFY: 7999). A notification's envelope that does
    /// not fit is left out of the message and read from the store by receivers;
    /// an ephemeral notification, which is not stored, must fit.
    fn max_payload(&self) -> Option<usize> {
        None
    }

    /// Seed 000: a task completed.
    async fn notify_task_completed(&self, task_id: TaskId) -> Result<(), NotifyError> {
        self.notify_task_updated(task_id, TaskState::Completed).await
    }

    /// Seed 000: a task changed state.
    async fn notify_task_updated(&self, task_id: TaskId, state: TaskState) -> Result<(), NotifyError> {
        self.publish(vec![Notice::Task { task_id, state }]).await
    }

    /// Seed 000: an execution changed state.
    async fn notify_execution_updated(
        &self,
        execution_id: ExecutionId,
        state: ExecutionState,
    ) -> Result<(), NotifyError> {
        self.publish(vec![Notice::Execution {
            execution_id,
            state,
            child: None,
        }])
        .await
    }

    /// Seed 000: notices about one task, until `expiry`.
    async fn subscribe_to_task(&self, task_id: TaskId, expiry: Option<Duration>) -> Result<Subscription, NotifyError> {
        Ok(self.subscribe(vec![Topic::Task(task_id)]).await?.expire_after(expiry))
    }

    /// Seed 000: notices about one execution, until `expiry`.
    async fn subscribe_to_execution(
        &self,
        execution_id: ExecutionId,
        expiry: Option<Duration>,
    ) -> Result<Subscription, NotifyError> {
        Ok(self
            .subscribe(vec![Topic::Execution(execution_id)])
            .await?
            .expire_after(expiry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_mailbox_turns_into_a_resync_not_a_silent_drop() {
        let (mut sub, mailbox) = Subscription::channel(2, Box::new(()));
        let n = |i| Notice::Work { queue: format!("q{i}") };
        assert_eq!(mailbox.deliver(n(1)), Delivery::Delivered);
        assert_eq!(mailbox.deliver(n(2)), Delivery::Delivered);
        assert_eq!(mailbox.deliver(n(3)), Delivery::Lagged);
        assert_eq!(sub.next().await, Some(Notice::Resync));
        assert_eq!(sub.next().await, Some(n(1)));
        assert_eq!(sub.next().await, Some(n(2)));
        drop(sub);
        assert_eq!(mailbox.deliver(n(4)), Delivery::Closed);
    }

    #[tokio::test]
    async fn an_expired_subscription_ends() {
        let (sub, _mailbox) = Subscription::channel(2, Box::new(()));
        let mut sub = sub.expire_after(Some(Duration::from_millis(20)));
        assert_eq!(sub.next().await, None);
    }
}
