//! Versioned migrations. Each is a SQL file in this folder, applied once, in
//! order, and recorded in `courier_migrations`. To change the schema, append a
//! file and a line to [`MIGRATIONS`]; never edit one that has shipped.

use courier_core::PriorityAgeing;

use crate::error::Result;
use crate::statements::{batch_execute, execute, query};
use crate::transaction::Tx;

/// Every migration, by version, in the order they apply.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("0001_initial.sql")),
    (2, include_str!("0002_webhooks.sql")),
    (3, include_str!("0003_notifications.sql")),
    (4, include_str!("0004_event_log.sql")),
    (5, include_str!("0005_webhook_secret_rotation.sql")),
    (6, include_str!("0006_skipped_deliveries.sql")),
    (7, include_str!("0007_function_settings.sql")),
    (8, include_str!("0008_limited_claims.sql")),
    (9, include_str!("0009_nodes.sql")),
    (10, include_str!("0010_schedules.sql")),
    (11, include_str!("0011_pauses.sql")),
    (12, include_str!("0012_rate_limits.sql")),
    (13, include_str!("0013_child_executions.sql")),
    (14, include_str!("0014_priority_ageing.sql")),
    (15, include_str!("0015_events_read_by_type_in_seq_order.sql")),
];

/// Creates the schema (if one is configured) and applies every migration not yet
/// applied. Nodes starting together serialize on an advisory lock held to the end
/// of the transaction, so the later ones find nothing left to do. Then makes the
/// claim order use the store's priority `ageing` (see [`crate::priority_ageing`]).
pub(crate) async fn migrate(tx: &Tx, schema: Option<&str>, ageing: PriorityAgeing) -> Result<()> {
    let lock_key = format!("courier.migrate:{}", schema.unwrap_or(""));
    execute(
        tx,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&lock_key],
    )
    .await?;
    if let Some(schema) = schema {
        // The name was validated as a plain identifier when the store connected.
        batch_execute(tx, &format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await?;
    }
    batch_execute(
        tx,
        "CREATE TABLE IF NOT EXISTS courier_migrations (
             version    int PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: Vec<i32> = query(tx, "SELECT version FROM courier_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
        batch_execute(tx, sql).await?;
        execute(tx, "INSERT INTO courier_migrations (version) VALUES ($1)", &[version]).await?;
        tracing::info!(version, "applied Postgres migration");
    }
    crate::priority_ageing::apply(tx, ageing).await
}
