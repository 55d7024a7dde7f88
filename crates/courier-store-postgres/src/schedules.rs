//! Schedules: [`ScheduleStore`] for [`PostgresStore`]. Every write names the
//! revision it read; a firing's compare-and-set is its transaction's first
//! statement, so a racing firing waits for the winner's commit, then matches no
//! row and writes nothing. A firing dispatches through dispatch's own code path.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{
    Change, Committed, ExecutionId, Firing, HoldsNul, RunOutcome, ScheduleRecord, ScheduleRun, ScheduleStore,
    StoreError, StoreResult, events_of,
};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::PostgresStore;
use crate::codec::{from_json, limit, to_json};
use crate::error::{Error, Result};
use crate::statements::{execute, query, query_one, query_opt};
use crate::transaction::{Tx, in_transaction};
use crate::{dispatch, event_log};

const COLUMNS: &str = "id, definition, paused, anchor_at, next_slot, buffered_slot, last_slot, last_execution_id, \
                       created_at, updated_at, revision";

#[async_trait]
impl ScheduleStore for PostgresStore {
    async fn create_schedule(&self, s: &ScheduleRecord) -> StoreResult<ScheduleRecord> {
        s.check_nul()?;
        let client = self.client().await?;
        let sql = format!(
            "INSERT INTO schedules ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), now(), 1)
             ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
        );
        let row = query_opt(
            &client,
            &sql,
            &[
                &s.id,
                &to_json(&s.definition)?,
                &s.paused,
                &s.anchor_at,
                &s.next_slot,
                &s.buffered_slot,
                &s.last_slot,
                &s.last_execution_id.map(|e| e.0),
            ],
        )
        .await?;
        match row {
            Some(row) => Ok(record(&row)?),
            None => Err(StoreError::Conflict {
                id: s.id.clone(),
                detail: "a schedule with this id already exists".into(),
            }),
        }
    }

    async fn get_schedule(&self, id: &str) -> StoreResult<Option<ScheduleRecord>> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM schedules WHERE id = $1");
        let row = query_opt(&client, &sql, &[&id]).await?;
        Ok(row.as_ref().map(record).transpose()?)
    }

    async fn list_schedules(&self, max: u32, offset: u32) -> StoreResult<Vec<ScheduleRecord>> {
        let client = self.client().await?;
        // The column's collation is "C": byte order, as Rust sorts.
        let sql = format!("SELECT {COLUMNS} FROM schedules ORDER BY id LIMIT $1 OFFSET $2");
        let rows = query(&client, &sql, &[&limit(max), &i64::from(offset)]).await?;
        Ok(rows.iter().map(record).collect::<Result<_>>()?)
    }

    async fn update_schedule(&self, s: &ScheduleRecord, expected_revision: i64) -> StoreResult<Option<ScheduleRecord>> {
        s.check_nul()?;
        let client = self.client().await?;
        let sql = format!(
            "UPDATE schedules SET definition = $2, paused = $3, anchor_at = $4, next_slot = $5,
                 buffered_slot = $6, last_slot = $7, last_execution_id = $8, updated_at = now(),
                 revision = revision + 1
             WHERE id = $1 AND revision = $9 RETURNING {COLUMNS}"
        );
        let row = query_opt(
            &client,
            &sql,
            &[
                &s.id,
                &to_json(&s.definition)?,
                &s.paused,
                &s.anchor_at,
                &s.next_slot,
                &s.buffered_slot,
                &s.last_slot,
                &s.last_execution_id.map(|e| e.0),
                &expected_revision,
            ],
        )
        .await?;
        Ok(row.as_ref().map(record).transpose()?)
    }

    async fn delete_schedule(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        in_transaction!(self, |tx| delete_in(tx, &id))
    }

    async fn due_schedules(&self, max: u32) -> StoreResult<Vec<ScheduleRecord>> {
        let client = self.client().await?;
        let sql = format!(
            "(SELECT {COLUMNS} FROM schedules WHERE NOT paused AND next_slot <= now())
             UNION
             (SELECT {COLUMNS} FROM schedules WHERE NOT paused AND buffered_slot IS NOT NULL)
             ORDER BY next_slot LIMIT $1"
        );
        let rows = query(&client, &sql, &[&limit(max)]).await?;
        Ok(rows.iter().map(record).collect::<Result<_>>()?)
    }

    async fn fire_schedules(&self, firings: &[Firing]) -> StoreResult<Committed<Vec<Option<ScheduleRecord>>>> {
        for run in firings
            .iter()
            .flat_map(|f| &f.runs)
            .filter_map(|r| r.execution.as_ref())
        {
            run.check_nul()?;
        }
        if firings.is_empty() {
            return Ok(Committed::unchanged(Vec::new()));
        }
        in_transaction!(self, |tx| fire_in(tx, firings))
    }

    async fn list_schedule_runs(&self, id: &str, max: u32, offset: u32) -> StoreResult<Vec<ScheduleRun>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT schedule_id, slot, outcome, count, execution_id, reason, recorded_at FROM schedule_runs
             WHERE schedule_id = $1 ORDER BY slot DESC, id DESC LIMIT $2 OFFSET $3",
            &[&id, &limit(max), &i64::from(offset)],
        )
        .await?;
        Ok(rows.iter().map(run).collect::<Result<_>>()?)
    }
}

fn record(row: &Row) -> Result<ScheduleRecord> {
    let get = |e: tokio_postgres::Error| Error::from(e);
    Ok(ScheduleRecord {
        id: row.try_get(0).map_err(get)?,
        definition: from_json(row.try_get(1).map_err(get)?, "schedule definition")?,
        paused: row.try_get(2).map_err(get)?,
        anchor_at: row.try_get(3).map_err(get)?,
        next_slot: row.try_get(4).map_err(get)?,
        buffered_slot: row.try_get(5).map_err(get)?,
        last_slot: row.try_get(6).map_err(get)?,
        last_execution_id: row.try_get::<_, Option<Uuid>>(7).map_err(get)?.map(ExecutionId),
        created_at: row.try_get(8).map_err(get)?,
        updated_at: row.try_get(9).map_err(get)?,
        revision: row.try_get(10).map_err(get)?,
    })
}

fn run(row: &Row) -> Result<ScheduleRun> {
    let get = |e: tokio_postgres::Error| Error::from(e);
    let outcome: String = row.try_get(2).map_err(get)?;
    Ok(ScheduleRun {
        schedule_id: row.try_get(0).map_err(get)?,
        slot: row.try_get(1).map_err(get)?,
        outcome: outcome
            .parse()
            .map_err(|e| crate::error::corrupt(format!("schedule run outcome: {e}")))?,
        count: u32::try_from(row.try_get::<_, i32>(3).map_err(get)?).unwrap_or(0),
        execution_id: row.try_get::<_, Option<Uuid>>(4).map_err(get)?.map(ExecutionId),
        reason: row.try_get(5).map_err(get)?,
        recorded_at: row.try_get(6).map_err(get)?,
    })
}

async fn delete_in(tx: &Tx, id: &str) -> Result<bool> {
    execute(tx, "DELETE FROM schedule_runs WHERE schedule_id = $1", &[&id]).await?;
    Ok(execute(tx, "DELETE FROM schedules WHERE id = $1", &[&id]).await? > 0)
}

async fn fire_in(tx: &Tx, firings: &[Firing]) -> Result<Committed<Vec<Option<ScheduleRecord>>>> {
    // The compare-and-sets first, in id order (so two batches never wait on
    // each other in a cycle): a racer waits here for the winner's commit, then
    // matches no row and writes nothing of that firing.
    let mut order: Vec<usize> = (0..firings.len()).collect();
    order.sort_by(|a, b| firings[*a].schedule_id.cmp(&firings[*b].schedule_id));
    let mut won = vec![false; firings.len()];
    for i in order {
        let f = &firings[i];
        won[i] = execute(
            tx,
            "UPDATE schedules SET next_slot = $2, buffered_slot = $3, updated_at = now(), revision = revision + 1
             WHERE id = $1 AND revision = $4",
            &[&f.schedule_id, &f.next_slot, &f.buffered_slot, &f.expected_revision],
        )
        .await?
            > 0;
    }
    let winners: Vec<&Firing> = firings.iter().zip(&won).filter(|(_, w)| **w).map(|(f, _)| f).collect();
    if winners.is_empty() {
        return Ok(Committed::unchanged(vec![None; firings.len()]));
    }
    let executions: Vec<_> = winners
        .iter()
        .flat_map(|f| f.runs.iter().filter_map(|r| r.execution.clone()))
        .collect();
    let mut changes = Vec::new();
    let mut dispatched = dispatch::apply(tx, &executions, &mut changes).await?.into_iter();
    let now: DateTime<Utc> = query_one(tx, "SELECT now()", &[])
        .await?
        .try_get(0)
        .map_err(Error::from)?;
    // The runs as rows, and each winner's last fired slot.
    let (mut ids, mut slots, mut outcomes, mut counts, mut run_executions, mut reasons) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut last_ids, mut last_slots, mut last_executions) = (Vec::new(), Vec::new(), Vec::new());
    for f in &winners {
        let mut last = None;
        for r in &f.runs {
            let execution = match &r.execution {
                Some(_) => match dispatched.next() {
                    Some(outcome) => Some(outcome.map_err(Error::Store)?.id()),
                    None => {
                        return Err(Error::Store(StoreError::Backend(
                            "dispatch answered fewer executions".into(),
                        )));
                    }
                },
                None => None,
            };
            ids.push(f.schedule_id.as_str());
            slots.push(r.slot);
            outcomes.push(r.outcome.as_str());
            counts.push(i32::try_from(r.count).unwrap_or(i32::MAX));
            run_executions.push(execution.map(|e| e.0));
            reasons.push(r.reason.as_str());
            if r.outcome == RunOutcome::Fired {
                last = Some((r.slot, execution));
            }
            changes.push(Change::ScheduleRan {
                run: ScheduleRun {
                    schedule_id: f.schedule_id.clone(),
                    slot: r.slot,
                    outcome: r.outcome,
                    count: r.count,
                    execution_id: execution,
                    reason: r.reason.clone(),
                    recorded_at: now,
                },
            });
        }
        if let Some((slot, execution)) = last {
            last_ids.push(f.schedule_id.as_str());
            last_slots.push(slot);
            last_executions.push(execution.map(|e| e.0));
        }
    }
    execute(
        tx,
        "INSERT INTO schedule_runs (schedule_id, slot, outcome, count, execution_id, reason, recorded_at)
         SELECT r.schedule_id, r.slot, r.outcome, r.count, r.execution_id, r.reason, $7
         FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::int4[], $5::uuid[], $6::text[])
              AS r(schedule_id, slot, outcome, count, execution_id, reason)",
        &[&ids, &slots, &outcomes, &counts, &run_executions, &reasons, &now],
    )
    .await?;
    if !last_ids.is_empty() {
        execute(
            tx,
            "UPDATE schedules s SET last_slot = l.slot, last_execution_id = l.execution_id
             FROM unnest($1::text[], $2::timestamptz[], $3::uuid[]) AS l(id, slot, execution_id)
             WHERE s.id = l.id",
            &[&last_ids, &last_slots, &last_executions],
        )
        .await?;
    }
    let won_ids: Vec<&str> = winners.iter().map(|f| f.schedule_id.as_str()).collect();
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE id = ANY($1)");
    let mut records: std::collections::HashMap<String, ScheduleRecord> = query(tx, &sql, &[&won_ids])
        .await?
        .iter()
        .map(|row| record(row).map(|r| (r.id.clone(), r)))
        .collect::<Result<_>>()?;
    // The event head bump must be the transaction's last statement (see event_log).
    event_log::append(tx, &events_of(&changes)).await?;
    let value = firings
        .iter()
        .zip(&won)
        .map(|(f, w)| if *w { records.remove(&f.schedule_id) } else { None })
        .collect();
    Ok(Committed::new(value, changes))
}
