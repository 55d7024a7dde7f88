//! Claims: handing due work to workers under leases.
//!
//! One statement finds and takes the work. Candidates come from two branches,
//! each served by partial indexes: `pending` tasks that are due, and `running`
//! tasks whose lease expired. Pending work is read in claim order, so an index
//! delivers it already sorted and the scan stops after `max`: a claim that names
//! its functions (every node's own worker does) reads each function from its own
//! index and timers from theirs, so other functions' tasks are never walked; one
//! that does not (an outside worker's) reads one queue at a time. Every branch
//! locks with `FOR UPDATE SKIP LOCKED`, so concurrent claimers pass over each
//! other's rows instead of queueing behind them; the best `max` candidates are
//! then updated to `running` under fresh tokens.
//!
//! Whether anything (an execution, a queue) is paused decides the statement:
//! only then does it carry the filters that leave paused work alone, which cost
//! the planner its good estimates. A claim of unlimited functions does not wait
//! to know: as long as the store's last claim found nothing paused, it sends
//! the statement without the filters and the question in the same flight. That
//! statement claims nothing while anything is paused, and when the answer is
//! that something is, the claim runs again with the filters.
//!
//! Concurrency limits are counted, not estimated: for each limited function the
//! claim takes a transaction-scoped advisory lock (in name order, so claimers never
//! deadlock), counts that function's live leases, and lets only the remaining
//! budget through a branch of its own. A second claimer of the same function
//! waits for the first to commit and then counts its claims too, so the limit
//! holds across processes.
//!
//! Claim order is the `claim_at` column: the due time minus priority × the
//! store's ageing (see [`courier_core::PriorityAgeing`] for the bound it gives),
//! then priority, due time and creation. Every claim index is ordered that way.
//!
//! The same statement starts the pending executions whose root tasks it claims
//! (a second statement would cost a round trip and, its array's length being
//! different at every call, a fresh plan each time). Each claim records a
//! `TaskStarted` (and an `ExecutionStarted` when it starts its execution), in
//! claim order, appended in the claim's transaction: its own, or the group
//! commit's it rides ([`claim_in`]), after that commit's other writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use courier_core::{
    Change, ClaimRequest, Claimed, Committed, ExecutionId, Lease, PriorityAgeing, StoreResult, TaskKind, TaskRecord,
    TaskRef, events_of,
};
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use crate::PostgresStore;
use crate::codec::micros;
use crate::error::{Result, corrupt};
use crate::event_log::{self, Then};
use crate::rows::{self, TASK_COLUMNS_T};
use crate::statements::Statements;
use crate::transaction::{Tx, in_transaction};

/// Which optional parts a claim statement has; each combination is its own
/// prepared statement.
#[derive(Clone, Copy)]
struct Shape {
    queues: bool,
    functions: bool,
    tags: bool,
    limited: bool,
    excluded: bool,
    internal_excluded: bool,
    /// Some execution or queue is paused.
    paused: bool,
}

/// Parameter types of every claim statement (unused ones are still declared).
const PARAM_TYPES: &[Type] = &[
    Type::INT8,       // $1 max
    Type::INT8,       // $2 lease length, µs
    Type::TEXT,       // $3 worker
    Type::TEXT_ARRAY, // $4 kinds
    Type::TEXT_ARRAY, // $5 queues
    Type::TEXT_ARRAY, // $6 functions
    Type::TEXT_ARRAY, // $7 worker tags
    Type::TEXT_ARRAY, // $8 limited functions (kept out of the unlimited branches)
    Type::TEXT_ARRAY, // $9 limited functions with budget left
    Type::INT8_ARRAY, // $10 their budgets
    Type::TEXT_ARRAY, // $11 excluded functions
    Type::TEXT,       // $12 the internal prefix
    Type::TEXT_ARRAY, // $13 the functions asked for that have no limit
];

const ORDER: &str = "ORDER BY claim_at, priority DESC, scheduled_for, created_at";
const CANDIDATE: &str = "id, function, claim_at, priority, scheduled_for, created_at";

fn statement(shape: Shape) -> String {
    let mut filters = String::from("kind = ANY($4)");
    // Paused executions and queues, each read once per statement into an array;
    // only when something is paused, since even this filter cost a third of the
    // claim's throughput on Postgres (the planner's estimates change). A paused
    // queue is also left out of the queue walk.
    if shape.paused {
        filters.push_str(
            " AND execution_id <> ALL (ARRAY(SELECT execution_id FROM paused_executions))
              AND queue <> ALL (ARRAY(SELECT queue FROM paused_queues))",
        );
    }
    if shape.functions {
        filters.push_str(" AND (kind IN ('sleep', 'signal_wait') OR function = ANY($6))");
    }
    if shape.tags {
        filters.push_str(" AND (tags = '{}' OR tags && $7)");
    }
    if shape.excluded {
        filters.push_str(" AND (kind IN ('sleep', 'signal_wait') OR NOT function = ANY($11))");
    }
    if shape.internal_excluded {
        filters.push_str(" AND (kind IN ('sleep', 'signal_wait') OR left(function, length($12)) <> $12)");
    }
    let in_queues = if shape.queues { " AND queue = ANY($5)" } else { "" };
    let unlimited = if shape.limited {
        " AND NOT (kind IN ('orchestrator', 'activity') AND function = ANY($8))"
    } else {
        ""
    };
    // With no queue filter the queues are found by walking the pending index
    // (one probe per distinct queue), so pending work is still read per queue.
    let queues = if shape.queues {
        "queues(name) AS (SELECT DISTINCT unnest($5::text[]))".to_string()
    } else {
        "queues(name) AS (
             SELECT min(queue) FROM tasks WHERE state = 'pending'
             UNION ALL
             SELECT (SELECT min(queue) FROM tasks WHERE state = 'pending' AND queue > queues.name)
             FROM queues WHERE queues.name IS NOT NULL
         )"
        .to_string()
    };
    // With a function filter, each function's due work is read from its own
    // index (so a queue full of other functions' tasks, limited ones included,
    // is never walked), and timers, which ignore the filter, from theirs. Without
    // one, the queue is walked in claim order.
    let pending_due = if shape.functions {
        format!(
            "SELECT c.* FROM unnest($13::text[]) AS f(name) CROSS JOIN LATERAL (
                 SELECT {CANDIDATE} FROM tasks
                 WHERE state = 'pending' AND function = f.name AND kind IN ('orchestrator', 'activity')
                     AND scheduled_for <= now() AND {filters}{in_queues}
                 {ORDER} LIMIT $1 FOR UPDATE SKIP LOCKED
             ) c
             UNION ALL
             SELECT c.* FROM open_queues queues CROSS JOIN LATERAL (
                 SELECT {CANDIDATE} FROM tasks
                 WHERE state = 'pending' AND kind IN ('sleep', 'signal_wait') AND queue = queues.name
                     AND scheduled_for <= now() AND {filters}
                 {ORDER} LIMIT $1 FOR UPDATE SKIP LOCKED
             ) c"
        )
    } else {
        format!(
            "SELECT c.* FROM open_queues queues CROSS JOIN LATERAL (
                 SELECT {CANDIDATE} FROM tasks
                 WHERE state = 'pending' AND queue = queues.name AND scheduled_for <= now() AND {filters}{unlimited}
                 {ORDER} LIMIT $1 FOR UPDATE SKIP LOCKED
             ) c"
        )
    };
    let open_queues = if shape.paused {
        "SELECT name FROM queues WHERE name <> ALL (ARRAY(SELECT queue FROM paused_queues))"
    } else {
        "SELECT name FROM queues"
    };
    let mut sql = format!(
        "WITH RECURSIVE {queues},
         open_queues AS ({open_queues}),
         pending_due AS ({pending_due}),
         expired AS (
             SELECT {CANDIDATE} FROM tasks
             WHERE state = 'running' AND lease_expires_at < now() AND {filters}{in_queues}{unlimited}
             {ORDER} LIMIT $1 FOR UPDATE SKIP LOCKED
         ),"
    );
    let mut candidates = String::from("SELECT * FROM pending_due UNION ALL SELECT * FROM expired");
    if shape.limited {
        sql.push_str(&format!(
            "
         budget AS (SELECT * FROM unnest($9::text[], $10::int8[]) AS b(function, n) WHERE n > 0),
         limited_pending AS (
             SELECT c.* FROM budget b CROSS JOIN LATERAL (
                 SELECT {CANDIDATE} FROM tasks
                 WHERE state = 'pending' AND scheduled_for <= now() AND function = b.function
                     AND kind IN ('orchestrator', 'activity') AND {filters}{in_queues}
                 {ORDER} LIMIT b.n FOR UPDATE SKIP LOCKED
             ) c
         ),
         limited_expired AS (
             SELECT c.* FROM budget b CROSS JOIN LATERAL (
                 SELECT {CANDIDATE} FROM tasks
                 WHERE state = 'running' AND lease_expires_at < now() AND function = b.function
                     AND kind IN ('orchestrator', 'activity') AND {filters}{in_queues}
                 {ORDER} LIMIT b.n FOR UPDATE SKIP LOCKED
             ) c
         ),
         limited_ranked AS (
             SELECT l.*, row_number() OVER (PARTITION BY l.function {ORDER}) AS rank
             FROM (SELECT * FROM limited_pending UNION ALL SELECT * FROM limited_expired) l
         ),
         limited AS (
             SELECT r.id, r.function, r.claim_at, r.priority, r.scheduled_for, r.created_at
             FROM limited_ranked r JOIN budget b ON b.function = r.function
             WHERE r.rank <= b.n
         ),"
        ));
        candidates.push_str(" UNION ALL SELECT * FROM limited");
    }
    // Without the paused filters, the statement claims nothing while anything
    // is paused: a claim may send it before it knows (see `Plan::run`).
    let gate = if shape.paused {
        ""
    } else {
        " WHERE NOT EXISTS (SELECT 1 FROM paused_executions) AND NOT EXISTS (SELECT 1 FROM paused_queues)"
    };
    sql.push_str(&format!(
        "
         picked AS (SELECT id FROM ({candidates}) u{gate} {ORDER} LIMIT $1),
         claimed AS (
             UPDATE tasks t SET state = 'running', attempt = t.attempt + 1, lease_token = gen_random_uuid(),
                 lease_owner = $3, lease_expires_at = now() + $2::int8::float8 * interval '1 microsecond',
                 heartbeat_at = now(), started_at = now(), stuck_at = NULL
             WHERE t.id = ANY(ARRAY(SELECT id FROM picked))
             RETURNING {columns}
         ),
         started AS (
             UPDATE executions x SET state = 'running', started_at = COALESCE(x.started_at, now()), updated_at = now()
             WHERE x.id = ANY(ARRAY(SELECT execution_id FROM claimed WHERE step = 0)) AND x.state = 'pending'
             RETURNING x.id, x.function
         )
         SELECT claimed.*, started.function AS started_function
         FROM claimed LEFT JOIN started ON started.id = claimed.execution_id AND claimed.step = 0",
        columns = *TASK_COLUMNS_T
    ));
    sql
}

/// What a claim request asks for, resolved.
struct Plan<'a> {
    req: &'a ClaimRequest,
    kinds: Vec<&'static str>,
    /// Limited functions this request could claim, in name order, with their limits.
    limits: Vec<(&'a str, u32)>,
    /// Their names, in the same order.
    limited: Vec<&'a str>,
    lock_prefix: String,
    ageing: PriorityAgeing,
    /// Whether the store's last claim found something paused.
    pauses_seen: &'a AtomicBool,
}

/// What is left of the limits of the limited functions that have any left.
#[derive(Default)]
struct Budgets {
    functions: Vec<String>,
    left: Vec<i64>,
}

/// Claims up to `req.max` tasks.
pub(crate) async fn claim(store: &PostgresStore, req: &ClaimRequest) -> StoreResult<Committed<Vec<Claimed>>> {
    let Some(plan) = Plan::new(store, req) else {
        return Ok(Committed::unchanged(Vec::new()));
    };
    in_transaction!(store, |tx| plan.run(tx))
}

/// Claims up to `req.max` tasks in `tx`, a group commit's transaction,
/// recording their changes after `changes`; the commit appends the events.
pub(crate) async fn claim_in(
    store: &PostgresStore,
    tx: &Tx,
    req: &ClaimRequest,
    changes: &mut Vec<Change>,
) -> Result<Vec<Claimed>> {
    match Plan::new(store, req) {
        Some(plan) => plan.claim(tx, changes).await,
        None => Ok(Vec::new()),
    }
}

impl<'a> Plan<'a> {
    /// The plan of `req`; `None` if it can claim nothing.
    fn new(store: &'a PostgresStore, req: &'a ClaimRequest) -> Option<Self> {
        let mut kinds: Vec<&'static str> = req
            .effective_kinds()
            .into_iter()
            .filter(|k| *k != TaskKind::Effect)
            .map(TaskKind::as_str)
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        if req.max == 0 || kinds.is_empty() {
            return None;
        }
        let limits_apply = kinds
            .iter()
            .any(|k| *k == TaskKind::Orchestrator.as_str() || *k == TaskKind::Activity.as_str());
        let mut limits: Vec<(&str, u32)> = req
            .limits
            .iter()
            .filter(|_| limits_apply)
            .filter(|(f, _)| req.functions.as_ref().is_none_or(|fs| fs.contains(f)))
            .map(|(f, n)| (f.as_str(), *n))
            .collect();
        limits.sort_unstable();
        let limited = limits.iter().map(|(f, _)| *f).collect();
        Some(Plan {
            req,
            kinds,
            limits,
            limited,
            lock_prefix: store.lock_name("limit"),
            ageing: store.ageing,
            pauses_seen: &store.pauses_seen,
        })
    }
}

impl Plan<'_> {
    /// The claim in a transaction of its own, which its append commits.
    async fn run(&self, tx: &Tx) -> Result<Committed<Vec<Claimed>>> {
        let mut changes = Vec::new();
        let claimed = self.claim(tx, &mut changes).await?;
        event_log::append_then(tx, &events_of(&changes), Then::Commit).await?;
        Ok(Committed::new(claimed, changes))
    }

    /// Claims, recording the claim's changes after `changes`.
    async fn claim(&self, tx: &Tx, changes: &mut Vec<Change>) -> Result<Vec<Claimed>> {
        let req = self.req;
        let rows = if self.limited.is_empty() && !self.pauses_seen.load(Ordering::Relaxed) {
            // Most likely nothing is paused, as at the last claim: claim as if
            // so, asking in the same flight whether it still is. The statement
            // claims nothing if something is paused after all (see `statement`).
            let (rows, paused) = self.claim_rows(tx, false, &Budgets::default(), true).await?;
            let paused = paused.unwrap_or(false);
            self.pauses_seen.store(paused, Ordering::Relaxed);
            if paused && rows.is_empty() {
                self.claim_rows(tx, true, &Budgets::default(), false).await?.0
            } else {
                rows
            }
        } else {
            let (budgets, paused) = self.budgets_and_pauses(tx).await?;
            self.pauses_seen.store(paused, Ordering::Relaxed);
            self.claim_rows(tx, paused, &budgets, false).await?.0
        };
        let mut started: HashMap<ExecutionId, String> = HashMap::new();
        let mut tasks: Vec<TaskRecord> = Vec::with_capacity(rows.len());
        for row in &rows {
            let task = rows::task(row)?;
            if let Some(function) = row.try_get::<_, Option<String>>("started_function")? {
                started.insert(task.execution_id, function);
            }
            tasks.push(task);
        }
        // The statement's order, for the events (the UPDATE returns rows in any order).
        let ageing = self.ageing;
        tasks.sort_by(|a, b| {
            ageing
                .claim_at(a.priority, a.scheduled_for)
                .cmp(&ageing.claim_at(b.priority, b.scheduled_for))
                .then(b.priority.cmp(&a.priority))
                .then(a.scheduled_for.cmp(&b.scheduled_for))
                .then(a.created_at.cmp(&b.created_at))
                .then(a.id.cmp(&b.id))
        });

        changes.reserve(tasks.len() + started.len());
        let mut claimed = Vec::with_capacity(tasks.len());
        for task in tasks {
            changes.push(Change::TaskStarted {
                task: TaskRef::new(task.execution_id, task.id, task.kind, task.function.clone()),
                attempt: task.attempt,
                worker: req.worker_id.clone(),
            });
            if task.step == 0
                && let Some(function) = started.get(&task.execution_id)
            {
                changes.push(Change::ExecutionStarted {
                    execution: task.execution_id,
                    function: function.clone(),
                });
            }
            let lease = Lease {
                task_id: task.id,
                token: task
                    .lease_token
                    .ok_or_else(|| corrupt("a claimed task has no lease token"))?,
                owner: req.worker_id.clone(),
                attempt: task.attempt,
                expires_at: task
                    .lease_expires_at
                    .ok_or_else(|| corrupt("a claimed task has no lease expiry"))?,
            };
            claimed.push(Claimed { task, lease });
        }
        Ok(claimed)
    }

    /// Runs the claim statement for `paused` (whether something is); with
    /// `ask_pauses`, asks in the same flight whether anything is paused now.
    async fn claim_rows(
        &self,
        tx: &Tx,
        paused: bool,
        budgets: &Budgets,
        ask_pauses: bool,
    ) -> Result<(Vec<Row>, Option<bool>)> {
        let (req, limited) = (self.req, &self.limited);
        let shape = Shape {
            queues: req.queues.is_some(),
            functions: req.functions.is_some(),
            tags: req.tags.is_some(),
            limited: !limited.is_empty(),
            excluded: !req.exclude_functions.is_empty(),
            internal_excluded: req.exclude_internal,
            paused,
        };
        let prefix = courier_core::INTERNAL_PREFIX;
        let unlimited: Vec<&str> = req
            .functions
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|f| !limited.contains(f))
            .collect();
        let empty: Vec<String> = Vec::new();
        let max = i64::from(req.max);
        let lease = micros(req.lease);
        let params: [&(dyn ToSql + Sync); 13] = [
            &max,
            &lease,
            &req.worker_id,
            &self.kinds,
            req.queues.as_ref().unwrap_or(&empty),
            req.functions.as_ref().unwrap_or(&empty),
            req.tags.as_ref().unwrap_or(&empty),
            limited,
            &budgets.functions,
            &budgets.left,
            &req.exclude_functions,
            &prefix,
            &unlimited,
        ];
        let connection = tx.connection();
        let claim = connection.prepare_typed_cached(&statement(shape), PARAM_TYPES).await?;
        if !ask_pauses {
            return Ok((tx.send(connection.query(&claim, &params)).await?, None));
        }
        let pauses = connection.prepare_cached(ANYTHING_PAUSED).await?;
        let (rows, paused) = futures::try_join!(
            tx.send(connection.query(&claim, &params)),
            tx.send(connection.query_one(&pauses, &[])),
        )?;
        Ok((rows, Some(paused.try_get(0)?)))
    }

    /// Locks each limited function's advisory lock and returns what is left of
    /// each limit, counting live leases only (an expired one is claimable, and
    /// claiming it counts against the budget); and whether any execution or
    /// queue is paused, read after the locks: a pause committed after this read
    /// is honoured from the next claim on, as if this claim had come first.
    ///
    /// The statements go out in one flight, in this order, so that the count
    /// runs once the locks are held and sees every claim of their previous
    /// holders. All are prepared before any is sent: a statement still being
    /// prepared would go out behind the others.
    async fn budgets_and_pauses(&self, tx: &Tx) -> Result<(Budgets, bool)> {
        let limited = &self.limited;
        let connection = tx.connection();
        let pauses = connection.prepare_cached(ANYTHING_PAUSED).await?;
        if limited.is_empty() {
            let paused = tx.send(connection.query_one(&pauses, &[])).await?;
            return Ok((Budgets::default(), paused.try_get(0)?));
        }
        let lock = connection.prepare_cached(LOCK_LIMITS).await?;
        let count = connection.prepare_cached(COUNT_RUNNING).await?;
        let keys: Vec<String> = limited.iter().map(|f| format!("{}:{f}", self.lock_prefix)).collect();
        let (lock_params, count_params): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) = ([&keys], [&limited]);
        let (_, running, paused) = futures::try_join!(
            tx.send(connection.execute(&lock, &lock_params)),
            tx.send(connection.query(&count, &count_params)),
            tx.send(connection.query_one(&pauses, &[])),
        )?;
        let running: HashMap<String, i64> = running
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_>>()?;
        let mut budgets = Budgets::default();
        for (function, limit) in &self.limits {
            let left = i64::from(*limit) - running.get(*function).copied().unwrap_or(0);
            if left > 0 {
                budgets.functions.push(function.to_string());
                budgets.left.push(left);
            }
        }
        Ok((budgets, paused.try_get(0)?))
    }
}

/// Takes the limited functions' advisory locks. `unnest` yields the keys in
/// array (name) order, so every claimer locks in the same order and none
/// deadlocks.
const LOCK_LIMITS: &str = "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM unnest($1::text[]) AS k";

/// The live leases of each limited function.
const COUNT_RUNNING: &str = "SELECT function, count(*) FROM tasks
     WHERE state = 'running' AND lease_expires_at > now() AND kind IN ('orchestrator', 'activity')
         AND function = ANY($1)
     GROUP BY function";

/// Whether any execution or queue is paused.
const ANYTHING_PAUSED: &str = "SELECT EXISTS (SELECT 1 FROM paused_executions) OR EXISTS (SELECT 1 FROM paused_queues)";
