//! The events each state change appends, shaped the same way by every store.
//!
//! Stores build their events through these functions (or, where a store builds
//! them in SQL for speed, produce exactly these shapes; the conformance suite
//! checks them). The `data` of each type:
//!
//! | type | data |
//! |---|---|
//! | `execution.created` | `{function, queue}` |
//! | `execution.started` | `{function}` |
//! | `execution.resumed` | `{function, task_id}` (the replayed task) |
//! | `execution.completed` | `{function, result}` |
//! | `execution.failed` | `{function, error}` |
//! | `execution.timed_out` | `{function}` |
//! | `execution.cancelled` | `{function, reason}` |
//! | `task.created` | `{function, kind, step, queue}` |
//! | `task.queued` | `{function, kind, attempt, reason}` (`retry`, `woken`, `released`, `replayed`) |
//! | `task.started` | `{function, kind, attempt, worker}` |
//! | `task.progress` | the [`Progress`] fields that are set |
//! | `task.heartbeat` | `{details}` (null when none) |
//! | `task.checkpoint` | `{checkpoint}` |
//! | `task.completed` | `{function, kind, attempt}` |
//! | `task.failed` | `{function, kind, attempt, error, will_retry, retry_in_ms}` (`retry_in_ms` null unless retrying) |
//! | `task.stuck` | `{function, kind, attempt, worker, heartbeat_at}` |
//! | `task.cancelled` | `{function, kind, reason}` |

use std::time::Duration;

use crate::{EventType, ExecutionId, NewEvent, Progress, TaskError, TaskId, TaskKind};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// `execution.created`.
pub fn execution_created(execution: ExecutionId, function: &str, queue: &str) -> NewEvent {
    NewEvent::execution(
        EventType::ExecutionCreated,
        execution,
        json!({"function": function, "queue": queue}),
    )
}

/// `execution.started`.
pub fn execution_started(execution: ExecutionId, function: &str) -> NewEvent {
    NewEvent::execution(EventType::ExecutionStarted, execution, json!({"function": function}))
}

/// `execution.resumed`.
pub fn execution_resumed(execution: ExecutionId, function: &str, task: TaskId) -> NewEvent {
    NewEvent::execution(
        EventType::ExecutionResumed,
        execution,
        json!({"function": function, "task_id": task}),
    )
}

/// `execution.completed`.
pub fn execution_completed(execution: ExecutionId, function: &str, result: &Value) -> NewEvent {
    NewEvent::execution(
        EventType::ExecutionCompleted,
        execution,
        json!({"function": function, "result": result}),
    )
}

/// `execution.failed`.
pub fn execution_failed(execution: ExecutionId, function: &str, error: &TaskError) -> NewEvent {
    NewEvent::execution(
        EventType::ExecutionFailed,
        execution,
        json!({"function": function, "error": error}),
    )
}

/// `execution.timed_out`.
pub fn execution_timed_out(execution: ExecutionId, function: &str) -> NewEvent {
    NewEvent::execution(EventType::ExecutionTimedOut, execution, json!({"function": function}))
}

/// `execution.cancelled`.
pub fn execution_cancelled(execution: ExecutionId, function: &str, reason: &str) -> NewEvent {
    NewEvent::execution(
        EventType::ExecutionCancelled,
        execution,
        json!({"function": function, "reason": reason}),
    )
}

/// `task.created`.
pub fn task_created(
    execution: ExecutionId,
    task: TaskId,
    kind: TaskKind,
    function: &str,
    step: i64,
    queue: &str,
) -> NewEvent {
    NewEvent::task(
        EventType::TaskCreated,
        execution,
        task,
        json!({"function": function, "kind": kind, "step": step, "queue": queue}),
    )
}

/// `task.queued`; `reason` is `retry`, `woken`, `released` or `replayed`.
pub fn task_queued(
    execution: ExecutionId,
    task: TaskId,
    kind: TaskKind,
    function: &str,
    attempt: u32,
    reason: &str,
) -> NewEvent {
    NewEvent::task(
        EventType::TaskQueued,
        execution,
        task,
        json!({"function": function, "kind": kind, "attempt": attempt, "reason": reason}),
    )
}

/// `task.started`.
pub fn task_started(
    execution: ExecutionId,
    task: TaskId,
    kind: TaskKind,
    function: &str,
    attempt: u32,
    worker: &str,
) -> NewEvent {
    NewEvent::task(
        EventType::TaskStarted,
        execution,
        task,
        json!({"function": function, "kind": kind, "attempt": attempt, "worker": worker}),
    )
}

/// `task.progress`.
pub fn task_progress(execution: ExecutionId, task: TaskId, progress: &Progress) -> NewEvent {
    NewEvent::task(
        EventType::TaskProgress,
        execution,
        task,
        serde_json::to_value(progress).unwrap_or(Value::Null),
    )
}

/// `task.heartbeat`.
pub fn task_heartbeat(execution: ExecutionId, task: TaskId, details: Option<&Value>) -> NewEvent {
    NewEvent::task(EventType::TaskHeartbeat, execution, task, json!({"details": details}))
}

/// `task.checkpoint`.
pub fn task_checkpoint(execution: ExecutionId, task: TaskId, checkpoint: &Value) -> NewEvent {
    NewEvent::task(
        EventType::TaskCheckpoint,
        execution,
        task,
        json!({"checkpoint": checkpoint}),
    )
}

/// `task.completed`.
pub fn task_completed(execution: ExecutionId, task: TaskId, kind: TaskKind, function: &str, attempt: u32) -> NewEvent {
    NewEvent::task(
        EventType::TaskCompleted,
        execution,
        task,
        json!({"function": function, "kind": kind, "attempt": attempt}),
    )
}

/// `task.failed`; `retry_in` is set when the task will be retried.
pub fn task_failed(
    execution: ExecutionId,
    task: TaskId,
    kind: TaskKind,
    function: &str,
    attempt: u32,
    error: &TaskError,
    retry_in: Option<Duration>,
) -> NewEvent {
    NewEvent::task(
        EventType::TaskFailed,
        execution,
        task,
        json!({
            "function": function,
            "kind": kind,
            "attempt": attempt,
            "error": error,
            "will_retry": retry_in.is_some(),
            "retry_in_ms": retry_in.map(|d| d.as_millis() as u64),
        }),
    )
}

/// `task.stuck`.
pub fn task_stuck(
    execution: ExecutionId,
    task: TaskId,
    kind: TaskKind,
    function: &str,
    attempt: u32,
    worker: Option<&str>,
    heartbeat_at: Option<DateTime<Utc>>,
) -> NewEvent {
    NewEvent::task(
        EventType::TaskStuck,
        execution,
        task,
        json!({
            "function": function,
            "kind": kind,
            "attempt": attempt,
            "worker": worker,
            "heartbeat_at": heartbeat_at,
        }),
    )
}

/// `task.cancelled`.
pub fn task_cancelled(execution: ExecutionId, task: TaskId, kind: TaskKind, function: &str, reason: &str) -> NewEvent {
    NewEvent::task(
        EventType::TaskCancelled,
        execution,
        task,
        json!({"function": function, "kind": kind, "reason": reason}),
    )
}
