//! The store's priority ageing (see [`courier_core::PriorityAgeing`]).
//!
//! The claim order is a generated column whose expression holds the ageing, so
//! the claim indexes stay ordered by it and no write path can forget it. When
//! the store is opened with a different ageing, the column is rebuilt with the
//! new one: that rewrites the `tasks` table under an exclusive lock, once, at
//! start-up. Nodes sharing a database must therefore agree on the setting (a
//! node that disagrees rebuilds it again, with a warning).

use courier_core::PriorityAgeing;

use crate::error::Result;
use crate::statements::{batch_execute, execute, query_one};
use crate::transaction::Tx;

/// The claim-order column and the indexes on it, for `ageing_us` per level.
/// Kept in step with migration 0014, which builds them for the default.
fn rebuild_sql(ageing_us: i64) -> String {
    format!(
        "ALTER TABLE tasks DROP COLUMN claim_at;
         ALTER TABLE tasks ADD COLUMN claim_at bigint NOT NULL GENERATED ALWAYS AS (
             (extract(epoch FROM scheduled_for - timestamptz '1970-01-01 00:00:00+00') * 1000000)::bigint
                 - priority::bigint * {ageing_us}
         ) STORED;
         CREATE INDEX tasks_pending_claim ON tasks (queue, claim_at, priority DESC, scheduled_for, created_at)
             WHERE state = 'pending';
         CREATE INDEX tasks_pending_function ON tasks (function, claim_at, priority DESC, scheduled_for, created_at)
             WHERE state = 'pending';
         CREATE INDEX tasks_pending_timers ON tasks (queue, claim_at, priority DESC, scheduled_for, created_at)
             WHERE state = 'pending' AND kind IN ('sleep', 'signal_wait');"
    )
}

/// Makes the claim order use `ageing`, rebuilding it if the store had another.
/// Runs in the migration's transaction, under its lock, so nodes starting
/// together do it once.
pub(crate) async fn apply(tx: &Tx, ageing: PriorityAgeing) -> Result<()> {
    let row = query_one(
        tx,
        "SELECT value FROM store_settings WHERE name = 'priority_ageing_us' FOR UPDATE",
        &[],
    )
    .await?;
    let current: i64 = row.try_get(0)?;
    let wanted = ageing.micros();
    if current == wanted {
        return Ok(());
    }
    tracing::warn!(
        from_us = current,
        to_us = wanted,
        "store.priority_aging changed: rebuilding the claim order of every task (rewrites the tasks table)"
    );
    // Dropping the column drops the indexes on it.
    batch_execute(tx, &rebuild_sql(wanted)).await?;
    execute(
        tx,
        "UPDATE store_settings SET value = $1 WHERE name = 'priority_ageing_us'",
        &[&wanted],
    )
    .await?;
    Ok(())
}
