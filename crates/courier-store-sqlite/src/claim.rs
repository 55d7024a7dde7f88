//! Claims. They run on the writer thread, so a claim is atomic with respect to
//! every other write, and per-function limits hold however many workers race.
//!
//! Candidates come from partial indexes on pending tasks, read in claim order
//! and merged here, plus expired leases. A pending task is in one of two: a
//! function's work (orchestrator and activity tasks) by function, everything
//! else (timers, effects) by queue. A claim that names its functions reads each
//! of them (a full one not at all) and timers by queue; one that does not walks
//! every function with pending work and the queues one at a time (every queue
//! that has pending work, when none is named). Filters are applied in SQL so that
//! `LIMIT` counts only claimable rows. When a limited function fills up, its
//! remaining candidates are skipped and the walk is redone without it, so a busy
//! function cannot starve the others out of a claim.
//!
//! Claim order is the `claim_at` column: the due time minus priority × the
//! store's ageing (see [`courier_core::PriorityAgeing`] for the bound it gives),
//! then priority, due time, creation and id. Every claim index is ordered that way.

use std::cmp::Ordering;
use std::collections::HashMap;

use courier_core::{Change, ClaimRequest, Claimed, Lease, LeaseToken, PriorityAgeing, TaskRecord, TaskRef, TaskState};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use crate::codec::{after, json, time};
use crate::error::Result;
use crate::rows::{task_at, task_columns};
use crate::{event_log, executions};

/// The filters of a request, as SQL appended to a candidate query and its arguments.
struct Filters {
    sql: String,
    args: Vec<SqlValue>,
}

impl Filters {
    fn new(req: &ClaimRequest, saturated: &[String]) -> Result<Filters> {
        // Paused executions and queues (see `pauses`): each set is read once per
        // statement, and is usually empty.
        let mut sql = String::from(
            " AND execution_id NOT IN (SELECT execution_id FROM paused_executions) \
             AND queue NOT IN (SELECT queue FROM paused_queues)",
        );
        let mut args = Vec::new();
        if req.kinds.is_empty() {
            sql.push_str(" AND kind <> 'effect'");
        } else {
            sql.push_str(" AND kind IN (SELECT value FROM json_each(?))");
            let kinds: Vec<&str> = req.kinds.iter().map(|k| k.as_str()).collect();
            args.push(SqlValue::Text(json(&kinds)?));
        }
        if let Some(functions) = &req.functions {
            // Timers are routed by kind alone.
            sql.push_str(
                " AND (kind NOT IN ('orchestrator', 'activity') OR function IN (SELECT value FROM json_each(?)))",
            );
            args.push(SqlValue::Text(json(functions)?));
        }
        if let Some(tags) = &req.tags {
            sql.push_str(
                " AND (tags = '[]' OR EXISTS (SELECT 1 FROM json_each(tasks.tags) AS t \
                 WHERE t.value IN (SELECT value FROM json_each(?))))",
            );
            args.push(SqlValue::Text(json(tags)?));
        }
        if !req.exclude_functions.is_empty() {
            sql.push_str(
                " AND (kind NOT IN ('orchestrator', 'activity') OR function NOT IN (SELECT value FROM json_each(?)))",
            );
            args.push(SqlValue::Text(json(&req.exclude_functions)?));
        }
        if req.exclude_internal {
            // A prefix compared byte for byte (`LIKE` would fold case and read `_`).
            sql.push_str(" AND (kind NOT IN ('orchestrator', 'activity') OR substr(function, 1, ?) <> ?)");
            args.push(SqlValue::Integer(courier_core::INTERNAL_PREFIX.len() as i64));
            args.push(SqlValue::Text(courier_core::INTERNAL_PREFIX.to_string()));
        }
        if !saturated.is_empty() {
            sql.push_str(" AND function NOT IN (SELECT value FROM json_each(?))");
            args.push(SqlValue::Text(json(saturated)?));
        }
        Ok(Filters { sql, args })
    }
}

/// Claim order, as the indexes have it: the ageing-adjusted due time, then
/// priority (high first), due time, creation, id.
fn claim_order(ageing: PriorityAgeing, a: &TaskRecord, b: &TaskRecord) -> Ordering {
    ageing
        .claim_at(a.priority, a.scheduled_for)
        .cmp(&ageing.claim_at(b.priority, b.scheduled_for))
        .then(b.priority.cmp(&a.priority))
        .then(a.scheduled_for.cmp(&b.scheduled_for))
        .then(a.created_at.cmp(&b.created_at))
        .then(a.id.cmp(&b.id))
}

const ORDER: &str = " ORDER BY claim_at, priority DESC, scheduled_for, created_at, id LIMIT ?";

/// Pending, due candidates on `queue` other than functions' work (see
/// [`pending_of_function`]), in claim order.
fn pending(conn: &Connection, now: i64, queue: &str, filters: &Filters, n: usize) -> Result<Vec<(i64, TaskRecord)>> {
    let sql = concat!(
        "SELECT ",
        task_columns!(),
        " FROM tasks INDEXED BY tasks_claim WHERE state = 'pending' AND kind NOT IN ('orchestrator', 'activity') \
         AND queue = ? AND scheduled_for <= ?"
    );
    candidates(
        conn,
        sql,
        vec![SqlValue::Text(queue.to_string()), SqlValue::Integer(now)],
        filters,
        n,
    )
}

/// Pending, due orchestrators and activities of `function`, in claim order,
/// from the function's own index.
fn pending_of_function(
    conn: &Connection,
    now: i64,
    function: &str,
    queues: Option<&[String]>,
    filters: &Filters,
    n: usize,
) -> Result<Vec<(i64, TaskRecord)>> {
    let mut sql = String::from(concat!(
        "SELECT ",
        task_columns!(),
        " FROM tasks INDEXED BY tasks_pending_function WHERE state = 'pending' AND function = ? \
         AND kind IN ('orchestrator', 'activity') AND scheduled_for <= ?"
    ));
    let mut args = vec![SqlValue::Text(function.to_string()), SqlValue::Integer(now)];
    if let Some(queues) = queues {
        sql.push_str(" AND queue IN (SELECT value FROM json_each(?))");
        args.push(SqlValue::Text(json(queues)?));
    }
    candidates(conn, &sql, args, filters, n)
}

/// Pending, due timers (sleeps and signal waits) on `queue`, in claim order,
/// from their own index.
fn pending_timers(
    conn: &Connection,
    now: i64,
    queue: &str,
    filters: &Filters,
    n: usize,
) -> Result<Vec<(i64, TaskRecord)>> {
    let sql = concat!(
        "SELECT ",
        task_columns!(),
        " FROM tasks INDEXED BY tasks_pending_timers WHERE state = 'pending' \
         AND kind IN ('sleep', 'signal_wait') AND queue = ? AND scheduled_for <= ?"
    );
    candidates(
        conn,
        sql,
        vec![SqlValue::Text(queue.to_string()), SqlValue::Integer(now)],
        filters,
        n,
    )
}

/// Runs a candidate query (`sql` with its `args`) with the request's filters,
/// in claim order, at most `n`.
fn candidates(
    conn: &Connection,
    sql: &str,
    args: Vec<SqlValue>,
    filters: &Filters,
    n: usize,
) -> Result<Vec<(i64, TaskRecord)>> {
    let mut sql = sql.to_string();
    let mut args = args;
    sql.push_str(&filters.sql);
    args.extend(filters.args.iter().cloned());
    sql.push_str(ORDER);
    args.push(SqlValue::Integer(n as i64));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), task_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every queue with pending tasks other than functions' work: one index seek
/// per queue (a skip-scan), so a second index ordered without the queue is not
/// needed.
fn pending_queues(conn: &Connection) -> Result<Vec<String>> {
    skip_scan(
        conn,
        "SELECT queue FROM tasks INDEXED BY tasks_claim \
         WHERE state = 'pending' AND kind NOT IN ('orchestrator', 'activity') ORDER BY queue LIMIT 1",
        "SELECT queue FROM tasks INDEXED BY tasks_claim \
         WHERE state = 'pending' AND kind NOT IN ('orchestrator', 'activity') AND queue > ?1 ORDER BY queue LIMIT 1",
    )
}

/// Every function with pending orchestrator or activity tasks, by name: one
/// index seek per function, as [`pending_queues`] does for queues.
fn pending_functions(conn: &Connection) -> Result<Vec<String>> {
    skip_scan(
        conn,
        "SELECT function FROM tasks INDEXED BY tasks_pending_function \
         WHERE state = 'pending' AND kind IN ('orchestrator', 'activity') ORDER BY function LIMIT 1",
        "SELECT function FROM tasks INDEXED BY tasks_pending_function \
         WHERE state = 'pending' AND kind IN ('orchestrator', 'activity') AND function > ?1 \
         ORDER BY function LIMIT 1",
    )
}

/// The distinct values of an index's first column, in order: `first` reads the
/// lowest, `next` the lowest above `?1`.
fn skip_scan(conn: &Connection, first: &str, next: &str) -> Result<Vec<String>> {
    let mut values: Vec<String> = Vec::new();
    let mut next = conn.prepare_cached(next)?;
    let mut found: Option<String> = conn.prepare_cached(first)?.query_row([], |row| row.get(0)).optional()?;
    while let Some(value) = found {
        found = next.query_row([&value], |row| row.get(0)).optional()?;
        values.push(value);
    }
    Ok(values)
}

/// Running candidates whose lease has expired, in claim order.
fn expired(
    conn: &Connection,
    now: i64,
    queues: Option<&[String]>,
    filters: &Filters,
    n: usize,
) -> Result<Vec<(i64, TaskRecord)>> {
    let mut sql = String::from(concat!(
        "SELECT ",
        task_columns!(),
        " FROM tasks INDEXED BY tasks_running WHERE state = 'running' AND lease_expires_at < ?"
    ));
    let mut args = vec![SqlValue::Integer(now)];
    if let Some(queues) = queues {
        sql.push_str(" AND queue IN (SELECT value FROM json_each(?))");
        args.push(SqlValue::Text(json(queues)?));
    }
    sql.push_str(&filters.sql);
    args.extend(filters.args.iter().cloned());
    sql.push_str(ORDER);
    args.push(SqlValue::Integer(n as i64));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), task_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many tasks of `function` run under a live lease.
fn live_count(conn: &Connection, now: i64, function: &str) -> Result<u32> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM tasks INDEXED BY tasks_running \
             WHERE state = 'running' AND lease_expires_at > ?2 AND function = ?1",
        )?
        .query_row((function, now), |row| row.get(0))?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Claims up to `req.max` tasks; see [`Store::claim_tasks`](courier_core::Store::claim_tasks).
pub(crate) fn claim(
    conn: &Connection,
    now: i64,
    ageing: PriorityAgeing,
    req: &ClaimRequest,
    changes: &mut Vec<Change>,
) -> Result<Vec<Claimed>> {
    let max = req.max as usize;
    let queues: Option<Vec<String>> = req.queues.as_ref().map(|q| {
        let mut q = q.clone();
        q.sort();
        q.dedup();
        q
    });
    if max == 0 || queues.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let lease_until = after(now, req.lease);
    let mut claimed: Vec<Claimed> = Vec::new();
    // Live leases per limited function, counted once, then kept up to date here.
    let mut live: HashMap<String, u32> = HashMap::new();
    let mut saturated: Vec<String> = Vec::new();
    let paused = crate::pauses::paused_queue_names(conn)?;
    loop {
        let need = max - claimed.len();
        let filters = Filters::new(req, &saturated)?;
        let mut candidates = Vec::new();
        let mut more_exist = false;
        let mut walk = match &queues {
            Some(queues) => queues.clone(),
            None => pending_queues(conn)?,
        };
        // A paused queue is not walked at all (its filter would pass over every row).
        walk.retain(|queue| !paused.contains(queue));
        // Each function's work from its own index (the named functions, or
        // every one with pending work; a full one not at all), then the rest
        // by queue: only timers when functions are named (their filter
        // exempts timers and takes nothing else).
        let functions = match &req.functions {
            Some(functions) => functions.clone(),
            None => pending_functions(conn)?,
        };
        let mut found = Vec::new();
        for function in functions.iter().filter(|f| !saturated.contains(f)) {
            found.push(pending_of_function(
                conn,
                now,
                function,
                queues.as_deref(),
                &filters,
                need,
            )?);
        }
        for queue in &walk {
            found.push(match req.functions {
                Some(_) => pending_timers(conn, now, queue, &filters, need)?,
                None => pending(conn, now, queue, &filters, need)?,
            });
        }
        for found in found {
            more_exist |= found.len() == need;
            candidates.extend(found);
        }
        let found = expired(conn, now, queues.as_deref(), &filters, need)?;
        more_exist |= found.len() == need;
        candidates.extend(found);
        candidates.sort_by(|a, b| claim_order(ageing, &a.1, &b.1));

        let mut newly_saturated = false;
        for (rowid, task) in candidates {
            if claimed.len() == max {
                break;
            }
            if let Some(&cap) = req.limits.get(&task.function) {
                let running = match live.get(&task.function) {
                    Some(n) => *n,
                    None => live_count(conn, now, &task.function)?,
                };
                if running >= cap {
                    if !saturated.contains(&task.function) {
                        saturated.push(task.function.clone());
                        newly_saturated = true;
                    }
                    live.insert(task.function.clone(), running);
                    continue;
                }
                live.insert(task.function.clone(), running + 1);
            }
            claimed.push(claim_one(conn, now, lease_until, req, rowid, task, changes)?);
        }
        // Without skips, a full candidate list fills the claim; only a function
        // filling up mid-walk can leave room that a walk without it would fill.
        if claimed.len() == max || !more_exist || !newly_saturated {
            break;
        }
    }
    Ok(claimed)
}

fn claim_one(
    conn: &Connection,
    now: i64,
    lease_until: i64,
    req: &ClaimRequest,
    rowid: i64,
    mut task: TaskRecord,
    changes: &mut Vec<Change>,
) -> Result<Claimed> {
    let token = LeaseToken::new();
    conn.prepare_cached(
        "UPDATE tasks SET state = 'running', attempt = attempt + 1, lease_token = ?2, lease_owner = ?3, \
         lease_expires_at = ?4, heartbeat_at = ?5, started_at = ?5, stuck_at = NULL WHERE rowid = ?1",
    )?
    .execute((rowid, token.0.as_bytes(), &req.worker_id, lease_until, now))?;
    let at = time(now);
    task.state = TaskState::Running;
    task.attempt += 1;
    task.lease_token = Some(token);
    task.lease_owner = Some(req.worker_id.clone());
    task.lease_expires_at = Some(time(lease_until));
    task.heartbeat_at = Some(at);
    task.started_at = Some(at);
    task.stuck_at = None;
    let started = Change::TaskStarted {
        task: TaskRef::new(task.execution_id, task.id, task.kind, task.function.clone()),
        attempt: task.attempt,
        worker: req.worker_id.clone(),
    };
    event_log::record(conn, now, changes, started)?;
    // The root task's function is its execution's: dispatch writes both from one spec.
    if task.step == 0 && executions::start(conn, now, task.execution_id)? {
        let started = Change::ExecutionStarted {
            execution: task.execution_id,
            function: task.function.clone(),
        };
        event_log::record(conn, now, changes, started)?;
    }
    let lease = Lease {
        task_id: task.id,
        token,
        owner: req.worker_id.clone(),
        attempt: task.attempt,
        expires_at: time(lease_until),
    };
    Ok(Claimed { task, lease })
}
