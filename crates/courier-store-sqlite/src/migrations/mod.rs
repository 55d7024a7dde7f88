//! Versioned migrations. Each is a SQL file under `src/migrations/`, applied once,
//! in order, and recorded in `courier_migrations`. To change the schema, append a
//! file and a line to [`MIGRATIONS`]; never edit one that has shipped.

use courier_core::PriorityAgeing;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::Result;

/// Every migration, by version, in the order they apply.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("0001_initial.sql")),
    (2, include_str!("0002_webhooks.sql")),
    (3, include_str!("0003_notifications.sql")),
    (4, include_str!("0004_event_log.sql")),
    (5, include_str!("0005_webhook_secret_rotation.sql")),
    (6, include_str!("0006_skipped_deliveries.sql")),
    (7, include_str!("0007_function_settings.sql")),
    (8, include_str!("0008_function_claims.sql")),
    (9, include_str!("0009_nodes.sql")),
    (10, include_str!("0010_schedules.sql")),
    (11, include_str!("0011_pauses.sql")),
    (12, include_str!("0012_rate_limits.sql")),
    (13, include_str!("0013_child_executions.sql")),
    (14, include_str!("0014_priority_ageing.sql")),
    (15, include_str!("0015_events_trimmed_in_seq_order.sql")),
    (16, include_str!("0016_events_read_by_type_in_seq_order.sql")),
    (17, include_str!("0017_pending_tasks_in_one_claim_index.sql")),
    (18, include_str!("0018_events_numbered_by_the_writer.sql")),
    (19, include_str!("0019_executions_listed_by_creation.sql")),
];

/// The table recording which migrations a file has had.
const LEDGER: &str = "CREATE TABLE IF NOT EXISTS courier_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
)";

/// Applies every migration not applied yet, in one IMMEDIATE transaction, so that
/// several processes opening one file at once serialize on the write lock and the
/// later ones find nothing left to do. Then makes the claim order use the store's
/// priority `ageing` (see [`crate::priority_ageing`]), in the same transaction.
pub(crate) fn migrate(conn: &mut Connection, now: i64, ageing: PriorityAgeing) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(LEDGER)?;
    let applied: i64 = tx
        .query_row("SELECT max(version) FROM courier_migrations", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .unwrap_or(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO courier_migrations (version, applied_at) VALUES (?1, ?2)",
            (version, now),
        )?;
        tracing::debug!(version, "applied SQLite migration");
    }
    crate::priority_ageing::apply(&tx, ageing)?;
    tx.commit()?;
    Ok(())
}

/// Applies the migrations up to `version` only, as a store of that version had
/// them: for tests of what a later migration does to its data.
#[cfg(test)]
pub(crate) fn migrate_through(conn: &Connection, version: i64) -> Result<()> {
    conn.execute_batch(LEDGER)?;
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= version) {
        conn.execute_batch(sql)?;
        conn.execute(
            "INSERT INTO courier_migrations (version, applied_at) VALUES (?1, 0)",
            [v],
        )?;
    }
    Ok(())
}
