//! The event log: every state change, in one sequence, for SSE, WebSocket,
//! polling and webhooks to read after a cursor.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::{ExecutionId, TaskId};
use crate::state::string_enum;

string_enum! {
    /// The kinds of events (seed 002's `task.*` plus execution state changes).
    ///
    /// ```
    /// use courier_core::EventType;
    /// assert_eq!(EventType::TaskCompleted.as_str(), "task.completed");
    /// assert_eq!("execution.timed_out".parse::<EventType>().unwrap(), EventType::ExecutionTimedOut);
    /// ```
    EventType {
        /// A task row was created (claimable at once unless delayed or waiting).
        TaskCreated => "task.created",
        /// A task went back to the queue: retry scheduled, orchestrator woken, dead letter replayed.
        TaskQueued => "task.queued",
        /// A worker claimed a task and an attempt began.
        TaskStarted => "task.started",
        /// A running task reported progress.
        TaskProgress => "task.progress",
        /// A running task reported that it is alive.
        TaskHeartbeat => "task.heartbeat",
        /// A running task saved a checkpoint.
        TaskCheckpoint => "task.checkpoint",
        /// A task finished with a result.
        TaskCompleted => "task.completed",
        /// An attempt failed (the data says whether it will be retried).
        TaskFailed => "task.failed",
        /// A running task's heartbeat is late.
        TaskStuck => "task.stuck",
        /// A task was cancelled.
        TaskCancelled => "task.cancelled",
        /// An execution was dispatched.
        ExecutionCreated => "execution.created",
        /// An execution's root task started for the first time.
        ExecutionStarted => "execution.started",
        /// A failed execution was reopened by replaying a dead letter.
        ExecutionResumed => "execution.resumed",
        /// An execution completed.
        ExecutionCompleted => "execution.completed",
        /// An execution failed.
        ExecutionFailed => "execution.failed",
        /// An execution outlived its expiry.
        ExecutionTimedOut => "execution.timed_out",
        /// An execution was cancelled.
        ExecutionCancelled => "execution.cancelled",
        /// An execution was paused: no claim takes its tasks until it is unpaused.
        ExecutionPaused => "execution.paused",
        /// A paused execution was unpaused (`execution.resumed` already names
        /// the reopening of a failed execution by a replayed dead letter).
        ExecutionUnpaused => "execution.unpaused",
        /// A queue was paused: no claim takes its tasks until it is resumed.
        QueuePaused => "queue.paused",
        /// A paused queue was resumed.
        QueueResumed => "queue.resumed",
        /// A notification for people was sent (ids and target, not its payload).
        NotificationSent => "notification.sent",
        /// Notifications were dismissed by one subscriber.
        NotificationDismissed => "notification.dismissed",
        /// A schedule's slot started an execution.
        ScheduleFired => "schedule.fired",
        /// A schedule's slot (or a run of them) was skipped.
        ScheduleSkipped => "schedule.skipped",
    }
}

impl EventType {
    /// Whether this is a `task.*` event.
    pub fn is_task_event(self) -> bool {
        self.as_str().starts_with("task.")
    }

    /// Whether this is a `notification.*` event.
    pub fn is_notification_event(self) -> bool {
        self.as_str().starts_with("notification.")
    }
}

/// One entry of the event log.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its position in the log: gap-free in commit order, never reused.
    pub seq: i64,
    /// What happened (`type` everywhere: the events API, the streams and
    /// webhook bodies, which also carry it as `event_type`, their earlier name).
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The execution it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<ExecutionId>,
    /// The task it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// When it was appended (store clock).
    pub timestamp: DateTime<Utc>,
    /// Details, shaped by the event type.
    pub data: Value,
    /// Whether it belongs to one of Courier's own executions (a function named
    /// `courier.*`: webhook deliveries, ingested messages), which public feeds
    /// hide unless asked. Set by the store from the execution, since task events
    /// (progress, heartbeats, a user's `courier.sleep`) do not say it themselves.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
}

/// An event to append; the store assigns `seq` and `timestamp`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// What happened.
    pub event_type: EventType,
    /// The execution it concerns.
    pub execution_id: Option<ExecutionId>,
    /// The task it concerns.
    pub task_id: Option<TaskId>,
    /// Details.
    pub data: Value,
    /// Whether it is [`Event::internal`], when whoever made it knows its
    /// execution's function; `None` leaves the store to look the execution up.
    /// Saying it spares the store that lookup, which an append makes per event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<bool>,
}

impl NewEvent {
    /// An event about a task of an execution (internal or not, as the store
    /// finds the execution).
    pub fn task(event_type: EventType, execution_id: ExecutionId, task_id: TaskId, data: Value) -> Self {
        EventHead::task(event_type, execution_id, task_id).with_data(data)
    }

    /// An event about an execution of `function`.
    ///
    /// ```
    /// use courier_core::{EventType, ExecutionId, NewEvent};
    /// let id = ExecutionId::new();
    /// let e = NewEvent::execution(EventType::ExecutionStarted, id, "courier.webhook.deliver", serde_json::json!({}));
    /// assert_eq!(e.internal, Some(true));
    /// ```
    pub fn execution(event_type: EventType, execution_id: ExecutionId, function: &str, data: Value) -> Self {
        EventHead::execution(event_type, execution_id, function).with_data(data)
    }

    /// An event that concerns no execution (never internal).
    pub fn outside(event_type: EventType, data: Value) -> Self {
        EventHead::outside(event_type).with_data(data)
    }
}

/// What a [`NewEvent`] says besides its data: for a store that writes the data
/// as text ([`Change::event_text`](crate::Change::event_text)).
///
/// ```
/// use courier_core::{EventHead, EventType, ExecutionId};
/// let head = EventHead::execution(EventType::ExecutionStarted, ExecutionId::new(), "courier.webhook.deliver");
/// assert_eq!(head.internal, Some(true));
/// assert_eq!(head.with_data(serde_json::json!({})).internal, Some(true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHead {
    /// What happened.
    pub event_type: EventType,
    /// The execution it concerns.
    pub execution_id: Option<ExecutionId>,
    /// The task it concerns.
    pub task_id: Option<TaskId>,
    /// Whether it is internal, if known (see [`NewEvent::internal`]).
    pub internal: Option<bool>,
}

impl EventHead {
    /// About a task of an execution (internal or not, as the store finds the
    /// execution).
    pub fn task(event_type: EventType, execution_id: ExecutionId, task_id: TaskId) -> Self {
        EventHead {
            event_type,
            execution_id: Some(execution_id),
            task_id: Some(task_id),
            internal: None,
        }
    }

    /// About an execution of `function`.
    pub fn execution(event_type: EventType, execution_id: ExecutionId, function: &str) -> Self {
        EventHead {
            event_type,
            execution_id: Some(execution_id),
            task_id: None,
            internal: Some(is_internal(function)),
        }
    }

    /// Concerning no execution (never internal).
    pub fn outside(event_type: EventType) -> Self {
        EventHead {
            event_type,
            execution_id: None,
            task_id: None,
            internal: Some(false),
        }
    }

    /// The whole event, with `data`.
    pub fn with_data(self, data: Value) -> NewEvent {
        NewEvent {
            event_type: self.event_type,
            execution_id: self.execution_id,
            task_id: self.task_id,
            data,
            internal: self.internal,
        }
    }
}

/// Whether `function` is one of Courier's own (named under
/// [`INTERNAL_PREFIX`](crate::INTERNAL_PREFIX)), whose executions' events are
/// [`Event::internal`].
pub fn is_internal(function: &str) -> bool {
    function.starts_with(crate::INTERNAL_PREFIX)
}

/// Which events to read.
///
/// ```
/// use courier_core::{EventFilter, EventType};
/// let f = EventFilter::after(41).types([EventType::TaskCompleted]).limit(100);
/// assert_eq!(f.after, 41);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventFilter {
    /// Only events of this execution.
    pub execution_id: Option<ExecutionId>,
    /// Only events of this task.
    pub task_id: Option<TaskId>,
    /// Only these types (empty: all).
    pub types: Vec<EventType>,
    /// Only events with `seq` greater than this.
    pub after: i64,
    /// At most this many, oldest first.
    pub limit: u32,
    /// Whether events of Courier's own executions ([`Event::internal`]) are
    /// included. True for readers of the whole log (the stream tail, the webhook
    /// dispatcher); public feeds turn it off unless asked.
    #[serde(default = "included")]
    pub include_internal: bool,
}

fn included() -> bool {
    true
}

impl EventFilter {
    /// Everything after `seq`, up to 1000 at a time.
    pub fn after(seq: i64) -> Self {
        EventFilter {
            execution_id: None,
            task_id: None,
            types: Vec::new(),
            after: seq,
            limit: 1000,
            include_internal: true,
        }
    }

    /// Whether to include events of Courier's own executions.
    pub fn internal(mut self, include: bool) -> Self {
        self.include_internal = include;
        self
    }

    /// Only events of `execution`.
    pub fn execution(mut self, execution: ExecutionId) -> Self {
        self.execution_id = Some(execution);
        self
    }

    /// Only events of `task`.
    pub fn task(mut self, task: TaskId) -> Self {
        self.task_id = Some(task);
        self
    }

    /// Only these types.
    pub fn types(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        self.types = types.into_iter().collect();
        self
    }

    /// At most `limit`.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Whether `event` passes this filter (ignoring `after` and `limit`).
    pub fn matches(&self, event: &Event) -> bool {
        self.execution_id.is_none_or(|id| event.execution_id == Some(id))
            && self.task_id.is_none_or(|id| event.task_id == Some(id))
            && (self.types.is_empty() || self.types.contains(&event.event_type))
            && (self.include_internal || !event.internal)
    }

    /// Whether a read of this filter must look at every event after its cursor
    /// to find its matches: it filters by type or leaves out internal events, and
    /// names no execution or task (whose events an index finds).
    pub fn scans_the_log(&self) -> bool {
        self.execution_id.is_none() && self.task_id.is_none() && (!self.types.is_empty() || !self.include_internal)
    }

    /// The highest seq a read of this filter looks at, given the log's `head`:
    /// the head, or, for a read that [scans the log](Self::scans_the_log),
    /// [`EVENT_SCAN_WINDOW`] seqs past the cursor at most, so that a filter
    /// matching little of a long log costs a bounded read, not a walk of the
    /// whole log.
    ///
    /// ```
    /// use courier_core::{EVENT_SCAN_WINDOW, EventFilter, EventType};
    /// assert_eq!(EventFilter::after(5).bound(1_000_000), 1_000_000);
    /// let rare = EventFilter::after(5).types([EventType::ExecutionFailed]);
    /// assert_eq!(rare.bound(1_000_000), 5 + EVENT_SCAN_WINDOW);
    /// assert_eq!(rare.bound(7), 7);
    /// ```
    pub fn bound(&self, head: i64) -> i64 {
        if self.scans_the_log() {
            head.min(self.after.saturating_add(EVENT_SCAN_WINDOW))
        } else {
            head
        }
    }
}

/// How many seqs past its cursor a read that [scans the
/// log](EventFilter::scans_the_log) looks at, at most.
pub const EVENT_SCAN_WINDOW: i64 = 10_000;

/// What a read of the event log found, and how far it looked.
///
/// Every event matching the filter with a seq in `(filter.after, through]` is in
/// `events`: the next read goes on from `after = through`, and a page may be
/// empty yet move the cursor (its filter matched nothing in the stretch it
/// looked at). The reader has caught up when `through` reaches `head`.
///
/// ```
/// use courier_core::{EventFilter, EventPage};
/// let page = EventPage::read(&EventFilter::after(10), Vec::new(), 25, 25);
/// assert_eq!((page.through, page.caught_up()), (25, true));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct EventPage {
    /// The events found, oldest first, at most the filter's limit.
    pub events: Vec<Event>,
    /// The seq the read looked up to (see the type's documentation).
    pub through: i64,
    /// The log's last seq when the read began.
    pub head: i64,
}

impl EventPage {
    /// The page of a read of `filter` that looked at seqs up to `bound` (from
    /// [`EventFilter::bound`]) when the log's last seq was `head`, and found
    /// `events`: a full page looked as far as its last event, a short one as far
    /// as `bound`.
    pub fn read(filter: &EventFilter, events: Vec<Event>, bound: i64, head: i64) -> EventPage {
        let full = filter.limit > 0 && events.len() >= filter.limit as usize;
        let through = match events.last() {
            Some(last) if full => last.seq,
            _ => bound.max(filter.after),
        };
        EventPage { events, through, head }
    }

    /// Whether the read looked as far as the log's head.
    pub fn caught_up(&self) -> bool {
        self.through >= self.head
    }
}
