//! Executions: reads, raw writes, and the moves that start and end one (start,
//! finish, cancel, time out). [`ExecutionStore`] is implemented here; dispatch is
//! in `dispatch.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{
    Cancelled, Change, Committed, ExecutionFilter, ExecutionId, ExecutionRecord, ExecutionState, ExecutionStore,
    StoreError, StoreResult, TaskError, TaskId, TaskKind, TaskRecord, TaskRef,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::SqliteStore;
use crate::codec::{enum_at, json, limit, micros, uuid_at};
use crate::error::Result;
use crate::rows::{execution_at, execution_columns, insert_execution, overwrite_execution};
use crate::{event_log, family, maintenance};

#[async_trait]
impl ExecutionStore for SqliteStore {
    async fn get_execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        self.read(move |conn, _| get(conn, id)).await
    }

    async fn list_executions(&self, filter: &ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>> {
        let filter = filter.clone();
        self.read(move |conn, _| list(conn, &filter)).await
    }

    async fn count_executions(&self, state: Option<ExecutionState>) -> StoreResult<u64> {
        self.read(move |conn, _| count(conn, state)).await
    }

    async fn cancel_execution(&self, id: ExecutionId, reason: &str) -> StoreResult<Committed<Cancelled>> {
        let reason = reason.to_string();
        self.write_changes(move |conn, now, changes| cancel(conn, now, id, &reason, changes))
            .await
    }

    async fn time_out_executions(&self, limit: u32) -> StoreResult<Committed<Vec<Cancelled>>> {
        self.write_changes(move |conn, now, changes| time_out(conn, now, limit, changes))
            .await
    }

    async fn cleanup_executions(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |conn, _| maintenance::cleanup_executions(conn, micros(older_than)))
            .await
    }
}

/// Inserts an execution record as given.
pub(crate) fn create(conn: &Connection, record: &ExecutionRecord) -> Result<()> {
    insert_execution(conn, record)
}

/// Inserts an execution and its root task as given (the caller's transaction makes
/// it both or neither).
pub(crate) fn create_with_root(conn: &Connection, record: &ExecutionRecord, task: &TaskRecord) -> Result<()> {
    insert_execution(conn, record)?;
    crate::rows::insert_task(conn, task)
}

/// Overwrites an execution record.
pub(crate) fn update(conn: &Connection, record: &ExecutionRecord) -> Result<()> {
    if overwrite_execution(conn, record)? {
        Ok(())
    } else {
        Err(StoreError::ExecutionNotFound(record.id).into())
    }
}

/// One execution.
pub(crate) fn get(conn: &Connection, id: ExecutionId) -> Result<Option<ExecutionRecord>> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            execution_columns!(),
            " FROM executions WHERE id = ?1"
        ))?
        .query_row([id.0.as_bytes()], execution_at)
        .optional()?)
}

/// An execution's state and function, if it exists.
pub(crate) fn state_of(conn: &Connection, id: ExecutionId) -> Result<Option<(ExecutionState, String)>> {
    Ok(conn
        .prepare_cached("SELECT state, function FROM executions WHERE id = ?1")?
        .query_row([id.0.as_bytes()], |row| Ok((enum_at(row, 0)?, row.get(1)?)))
        .optional()?)
}

/// Refuses with `ExecutionNotFound` unless the execution exists.
pub(crate) fn require(conn: &Connection, id: ExecutionId) -> Result<(ExecutionState, String)> {
    state_of(conn, id)?.ok_or_else(|| StoreError::ExecutionNotFound(id).into())
}

/// Executions matching `filter`, newest first.
fn list(conn: &Connection, filter: &ExecutionFilter) -> Result<Vec<ExecutionRecord>> {
    let (sql, args) = list_statement(filter);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), execution_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The statement reading `filter`'s page: newest first, from the index by
/// creation (no state change moves its entries), filtering as it goes.
fn list_statement(filter: &ExecutionFilter) -> (String, Vec<SqlValue>) {
    let mut sql = String::from(concat!("SELECT ", execution_columns!(), " FROM executions WHERE 1 = 1"));
    let mut args: Vec<SqlValue> = Vec::new();
    if let Some(state) = filter.state {
        sql.push_str(" AND state = ?");
        args.push(SqlValue::Text(state.as_str().into()));
    }
    if let Some(function) = &filter.function {
        sql.push_str(" AND function = ?");
        args.push(SqlValue::Text(function.clone()));
    }
    if let Some(queue) = &filter.queue {
        sql.push_str(" AND queue = ?");
        args.push(SqlValue::Text(queue.clone()));
    }
    if let Some(after) = filter.created_after {
        sql.push_str(" AND created_at >= ?");
        args.push(SqlValue::Integer(micros(after)));
    }
    if let Some(before) = filter.created_before {
        sql.push_str(" AND created_at < ?");
        args.push(SqlValue::Integer(micros(before)));
    }
    if let Some(key) = &filter.idempotency_key {
        sql.push_str(" AND idempotency_key = ?");
        args.push(SqlValue::Text(key.clone()));
    }
    if let Some(parent) = filter.parent {
        sql.push_str(" AND parent_execution_id = ?");
        args.push(SqlValue::Blob(parent.0.as_bytes().to_vec()));
    }
    if !filter.include_internal {
        sql.push_str(" AND function NOT LIKE 'courier.%'");
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?");
    args.push(SqlValue::Integer(limit(filter.limit)));
    args.push(SqlValue::Integer(i64::from(filter.offset)));
    (sql, args)
}

/// How many executions (in `state`).
fn count(conn: &Connection, state: Option<ExecutionState>) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM executions WHERE ?1 IS NULL OR state = ?1")?
        .query_row([state.map(ExecutionState::as_str)], |row| row.get(0))?;
    Ok(n as u64)
}

/// Moves an unfinished execution to the terminal `state`; whether it moved (an
/// execution already finished is left alone).
///
/// One guarded UPDATE rather than a look-up first, and no `RETURNING`: SQLite runs
/// RETURNING as a trigger, which costs the statement a statement journal.
pub(crate) fn finish(
    conn: &Connection,
    now: i64,
    id: ExecutionId,
    state: ExecutionState,
    result: Option<&str>,
    error: Option<&TaskError>,
) -> Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE executions SET state = ?2, result = ?3, error = ?4, completed_at = ?5, updated_at = ?5 \
             WHERE id = ?1 AND state IN ('pending', 'running')",
        )?
        .execute(params![
            id.0.as_bytes(),
            state.as_str(),
            result,
            error.map(json).transpose()?,
            now
        ])?;
    Ok(changed > 0)
}

/// Moves a pending execution to `running` when its root task is first claimed;
/// whether it moved.
pub(crate) fn start(conn: &Connection, now: i64, id: ExecutionId) -> Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE executions SET state = 'running', started_at = coalesce(started_at, ?2), updated_at = ?2 \
             WHERE id = ?1 AND state = 'pending'",
        )?
        .execute((id.0.as_bytes(), now))?;
    Ok(changed > 0)
}

/// Records an execution's `ExecutionEnded` and what the end sets off for its
/// parent and children (see [`family::ended`]).
pub(crate) fn record_end(conn: &Connection, now: i64, changes: &mut Vec<Change>, ended: Change) -> Result<()> {
    event_log::record(conn, now, changes, ended.clone())?;
    family::ended(conn, now, &ended, changes)
}

/// Cancels every unfinished task of an execution (running ones lose their lease).
fn cancel_tasks(
    conn: &Connection,
    now: i64,
    execution: ExecutionId,
    reason: &str,
    changes: &mut Vec<Change>,
) -> Result<Vec<TaskId>> {
    let victims: Vec<(i64, TaskId, TaskKind, String)> = conn
        .prepare_cached(
            "SELECT rowid, id, kind, function FROM tasks \
             WHERE execution_id = ?1 AND state IN ('pending', 'running', 'waiting') ORDER BY step",
        )?
        .query_map([execution.0.as_bytes()], |row| {
            Ok((row.get(0)?, TaskId(uuid_at(row, 1)?), enum_at(row, 2)?, row.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut cancel = conn.prepare_cached(
        "UPDATE tasks SET state = 'cancelled', completed_at = ?2, lease_token = NULL, lease_expires_at = NULL \
         WHERE rowid = ?1",
    )?;
    let mut ids = Vec::with_capacity(victims.len());
    for (rowid, id, kind, function) in victims {
        cancel.execute((rowid, now))?;
        let cancelled = Change::TaskCancelled {
            task: TaskRef::new(execution, id, kind, function),
            reason: reason.to_string(),
        };
        event_log::record(conn, now, changes, cancelled)?;
        ids.push(id);
    }
    Ok(ids)
}

/// Cancels an execution and its unfinished tasks.
pub(crate) fn cancel(
    conn: &Connection,
    now: i64,
    id: ExecutionId,
    reason: &str,
    changes: &mut Vec<Change>,
) -> Result<Cancelled> {
    let (previous, function) = require(conn, id)?;
    if previous.is_terminal() {
        return Ok(Cancelled {
            execution_id: id,
            previous,
            tasks: Vec::new(),
        });
    }
    let tasks = cancel_tasks(conn, now, id, reason, changes)?;
    let error = TaskError::new(TaskError::CANCELLED, reason);
    finish(conn, now, id, ExecutionState::Cancelled, None, Some(&error))?;
    let ended = Change::ExecutionEnded {
        execution: id,
        function,
        state: ExecutionState::Cancelled,
        result: None,
        error: None,
        reason: Some(reason.to_string()),
    };
    record_end(conn, now, changes, ended)?;
    Ok(Cancelled {
        execution_id: id,
        previous,
        tasks,
    })
}

/// Times out up to `max` unfinished executions whose deadline has come.
fn time_out(conn: &Connection, now: i64, max: u32, changes: &mut Vec<Change>) -> Result<Vec<Cancelled>> {
    let due: Vec<(ExecutionId, ExecutionState, String)> = conn
        .prepare_cached(
            "SELECT id, state, function FROM executions INDEXED BY executions_deadline \
             WHERE deadline IS NOT NULL AND state IN ('pending', 'running') AND deadline <= ?1 \
             ORDER BY deadline LIMIT ?2",
        )?
        .query_map((now, i64::from(max)), |row| {
            Ok((ExecutionId(uuid_at(row, 0)?), enum_at(row, 1)?, row.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let error = TaskError::new(TaskError::TIMEOUT, "the execution outlived its expiry");
    let mut out = Vec::with_capacity(due.len());
    for (id, previous, function) in due {
        let tasks = cancel_tasks(conn, now, id, "execution timed out", changes)?;
        finish(conn, now, id, ExecutionState::TimedOut, None, Some(&error))?;
        let ended = Change::ExecutionEnded {
            execution: id,
            function,
            state: ExecutionState::TimedOut,
            result: None,
            error: None,
            reason: None,
        };
        record_end(conn, now, changes, ended)?;
        out.push(Cancelled {
            execution_id: id,
            previous,
            tasks,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How SQLite would read `filter`'s page: each step of its plan.
    fn plan(conn: &Connection, filter: &ExecutionFilter) -> Vec<String> {
        let (sql, args) = list_statement(filter);
        crate::query_plan::steps(conn, &sql, args)
    }

    /// A page of executions, by state or not, is read newest first from the
    /// index by creation and stops at its limit, with no sort; and no index
    /// on executions holds the state, whose two changes per execution would
    /// each move an entry.
    #[test]
    fn a_listing_reads_newest_first_from_an_index_no_state_change_moves() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::migrations::migrate(&mut conn, 0, courier_core::PriorityAgeing::DEFAULT).unwrap();
        for state in [None, Some(ExecutionState::Running), Some(ExecutionState::Completed)] {
            let filter = ExecutionFilter {
                state,
                limit: 50,
                ..ExecutionFilter::default()
            };
            let plan = plan(&conn, &filter);
            assert_eq!(plan, ["SCAN executions USING INDEX executions_created"], "{state:?}");
        }
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'executions' AND sql IS NOT NULL",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(indexes.iter().all(|sql| !sql.contains("(state")), "{indexes:?}");
    }
}
