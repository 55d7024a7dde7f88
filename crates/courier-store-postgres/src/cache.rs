//! The result cache (entries with a time to live) and idempotency keys
//! (reservations while the work runs, results once it finished): [`CacheStore`]
//! for [`PostgresStore`], and the raw seed-parity writes
//! ([`SeedRecords`](courier_core::SeedRecords) delegates here). Completions
//! remember their results themselves (see `complete`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{CacheStore, Reservation, StoreResult, TaskId, TaskState};
use serde_json::Value;
use uuid::Uuid;

use crate::PostgresStore;
use crate::codec::{now_plus, opt_micros, parse};
use crate::error::{Error, Result, corrupt};
use crate::event_log::TRIM_CHUNK;
use crate::statements::{execute, query_opt};
use crate::transaction::{Tx, in_transaction};

#[async_trait]
impl CacheStore for PostgresStore {
    async fn get_cached_result(&self, key: &str) -> StoreResult<Option<Value>> {
        get(self, key).await
    }

    async fn purge_expired_cache(&self) -> StoreResult<u64> {
        purge_expired(self).await
    }

    async fn reserve_idempotency_key(&self, key: &str, owner: TaskId) -> StoreResult<Reservation> {
        reserve(self, key, owner).await
    }

    async fn release_idempotency_key(&self, key: &str, owner: TaskId) -> StoreResult<bool> {
        release(self, key, owner).await
    }

    async fn trim_idempotency_keys(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        let client = self.client().await?;
        // One statement per chunk, as for the event log.
        let mut trimmed = 0;
        loop {
            let n = execute(
                &client,
                "DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency
                     WHERE result IS NOT NULL AND updated_at < $1 LIMIT $2)",
                &[&older_than, &TRIM_CHUNK],
            )
            .await?;
            trimmed += n;
            if n < TRIM_CHUNK as u64 {
                return Ok(trimmed);
            }
        }
    }
}

/// A cached result that has not expired.
async fn get(store: &PostgresStore, key: &str) -> StoreResult<Option<Value>> {
    let client = store.client().await?;
    let row = query_opt(
        &client,
        "SELECT value FROM cache WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())",
        &[&key],
    )
    .await?;
    Ok(row.map(|r| r.try_get(0)).transpose().map_err(Error::from)?)
}

/// Caches a result for `ttl` (forever if none), replacing any entry.
pub(crate) async fn set(store: &PostgresStore, key: &str, value: &Value, ttl: Option<Duration>) -> StoreResult<()> {
    let client = store.client().await?;
    execute(
        &client,
        &format!(
            "INSERT INTO cache (key, value, expires_at, created_at) VALUES ($1, $2, {}, now())
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at,
                 created_at = excluded.created_at",
            now_plus("$3")
        ),
        &[&key, value, &opt_micros(ttl)],
    )
    .await?;
    Ok(())
}

/// Deletes expired entries.
async fn purge_expired(store: &PostgresStore) -> StoreResult<u64> {
    let client = store.client().await?;
    Ok(execute(&client, "DELETE FROM cache WHERE expires_at <= now()", &[]).await?)
}

/// The recorded result of an idempotency key.
pub(crate) async fn idempotency_result(store: &PostgresStore, key: &str) -> StoreResult<Option<Value>> {
    let client = store.client().await?;
    let row = query_opt(
        &client,
        "SELECT result FROM idempotency WHERE key = $1 AND result IS NOT NULL",
        &[&key],
    )
    .await?;
    Ok(row.map(|r| r.try_get(0)).transpose().map_err(Error::from)?)
}

/// Records the result of a key, replacing any reservation.
pub(crate) async fn set_idempotency_result(store: &PostgresStore, key: &str, value: &Value) -> StoreResult<()> {
    let client = store.client().await?;
    execute(
        &client,
        "INSERT INTO idempotency (key, result, owner, updated_at) VALUES ($1, $2, NULL, now())
         ON CONFLICT (key) DO UPDATE SET result = excluded.result, owner = NULL, updated_at = now()",
        &[&key, value],
    )
    .await?;
    Ok(())
}

/// Reserves a key for `owner`.
async fn reserve(store: &PostgresStore, key: &str, owner: TaskId) -> StoreResult<Reservation> {
    in_transaction!(store, |tx| reserve_in(tx, key, owner))
}

async fn reserve_in(tx: &Tx, key: &str, owner: TaskId) -> Result<Reservation> {
    // A reservation released between the insert and the read is simply gone:
    // try again, a few times.
    for _ in 0..5 {
        // Concurrent reservers meet in the primary key: the later insert waits for
        // the earlier transaction, then finds its row.
        let inserted = query_opt(
            tx,
            "INSERT INTO idempotency (key, owner, updated_at) VALUES ($1, $2, now())
             ON CONFLICT (key) DO NOTHING RETURNING key",
            &[&key, &owner.0],
        )
        .await?;
        if inserted.is_some() {
            return Ok(Reservation::Acquired);
        }
        let Some(row) = query_opt(
            tx,
            "SELECT result, owner FROM idempotency WHERE key = $1 FOR UPDATE",
            &[&key],
        )
        .await?
        else {
            continue;
        };
        if let Some(result) = row.try_get::<_, Option<Value>>(0)? {
            return Ok(Reservation::Completed(result));
        }
        let holder: Option<Uuid> = row.try_get(1)?;
        let free = match holder {
            None => true,
            Some(h) if h == owner.0 => return Ok(Reservation::Acquired),
            Some(h) => {
                let state = query_opt(tx, "SELECT state FROM tasks WHERE id = $1", &[&h]).await?;
                match state {
                    // The holder is gone or finished without recording a result.
                    None => true,
                    Some(r) => parse::<TaskState>(r.try_get::<_, &str>(0)?)?.is_terminal(),
                }
            }
        };
        if !free {
            let holder = holder.ok_or_else(|| corrupt("a held reservation without an owner"))?;
            return Ok(Reservation::HeldBy(TaskId(holder)));
        }
        execute(
            tx,
            "UPDATE idempotency SET owner = $2, updated_at = now() WHERE key = $1",
            &[&key, &owner.0],
        )
        .await?;
        return Ok(Reservation::Acquired);
    }
    Err(corrupt(format!(
        "idempotency key {key:?} kept disappearing while being reserved"
    )))
}

/// Drops `owner`'s reservation of a key that has no result.
async fn release(store: &PostgresStore, key: &str, owner: TaskId) -> StoreResult<bool> {
    let client = store.client().await?;
    let n = execute(
        &client,
        "DELETE FROM idempotency WHERE key = $1 AND owner = $2 AND result IS NULL",
        &[&key, &owner.0],
    )
    .await?;
    Ok(n > 0)
}
