//! Webhooks: [`WebhookStore`] for [`PostgresStore`]: registrations, deliveries
//! (each made by an execution dispatched with it), their attempts, and the
//! dispatcher's cursor in the event log.
//!
//! Enqueueing is where nodes race: every node's dispatcher reads the event log
//! from the cursor and offers the same deliveries. The cursor row is moved by
//! compare-and-set as the transaction's first statement; its row lock makes the
//! losers wait for the winner's commit, then find the cursor moved and write
//! nothing, so each event is delivered once per webhook. The winner's changes are
//! its deliveries' dispatches, exactly as a commit's.

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{
    AttemptWrite, Committed, DeliveryAttempt, DeliveryForAttempt, DeliveryRecord, DeliveryReplay, DeliveryState,
    HoldsNul, NewDelivery, NewExecution, StoreError, StoreResult, WebhookRecord, WebhookStore, events_of,
};
use uuid::Uuid;

use crate::PostgresStore;
use crate::codec::{limit, to_json};
use crate::error::{Error, Result};
use crate::passes::{in_item_order, passes};
use crate::rows::{self, ATTEMPT_COLUMNS, DELIVERY_COLUMNS, EVENT_COLUMNS, WEBHOOK_COLUMNS};
use crate::statements::{execute, query, query_one, query_opt};
use crate::transaction::{Tx, in_transaction};
use crate::{dispatch, event_log};

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn create_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()> {
        create(self, webhook).await
    }

    async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>> {
        get(self, id).await
    }

    async fn list_webhooks(&self, limit: u32, offset: u32) -> StoreResult<Vec<WebhookRecord>> {
        list(self, limit, offset).await
    }

    async fn delete_webhook(&self, id: Uuid) -> StoreResult<bool> {
        delete(self, id).await
    }

    async fn set_webhook_enabled(&self, id: Uuid, enabled: bool, reason: Option<&str>) -> StoreResult<bool> {
        set_enabled(self, id, enabled, reason).await
    }

    async fn rotate_webhook_secret(
        &self,
        id: Uuid,
        secret: &str,
        grace: Duration,
    ) -> StoreResult<Option<WebhookRecord>> {
        rotate_secret(self, id, secret, grace).await
    }

    async fn replace_webhook_secret(&self, id: Uuid, from: &str, to: &str) -> StoreResult<bool> {
        replace_secret(self, id, from, to).await
    }

    async fn webhook_cursor(&self) -> StoreResult<i64> {
        cursor(self).await
    }

    async fn enqueue_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: Vec<NewDelivery>,
    ) -> StoreResult<Committed<bool>> {
        enqueue(self, from, to, &deliveries).await
    }

    async fn record_delivery_attempt(&self, attempt: &DeliveryAttempt, state: DeliveryState) -> StoreResult<()> {
        // Postgres text cannot hold a NUL: a clear refusal, not a database error.
        attempt.check_nul()?;
        // The group commit's statement, for one attempt.
        let write = [AttemptWrite {
            attempt: attempt.clone(),
            state,
        }];
        let mut recorded = in_transaction!(self, |tx| record_attempts(tx, &write))?;
        recorded.pop().expect("one result per attempt")
    }

    async fn get_delivery(&self, id: Uuid) -> StoreResult<Option<DeliveryRecord>> {
        get_delivery(self, id).await
    }

    async fn get_deliveries_for_attempts(&self, ids: &[Uuid]) -> StoreResult<Vec<DeliveryForAttempt>> {
        get_deliveries_for_attempts(self, ids).await
    }

    async fn list_deliveries(&self, webhook_id: Uuid, limit: u32, offset: u32) -> StoreResult<Vec<DeliveryRecord>> {
        list_deliveries(self, webhook_id, limit, offset).await
    }

    async fn list_delivery_attempts(&self, delivery_id: Uuid) -> StoreResult<Vec<DeliveryAttempt>> {
        list_attempts(self, delivery_id).await
    }

    async fn skip_delivery(&self, id: Uuid) -> StoreResult<bool> {
        skip(self, id).await
    }

    async fn list_deliveries_in_state(
        &self,
        webhook_id: Uuid,
        state: DeliveryState,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        list_in_state(self, webhook_id, state, since, limit).await
    }

    async fn replay_deliveries(&self, replays: Vec<DeliveryReplay>) -> StoreResult<Committed<Vec<Uuid>>> {
        in_transaction!(self, |tx| replay_in(tx, &replays))
    }
}

static INSERT_WEBHOOK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO webhooks ({WEBHOOK_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    )
});

/// Registers a webhook as given; a taken id is a conflict.
async fn create(store: &PostgresStore, w: &WebhookRecord) -> StoreResult<()> {
    let client = store.client().await?;
    let event_types: Vec<&str> = w.event_types.iter().map(|t| t.as_str()).collect();
    let headers = to_json(&w.headers)?;
    execute(
        &client,
        &INSERT_WEBHOOK,
        &[
            &w.id,
            &w.url,
            &event_types,
            &w.execution_id.map(|e| e.0),
            &w.task_id.map(|t| t.0),
            &headers,
            &w.secret,
            &w.description,
            &w.enabled,
            &w.disabled_reason,
            &w.created_at,
            &w.updated_at,
            &w.previous_secret,
            &w.previous_secret_until,
        ],
    )
    .await
    .map_err(|e| e.conflict_on(w.id))?;
    Ok(())
}

/// One webhook.
async fn get(store: &PostgresStore, id: Uuid) -> StoreResult<Option<WebhookRecord>> {
    let client = store.client().await?;
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
    let row = query_opt(&client, &sql, &[&id]).await?;
    Ok(row.as_ref().map(rows::webhook).transpose()?)
}

/// Webhooks, oldest first.
async fn list(store: &PostgresStore, max: u32, offset: u32) -> StoreResult<Vec<WebhookRecord>> {
    let client = store.client().await?;
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id LIMIT $1 OFFSET $2");
    let rows = query(&client, &sql, &[&limit(max), &i64::from(offset)]).await?;
    Ok(rows.iter().map(rows::webhook).collect::<Result<_>>()?)
}

/// Deletes a webhook with its deliveries and their attempts (not the deliveries'
/// executions); whether it existed.
async fn delete(store: &PostgresStore, id: Uuid) -> StoreResult<bool> {
    in_transaction!(store, |tx| delete_in(tx, id))
}

async fn delete_in(tx: &Tx, id: Uuid) -> Result<bool> {
    let existed = execute(tx, "DELETE FROM webhooks WHERE id = $1", &[&id]).await? > 0;
    let deliveries: Vec<Uuid> = query(
        tx,
        "DELETE FROM webhook_deliveries WHERE webhook_id = $1 RETURNING id",
        &[&id],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<std::result::Result<_, _>>()?;
    // A statement of its own, after the deliveries are locked and gone: an attempt
    // recorded by a transaction that committed meanwhile is visible to it (a CTE
    // beside the delete would read the older snapshot and leave that attempt behind).
    if !deliveries.is_empty() {
        execute(
            tx,
            "DELETE FROM webhook_attempts WHERE delivery_id = ANY($1)",
            &[&deliveries],
        )
        .await?;
    }
    Ok(existed)
}

/// Enables or disables a webhook; a reason is kept only while it is disabled.
/// Whether it exists.
async fn set_enabled(store: &PostgresStore, id: Uuid, enabled: bool, reason: Option<&str>) -> StoreResult<bool> {
    let client = store.client().await?;
    let reason = if enabled { None } else { reason };
    let n = execute(
        &client,
        "UPDATE webhooks SET enabled = $2, disabled_reason = $3, updated_at = now() WHERE id = $1",
        &[&id, &enabled, &reason],
    )
    .await?;
    Ok(n > 0)
}

static ROTATE_SECRET: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE webhooks SET previous_secret = secret, secret = $2,
             previous_secret_until = now() + make_interval(secs => $3), updated_at = now()
         WHERE id = $1
         RETURNING {WEBHOOK_COLUMNS}"
    )
});

/// Moves the current secret to previous (signing until `grace` from the
/// database's now) and puts `secret` in its place, in one statement: `SET`
/// reads the row as this statement found it, and a rotation racing this one
/// waits on the row lock and then reads the row this one left, so each keeps
/// the secret the other put in place.
async fn rotate_secret(
    store: &PostgresStore,
    id: Uuid,
    secret: &str,
    grace: Duration,
) -> StoreResult<Option<WebhookRecord>> {
    let client = store.client().await?;
    let row = query_opt(&client, &ROTATE_SECRET, &[&id, &secret, &grace.as_secs_f64()]).await?;
    Ok(row.as_ref().map(rows::webhook).transpose()?)
}

/// Replaces the secret value `from` with `to` in whichever of the two secret
/// columns still holds it; whether a row changed.
async fn replace_secret(store: &PostgresStore, id: Uuid, from: &str, to: &str) -> StoreResult<bool> {
    let client = store.client().await?;
    let n = execute(
        &client,
        "UPDATE webhooks SET
             secret = CASE WHEN secret = $2 THEN $3 ELSE secret END,
             previous_secret = CASE WHEN previous_secret = $2 THEN $3 ELSE previous_secret END
         WHERE id = $1 AND (secret = $2 OR previous_secret = $2)",
        &[&id, &from, &to],
    )
    .await?;
    Ok(n > 0)
}

/// The dispatcher's position in the event log.
async fn cursor(store: &PostgresStore) -> StoreResult<i64> {
    let client = store.client().await?;
    let row = query_one(&client, "SELECT last FROM webhook_cursor", &[]).await?;
    Ok(row.try_get(0).map_err(Error::from)?)
}

/// If the cursor is still at `from`: moves it to `to` and creates each delivery
/// with its execution, in one transaction. False, with nothing written, if it moved.
async fn enqueue(
    store: &PostgresStore,
    from: i64,
    to: i64,
    deliveries: &[NewDelivery],
) -> StoreResult<Committed<bool>> {
    in_transaction!(store, |tx| enqueue_in(tx, from, to, deliveries))
}

async fn enqueue_in(tx: &Tx, from: i64, to: i64, deliveries: &[NewDelivery]) -> Result<Committed<bool>> {
    // Compare-and-set first: a racer waits here for the winner's commit, then
    // matches no row and leaves before doing any work.
    if execute(tx, "UPDATE webhook_cursor SET last = $2 WHERE last = $1", &[&from, &to]).await? == 0 {
        return Ok(Committed::unchanged(false));
    }
    // The executions go through dispatch's own code path, so that rows and changes
    // are exactly a dispatch's (idempotency keys included). A skipped delivery
    // dispatches nothing and keeps the id reserved for it.
    let executions: Vec<NewExecution> = deliveries
        .iter()
        .filter(|d| !d.skipped)
        .map(|d| d.execution.clone())
        .collect();
    let mut changes = Vec::new();
    let mut dispatched = dispatch::apply(tx, &executions, &mut changes).await?.into_iter();
    let execution_ids = deliveries
        .iter()
        .map(|d| match d.skipped {
            true => Ok(d.execution.id.0),
            false => match dispatched.next() {
                Some(outcome) => outcome.map(|o| o.id().0).map_err(Error::Store),
                None => Err(Error::Store(StoreError::Backend(
                    "dispatch answered fewer executions".into(),
                ))),
            },
        })
        .collect::<Result<Vec<Uuid>>>()?;
    insert_deliveries(tx, deliveries, &execution_ids).await?;
    // The event head bump must be the transaction's last statement (see event_log).
    event_log::append(tx, &events_of(&changes)).await?;
    Ok(Committed::new(true, changes))
}

/// Inserts pending deliveries; a taken id (in the table or twice in the batch)
/// fails the whole enqueue with a conflict.
async fn insert_deliveries(tx: &Tx, deliveries: &[NewDelivery], execution_ids: &[Uuid]) -> Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(deliveries.len());
    if let Some(twice) = deliveries.iter().find(|d| !seen.insert(d.id)) {
        return Err(taken(twice.id));
    }
    let ids: Vec<Uuid> = deliveries.iter().map(|d| d.id).collect();
    let webhooks: Vec<Uuid> = deliveries.iter().map(|d| d.webhook_id).collect();
    let seqs: Vec<i64> = deliveries.iter().map(|d| d.event_seq).collect();
    let types: Vec<&str> = deliveries.iter().map(|d| d.event_type.as_str()).collect();
    let states: Vec<&str> = deliveries
        .iter()
        .map(|d| match d.skipped {
            true => DeliveryState::Skipped.as_str(),
            false => DeliveryState::Pending.as_str(),
        })
        .collect();
    let inserted: HashSet<Uuid> = query(
        tx,
        "INSERT INTO webhook_deliveries (id, webhook_id, event_seq, event_type, execution_id, state, attempts,
             created_at, updated_at)
         SELECT x.id, x.webhook_id, x.event_seq, x.event_type, x.execution_id, x.state, 0, now(), now()
         FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::uuid[], $6::text[])
             AS x(id, webhook_id, event_seq, event_type, execution_id, state)
         ON CONFLICT DO NOTHING
         RETURNING id",
        &[&ids, &webhooks, &seqs, &types, &execution_ids, &states],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<std::result::Result<_, _>>()?;
    match ids.iter().find(|id| !inserted.contains(id)) {
        Some(id) => Err(taken(*id)),
        None => Ok(()),
    }
}

fn taken(id: Uuid) -> Error {
    Error::Store(StoreError::Conflict {
        id: id.to_string(),
        detail: "a webhook delivery with this id already exists".into(),
    })
}

fn no_delivery(id: Uuid) -> StoreError {
    StoreError::Invalid(format!("webhook delivery {id} does not exist"))
}

/// Records attempts (replacing one with the same number) and updates their
/// deliveries (state, attempt count, last status and error), from arrays, only
/// for deliveries that exist; the ids of those recorded. The deliveries are
/// named by key (`= ANY($1)`) as well as joined: joined alone, a table of some
/// ten thousand deliveries was read whole at every group commit (the planner
/// priced a scan below a few dozen lookups).
const RECORD_ATTEMPTS: &str = "WITH a AS (
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int4[], $5::text[], $6::int8[], $7::text[])
             AS a(delivery_id, state, attempt, status, error, latency_ms, response)
     ), delivery AS (
         UPDATE webhook_deliveries d SET state = a.state, attempts = a.attempt, last_status = a.status,
             last_error = a.error, updated_at = now()
         FROM a WHERE d.id = ANY($1) AND d.id = a.delivery_id
         RETURNING d.id
     )
     INSERT INTO webhook_attempts (delivery_id, attempt, status, latency_ms, response, error, at)
     SELECT a.delivery_id, a.attempt, a.status, a.latency_ms, a.response, a.error, now()
     FROM a JOIN delivery ON delivery.id = a.delivery_id
     ON CONFLICT (delivery_id, attempt) DO UPDATE SET status = excluded.status, latency_ms = excluded.latency_ms,
         response = excluded.response, error = excluded.error, at = excluded.at
     RETURNING delivery_id";

/// Records a group commit's attempts: one statement for all of them, or one
/// per pass when a delivery is named twice (its attempts then apply in order).
/// A missing delivery is that item's refusal.
pub(crate) async fn record_attempts(tx: &Tx, writes: &[AttemptWrite]) -> Result<Vec<StoreResult<()>>> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let deliveries: Vec<Uuid> = writes.iter().map(|w| w.attempt.delivery_id).collect();
    let mut done = Vec::new();
    for pass in passes(&deliveries) {
        let items: Vec<&AttemptWrite> = pass.iter().map(|&i| &writes[i]).collect();
        let ids: Vec<Uuid> = items.iter().map(|w| w.attempt.delivery_id).collect();
        let states: Vec<&str> = items.iter().map(|w| w.state.as_str()).collect();
        let numbers: Vec<i64> = items.iter().map(|w| i64::from(w.attempt.attempt)).collect();
        let statuses: Vec<Option<i32>> = items.iter().map(|w| w.attempt.status.map(i32::from)).collect();
        let errors: Vec<Option<&str>> = items.iter().map(|w| w.attempt.error.as_deref()).collect();
        let latencies: Vec<i64> = items
            .iter()
            .map(|w| i64::try_from(w.attempt.latency_ms).unwrap_or(i64::MAX))
            .collect();
        let responses: Vec<Option<&str>> = items.iter().map(|w| w.attempt.response.as_deref()).collect();
        let rows = query(
            tx,
            RECORD_ATTEMPTS,
            &[&ids, &states, &numbers, &statuses, &errors, &latencies, &responses],
        )
        .await?;
        let recorded = rows
            .iter()
            .map(|r| r.try_get::<_, Uuid>(0))
            .collect::<std::result::Result<HashSet<Uuid>, _>>()?;
        let results = ids
            .iter()
            .map(|id| {
                if recorded.contains(id) {
                    Ok(())
                } else {
                    Err(no_delivery(*id))
                }
            })
            .collect();
        done.push((pass, results));
    }
    Ok(in_item_order(writes.len(), done))
}

/// One delivery.
async fn get_delivery(store: &PostgresStore, id: Uuid) -> StoreResult<Option<DeliveryRecord>> {
    let client = store.client().await?;
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1");
    let row = query_opt(&client, &sql, &[&id]).await?;
    Ok(row.as_ref().map(rows::delivery).transpose()?)
}

/// The statement reading a delivery with its webhook and its event: the
/// delivery's columns, then the webhook's (all null once it was deleted), then
/// the event's (all null once it was trimmed).
static FOR_ATTEMPT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {delivery}, {webhook}, {event}
         FROM webhook_deliveries d
         LEFT JOIN webhooks w ON w.id = d.webhook_id
         LEFT JOIN events e ON e.seq = d.event_seq
         WHERE d.id = ANY($1)",
        delivery = rows::qualify(DELIVERY_COLUMNS, "d"),
        webhook = rows::qualify(WEBHOOK_COLUMNS, "w"),
        event = rows::qualify(EVENT_COLUMNS, "e"),
    )
});

/// Where [`FOR_ATTEMPT`]'s webhook and event columns start.
static FOR_ATTEMPT_OFFSETS: LazyLock<(usize, usize)> = LazyLock::new(|| {
    let columns = |list: &str| list.split(',').count();
    let webhook_at = columns(DELIVERY_COLUMNS);
    (webhook_at, webhook_at + columns(WEBHOOK_COLUMNS))
});

/// Deliveries with their webhooks and their events, in one statement.
async fn get_deliveries_for_attempts(store: &PostgresStore, ids: &[Uuid]) -> StoreResult<Vec<DeliveryForAttempt>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let client = store.client().await?;
    let (webhook_at, event_at) = *FOR_ATTEMPT_OFFSETS;
    let mut read = Vec::with_capacity(ids.len());
    for row in query(&client, &FOR_ATTEMPT, &[&ids]).await? {
        // A missing row's key is null; the others are then null too.
        let webhook = match row.try_get::<_, Option<Uuid>>(webhook_at).map_err(Error::from)? {
            Some(_) => Some(rows::webhook_from(&row, webhook_at)?),
            None => None,
        };
        let event = match row.try_get::<_, Option<i64>>(event_at).map_err(Error::from)? {
            Some(_) => Some(rows::event_from(&row, event_at)?),
            None => None,
        };
        read.push(DeliveryForAttempt {
            delivery: rows::delivery(&row)?,
            webhook,
            event,
        });
    }
    Ok(read)
}

/// A webhook's deliveries, newest first.
async fn list_deliveries(
    store: &PostgresStore,
    webhook: Uuid,
    max: u32,
    offset: u32,
) -> StoreResult<Vec<DeliveryRecord>> {
    let client = store.client().await?;
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    );
    let rows = query(&client, &sql, &[&webhook, &limit(max), &i64::from(offset)]).await?;
    Ok(rows.iter().map(rows::delivery).collect::<Result<_>>()?)
}

/// A delivery's attempts, oldest first.
async fn list_attempts(store: &PostgresStore, delivery: Uuid) -> StoreResult<Vec<DeliveryAttempt>> {
    let client = store.client().await?;
    let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt");
    let rows = query(&client, &sql, &[&delivery]).await?;
    Ok(rows.iter().map(rows::attempt).collect::<Result<_>>()?)
}

/// Marks a pending delivery skipped; whether it was pending.
async fn skip(store: &PostgresStore, id: Uuid) -> StoreResult<bool> {
    let client = store.client().await?;
    let n = execute(
        &client,
        "UPDATE webhook_deliveries SET state = $2, updated_at = now() WHERE id = $1 AND state = $3",
        &[&id, &DeliveryState::Skipped.as_str(), &DeliveryState::Pending.as_str()],
    )
    .await?;
    Ok(n > 0)
}

/// A webhook's skipped deliveries recorded at or after `since`, oldest first.
async fn list_in_state(
    store: &PostgresStore,
    webhook: Uuid,
    state: DeliveryState,
    since: Option<DateTime<Utc>>,
    max: u32,
) -> StoreResult<Vec<DeliveryRecord>> {
    let client = store.client().await?;
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
         WHERE webhook_id = $1 AND state = $2 AND ($3::timestamptz IS NULL OR created_at >= $3)
         ORDER BY created_at, id LIMIT $4"
    );
    let rows = query(&client, &sql, &[&webhook, &state.as_str(), &since, &limit(max)]).await?;
    Ok(rows.iter().map(rows::delivery).collect::<Result<_>>()?)
}

/// Sets each still-skipped delivery pending with its replay's execution and
/// dispatches those executions, in one transaction; the ids replayed.
async fn replay_in(tx: &Tx, replays: &[DeliveryReplay]) -> Result<Committed<Vec<Uuid>>> {
    if replays.is_empty() {
        return Ok(Committed::unchanged(Vec::new()));
    }
    let ids: Vec<Uuid> = replays.iter().map(|r| r.delivery_id).collect();
    let executions: Vec<Uuid> = replays.iter().map(|r| r.execution.id.0).collect();
    // The state test is the fence: a racing replay waits on the row lock, then
    // finds the delivery pending and dispatches nothing.
    let replayed: HashSet<Uuid> = query(
        tx,
        "UPDATE webhook_deliveries d SET state = $3, execution_id = x.execution_id, updated_at = now()
         FROM unnest($1::uuid[], $2::uuid[]) AS x(id, execution_id)
         WHERE d.id = x.id AND d.state = $4
         RETURNING d.id",
        &[
            &ids,
            &executions,
            &DeliveryState::Pending.as_str(),
            &DeliveryState::Skipped.as_str(),
        ],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<std::result::Result<_, _>>()?;
    let chosen: Vec<&DeliveryReplay> = replays.iter().filter(|r| replayed.contains(&r.delivery_id)).collect();
    let to_dispatch: Vec<NewExecution> = chosen.iter().map(|r| r.execution.clone()).collect();
    let mut changes = Vec::new();
    let dispatched = dispatch::apply(tx, &to_dispatch, &mut changes).await?;
    for (r, outcome) in chosen.iter().zip(dispatched) {
        let id = outcome.map_err(Error::Store)?.id();
        if id != r.execution.id {
            // An idempotency key named another execution: the delivery is made by that one.
            execute(
                tx,
                "UPDATE webhook_deliveries SET execution_id = $2 WHERE id = $1",
                &[&r.delivery_id, &id.0],
            )
            .await?;
        }
    }
    // The event head bump must be the transaction's last statement (see event_log).
    event_log::append(tx, &events_of(&changes)).await?;
    Ok(Committed::new(chosen.iter().map(|r| r.delivery_id).collect(), changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::store_of_its_own;

    /// A group commit's attempts find their deliveries by key, on a table of
    /// 12,000 deliveries (freshly analyzed), where joining them alone had
    /// Postgres read the whole table for 64 attempts.
    #[tokio::test]
    async fn recording_attempts_looks_their_deliveries_up_by_key() {
        let (store, schema) = store_of_its_own("attempt_plans", 1).await;
        let client = store.client().await.unwrap();
        client
            .batch_execute(
                "INSERT INTO webhook_deliveries (id, webhook_id, event_seq, event_type, execution_id, state,
                     created_at, updated_at)
                 SELECT gen_random_uuid(), gen_random_uuid(), n, 'execution.created', gen_random_uuid(),
                     'pending', now(), now()
                 FROM generate_series(1, 12000) AS n;
                 ANALYZE webhook_deliveries",
            )
            .await
            .unwrap();
        let ids: Vec<Uuid> = client
            .query("SELECT id FROM webhook_deliveries ORDER BY random() LIMIT 64", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let n = ids.len();
        let plan: Vec<String> = client
            .query(
                &format!("EXPLAIN {RECORD_ATTEMPTS}"),
                &[
                    &ids,
                    &vec!["delivered"; n],
                    &vec![1i64; n],
                    &vec![Some(200i32); n],
                    &vec![None::<&str>; n],
                    &vec![3i64; n],
                    &vec![Some("ok"); n],
                ],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan on webhook_deliveries"), "{plan}");
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }
}
