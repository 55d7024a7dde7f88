//! Rows to records. Column lists are fixed here so that every statement returns
//! columns in the order the decoders read them (by position, not by name: the
//! claim and commit paths decode thousands of rows a second).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use courier_core::{
    DeadLetterRecord, Event, ExecutionId, ExecutionRecord, LeaseToken, ProgressEntry, SignalRecord, TaskError, TaskId,
    TaskRecord,
};
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::codec::{duration_from_micros, from_json, parse};
use crate::error::{Result, corrupt};

/// The task columns, in decoding order.
pub(crate) const TASK_COLUMNS: &str = "id, execution_id, parent_id, step, kind, function, version, queue, tags, \
     priority, state, args, result, error, checkpoint, attempt, retry, timeout_us, lease_owner, lease_token, \
     lease_expires_at, heartbeat_at, stuck_at, wake_gen, scheduled_for, created_at, started_at, completed_at";

/// [`TASK_COLUMNS`] qualified by the alias `t`, for statements that join.
pub(crate) static TASK_COLUMNS_T: LazyLock<String> = LazyLock::new(|| qualify(TASK_COLUMNS, "t"));

/// The execution columns, in decoding order.
pub(crate) const EXECUTION_COLUMNS: &str = "id, function, version, state, args, result, error, queue, tags, \
     priority, idempotency_key, created_at, updated_at, started_at, completed_at, deadline";

/// The signal columns, in decoding order.
pub(crate) const SIGNAL_COLUMNS: &str = "id, execution_id, name, payload, created_at, consumed_by, consumed_at";

/// The dead-letter columns, in decoding order.
pub(crate) const DEAD_LETTER_COLUMNS: &str = "task_id, execution_id, reason, failed_at, task";

/// The event columns, in decoding order.
pub(crate) const EVENT_COLUMNS: &str = "seq, type, execution_id, task_id, ts, data";

/// The progress columns, in decoding order.
pub(crate) const PROGRESS_COLUMNS: &str = "execution_id, task_id, step, status, percent, message, detail, created_at";

fn qualify(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn task_error(value: Option<Value>) -> Result<Option<TaskError>> {
    value.map(|v| from_json(v, "task error")).transpose()
}

/// A task from a row starting with [`TASK_COLUMNS`].
pub(crate) fn task(row: &Row) -> Result<TaskRecord> {
    let attempt: i32 = row.try_get(15)?;
    Ok(TaskRecord {
        id: TaskId(row.try_get(0)?),
        execution_id: ExecutionId(row.try_get(1)?),
        parent_id: row.try_get::<_, Option<Uuid>>(2)?.map(TaskId),
        step: row.try_get(3)?,
        kind: parse(row.try_get::<_, &str>(4)?)?,
        function: row.try_get(5)?,
        version: row.try_get(6)?,
        queue: row.try_get(7)?,
        tags: row.try_get(8)?,
        priority: row.try_get(9)?,
        state: parse(row.try_get::<_, &str>(10)?)?,
        args: row.try_get(11)?,
        result: row.try_get(12)?,
        error: task_error(row.try_get(13)?)?,
        checkpoint: row.try_get(14)?,
        attempt: u32::try_from(attempt).map_err(|_| corrupt(format!("negative attempt {attempt}")))?,
        retry: from_json(row.try_get(16)?, "retry policy")?,
        timeout: row.try_get::<_, Option<i64>>(17)?.map(duration_from_micros),
        lease_owner: row.try_get(18)?,
        lease_token: row.try_get::<_, Option<Uuid>>(19)?.map(LeaseToken),
        lease_expires_at: row.try_get(20)?,
        heartbeat_at: row.try_get(21)?,
        stuck_at: row.try_get(22)?,
        wake_gen: row.try_get(23)?,
        scheduled_for: row.try_get(24)?,
        created_at: row.try_get(25)?,
        started_at: row.try_get(26)?,
        completed_at: row.try_get(27)?,
    })
}

/// An execution from a row of [`EXECUTION_COLUMNS`].
pub(crate) fn execution(row: &Row) -> Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        id: ExecutionId(row.try_get(0)?),
        function: row.try_get(1)?,
        version: row.try_get(2)?,
        state: parse(row.try_get::<_, &str>(3)?)?,
        args: row.try_get(4)?,
        result: row.try_get(5)?,
        error: task_error(row.try_get(6)?)?,
        queue: row.try_get(7)?,
        tags: row.try_get(8)?,
        priority: row.try_get(9)?,
        idempotency_key: row.try_get(10)?,
        created_at: row.try_get(11)?,
        updated_at: row.try_get(12)?,
        started_at: row.try_get(13)?,
        completed_at: row.try_get(14)?,
        deadline: row.try_get(15)?,
    })
}

/// A signal from a row of [`SIGNAL_COLUMNS`].
pub(crate) fn signal(row: &Row) -> Result<SignalRecord> {
    Ok(SignalRecord {
        id: row.try_get(0)?,
        execution_id: ExecutionId(row.try_get(1)?),
        name: row.try_get(2)?,
        payload: row.try_get(3)?,
        created_at: row.try_get(4)?,
        consumed_by: row.try_get::<_, Option<Uuid>>(5)?.map(TaskId),
        consumed_at: row.try_get(6)?,
    })
}

/// A dead letter from a row of [`DEAD_LETTER_COLUMNS`].
pub(crate) fn dead_letter(row: &Row) -> Result<DeadLetterRecord> {
    Ok(DeadLetterRecord {
        task_id: TaskId(row.try_get(0)?),
        execution_id: ExecutionId(row.try_get(1)?),
        reason: row.try_get(2)?,
        failed_at: row.try_get(3)?,
        task: from_json(row.try_get(4)?, "dead letter task")?,
    })
}

/// An event from a row of [`EVENT_COLUMNS`].
pub(crate) fn event(row: &Row) -> Result<Event> {
    Ok(Event {
        seq: row.try_get(0)?,
        event_type: parse(row.try_get::<_, &str>(1)?)?,
        execution_id: row.try_get::<_, Option<Uuid>>(2)?.map(ExecutionId),
        task_id: row.try_get::<_, Option<Uuid>>(3)?.map(TaskId),
        timestamp: row.try_get(4)?,
        data: row.try_get(5)?,
    })
}

/// A progress report from a row of [`PROGRESS_COLUMNS`].
pub(crate) fn progress(row: &Row) -> Result<ProgressEntry> {
    Ok(ProgressEntry {
        execution_id: ExecutionId(row.try_get(0)?),
        task_id: row.try_get::<_, Option<Uuid>>(1)?.map(TaskId),
        progress: courier_core::Progress {
            step: row.try_get(2)?,
            status: row.try_get(3)?,
            percent: row.try_get(4)?,
            message: row.try_get(5)?,
            detail: row.try_get(6)?,
        },
        created_at: row.try_get::<_, DateTime<Utc>>(7)?,
    })
}
