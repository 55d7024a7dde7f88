//! The store's priority ageing (see [`courier_core::PriorityAgeing`]).
//!
//! The claim order is a generated column whose expression holds the ageing, so
//! the claim indexes stay ordered by it and no write path can forget it. When
//! the store is opened with a different ageing, the column and its indexes are
//! rebuilt with the new one, once, at start-up (every pending task is
//! re-indexed). Processes sharing a file must therefore agree on the setting.

use courier_core::PriorityAgeing;
use rusqlite::Connection;

use crate::error::Result;

/// The claim-order column and the indexes on it, for `ageing_us` per level.
/// Kept in step with migrations 0014 and 0017, which build them for the default.
fn rebuild_sql(ageing_us: i64) -> String {
    format!(
        "DROP INDEX tasks_claim;
         DROP INDEX tasks_pending_function;
         DROP INDEX tasks_pending_timers;
         ALTER TABLE tasks DROP COLUMN claim_at;
         ALTER TABLE tasks ADD COLUMN claim_at INTEGER NOT NULL
             GENERATED ALWAYS AS (scheduled_for - priority * {ageing_us}) VIRTUAL;
         CREATE INDEX tasks_claim ON tasks (queue, claim_at, priority DESC, scheduled_for, created_at, id)
             WHERE state = 'pending' AND kind NOT IN ('orchestrator', 'activity');
         CREATE INDEX tasks_pending_function ON tasks (function, claim_at, priority DESC, scheduled_for, created_at, id, queue)
             WHERE state = 'pending' AND kind IN ('orchestrator', 'activity');
         CREATE INDEX tasks_pending_timers ON tasks (queue, claim_at, priority DESC, scheduled_for, created_at, id)
             WHERE state = 'pending' AND kind IN ('sleep', 'signal_wait');"
    )
}

/// Makes the claim order use `ageing`, rebuilding it if the store had another.
/// Runs in the migration's IMMEDIATE transaction, so processes opening one file
/// together do it once.
pub(crate) fn apply(conn: &Connection, ageing: PriorityAgeing) -> Result<()> {
    let current: i64 = conn.query_row(
        "SELECT value FROM store_settings WHERE name = 'priority_ageing_us'",
        [],
        |row| row.get(0),
    )?;
    let wanted = ageing.micros();
    if current == wanted {
        return Ok(());
    }
    tracing::warn!(
        from_us = current,
        to_us = wanted,
        "store.priority_aging changed: rebuilding the claim order of every task"
    );
    conn.execute_batch(&rebuild_sql(wanted))?;
    conn.execute(
        "UPDATE store_settings SET value = ?1 WHERE name = 'priority_ageing_us'",
        [wanted],
    )?;
    Ok(())
}
