//! Schedules: [`ScheduleStore`] for [`SqliteStore`]. Every write runs on the
//! writer thread and names the revision it read, so a firing and an edit never
//! both win; a firing dispatches through dispatch's own code path.

use async_trait::async_trait;
use courier_core::{
    Change, Committed, ExecutionId, Firing, HoldsNul, RunOutcome, ScheduleRecord, ScheduleRun, ScheduleStore,
    StoreError, StoreResult,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::codec::{json, json_at, limit, micros, time, time_at, time_opt_at, uuid_opt_at};
use crate::error::Result;
use crate::{dispatch, event_log};

const COLUMNS: &str = "id, definition, paused, anchor_at, next_slot, buffered_slot, last_slot, last_execution_id, \
                       created_at, updated_at, revision";

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn create_schedule(&self, schedule: &ScheduleRecord) -> StoreResult<ScheduleRecord> {
        schedule.check_nul()?;
        let schedule = schedule.clone();
        self.write(move |conn, now| create(conn, now, &schedule)).await
    }

    async fn get_schedule(&self, id: &str) -> StoreResult<Option<ScheduleRecord>> {
        let id = id.to_string();
        self.read(move |conn, _| get(conn, &id)).await
    }

    async fn list_schedules(&self, max: u32, offset: u32) -> StoreResult<Vec<ScheduleRecord>> {
        self.read(move |conn, _| {
            // TEXT compares with BINARY collation (memcmp of UTF-8): byte order.
            let sql = format!("SELECT {COLUMNS} FROM schedules ORDER BY id LIMIT ?1 OFFSET ?2");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![limit(max), offset], record_at)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn update_schedule(
        &self,
        schedule: &ScheduleRecord,
        expected_revision: i64,
    ) -> StoreResult<Option<ScheduleRecord>> {
        schedule.check_nul()?;
        let schedule = schedule.clone();
        self.write(move |conn, now| update(conn, now, &schedule, expected_revision))
            .await
    }

    async fn delete_schedule(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |conn, _| {
            conn.prepare_cached("DELETE FROM schedule_runs WHERE schedule_id = ?1")?
                .execute([&id])?;
            Ok(conn
                .prepare_cached("DELETE FROM schedules WHERE id = ?1")?
                .execute([&id])?
                > 0)
        })
        .await
    }

    async fn due_schedules(&self, max: u32) -> StoreResult<Vec<ScheduleRecord>> {
        self.read(move |conn, now| {
            let sql = format!(
                "SELECT {COLUMNS} FROM schedules WHERE paused = 0 AND next_slot <= ?1 \
                 UNION SELECT {COLUMNS} FROM schedules WHERE paused = 0 AND buffered_slot IS NOT NULL \
                 ORDER BY next_slot LIMIT ?2"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![now, limit(max)], record_at)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn fire_schedules(&self, firings: &[Firing]) -> StoreResult<Committed<Vec<Option<ScheduleRecord>>>> {
        for run in firings
            .iter()
            .flat_map(|f| &f.runs)
            .filter_map(|r| r.execution.as_ref())
        {
            run.check_nul()?;
        }
        let firings = firings.to_vec();
        // Isolated: a refused dispatch must undo the schedules' moves.
        self.write_changes_isolated(move |conn, now, changes| {
            firings.iter().map(|firing| fire(conn, now, firing, changes)).collect()
        })
        .await
    }

    async fn list_schedule_runs(&self, id: &str, max: u32, offset: u32) -> StoreResult<Vec<ScheduleRun>> {
        let id = id.to_string();
        self.read(move |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT schedule_id, slot, outcome, count, execution_id, reason, recorded_at FROM schedule_runs \
                 WHERE schedule_id = ?1 ORDER BY slot DESC, id DESC LIMIT ?2 OFFSET ?3",
            )?;
            let rows = stmt.query_map(params![id, limit(max), offset], run_at)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}

fn record_at(row: &Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        id: row.get(0)?,
        definition: json_at(row, 1)?,
        paused: row.get(2)?,
        anchor_at: time_at(row, 3)?,
        next_slot: time_opt_at(row, 4)?,
        buffered_slot: time_opt_at(row, 5)?,
        last_slot: time_opt_at(row, 6)?,
        last_execution_id: uuid_opt_at(row, 7)?.map(ExecutionId),
        created_at: time_at(row, 8)?,
        updated_at: time_at(row, 9)?,
        revision: row.get(10)?,
    })
}

fn run_at(row: &Row<'_>) -> rusqlite::Result<ScheduleRun> {
    let outcome: String = row.get(2)?;
    Ok(ScheduleRun {
        schedule_id: row.get(0)?,
        slot: time_at(row, 1)?,
        outcome: outcome
            .parse()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e)))?,
        count: row.get(3)?,
        execution_id: uuid_opt_at(row, 4)?.map(ExecutionId),
        reason: row.get(5)?,
        recorded_at: time_at(row, 6)?,
    })
}

fn get(conn: &Connection, id: &str) -> Result<Option<ScheduleRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id], record_at).optional()?)
}

fn create(conn: &Connection, now: i64, s: &ScheduleRecord) -> Result<ScheduleRecord> {
    let inserted = conn
        .prepare_cached(&format!(
            "INSERT INTO schedules ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, 1) \
             ON CONFLICT DO NOTHING"
        ))?
        .execute(params![
            s.id,
            json(&s.definition)?,
            s.paused,
            micros(s.anchor_at),
            s.next_slot.map(micros),
            s.buffered_slot.map(micros),
            s.last_slot.map(micros),
            s.last_execution_id.map(|e| e.0.as_bytes().to_vec()),
            now,
        ])?;
    if inserted == 0 {
        return Err(StoreError::Conflict {
            id: s.id.clone(),
            detail: "a schedule with this id already exists".into(),
        }
        .into());
    }
    Ok(ScheduleRecord {
        created_at: time(now),
        updated_at: time(now),
        revision: 1,
        ..s.clone()
    })
}

fn update(conn: &Connection, now: i64, s: &ScheduleRecord, expected: i64) -> Result<Option<ScheduleRecord>> {
    let n = conn
        .prepare_cached(
            "UPDATE schedules SET definition = ?2, paused = ?3, anchor_at = ?4, next_slot = ?5, \
             buffered_slot = ?6, last_slot = ?7, last_execution_id = ?8, updated_at = ?9, revision = revision + 1 \
             WHERE id = ?1 AND revision = ?10",
        )?
        .execute(params![
            s.id,
            json(&s.definition)?,
            s.paused,
            micros(s.anchor_at),
            s.next_slot.map(micros),
            s.buffered_slot.map(micros),
            s.last_slot.map(micros),
            s.last_execution_id.map(|e| e.0.as_bytes().to_vec()),
            now,
            expected,
        ])?;
    if n == 0 {
        return Ok(None);
    }
    get(conn, &s.id)
}

fn fire(conn: &Connection, now: i64, f: &Firing, changes: &mut Vec<Change>) -> Result<Option<ScheduleRecord>> {
    // The compare-and-set first: a firing that lost writes nothing.
    let moved = conn
        .prepare_cached(
            "UPDATE schedules SET next_slot = ?2, buffered_slot = ?3, updated_at = ?4, revision = revision + 1 \
             WHERE id = ?1 AND revision = ?5",
        )?
        .execute(params![
            f.schedule_id,
            f.next_slot.map(micros),
            f.buffered_slot.map(micros),
            now,
            f.expected_revision,
        ])?;
    if moved == 0 {
        return Ok(None);
    }
    for run in &f.runs {
        let execution = match &run.execution {
            Some(new) => Some(dispatch::dispatch(conn, now, new, changes)?.id()),
            None => None,
        };
        conn.prepare_cached(
            "INSERT INTO schedule_runs (schedule_id, slot, outcome, count, execution_id, reason, recorded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            f.schedule_id,
            micros(run.slot),
            run.outcome.as_str(),
            run.count,
            execution.map(|e| e.0.as_bytes().to_vec()),
            run.reason,
            now,
        ])?;
        if run.outcome == RunOutcome::Fired {
            conn.prepare_cached("UPDATE schedules SET last_slot = ?2, last_execution_id = ?3 WHERE id = ?1")?
                .execute(params![
                    f.schedule_id,
                    micros(run.slot),
                    execution.map(|e| e.0.as_bytes().to_vec())
                ])?;
        }
        let change = Change::ScheduleRan {
            run: ScheduleRun {
                schedule_id: f.schedule_id.clone(),
                slot: run.slot,
                outcome: run.outcome,
                count: run.count,
                execution_id: execution,
                reason: run.reason.clone(),
                recorded_at: time(now),
            },
        };
        event_log::record(conn, now, changes, change)?;
    }
    get(conn, &f.schedule_id)
}
