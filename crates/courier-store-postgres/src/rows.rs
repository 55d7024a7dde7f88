//! Rows to records. Column lists are fixed here so that every statement returns
//! columns in the order the decoders read them (by position, not by name: the
//! claim and commit paths decode thousands of rows a second).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use courier_core::{
    DeadLetterRecord, DeliveryAttempt, DeliveryRecord, Event, EventType, ExecutionId, ExecutionRecord, LeaseToken,
    ParentLink, ProgressEntry, SignalRecord, TaskError, TaskId, TaskRecord, WebhookRecord,
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
     priority, idempotency_key, created_at, updated_at, started_at, completed_at, deadline, parent_execution_id, \
     parent_step, parent_close";

/// The signal columns, in decoding order.
pub(crate) const SIGNAL_COLUMNS: &str = "id, execution_id, name, payload, created_at, consumed_by, consumed_at";

/// The dead-letter columns, in decoding order.
pub(crate) const DEAD_LETTER_COLUMNS: &str = "task_id, execution_id, reason, failed_at, task";

/// The event columns, in decoding order.
pub(crate) const EVENT_COLUMNS: &str = "seq, type, execution_id, task_id, ts, data, internal";

/// The progress columns, in decoding order.
pub(crate) const PROGRESS_COLUMNS: &str = "execution_id, task_id, step, status, percent, message, detail, created_at";

/// The webhook columns, in decoding order.
pub(crate) const WEBHOOK_COLUMNS: &str = "id, url, event_types, execution_id, task_id, headers, secret, description, \
     enabled, disabled_reason, created_at, updated_at, previous_secret, previous_secret_until";

/// The webhook delivery columns, in decoding order.
pub(crate) const DELIVERY_COLUMNS: &str = "id, webhook_id, event_seq, event_type, execution_id, state, attempts, \
     last_status, last_error, created_at, updated_at";

/// The delivery attempt columns, in decoding order.
pub(crate) const ATTEMPT_COLUMNS: &str = "delivery_id, attempt, status, latency_ms, response, error, at";

/// `columns` prefixed with `alias`, for statements that join tables.
pub(crate) fn qualify(columns: &str, alias: &str) -> String {
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
        parent: match row.try_get::<_, Option<Uuid>>(16)? {
            Some(parent) => Some(ParentLink {
                execution_id: ExecutionId(parent),
                step: row.try_get(17)?,
                close: parse(row.try_get::<_, &str>(18)?)?,
            }),
            None => None,
        },
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

/// An event from [`EVENT_COLUMNS`] starting at column `at`.
pub(crate) fn event_from(row: &Row, at: usize) -> Result<Event> {
    Ok(Event {
        seq: row.try_get(at)?,
        event_type: parse(row.try_get::<_, &str>(at + 1)?)?,
        execution_id: row.try_get::<_, Option<Uuid>>(at + 2)?.map(ExecutionId),
        task_id: row.try_get::<_, Option<Uuid>>(at + 3)?.map(TaskId),
        timestamp: row.try_get(at + 4)?,
        data: row.try_get(at + 5)?,
        internal: row.try_get(at + 6)?,
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

/// A webhook from a row of [`WEBHOOK_COLUMNS`].
pub(crate) fn webhook(row: &Row) -> Result<WebhookRecord> {
    webhook_from(row, 0)
}

/// A webhook from [`WEBHOOK_COLUMNS`] starting at column `at`.
pub(crate) fn webhook_from(row: &Row, at: usize) -> Result<WebhookRecord> {
    let event_types = row
        .try_get::<_, Vec<&str>>(at + 2)?
        .into_iter()
        .map(parse::<EventType>)
        .collect::<Result<_>>()?;
    Ok(WebhookRecord {
        id: row.try_get(at)?,
        url: row.try_get(at + 1)?,
        event_types,
        execution_id: row.try_get::<_, Option<Uuid>>(at + 3)?.map(ExecutionId),
        task_id: row.try_get::<_, Option<Uuid>>(at + 4)?.map(TaskId),
        headers: from_json(row.try_get(at + 5)?, "webhook headers")?,
        secret: row.try_get(at + 6)?,
        description: row.try_get(at + 7)?,
        enabled: row.try_get(at + 8)?,
        disabled_reason: row.try_get(at + 9)?,
        created_at: row.try_get(at + 10)?,
        updated_at: row.try_get(at + 11)?,
        previous_secret: row.try_get(at + 12)?,
        previous_secret_until: row.try_get(at + 13)?,
    })
}

/// An HTTP status stored as `int`.
fn http_status(value: Option<i32>) -> Result<Option<u16>> {
    value
        .map(|s| u16::try_from(s).map_err(|_| corrupt(format!("HTTP status {s}"))))
        .transpose()
}

/// An attempt count or number stored as `bigint`.
fn attempt_number(value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(format!("attempt number {value}")))
}

/// A webhook delivery from a row of [`DELIVERY_COLUMNS`].
pub(crate) fn delivery(row: &Row) -> Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: row.try_get(0)?,
        webhook_id: row.try_get(1)?,
        event_seq: row.try_get(2)?,
        event_type: parse(row.try_get::<_, &str>(3)?)?,
        execution_id: ExecutionId(row.try_get(4)?),
        state: parse(row.try_get::<_, &str>(5)?)?,
        attempts: attempt_number(row.try_get(6)?)?,
        last_status: http_status(row.try_get(7)?)?,
        last_error: row.try_get(8)?,
        created_at: row.try_get(9)?,
        updated_at: row.try_get(10)?,
    })
}

/// A delivery attempt from a row of [`ATTEMPT_COLUMNS`].
pub(crate) fn attempt(row: &Row) -> Result<DeliveryAttempt> {
    let latency: i64 = row.try_get(3)?;
    Ok(DeliveryAttempt {
        delivery_id: row.try_get(0)?,
        attempt: attempt_number(row.try_get(1)?)?,
        status: http_status(row.try_get(2)?)?,
        latency_ms: u64::try_from(latency).map_err(|_| corrupt(format!("latency {latency} ms")))?,
        response: row.try_get(4)?,
        error: row.try_get(5)?,
        at: row.try_get(6)?,
    })
}
