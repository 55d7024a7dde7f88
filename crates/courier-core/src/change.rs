//! What a write changed, and the one table that says what each change appends to
//! the event log and whom it wakes.
//!
//! Every store write reports its [`Change`]s. The store appends each change's
//! [`event`](Change::event) in the same transaction as the change (so the log and
//! the state never disagree), and after the commit the runtime publishes each
//! change's [`notices`](Change::notices). Because both mappings live here, a new
//! event type or a new notifier topic is an edit of this file (and of
//! [`EventType`] or [`Topic`]), never of the places that write.
//!
//! | change | event | notices |
//! |---|---|---|
//! | [`ExecutionCreated`](Change::ExecutionCreated) | `execution.created` `{function, queue}` | — |
//! | [`ExecutionStarted`](Change::ExecutionStarted) | `execution.started` `{function}` | — |
//! | [`ExecutionResumed`](Change::ExecutionResumed) | `execution.resumed` `{function, task_id}` | execution |
//! | [`ExecutionEnded`](Change::ExecutionEnded) | `execution.completed` `{function, result}`, `.failed` `{function, error}`, `.timed_out` `{function}`, `.cancelled` `{function, reason}` | execution |
//! | [`ExecutionPaused`](Change::ExecutionPaused) | `execution.paused` or `execution.unpaused` `{function}` | work on its queues, if unpaused |
//! | [`QueuePaused`](Change::QueuePaused) | `queue.paused` or `queue.resumed` `{queue}` | work, if resumed |
//! | [`TaskCreated`](Change::TaskCreated) | `task.created` `{function, kind, step, queue}` | work, if claimable now |
//! | [`TaskQueued`](Change::TaskQueued) | `task.queued` `{function, kind, attempt, reason}` (`retry`, `woken`, `released`, `replayed`) | work, if due now |
//! | [`TaskStarted`](Change::TaskStarted) | `task.started` `{function, kind, attempt, worker}` | — |
//! | [`TaskProgress`](Change::TaskProgress) | `task.progress`: the [`Progress`] fields that are set | — |
//! | [`TaskHeartbeat`](Change::TaskHeartbeat) | `task.heartbeat` `{details}` | — |
//! | [`TaskCheckpoint`](Change::TaskCheckpoint) | `task.checkpoint` `{checkpoint}` | — |
//! | [`AttemptEnded`](Change::AttemptEnded) | `task.completed` `{function, kind, attempt}` or `task.failed` `{function, kind, attempt, error, will_retry, retry_in_ms}` | task; the parent's execution, if a child settled |
//! | [`TaskStuck`](Change::TaskStuck) | `task.stuck` `{function, kind, attempt, worker, heartbeat_at}` | — |
//! | [`TaskCancelled`](Change::TaskCancelled) | `task.cancelled` `{function, kind, reason}` | task |
//! | [`NotificationSent`](Change::NotificationSent) | `notification.sent` `{id, target, type, mode, group, replaced}` | notifications (with the envelope) |
//! | [`NotificationsDismissed`](Change::NotificationsDismissed) | `notification.dismissed` `{ids, subscriber, group}` | notifications |
//! | [`SourceSubscription`](Change::SourceSubscription) | — | notifications |
//!
//! Every commit that appended an event also wakes the log's followers
//! ([`Notice::Events`]), once per commit. A task created (or queued) and
//! started in the same write wakes no worker: the write that made the work
//! also claimed it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::TaskError;
use crate::event::{EventHead, EventType, NewEvent};
use crate::id::{ExecutionId, TaskId};
use crate::notification::{NotificationMode, NotificationNotice, NotificationRecord, Subscriber, Target};
use crate::notifier::Notice;
use crate::progress::Progress;
use crate::schedule::{RunOutcome, ScheduleRun};
use crate::state::{ExecutionState, TaskKind, TaskState};

/// What the task a change concerns is, as events describe it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRef {
    /// Its execution.
    pub execution: ExecutionId,
    /// The task.
    pub task: TaskId,
    /// What kind of task it is.
    pub kind: TaskKind,
    /// Its function (or signal name, for a signal wait).
    pub function: String,
}

impl TaskRef {
    /// A reference to `task` of `execution`.
    pub fn new(execution: ExecutionId, task: TaskId, kind: TaskKind, function: impl Into<String>) -> Self {
        TaskRef {
            execution,
            task,
            kind,
            function: function.into(),
        }
    }

    /// Whether it is a child of an orchestrator (every task but an execution's root).
    pub fn is_child(&self) -> bool {
        self.task != TaskId::root_of(self.execution)
    }
}

/// Why a task went back to its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requeue {
    /// A failed attempt will be retried.
    Retry,
    /// A parked orchestrator was woken by a settled child.
    Woken,
    /// A claim was given back without using its attempt.
    Released,
    /// A dead letter was replayed.
    Replayed,
}

impl Requeue {
    /// The spelling in `task.queued`'s `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Requeue::Retry => "retry",
            Requeue::Woken => "woken",
            Requeue::Released => "released",
            Requeue::Replayed => "replayed",
        }
    }
}

/// How an attempt ended, as far as the log and waiters care.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "end")]
pub enum AttemptEnd {
    /// It returned a result (or a signal wait received its signal).
    Completed,
    /// It failed; `retry_in` is set when the task goes back to its queue.
    Failed {
        /// The error.
        error: TaskError,
        /// When it will be retried, if it will.
        #[serde(default, with = "crate::duration::serde_duration::option")]
        retry_in: Option<Duration>,
    },
}

/// One thing a committed write changed.
///
/// ```
/// use courier_core::{Change, EventType, ExecutionId, Notice, TaskId, TaskKind, TaskRef, TaskState};
/// let execution = ExecutionId::new();
/// let child = TaskRef::new(execution, TaskId::for_step(execution, 1), TaskKind::Activity, "charge");
/// let change = Change::AttemptEnded { task: child, attempt: 1, end: courier_core::AttemptEnd::Completed };
/// assert_eq!(change.event().unwrap().event_type, EventType::TaskCompleted);
/// // A child settled: its waiters and its orchestrator's execution hear of it.
/// let notices = change.notices();
/// assert!(notices.iter().any(|n| matches!(n, Notice::Task { state: TaskState::Completed, .. })));
/// assert!(notices.iter().any(|n| matches!(n, Notice::Execution { child: Some(_), .. })));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum Change {
    /// An execution was dispatched (its root task comes as a `TaskCreated`).
    ExecutionCreated {
        /// The execution.
        execution: ExecutionId,
        /// Its function.
        function: String,
        /// Its root task's queue.
        queue: String,
    },
    /// An execution's root task started for the first time.
    ExecutionStarted {
        /// The execution.
        execution: ExecutionId,
        /// Its function.
        function: String,
    },
    /// A failed execution was reopened by replaying a dead letter of `task`.
    ExecutionResumed {
        /// The execution.
        execution: ExecutionId,
        /// Its function.
        function: String,
        /// The replayed task.
        task: TaskId,
    },
    /// An execution reached a terminal state.
    ExecutionEnded {
        /// The execution.
        execution: ExecutionId,
        /// Its function.
        function: String,
        /// `completed`, `failed`, `timed_out` or `cancelled`.
        state: ExecutionState,
        /// The result (completed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        /// The error (failed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<TaskError>,
        /// Why (cancelled).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An execution was paused or unpaused.
    ExecutionPaused {
        /// The execution.
        execution: ExecutionId,
        /// Its function.
        function: String,
        /// Paused (true) or unpaused.
        paused: bool,
        /// The queues holding its work that waits to be claimed (when unpaused),
        /// whose workers are woken.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        queues: Vec<String>,
    },
    /// A queue was paused or resumed.
    QueuePaused {
        /// The queue.
        queue: String,
        /// Paused (true) or resumed.
        paused: bool,
    },
    /// A task row was created.
    TaskCreated {
        /// The task.
        task: TaskRef,
        /// Its step in the execution.
        step: i64,
        /// Its queue.
        queue: String,
        /// The state it starts in.
        state: TaskState,
        /// Whether it is claimable at once (pending and not delayed).
        claimable_now: bool,
    },
    /// A task went back to its queue.
    TaskQueued {
        /// The task.
        task: TaskRef,
        /// Its queue.
        queue: String,
        /// Its attempt count.
        attempt: u32,
        /// Why.
        reason: Requeue,
        /// Whether it is claimable at once.
        claimable_now: bool,
    },
    /// A worker claimed a task and an attempt began.
    TaskStarted {
        /// The task.
        task: TaskRef,
        /// The attempt.
        attempt: u32,
        /// Who claimed it.
        worker: String,
    },
    /// A task reported progress.
    TaskProgress {
        /// The execution.
        execution: ExecutionId,
        /// The task reporting.
        task: TaskId,
        /// The report.
        progress: Progress,
    },
    /// A task's code reported that it is alive.
    TaskHeartbeat {
        /// The execution.
        execution: ExecutionId,
        /// The task.
        task: TaskId,
        /// What it said.
        details: Option<Value>,
    },
    /// A task saved a checkpoint.
    TaskCheckpoint {
        /// The execution.
        execution: ExecutionId,
        /// The task.
        task: TaskId,
        /// The checkpoint.
        checkpoint: Value,
    },
    /// An attempt ended (a retry is a failed attempt whose task is pending again).
    AttemptEnded {
        /// The task.
        task: TaskRef,
        /// The attempt.
        attempt: u32,
        /// How it ended.
        end: AttemptEnd,
    },
    /// A running task's heartbeat is late.
    TaskStuck {
        /// The task.
        task: TaskRef,
        /// The attempt.
        attempt: u32,
        /// Who holds it.
        worker: Option<String>,
        /// Its last heartbeat.
        heartbeat_at: Option<DateTime<Utc>>,
    },
    /// A task was cancelled (with its execution).
    TaskCancelled {
        /// The task.
        task: TaskRef,
        /// Why.
        reason: String,
    },
    /// A notification for people was sent. Its `seq` is its event's, which the
    /// store sets when it appends the event (see [`Change::set_seq`]).
    NotificationSent {
        /// The notification as it went out.
        notification: NotificationRecord,
        /// Live notifications of the same target and group it replaced.
        replaced: Vec<uuid::Uuid>,
    },
    /// Notifications were dismissed for one subscriber.
    NotificationsDismissed {
        /// The notifications.
        ids: Vec<uuid::Uuid>,
        /// For whom.
        subscriber: Subscriber,
        /// The group dismissed, if dismissed by group.
        group: Option<String>,
        /// The event's sequence number (set by the store).
        seq: i64,
    },
    /// A user subscribed to a source, or unsubscribed.
    SourceSubscription {
        /// The user.
        user: String,
        /// The source.
        source: String,
        /// Subscribed (true) or unsubscribed.
        subscribed: bool,
    },
    /// A schedule's slot was fired or skipped (a buffered slot changes
    /// nothing yet: it is logged when it fires).
    ScheduleRan {
        /// What became of the slot.
        run: ScheduleRun,
    },
}

/// An event's data, borrowed from its change: each shape the table in the
/// module documentation gives, serialized as an object of its fields.
#[derive(Serialize)]
#[serde(untagged)]
enum EventData<'a> {
    Function {
        function: &'a str,
    },
    FunctionQueue {
        function: &'a str,
        queue: &'a str,
    },
    Resumed {
        function: &'a str,
        task_id: TaskId,
    },
    Completed {
        function: &'a str,
        result: &'a Value,
    },
    Failed {
        function: &'a str,
        error: &'a Option<TaskError>,
    },
    Cancelled {
        function: &'a str,
        reason: &'a str,
    },
    Queue {
        queue: &'a str,
    },
    TaskCreated {
        function: &'a str,
        kind: TaskKind,
        step: i64,
        queue: &'a str,
    },
    TaskQueued {
        function: &'a str,
        kind: TaskKind,
        attempt: u32,
        reason: &'static str,
    },
    TaskStarted {
        function: &'a str,
        kind: TaskKind,
        attempt: u32,
        worker: &'a str,
    },
    Progress(&'a Progress),
    Heartbeat {
        details: &'a Option<Value>,
    },
    Checkpoint {
        checkpoint: &'a Value,
    },
    AttemptCompleted {
        function: &'a str,
        kind: TaskKind,
        attempt: u32,
    },
    AttemptFailed {
        function: &'a str,
        kind: TaskKind,
        attempt: u32,
        error: &'a TaskError,
        will_retry: bool,
        retry_in_ms: Option<u64>,
    },
    TaskStuck {
        function: &'a str,
        kind: TaskKind,
        attempt: u32,
        worker: &'a Option<String>,
        heartbeat_at: &'a Option<DateTime<Utc>>,
    },
    TaskCancelled {
        function: &'a str,
        kind: TaskKind,
        reason: &'a str,
    },
    NotificationSent {
        id: Uuid,
        target: &'a Target,
        #[serde(rename = "type")]
        kind: &'a str,
        mode: &'a NotificationMode,
        group: &'a Option<String>,
        replaced: &'a [Uuid],
    },
    NotificationsDismissed {
        ids: &'a [Uuid],
        subscriber: &'a Subscriber,
        group: &'a Option<String>,
    },
    ScheduleRan {
        schedule_id: &'a str,
        slot: DateTime<Utc>,
        count: u32,
        reason: &'a str,
    },
}

impl Change {
    /// The event this change appends to the log.
    pub fn event(&self) -> Option<NewEvent> {
        let (head, data) = self.event_parts()?;
        // Serializing borrowed fields into a `Value` cannot fail: every map key is a string.
        Some(head.with_data(serde_json::to_value(&data).unwrap_or(Value::Null)))
    }

    /// The event this change appends to the log, its data as JSON text: what
    /// [`event`](Self::event) says, for a store that keeps the data as text,
    /// without building a [`Value`] first (that detour was about a sixth of
    /// what appending an event cost SQLite's writer).
    ///
    /// ```
    /// use courier_core::{Change, EventType, ExecutionId};
    /// let change = Change::ExecutionStarted { execution: ExecutionId::new(), function: "resize".into() };
    /// let (head, data) = change.event_text().unwrap();
    /// assert_eq!(head.event_type, EventType::ExecutionStarted);
    /// assert_eq!(data, r#"{"function":"resize"}"#);
    /// ```
    pub fn event_text(&self) -> Option<(EventHead, String)> {
        let (head, data) = self.event_parts()?;
        // Serializing borrowed fields cannot fail: every map key is a string.
        Some((head, serde_json::to_string(&data).unwrap_or_else(|_| "null".into())))
    }

    /// The event's head and its data, borrowed from the change: the one table
    /// both [`event`](Self::event) and [`event_text`](Self::event_text) read.
    fn event_parts(&self) -> Option<(EventHead, EventData<'_>)> {
        let parts = match self {
            Change::ExecutionCreated {
                execution,
                function,
                queue,
            } => (
                EventHead::execution(EventType::ExecutionCreated, *execution, function),
                EventData::FunctionQueue { function, queue },
            ),
            Change::ExecutionStarted { execution, function } => (
                EventHead::execution(EventType::ExecutionStarted, *execution, function),
                EventData::Function { function },
            ),
            Change::ExecutionResumed {
                execution,
                function,
                task,
            } => (
                EventHead::execution(EventType::ExecutionResumed, *execution, function),
                EventData::Resumed {
                    function,
                    task_id: *task,
                },
            ),
            Change::ExecutionEnded {
                execution,
                function,
                state,
                result,
                error,
                reason,
            } => {
                let (event_type, data) = match state {
                    ExecutionState::Completed => (
                        EventType::ExecutionCompleted,
                        EventData::Completed {
                            function,
                            result: result.as_ref().unwrap_or(&Value::Null),
                        },
                    ),
                    ExecutionState::Failed => (EventType::ExecutionFailed, EventData::Failed { function, error }),
                    ExecutionState::TimedOut => (EventType::ExecutionTimedOut, EventData::Function { function }),
                    ExecutionState::Cancelled => (
                        EventType::ExecutionCancelled,
                        EventData::Cancelled {
                            function,
                            reason: reason.as_deref().unwrap_or(""),
                        },
                    ),
                    ExecutionState::Pending | ExecutionState::Running => return None,
                };
                (EventHead::execution(event_type, *execution, function), data)
            }
            Change::ExecutionPaused {
                execution,
                function,
                paused,
                ..
            } => {
                let event_type = if *paused {
                    EventType::ExecutionPaused
                } else {
                    EventType::ExecutionUnpaused
                };
                (
                    EventHead::execution(event_type, *execution, function),
                    EventData::Function { function },
                )
            }
            Change::QueuePaused { queue, paused } => (
                EventHead::outside(if *paused {
                    EventType::QueuePaused
                } else {
                    EventType::QueueResumed
                }),
                EventData::Queue { queue },
            ),
            Change::TaskCreated { task, step, queue, .. } => (
                task.event_head(EventType::TaskCreated),
                EventData::TaskCreated {
                    function: &task.function,
                    kind: task.kind,
                    step: *step,
                    queue,
                },
            ),
            Change::TaskQueued {
                task, attempt, reason, ..
            } => (
                task.event_head(EventType::TaskQueued),
                EventData::TaskQueued {
                    function: &task.function,
                    kind: task.kind,
                    attempt: *attempt,
                    reason: reason.as_str(),
                },
            ),
            Change::TaskStarted { task, attempt, worker } => (
                task.event_head(EventType::TaskStarted),
                EventData::TaskStarted {
                    function: &task.function,
                    kind: task.kind,
                    attempt: *attempt,
                    worker,
                },
            ),
            Change::TaskProgress {
                execution,
                task,
                progress,
            } => (
                EventHead::task(EventType::TaskProgress, *execution, *task),
                EventData::Progress(progress),
            ),
            Change::TaskHeartbeat {
                execution,
                task,
                details,
            } => (
                EventHead::task(EventType::TaskHeartbeat, *execution, *task),
                EventData::Heartbeat { details },
            ),
            Change::TaskCheckpoint {
                execution,
                task,
                checkpoint,
            } => (
                EventHead::task(EventType::TaskCheckpoint, *execution, *task),
                EventData::Checkpoint { checkpoint },
            ),
            Change::AttemptEnded { task, attempt, end } => match end {
                AttemptEnd::Completed => (
                    task.event_head(EventType::TaskCompleted),
                    EventData::AttemptCompleted {
                        function: &task.function,
                        kind: task.kind,
                        attempt: *attempt,
                    },
                ),
                AttemptEnd::Failed { error, retry_in } => (
                    task.event_head(EventType::TaskFailed),
                    EventData::AttemptFailed {
                        function: &task.function,
                        kind: task.kind,
                        attempt: *attempt,
                        error,
                        will_retry: retry_in.is_some(),
                        retry_in_ms: retry_in.map(|d| d.as_millis() as u64),
                    },
                ),
            },
            Change::TaskStuck {
                task,
                attempt,
                worker,
                heartbeat_at,
            } => (
                task.event_head(EventType::TaskStuck),
                EventData::TaskStuck {
                    function: &task.function,
                    kind: task.kind,
                    attempt: *attempt,
                    worker,
                    heartbeat_at,
                },
            ),
            Change::TaskCancelled { task, reason } => (
                task.event_head(EventType::TaskCancelled),
                EventData::TaskCancelled {
                    function: &task.function,
                    kind: task.kind,
                    reason,
                },
            ),
            Change::NotificationSent { notification, replaced } => (
                EventHead::outside(EventType::NotificationSent),
                EventData::NotificationSent {
                    id: notification.id,
                    target: &notification.target,
                    kind: &notification.kind,
                    mode: &notification.mode,
                    group: &notification.group,
                    replaced,
                },
            ),
            Change::NotificationsDismissed {
                ids, subscriber, group, ..
            } => (
                EventHead::outside(EventType::NotificationDismissed),
                EventData::NotificationsDismissed { ids, subscriber, group },
            ),
            Change::SourceSubscription { .. } => return None,
            Change::ScheduleRan { run } => {
                let event_type = match run.outcome {
                    RunOutcome::Fired => EventType::ScheduleFired,
                    RunOutcome::Skipped => EventType::ScheduleSkipped,
                    RunOutcome::Buffered => return None,
                };
                let head = EventHead {
                    event_type,
                    execution_id: run.execution_id,
                    task_id: None,
                    // A skipped slot concerns no execution; a fired one's is
                    // looked up.
                    internal: run.execution_id.is_none().then_some(false),
                };
                (
                    head,
                    EventData::ScheduleRan {
                        schedule_id: &run.schedule_id,
                        slot: run.slot,
                        count: run.count,
                        reason: &run.reason,
                    },
                )
            }
        };
        Some(parts)
    }

    /// Tells a change that carries its event's sequence number what it is (the
    /// store calls this when it appends the event; other changes ignore it).
    pub fn set_seq(&mut self, seq: i64) {
        match self {
            Change::NotificationSent { notification, .. } => notification.seq = seq,
            Change::NotificationsDismissed { seq: own, .. } => *own = seq,
            _ => {}
        }
    }

    /// Whether [`event`](Self::event) has an event for it (cheaper than building it).
    pub fn appends_event(&self) -> bool {
        !matches!(
            self,
            Change::ExecutionEnded {
                state: ExecutionState::Pending | ExecutionState::Running,
                ..
            } | Change::SourceSubscription { .. }
                | Change::ScheduleRan {
                    run: ScheduleRun {
                        outcome: RunOutcome::Buffered,
                        ..
                    }
                }
        )
    }

    /// Whom this change wakes (besides the log's followers, which
    /// [`notices_of`] adds once per commit).
    pub fn notices(&self) -> Vec<Notice> {
        match self {
            Change::ExecutionResumed { execution, .. } => vec![Notice::Execution {
                execution_id: *execution,
                state: ExecutionState::Running,
                child: None,
            }],
            Change::ExecutionEnded { execution, state, .. } => vec![Notice::Execution {
                execution_id: *execution,
                state: *state,
                child: None,
            }],
            Change::ExecutionPaused {
                paused: false, queues, ..
            } => queues.iter().map(|q| Notice::Work { queue: q.clone() }).collect(),
            Change::QueuePaused { queue, paused: false } => vec![Notice::Work { queue: queue.clone() }],
            Change::TaskCreated {
                queue, claimable_now, ..
            }
            | Change::TaskQueued {
                queue, claimable_now, ..
            } => {
                if *claimable_now {
                    vec![Notice::Work { queue: queue.clone() }]
                } else {
                    Vec::new()
                }
            }
            Change::AttemptEnded { task, end, .. } => {
                let state = match end {
                    AttemptEnd::Completed => TaskState::Completed,
                    AttemptEnd::Failed { retry_in: Some(_), .. } => TaskState::Pending,
                    AttemptEnd::Failed { retry_in: None, .. } => TaskState::Failed,
                };
                let mut notices = vec![Notice::Task {
                    task_id: task.task,
                    state,
                }];
                if state.is_terminal() && task.is_child() {
                    notices.push(task.child_settled(state));
                }
                notices
            }
            Change::TaskCancelled { task, .. } => vec![Notice::Task {
                task_id: task.task,
                state: TaskState::Cancelled,
            }],
            Change::NotificationSent { notification, replaced } => {
                vec![Notice::Notification(Box::new(NotificationNotice::Sent {
                    id: notification.id,
                    seq: notification.seq,
                    target: notification.target.clone(),
                    mode: notification.mode,
                    replaced: replaced.clone(),
                    envelope: Some(notification.envelope()),
                }))]
            }
            Change::NotificationsDismissed {
                ids, subscriber, seq, ..
            } => vec![Notice::Notification(Box::new(NotificationNotice::Dismissed {
                ids: ids.clone(),
                seq: *seq,
                subscriber: subscriber.clone(),
            }))],
            Change::SourceSubscription {
                user,
                source,
                subscribed,
            } => vec![Notice::Notification(Box::new(NotificationNotice::Subscription {
                user: user.clone(),
                source: source.clone(),
                subscribed: *subscribed,
            }))],
            Change::ExecutionCreated { .. }
            | Change::ExecutionStarted { .. }
            | Change::TaskStarted { .. }
            | Change::TaskProgress { .. }
            | Change::TaskHeartbeat { .. }
            | Change::TaskCheckpoint { .. }
            | Change::TaskStuck { .. }
            | Change::ScheduleRan { .. }
            | Change::ExecutionPaused { paused: true, .. }
            | Change::QueuePaused { paused: true, .. } => Vec::new(),
        }
    }

    /// The child that settled and how, if this change settles an orchestrator's child.
    pub fn settled_child(&self) -> Option<(ExecutionId, TaskId, TaskState)> {
        match self {
            Change::AttemptEnded { task, end, .. } if task.is_child() => match end {
                AttemptEnd::Completed => Some((task.execution, task.task, TaskState::Completed)),
                AttemptEnd::Failed { retry_in: None, .. } => Some((task.execution, task.task, TaskState::Failed)),
                AttemptEnd::Failed { retry_in: Some(_), .. } => None,
            },
            _ => None,
        }
    }
}

impl TaskRef {
    /// A root task runs its execution's own function, so its events can say
    /// whether they are internal; an orchestrator's child cannot (a user's
    /// orchestrator may call a `courier.*` activity and stay public).
    fn event_head(&self, event_type: EventType) -> EventHead {
        let mut head = EventHead::task(event_type, self.execution, self.task);
        if !self.is_child() {
            head.internal = Some(crate::is_internal(&self.function));
        }
        head
    }

    fn child_settled(&self, state: TaskState) -> Notice {
        Notice::Execution {
            execution_id: self.execution,
            state: ExecutionState::Running,
            child: Some((self.task, state)),
        }
    }
}

/// The events of `changes`, in order: what a store appends for them.
pub fn events_of(changes: &[Change]) -> Vec<NewEvent> {
    changes.iter().filter_map(Change::event).collect()
}

/// Everyone `changes` wake, in order, ending with one [`Notice::Events`] if any
/// change appended an event. A task that the same write made claimable and
/// then started (a claim riding a group commit) wakes no worker.
pub fn notices_of<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Vec<Notice> {
    let changes: Vec<&Change> = changes.into_iter().collect();
    let started: std::collections::HashSet<TaskId> = changes
        .iter()
        .filter_map(|c| match c {
            Change::TaskStarted { task, .. } => Some(task.task),
            _ => None,
        })
        .collect();
    let mut notices = Vec::new();
    let mut logged = false;
    for change in changes {
        logged |= change.appends_event();
        if let Change::TaskCreated { task, .. } | Change::TaskQueued { task, .. } = change
            && started.contains(&task.task)
        {
            continue;
        }
        notices.extend(change.notices());
    }
    if logged {
        notices.push(Notice::Events);
    }
    notices
}

/// A write's answer and what it changed.
///
/// ```
/// use courier_core::Committed;
/// let done = Committed::unchanged(7);
/// assert!(done.changes.is_empty());
/// assert_eq!(done.value, 7);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Committed<T> {
    /// What the write returns.
    pub value: T,
    /// What it changed, in the order its events were appended.
    pub changes: Vec<Change>,
}

impl<T> Committed<T> {
    /// A write that changed `changes`.
    pub fn new(value: T, changes: Vec<Change>) -> Self {
        Committed { value, changes }
    }

    /// A write that appended nothing.
    pub fn unchanged(value: T) -> Self {
        Committed {
            value,
            changes: Vec::new(),
        }
    }

    /// The answer with another type, the same changes.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Committed<U> {
        Committed {
            value: f(self.value),
            changes: self.changes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The text a store writes is the data the event carries, field for
    /// field, with the same head: the two read one table.
    #[test]
    fn an_event_as_text_says_what_the_event_says() {
        let execution = ExecutionId::new();
        let root = TaskRef::new(execution, TaskId::root_of(execution), TaskKind::Activity, "courier.f");
        let changes = [
            Change::ExecutionCreated {
                execution,
                function: "f".into(),
                queue: "q".into(),
            },
            Change::ExecutionEnded {
                execution,
                function: "f".into(),
                state: ExecutionState::Failed,
                result: None,
                error: Some(TaskError::new("boom", "no \"quotes\" here")),
                reason: None,
            },
            Change::ExecutionEnded {
                execution,
                function: "f".into(),
                state: ExecutionState::Completed,
                result: None,
                error: None,
                reason: None,
            },
            Change::QueuePaused {
                queue: "q".into(),
                paused: true,
            },
            Change::TaskQueued {
                task: child(),
                queue: "q".into(),
                attempt: 2,
                reason: Requeue::Retry,
                claimable_now: true,
            },
            Change::TaskStarted {
                task: root.clone(),
                attempt: 1,
                worker: "w".into(),
            },
            Change::TaskProgress {
                execution,
                task: root.task,
                progress: Progress::default(),
            },
            Change::AttemptEnded {
                task: child(),
                attempt: 1,
                end: AttemptEnd::Failed {
                    error: TaskError::new("boom", "no"),
                    retry_in: Some(Duration::from_millis(10)),
                },
            },
            Change::TaskStuck {
                task: root,
                attempt: 1,
                worker: None,
                heartbeat_at: Some(Utc::now()),
            },
        ];
        for change in &changes {
            let event = change.event().unwrap();
            let (head, text) = change.event_text().unwrap();
            assert_eq!(head.with_data(serde_json::from_str(&text).unwrap()), event, "{text}");
        }
        assert_eq!(
            changes[2].event().unwrap().data,
            json!({"function": "f", "result": null})
        );
        assert_eq!(changes[5].event().unwrap().internal, Some(true));
        let ended = Change::ExecutionEnded {
            execution,
            function: "f".into(),
            state: ExecutionState::Running,
            result: None,
            error: None,
            reason: None,
        };
        assert_eq!(ended.event_text(), None);
    }

    fn child() -> TaskRef {
        let execution = ExecutionId::new();
        TaskRef::new(execution, TaskId::for_step(execution, 2), TaskKind::Activity, "f")
    }

    #[test]
    fn a_retry_wakes_the_task_but_not_the_parent() {
        let change = Change::AttemptEnded {
            task: child(),
            attempt: 1,
            end: AttemptEnd::Failed {
                error: TaskError::new("boom", "no"),
                retry_in: Some(Duration::from_millis(10)),
            },
        };
        assert_eq!(
            change.notices(),
            vec![Notice::Task {
                task_id: child_task(&change),
                state: TaskState::Pending
            }]
        );
        let event = change.event().unwrap();
        assert_eq!(event.data["will_retry"], json!(true));
        assert_eq!(event.data["retry_in_ms"], json!(10));
        assert_eq!(change.settled_child(), None);
    }

    fn child_task(change: &Change) -> TaskId {
        match change {
            Change::AttemptEnded { task, .. } => task.task,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_root_task_ending_wakes_no_parent() {
        let execution = ExecutionId::new();
        let root = TaskRef::new(execution, TaskId::root_of(execution), TaskKind::Activity, "f");
        let change = Change::AttemptEnded {
            task: root,
            attempt: 1,
            end: AttemptEnd::Completed,
        };
        assert_eq!(change.notices().len(), 1);
        assert_eq!(change.settled_child(), None);
    }

    #[test]
    fn only_claimable_work_is_announced() {
        let task = child();
        let created = |claimable_now| Change::TaskCreated {
            task: task.clone(),
            step: 2,
            queue: "q".into(),
            state: TaskState::Pending,
            claimable_now,
        };
        assert_eq!(created(true).notices(), vec![Notice::Work { queue: "q".into() }]);
        assert!(created(false).notices().is_empty());
    }

    #[test]
    fn work_claimed_by_the_write_that_made_it_wakes_no_worker() {
        let (claimed, left) = (child(), child());
        let created = |task: &TaskRef| Change::TaskCreated {
            task: task.clone(),
            step: 2,
            queue: "q".into(),
            state: TaskState::Pending,
            claimable_now: true,
        };
        let started = Change::TaskStarted {
            task: claimed.clone(),
            attempt: 1,
            worker: "w".into(),
        };
        let changes = [created(&claimed), started.clone()];
        assert_eq!(notices_of(&changes), vec![Notice::Events]);
        let changes = [created(&claimed), created(&left), started];
        assert_eq!(
            notices_of(&changes),
            vec![Notice::Work { queue: "q".into() }, Notice::Events],
            "work the write left unclaimed is still announced"
        );
    }

    #[test]
    fn every_change_appends_an_event_and_a_commit_wakes_the_log_once() {
        let task = child();
        let changes = vec![
            Change::TaskStarted {
                task: task.clone(),
                attempt: 1,
                worker: "w".into(),
            },
            Change::TaskHeartbeat {
                execution: task.execution,
                task: task.task,
                details: None,
            },
        ];
        assert_eq!(events_of(&changes).len(), 2);
        assert_eq!(notices_of(&changes), vec![Notice::Events]);
        assert!(notices_of(&[]).is_empty());
    }

    #[test]
    fn execution_ends_carry_their_shape() {
        let execution = ExecutionId::new();
        let ended = |state| Change::ExecutionEnded {
            execution,
            function: "f".into(),
            state,
            result: Some(json!(1)),
            error: None,
            reason: Some("r".into()),
        };
        assert_eq!(
            ended(ExecutionState::Completed).event().unwrap().data,
            json!({"function": "f", "result": 1})
        );
        assert_eq!(
            ended(ExecutionState::Cancelled).event().unwrap().data,
            json!({"function": "f", "reason": "r"})
        );
        assert_eq!(ended(ExecutionState::Running).event(), None);
    }
}
