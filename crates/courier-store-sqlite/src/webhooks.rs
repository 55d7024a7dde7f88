//! Webhooks: registrations, deliveries (each made by an execution dispatched with
//! it), their attempts, and the dispatcher's cursor in the event log.
//! [`WebhookStore`] is implemented here.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{
    Change, Committed, DeliveryAttempt, DeliveryForAttempt, DeliveryRecord, DeliveryReplay, DeliveryState, ExecutionId,
    HoldsNul, NewDelivery, StoreError, StoreResult, TaskId, WebhookRecord, WebhookStore,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use crate::SqliteStore;
use crate::codec::{after, enum_at, json, json_at, limit, micros, time_at, time_opt_at, uuid_at, uuid_opt_at};
use crate::dispatch;
use crate::error::{Result, conflict_on};
use crate::event_log;

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()> {
        let webhook = webhook.clone();
        self.write(move |conn, _| create(conn, &webhook)).await
    }

    async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>> {
        self.read(move |conn, _| get(conn, id)).await
    }

    async fn list_webhooks(&self, limit: u32, offset: u32) -> StoreResult<Vec<WebhookRecord>> {
        self.read(move |conn, _| list(conn, limit, offset)).await
    }

    async fn delete_webhook(&self, id: Uuid) -> StoreResult<bool> {
        self.write(move |conn, _| delete(conn, id)).await
    }

    async fn set_webhook_enabled(&self, id: Uuid, enabled: bool, reason: Option<&str>) -> StoreResult<bool> {
        let reason = reason.map(str::to_string);
        self.write(move |conn, now| set_enabled(conn, now, id, enabled, reason.as_deref()))
            .await
    }

    async fn rotate_webhook_secret(
        &self,
        id: Uuid,
        secret: &str,
        grace: Duration,
    ) -> StoreResult<Option<WebhookRecord>> {
        let secret = secret.to_string();
        self.write(move |conn, now| rotate_secret(conn, now, id, &secret, grace))
            .await
    }

    async fn replace_webhook_secret(&self, id: Uuid, from: &str, to: &str) -> StoreResult<bool> {
        let (from, to) = (from.to_string(), to.to_string());
        self.write(move |conn, _| replace_secret(conn, id, &from, &to)).await
    }

    async fn webhook_cursor(&self) -> StoreResult<i64> {
        self.read(|conn, _| cursor(conn)).await
    }

    async fn enqueue_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: Vec<NewDelivery>,
    ) -> StoreResult<Committed<bool>> {
        // Isolated: a refused dispatch or a taken delivery id must undo the cursor
        // move and every delivery written before it.
        self.write_changes_isolated(move |conn, now, changes| enqueue(conn, now, from, to, &deliveries, changes))
            .await
    }

    async fn record_delivery_attempt(&self, attempt: &DeliveryAttempt, state: DeliveryState) -> StoreResult<()> {
        // Refused as Postgres (which cannot store one) refuses it.
        attempt.check_nul()?;
        let attempt = attempt.clone();
        self.write(move |conn, now| record_attempt(conn, now, &attempt, state))
            .await
    }

    async fn get_delivery(&self, id: Uuid) -> StoreResult<Option<DeliveryRecord>> {
        self.read(move |conn, _| get_delivery(conn, id)).await
    }

    async fn get_deliveries_for_attempts(&self, ids: &[Uuid]) -> StoreResult<Vec<DeliveryForAttempt>> {
        let ids = ids.to_vec();
        self.read(move |conn, _| get_deliveries_for_attempts(conn, &ids)).await
    }

    async fn list_deliveries(&self, webhook_id: Uuid, limit: u32, offset: u32) -> StoreResult<Vec<DeliveryRecord>> {
        self.read(move |conn, _| list_deliveries(conn, webhook_id, limit, offset))
            .await
    }

    async fn list_delivery_attempts(&self, delivery_id: Uuid) -> StoreResult<Vec<DeliveryAttempt>> {
        self.read(move |conn, _| list_attempts(conn, delivery_id)).await
    }

    async fn skip_delivery(&self, id: Uuid) -> StoreResult<bool> {
        self.write(move |conn, now| skip(conn, now, id)).await
    }

    async fn list_deliveries_in_state(
        &self,
        webhook_id: Uuid,
        state: DeliveryState,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let since = since.map_or(i64::MIN, micros);
        self.read(move |conn, _| list_in_state(conn, webhook_id, state, since, limit))
            .await
    }

    async fn replay_deliveries(&self, replays: Vec<DeliveryReplay>) -> StoreResult<Committed<Vec<Uuid>>> {
        // Isolated: a refused dispatch must undo the deliveries set pending before it.
        self.write_changes_isolated(move |conn, now, changes| replay(conn, now, &replays, changes))
            .await
    }
}

/// The columns of `webhooks`, in the order [`webhook_at`] reads them.
macro_rules! webhook_columns {
    () => {
        "id, url, event_types, execution_id, task_id, headers, secret, description, enabled, disabled_reason, \
         created_at, updated_at, previous_secret, previous_secret_until"
    };
}

/// The columns of `webhook_deliveries`, in the order [`delivery_at`] reads them.
macro_rules! delivery_columns {
    () => {
        "id, webhook_id, event_seq, event_type, execution_id, state, attempts, last_status, last_error, created_at, \
         updated_at"
    };
}

fn webhook_at(row: &Row<'_>) -> rusqlite::Result<WebhookRecord> {
    Ok(WebhookRecord {
        id: uuid_at(row, 0)?,
        url: row.get(1)?,
        event_types: json_at(row, 2)?,
        execution_id: uuid_opt_at(row, 3)?.map(ExecutionId),
        task_id: uuid_opt_at(row, 4)?.map(TaskId),
        headers: json_at(row, 5)?,
        secret: row.get(6)?,
        description: row.get(7)?,
        enabled: row.get(8)?,
        disabled_reason: row.get(9)?,
        created_at: time_at(row, 10)?,
        updated_at: time_at(row, 11)?,
        previous_secret: row.get(12)?,
        previous_secret_until: time_opt_at(row, 13)?,
    })
}

fn delivery_at(row: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: uuid_at(row, 0)?,
        webhook_id: uuid_at(row, 1)?,
        event_seq: row.get(2)?,
        event_type: enum_at(row, 3)?,
        execution_id: ExecutionId(uuid_at(row, 4)?),
        state: enum_at(row, 5)?,
        attempts: row.get(6)?,
        last_status: row.get(7)?,
        last_error: row.get(8)?,
        created_at: time_at(row, 9)?,
        updated_at: time_at(row, 10)?,
    })
}

fn attempt_at(row: &Row<'_>) -> rusqlite::Result<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        delivery_id: uuid_at(row, 0)?,
        attempt: row.get(1)?,
        status: row.get(2)?,
        latency_ms: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
        response: row.get(4)?,
        error: row.get(5)?,
        at: time_at(row, 6)?,
    })
}

/// Inserts a webhook as given; a taken id is a conflict.
fn create(conn: &Connection, w: &WebhookRecord) -> Result<()> {
    conn.prepare_cached(concat!(
        "INSERT INTO webhooks (",
        webhook_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?
    .execute(params![
        w.id.as_bytes(),
        w.url,
        json(&w.event_types)?,
        w.execution_id.map(|e| *e.0.as_bytes()),
        w.task_id.map(|t| *t.0.as_bytes()),
        json(&w.headers)?,
        w.secret,
        w.description,
        w.enabled,
        w.disabled_reason,
        micros(w.created_at),
        micros(w.updated_at),
        w.previous_secret,
        w.previous_secret_until.map(micros),
    ])
    .map_err(conflict_on(w.id, "webhook"))?;
    Ok(())
}

/// One webhook.
fn get(conn: &Connection, id: Uuid) -> Result<Option<WebhookRecord>> {
    Ok(conn
        .prepare_cached(concat!("SELECT ", webhook_columns!(), " FROM webhooks WHERE id = ?1"))?
        .query_row([id.as_bytes()], webhook_at)
        .optional()?)
}

/// Webhooks, oldest first.
fn list(conn: &Connection, max: u32, offset: u32) -> Result<Vec<WebhookRecord>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        webhook_columns!(),
        " FROM webhooks ORDER BY created_at, id LIMIT ?1 OFFSET ?2"
    ))?;
    let rows = stmt.query_map((limit(max), i64::from(offset)), webhook_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes a webhook with its deliveries and their attempts (not the deliveries'
/// executions); whether it existed.
fn delete(conn: &Connection, id: Uuid) -> Result<bool> {
    conn.prepare_cached(
        "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE webhook_id = ?1)",
    )?
    .execute([id.as_bytes()])?;
    conn.prepare_cached("DELETE FROM webhook_deliveries WHERE webhook_id = ?1")?
        .execute([id.as_bytes()])?;
    let n = conn
        .prepare_cached("DELETE FROM webhooks WHERE id = ?1")?
        .execute([id.as_bytes()])?;
    Ok(n > 0)
}

/// Enables or disables a webhook; a reason is kept only while it is disabled.
/// Whether it exists.
fn set_enabled(conn: &Connection, now: i64, id: Uuid, enabled: bool, reason: Option<&str>) -> Result<bool> {
    let reason = if enabled { None } else { reason };
    let n = conn
        .prepare_cached("UPDATE webhooks SET enabled = ?2, disabled_reason = ?3, updated_at = ?4 WHERE id = ?1")?
        .execute(params![id.as_bytes(), enabled, reason, now])?;
    Ok(n > 0)
}

/// Moves the current secret to previous (signing until `grace` from `now`) and
/// puts `secret` in its place, in one statement: SQLite evaluates every `SET`
/// expression on the row as it was, so `previous_secret` is the secret this
/// write replaced. The webhook as it is now, read in the same transaction.
fn rotate_secret(
    conn: &Connection,
    now: i64,
    id: Uuid,
    secret: &str,
    grace: Duration,
) -> Result<Option<WebhookRecord>> {
    let n = conn
        .prepare_cached(
            "UPDATE webhooks SET previous_secret = secret, secret = ?2, previous_secret_until = ?3, updated_at = ?4 \
             WHERE id = ?1",
        )?
        .execute(params![id.as_bytes(), secret, after(now, grace), now])?;
    if n == 0 {
        return Ok(None);
    }
    get(conn, id)
}

/// Replaces the secret value `from` with `to` in whichever of the two secret
/// columns still holds it; whether a row changed.
fn replace_secret(conn: &Connection, id: Uuid, from: &str, to: &str) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE webhooks SET \
             secret = CASE WHEN secret = ?2 THEN ?3 ELSE secret END, \
             previous_secret = CASE WHEN previous_secret = ?2 THEN ?3 ELSE previous_secret END \
             WHERE id = ?1 AND (secret = ?2 OR previous_secret = ?2)",
        )?
        .execute(params![id.as_bytes(), from, to])?;
    Ok(n > 0)
}

/// The dispatcher's position in the event log.
fn cursor(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT last FROM webhook_cursor WHERE id = 1")?
        .query_row([], |row| row.get(0))?)
}

/// If the cursor is still at `from`, moves it to `to` and creates each delivery
/// with its execution (dispatched exactly as [`executions::dispatch`] does, events
/// included); false, with nothing written, if it moved.
///
/// Runs as an isolated writer job: a refusal part-way (a taken execution or
/// delivery id) must undo the cursor move and the deliveries made before it.
fn enqueue(
    conn: &Connection,
    now: i64,
    from: i64,
    to: i64,
    deliveries: &[NewDelivery],
    changes: &mut Vec<Change>,
) -> Result<bool> {
    // Compare-and-set first: a loser learns so before doing any work.
    let moved = conn
        .prepare_cached("UPDATE webhook_cursor SET last = ?2 WHERE id = 1 AND last = ?1")?
        .execute((from, to))?;
    if moved == 0 {
        return Ok(false);
    }
    for d in deliveries {
        // An idempotency key that names an existing execution makes that one the
        // delivery's, as dispatch would answer. A skipped delivery keeps the id
        // reserved for it and dispatches nothing.
        let (execution, state) = if d.skipped {
            (d.execution.id, DeliveryState::Skipped)
        } else {
            (
                dispatch::dispatch(conn, now, &d.execution, changes)?.id(),
                DeliveryState::Pending,
            )
        };
        conn.prepare_cached(
            "INSERT INTO webhook_deliveries (id, webhook_id, event_seq, event_type, execution_id, state, attempts, \
             last_status, last_error, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, NULL, NULL, ?7, ?7)",
        )?
        .execute(params![
            d.id.as_bytes(),
            d.webhook_id.as_bytes(),
            d.event_seq,
            d.event_type.as_str(),
            execution.0.as_bytes(),
            state.as_str(),
            now,
        ])
        .map_err(conflict_on(d.id, "webhook delivery"))?;
    }
    Ok(true)
}

/// Marks a pending delivery skipped; whether it was pending.
fn skip(conn: &Connection, now: i64, id: Uuid) -> Result<bool> {
    let n = conn
        .prepare_cached("UPDATE webhook_deliveries SET state = ?2, updated_at = ?3 WHERE id = ?1 AND state = ?4")?
        .execute(params![
            id.as_bytes(),
            DeliveryState::Skipped.as_str(),
            now,
            DeliveryState::Pending.as_str()
        ])?;
    Ok(n > 0)
}

/// A webhook's skipped deliveries recorded at or after `since`, oldest first.
fn list_in_state(
    conn: &Connection,
    webhook: Uuid,
    state: DeliveryState,
    since: i64,
    max: u32,
) -> Result<Vec<DeliveryRecord>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM webhook_deliveries WHERE webhook_id = ?1 AND state = ?2 AND created_at >= ?3 \
         ORDER BY created_at, id LIMIT ?4"
    ))?;
    let rows = stmt.query_map((webhook.as_bytes(), state.as_str(), since, limit(max)), delivery_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Sets each still-skipped delivery pending with its replay's execution and
/// dispatches that execution; the ids replayed.
///
/// Runs as an isolated writer job: a refused dispatch (a taken execution id)
/// must undo the deliveries set pending before it.
fn replay(conn: &Connection, now: i64, replays: &[DeliveryReplay], changes: &mut Vec<Change>) -> Result<Vec<Uuid>> {
    let mut replayed = Vec::with_capacity(replays.len());
    for r in replays {
        // The state test is the fence: a second replay of the same delivery
        // finds it pending and dispatches nothing.
        let n = conn
            .prepare_cached(
                "UPDATE webhook_deliveries SET state = ?2, execution_id = ?3, updated_at = ?4 \
                 WHERE id = ?1 AND state = ?5",
            )?
            .execute(params![
                r.delivery_id.as_bytes(),
                DeliveryState::Pending.as_str(),
                r.execution.id.0.as_bytes(),
                now,
                DeliveryState::Skipped.as_str(),
            ])?;
        if n == 0 {
            continue;
        }
        let execution = dispatch::dispatch(conn, now, &r.execution, changes)?.id();
        if execution != r.execution.id {
            // An idempotency key named another execution: the delivery is made by that one.
            conn.prepare_cached("UPDATE webhook_deliveries SET execution_id = ?2 WHERE id = ?1")?
                .execute(params![r.delivery_id.as_bytes(), execution.0.as_bytes()])?;
        }
        replayed.push(r.delivery_id);
    }
    Ok(replayed)
}

/// Records an attempt (replacing one with the same number) and updates its
/// delivery; `Invalid` if there is no such delivery.
pub(crate) fn record_attempt(conn: &Connection, now: i64, a: &DeliveryAttempt, state: DeliveryState) -> Result<()> {
    // The delivery first: if it is missing, the refusal comes before any write.
    let n = conn
        .prepare_cached(
            "UPDATE webhook_deliveries SET state = ?2, attempts = ?3, last_status = ?4, last_error = ?5, \
             updated_at = ?6 WHERE id = ?1",
        )?
        .execute(params![
            a.delivery_id.as_bytes(),
            state.as_str(),
            a.attempt,
            a.status,
            a.error,
            now
        ])?;
    if n == 0 {
        return Err(StoreError::Invalid(format!("webhook delivery {} does not exist", a.delivery_id)).into());
    }
    conn.prepare_cached(
        "INSERT INTO webhook_attempts (delivery_id, attempt, status, latency_ms, response, error, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (delivery_id, attempt) DO UPDATE SET status = excluded.status, \
         latency_ms = excluded.latency_ms, response = excluded.response, error = excluded.error, at = excluded.at",
    )?
    .execute(params![
        a.delivery_id.as_bytes(),
        a.attempt,
        a.status,
        i64::try_from(a.latency_ms).unwrap_or(i64::MAX),
        a.response,
        a.error,
        now,
    ])?;
    Ok(())
}

/// One delivery.
fn get_delivery(conn: &Connection, id: Uuid) -> Result<Option<DeliveryRecord>> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries WHERE id = ?1"
        ))?
        .query_row([id.as_bytes()], delivery_at)
        .optional()?)
}

/// Deliveries with their webhooks and their events, read on one connection.
fn get_deliveries_for_attempts(conn: &Connection, ids: &[Uuid]) -> Result<Vec<DeliveryForAttempt>> {
    let mut read = Vec::with_capacity(ids.len());
    let mut seen = HashSet::with_capacity(ids.len());
    for &id in ids {
        if !seen.insert(id) {
            continue;
        }
        let Some(delivery) = get_delivery(conn, id)? else {
            continue;
        };
        read.push(DeliveryForAttempt {
            webhook: get(conn, delivery.webhook_id)?,
            event: event_log::get(conn, delivery.event_seq)?,
            delivery,
        });
    }
    Ok(read)
}

/// A webhook's deliveries, newest first.
fn list_deliveries(conn: &Connection, webhook: Uuid, max: u32, offset: u32) -> Result<Vec<DeliveryRecord>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM webhook_deliveries WHERE webhook_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2 OFFSET ?3"
    ))?;
    let rows = stmt.query_map((webhook.as_bytes(), limit(max), i64::from(offset)), delivery_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A delivery's attempts, oldest first.
fn list_attempts(conn: &Connection, delivery: Uuid) -> Result<Vec<DeliveryAttempt>> {
    let mut stmt = conn.prepare_cached(
        "SELECT delivery_id, attempt, status, latency_ms, response, error, at FROM webhook_attempts \
         WHERE delivery_id = ?1 ORDER BY attempt",
    )?;
    let rows = stmt.query_map([delivery.as_bytes()], attempt_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
