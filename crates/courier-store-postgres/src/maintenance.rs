//! What belongs to no one table, for [`Store`](courier_core::Store)'s own methods:
//! the store clock, planner statistics and cluster-wide singleton roles.
//! (Each table's housekeeping lives with the table: cleaning up executions in
//! `executions`, trimming the log in `event_log`, dead letters in `dead_letters`,
//! the cache in `cache`, stuck tasks in `leases`.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use courier_core::StoreResult;

use crate::PostgresStore;
use crate::codec::{micros, now_plus};
use crate::error::Error;
use crate::statements::{query_one, query_opt};

/// The database's clock.
pub(crate) async fn now(store: &PostgresStore) -> StoreResult<DateTime<Utc>> {
    let client = store.client().await?;
    let row = query_one(&client, "SELECT now()", &[]).await?;
    Ok(row.try_get(0).map_err(Error::from)?)
}

/// Refreshes planner statistics of the tables whose size swings most.
pub(crate) async fn analyze(store: &PostgresStore) -> StoreResult<()> {
    let client = store.client().await?;
    client
        .batch_execute("ANALYZE tasks, executions, events, signals, dead_letters, progress")
        .await
        .map_err(|e| crate::error::from_db(&e))?;
    Ok(())
}

/// Takes or keeps a named role for `ttl`.
pub(crate) async fn try_acquire_singleton(
    store: &PostgresStore,
    name: &str,
    owner: &str,
    ttl: Duration,
) -> StoreResult<bool> {
    let client = store.client().await?;
    let row = query_opt(
        &client,
        &format!(
            "INSERT INTO courier_singletons (name, owner, expires_at) VALUES ($1, $2, {})
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
             WHERE courier_singletons.expires_at <= now() OR courier_singletons.owner = excluded.owner
             RETURNING owner",
            now_plus("$3")
        ),
        &[&name, &owner, &micros(ttl)],
    )
    .await?;
    Ok(row.is_some())
}
