//! The event log: appending in commit order, reading after a cursor, trimming;
//! [`EventStore`] for [`PostgresStore`].
//!
//! Nothing calls for an append of its own: every write appends the events of the
//! [`Change`](courier_core::Change)s it made (`events_of(&changes)`), in the same
//! transaction, with `append` as its last statement.
//!
//! Sequence numbers come from the single row of `courier_event_head`, not from a
//! Postgres sequence. A sequence hands numbers out when a transaction asks, so
//! transactions commit out of order (a reader at seq 12 has not seen 11 yet, and
//! may skip it for good) and rollbacks leave holes. Here every transaction that
//! appends events bumps the head row as its *last* statement before COMMIT; the
//! row lock it takes is held until the commit, so the next appender reads the
//! head only after this one is visible. Commit order is therefore seq order, a
//! rollback gives its numbers back, and a reader that has seen `n` has seen
//! everything committed before it. The price is that appending transactions
//! serialise for the span of one statement and a commit, which group commit
//! amortises.
//!
//! Some changes carry their event's sequence number (a notification's seq is its
//! SSE id): [`append_changes`] tells them, and the only statements allowed after
//! the append are those writing the numbers just assigned into rows this
//! transaction wrote (`notifications::stamp_seqs`). They touch no row another
//! transaction can hold, so the head lock is still released only by the commit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{Change, EventFilter, EventPage, EventStore, NewEvent, StoreResult, events_of};
use serde_json::Value;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use crate::PostgresStore;
use crate::codec::limit;
use crate::error::Result;
use crate::rows::{self, EVENT_COLUMNS};
use crate::statements::{Statements, execute, query_one, query_typed};
use crate::transaction::Tx;

#[async_trait]
impl EventStore for PostgresStore {
    async fn read_events(&self, filter: &EventFilter) -> StoreResult<EventPage> {
        read(self, filter).await
    }

    async fn last_event_seq(&self) -> StoreResult<i64> {
        last_seq(self).await
    }

    async fn trim_events(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        let client = self.client().await?;
        // One statement (and transaction) per chunk: a long backlog never holds
        // one huge delete's locks and WAL.
        let mut trimmed = 0;
        loop {
            let n = trim(&client, older_than, TRIM_CHUNK).await?;
            trimmed += n;
            if n < TRIM_CHUNK as u64 {
                return Ok(trimmed);
            }
        }
    }
}

/// Appends the events of `changes` in order (numbered consecutively) and tells
/// each change that appends one its event's sequence number
/// ([`Change::set_seq`]). Must be the last statement of its transaction (see the
/// module documentation).
pub(crate) async fn append_changes(tx: &Tx, changes: &mut [Change], then: Then) -> Result<()> {
    let events = events_of(changes);
    let last = append_then(tx, &events, then).await?;
    // Events and the changes that append one correspond in order.
    let mut seq = last - events.len() as i64;
    for change in changes.iter_mut().filter(|c| c.appends_event()) {
        seq += 1;
        change.set_seq(seq);
    }
    debug_assert_eq!(seq, last, "every change that appends an event appended one");
    Ok(())
}

/// What follows an append in its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Nothing: the append goes out with `COMMIT`, and the transaction is over
    /// once it returns.
    Commit,
    /// The transaction goes on to its end, which commits it: for writes off
    /// the hot path, and for those that write the sequence numbers just
    /// assigned (the only statements allowed after the append, see the module
    /// documentation).
    Continue,
}

/// Appends `events` in order (numbered consecutively); the sequence number of the
/// last (0 if there are none, and then nothing is written). Must be the last
/// statement of its transaction (see the module documentation).
pub(crate) async fn append(tx: &Tx, events: &[NewEvent]) -> Result<i64> {
    append_then(tx, events, Then::Continue).await
}

/// [`append`], followed by what `then` says.
pub(crate) async fn append_then(tx: &Tx, events: &[NewEvent], then: Then) -> Result<i64> {
    if events.is_empty() {
        return Ok(0);
    }
    let n = events.len() as i64;
    let mut types: Vec<&str> = Vec::with_capacity(events.len());
    let mut executions: Vec<Option<Uuid>> = Vec::with_capacity(events.len());
    let mut tasks: Vec<Option<Uuid>> = Vec::with_capacity(events.len());
    let mut data: Vec<&Value> = Vec::with_capacity(events.len());
    let mut internal: Vec<Option<bool>> = Vec::with_capacity(events.len());
    for e in events {
        types.push(e.event_type.as_str());
        executions.push(e.execution_id.map(|id| id.0));
        tasks.push(e.task_id.map(|id| id.0));
        data.push(&e.data);
        internal.push(if e.execution_id.is_none() {
            Some(false)
        } else {
            e.internal
        });
    }
    let unknown = internal.iter().filter(|i| i.is_none()).count();
    if unknown >= READ_INTERNAL_FIRST {
        fill_internal(tx, &executions, &mut internal).await?;
    }
    let sql = if internal.iter().any(Option::is_none) {
        APPEND_LOOKING_UP
    } else {
        APPEND
    };
    let params: [&(dyn ToSql + Sync); 6] = [&n, &types, &executions, &tasks, &data, &internal];
    let row = match then {
        Then::Continue => query_one(tx, sql, &params).await?,
        Then::Commit => tx.query_one_and_commit(sql, &params).await?,
    };
    Ok(row.try_get(0)?)
}

/// The append: bumps the head and inserts the events numbered below it, every
/// event's flag given.
///
/// Its plan is the same whatever the values, and Postgres keeps one generic
/// plan for it after a few calls instead of planning it at every call (about
/// 0.1 ms each, three times per execution when one runs at a time). For that,
/// the head is read through a scalar subquery rather than joined: joined, the
/// planner's guess at the head's rows (it never sees that there is one until
/// the table is analyzed) times the guess at the events makes the generic plan
/// look dearer than a fresh one every time.
const APPEND: &str = "WITH head AS (UPDATE courier_event_head SET last = last + $1 RETURNING last),
     appended AS (
         INSERT INTO events (seq, type, execution_id, task_id, ts, data, internal)
         SELECT (SELECT last FROM head) - $1 + e.ord, e.type, e.execution_id, e.task_id, now(), e.data, e.internal
         FROM unnest($2::text[], $3::uuid[], $4::uuid[], $5::jsonb[], $6::bool[])
             WITH ORDINALITY AS e(type, execution_id, task_id, data, internal, ord)
     )
     SELECT last FROM head";

/// [`APPEND`] for events some of whose flags are unknown: those events look up
/// their execution. The lookup's cost depends on how many events there are, so
/// this one is planned at each call.
const APPEND_LOOKING_UP: &str = "WITH head AS (UPDATE courier_event_head SET last = last + $1 RETURNING last),
     appended AS (
         INSERT INTO events (seq, type, execution_id, task_id, ts, data, internal)
         SELECT (SELECT last FROM head) - $1 + e.ord, e.type, e.execution_id, e.task_id, now(), e.data,
             CASE WHEN e.internal IS NOT NULL THEN e.internal
                  ELSE coalesce((SELECT starts_with(x.function, 'courier.') FROM executions x
                                 WHERE x.id = e.execution_id), false) END
         FROM unnest($2::text[], $3::uuid[], $4::uuid[], $5::jsonb[], $6::bool[])
             WITH ORDINALITY AS e(type, execution_id, task_id, data, internal, ord)
     )
     SELECT last FROM head";

/// From how many events whose flag the changes could not give an append reads
/// which are internal before it locks the head, rather than inside the locked
/// statement.
///
/// Most events say it themselves ([`NewEvent::internal`]); the others (progress,
/// an orchestrator's children) need their execution looked up. From the head
/// update to the commit every appending transaction waits for this one, so
/// many lookups are better made before it; a few cost less than the extra
/// round trip a lone write would wait for.
const READ_INTERNAL_FIRST: usize = 64;

/// Fills in the unknown flags of `internal` (one per event) from the events'
/// executions, in one statement.
async fn fill_internal(tx: &Tx, executions: &[Option<Uuid>], internal: &mut [Option<bool>]) -> Result<()> {
    let mut ids: Vec<Uuid> = executions
        .iter()
        .zip(internal.iter())
        .filter(|(_, flag)| flag.is_none())
        .filter_map(|(id, _)| *id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let row = query_one(
        tx,
        "SELECT coalesce(array_agg(id), '{}') FROM executions
         WHERE id = ANY($1) AND starts_with(function, 'courier.')",
        &[&ids],
    )
    .await?;
    let found: std::collections::HashSet<Uuid> = row.try_get::<_, Vec<Uuid>>(0)?.into_iter().collect();
    for (id, flag) in executions.iter().zip(internal.iter_mut()) {
        if flag.is_none() {
            *flag = Some(id.is_some_and(|id| found.contains(&id)));
        }
    }
    Ok(())
}

/// Events after `filter.after`, oldest first, up to the filter's bound of the
/// head, read in the same statement (so in the same snapshot): each row carries
/// the head, and a read that found nothing returns the head alone. Each filter
/// shape has its own statement so that the planner can use the execution or
/// task index.
async fn read(store: &PostgresStore, filter: &EventFilter) -> StoreResult<EventPage> {
    let client = store.client().await?;
    let sql = read_statement(filter);
    let execution = filter.execution_id.map(|id| id.0);
    let task = filter.task_id.map(|id| id.0);
    let types: Vec<&str> = filter.types.iter().map(|t| t.as_str()).collect();
    let limit = limit(filter.limit);
    // The bound of a head past every seq: the cursor's window, or no bound.
    let cap = filter.bound(i64::MAX);
    let rows = query_typed(
        &client,
        &sql,
        &READ_TYPES,
        &[&filter.after, &execution, &task, &types, &limit, &cap],
    )
    .await?;
    let mut head = 0;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        head = row.try_get(0).map_err(crate::error::Error::from)?;
        if row
            .try_get::<_, Option<i64>>(1)
            .map_err(crate::error::Error::from)?
            .is_some()
        {
            events.push(rows::event_from(row, 1)?);
        }
    }
    Ok(EventPage::read(filter, events, filter.bound(head), head))
}

/// The types of [`read_statement`]'s parameters: after, execution, task, types,
/// limit, and the highest seq to look at.
const READ_TYPES: [Type; 6] = [
    Type::INT8,
    Type::UUID,
    Type::UUID,
    Type::TEXT_ARRAY,
    Type::INT8,
    Type::INT8,
];

/// The statement reading `filter`'s page: the head, then keyset paging from
/// `after` in seq order up to the head (or `$6`, if lower), so a page costs its
/// own rows whatever its depth. Reads by type walk the log itself (an index by
/// type cost every append an entry, under the head's lock), which `$6` keeps
/// short.
fn read_statement(filter: &EventFilter) -> String {
    let mut sql = format!(
        "SELECT h.last, e.* FROM courier_event_head h LEFT JOIN LATERAL (
             SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 AND seq <= least(h.last, $6)"
    );
    if filter.execution_id.is_some() {
        sql.push_str(" AND execution_id = $2");
    }
    if filter.task_id.is_some() {
        sql.push_str(" AND task_id = $3");
    }
    if !filter.types.is_empty() {
        sql.push_str(" AND type = ANY($4)");
    }
    if !filter.include_internal {
        sql.push_str(" AND NOT internal");
    }
    sql.push_str(" ORDER BY seq LIMIT $5) e ON true");
    sql
}

/// The highest sequence number ever assigned.
async fn last_seq(store: &PostgresStore) -> StoreResult<i64> {
    let client = store.client().await?;
    let row = query_one(&client, "SELECT last FROM courier_event_head", &[]).await?;
    Ok(row.try_get::<_, i64>(0).map_err(crate::error::Error::from)?)
}

/// Events deleted per statement when trimming.
pub(crate) const TRIM_CHUNK: i64 = 10_000;

/// Deletes up to `chunk` events appended before `older_than` that the webhook
/// dispatcher has read (while any webhook is enabled: events after its cursor
/// still owe deliveries). The head row is untouched, so the numbers are never
/// handed out again.
async fn trim<C: Statements>(client: &C, older_than: DateTime<Utc>, chunk: i64) -> Result<u64> {
    execute(
        client,
        "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE ts < $1
             AND (seq <= (SELECT last FROM webhook_cursor) OR NOT EXISTS (SELECT 1 FROM webhooks WHERE enabled))
             LIMIT $2)",
        &[&older_than, &chunk],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::store_of_its_own;
    use courier_core::{EventType, ExecutionId, TaskId};

    /// How Postgres plans `filter`'s read, with the filter's own values.
    async fn plan(store: &PostgresStore, filter: &EventFilter) -> String {
        let client = store.client().await.unwrap();
        let sql = format!("EXPLAIN {}", read_statement(filter));
        let execution = filter.execution_id.map(|id| id.0);
        let task = filter.task_id.map(|id| id.0);
        let types: Vec<&str> = filter.types.iter().map(|t| t.as_str()).collect();
        let limit = limit(filter.limit);
        let rows = query_typed(
            &client,
            &sql,
            &READ_TYPES,
            &[
                &filter.after,
                &execution,
                &task,
                &types,
                &limit,
                &filter.bound(i64::MAX),
            ],
        )
        .await
        .unwrap();
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every shape of filtered read walks an index from its cursor (keyset
    /// paging), never the whole log, on a log of 50,000 events where the type,
    /// execution or task asked for is rare: one execution's or task's events
    /// by their index, a type by seq up to the read's bound.
    #[tokio::test]
    async fn every_filtered_read_searches_an_index_from_its_cursor() {
        let (store, schema) = store_of_its_own("event_plans", 2).await;
        let (rare_execution, rare_task) = (ExecutionId::new(), TaskId::root_of(ExecutionId::new()));
        let client = store.client().await.unwrap();
        client
            .execute(
                "INSERT INTO events (seq, type, execution_id, task_id, ts, data)
                 SELECT n, CASE WHEN n % 1000 = 0 THEN 'task.failed' ELSE 'task.completed' END,
                        CASE WHEN n % 1000 = 0 THEN $1 ELSE gen_random_uuid() END,
                        CASE WHEN n % 1000 = 0 THEN $2 ELSE gen_random_uuid() END,
                        now(), '{}'::jsonb
                 FROM generate_series(1, 50000) AS n",
                &[&rare_execution.0, &rare_task.0],
            )
            .await
            .unwrap();
        client
            .batch_execute("UPDATE courier_event_head SET last = 50000; ANALYZE events")
            .await
            .unwrap();

        let by_type = EventFilter::after(41).types([EventType::TaskFailed]).limit(100);
        let execution = EventFilter {
            execution_id: Some(rare_execution),
            ..EventFilter::after(41)
        };
        let task = EventFilter {
            task_id: Some(rare_task),
            ..EventFilter::after(41)
        };
        let cases = [
            (by_type, "events_pkey"),
            (execution, "events_execution_seq"),
            (task, "events_task_seq"),
            (EventFilter::after(41), "events_pkey"),
        ];
        for (filter, index) in cases {
            let plan = plan(&store, &filter).await;
            assert!(plan.contains(index), "{filter:?} should use {index}:\n{plan}");
            assert!(!plan.contains("Seq Scan on events"), "{filter:?}:\n{plan}");
        }
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }

    /// How many times the append with every flag given has been planned on
    /// the store's one connection, generically and afresh, after `calls` appends.
    async fn append_plans(calls: usize) -> (i64, i64) {
        let (store, schema) = store_of_its_own("append_plans", 1).await;
        for _ in 0..calls {
            let execution = ExecutionId::new();
            let event = |t| NewEvent {
                internal: Some(false),
                ..NewEvent::task(t, execution, TaskId::root_of(execution), serde_json::json!({}))
            };
            let events = [event(EventType::TaskStarted), event(EventType::TaskCompleted)];
            crate::transaction::in_transaction!(&store, |tx| append_then(tx, &events, Then::Commit)).unwrap();
        }
        let client = store.client().await.unwrap();
        let row = client
            .query_one(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements
                 WHERE statement = $1",
                &[&APPEND],
            )
            .await
            .unwrap();
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    /// Appends whose events say whether they are internal are not planned
    /// afresh at every call: Postgres settles on one generic plan after its
    /// first five custom ones, on a log whose head has never been analyzed.
    #[tokio::test]
    async fn an_append_with_every_flag_given_keeps_one_plan() {
        let (generic, custom) = append_plans(20).await;
        assert_eq!((generic, custom), (15, 5), "generic and custom plans of 20 appends");
    }
}
