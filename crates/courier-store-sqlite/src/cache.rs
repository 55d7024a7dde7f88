//! The result cache (with TTL) and idempotency keys (with reservations).
//! [`CacheStore`] is implemented here.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{CacheStore, Reservation, StoreResult, TaskId, TaskState};
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use crate::SqliteStore;
use crate::codec::micros;
use crate::codec::{after, enum_at, json_opt_at, uuid_opt_at};
use crate::error::Result;
use crate::event_log::TRIM_CHUNK;

#[async_trait]
impl CacheStore for SqliteStore {
    async fn get_cached_result(&self, key: &str) -> StoreResult<Option<Value>> {
        let key = key.to_string();
        self.read(move |conn, now| get(conn, now, &key)).await
    }

    async fn purge_expired_cache(&self) -> StoreResult<u64> {
        self.write(purge_expired).await
    }

    async fn reserve_idempotency_key(&self, key: &str, owner: TaskId) -> StoreResult<Reservation> {
        let key = key.to_string();
        self.write(move |conn, now| reserve(conn, now, &key, owner)).await
    }

    async fn release_idempotency_key(&self, key: &str, owner: TaskId) -> StoreResult<bool> {
        let key = key.to_string();
        self.write(move |conn, _| release(conn, &key, owner)).await
    }

    async fn trim_idempotency_keys(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        // One write per chunk, as for the event log.
        let mut trimmed = 0;
        loop {
            let n = self
                .write(move |conn, _| trim_idempotency(conn, micros(older_than), TRIM_CHUNK))
                .await?;
            trimmed += n;
            if n < TRIM_CHUNK {
                return Ok(trimmed);
            }
        }
    }
}

/// Deletes up to `chunk` keys whose work finished before `older_than`.
fn trim_idempotency(conn: &Connection, older_than: i64, chunk: u64) -> Result<u64> {
    let n = conn
        .prepare_cached(
            "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency INDEXED BY idempotency_completed \
             WHERE completed_at IS NOT NULL AND completed_at < ?1 LIMIT ?2)",
        )?
        .execute((older_than, chunk as i64))?;
    Ok(n as u64)
}

/// A cached value that has not expired.
pub(crate) fn get(conn: &Connection, now: i64, key: &str) -> Result<Option<Value>> {
    Ok(conn
        .prepare_cached("SELECT value FROM cache WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)")?
        .query_row((key, now), |row| json_opt_at::<Value>(row, 0))
        .optional()?
        .flatten())
}

/// Caches `value` (JSON text) for `ttl`, forever if none, replacing any entry.
pub(crate) fn set(conn: &Connection, now: i64, key: &str, value: &str, ttl: Option<Duration>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO cache (key, value, expires_at, created_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, \
         created_at = excluded.created_at",
    )?
    .execute((key, value, ttl.map(|ttl| after(now, ttl)), now))?;
    Ok(())
}

/// Deletes expired entries; how many.
fn purge_expired(conn: &Connection, now: i64) -> Result<u64> {
    let n = conn
        .prepare_cached("DELETE FROM cache WHERE expires_at IS NOT NULL AND expires_at <= ?1")?
        .execute([now])?;
    Ok(n as u64)
}

/// The recorded result of an idempotency key, if its work finished.
pub(crate) fn idempotency_result(conn: &Connection, key: &str) -> Result<Option<Value>> {
    Ok(conn
        .prepare_cached("SELECT value FROM idempotency WHERE key = ?1")?
        .query_row([key], |row| json_opt_at::<Value>(row, 0))
        .optional()?
        .flatten())
}

/// Records a key's result (JSON text), replacing any reservation.
pub(crate) fn set_idempotency_result(conn: &Connection, now: i64, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO idempotency (key, value, owner, created_at, completed_at) VALUES (?1, ?2, NULL, ?3, ?3) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, owner = NULL, completed_at = excluded.completed_at",
    )?
    .execute((key, value, now))?;
    Ok(())
}

/// Reserves a key for `owner`; see [`Store::reserve_idempotency_key`](courier_core::Store::reserve_idempotency_key).
fn reserve(conn: &Connection, now: i64, key: &str, owner: TaskId) -> Result<Reservation> {
    let row: Option<(Option<Value>, Option<uuid::Uuid>)> = conn
        .prepare_cached("SELECT value, owner FROM idempotency WHERE key = ?1")?
        .query_row([key], |row| Ok((json_opt_at(row, 0)?, uuid_opt_at(row, 1)?)))
        .optional()?;
    match row {
        None => {
            conn.prepare_cached("INSERT INTO idempotency (key, value, owner, created_at) VALUES (?1, NULL, ?2, ?3)")?
                .execute((key, owner.0.as_bytes(), now))?;
            Ok(Reservation::Acquired)
        }
        Some((Some(value), _)) => Ok(Reservation::Completed(value)),
        Some((None, Some(holder))) if holder == owner.0 => Ok(Reservation::Acquired),
        Some((None, holder)) => {
            if let Some(holder) = holder.map(TaskId)
                && holder_is_live(conn, holder)?
            {
                return Ok(Reservation::HeldBy(holder));
            }
            // The holder is gone or finished without a result: its work will never
            // record one, so the key is free to take.
            conn.prepare_cached("UPDATE idempotency SET owner = ?2, created_at = ?3 WHERE key = ?1")?
                .execute((key, owner.0.as_bytes(), now))?;
            Ok(Reservation::Acquired)
        }
    }
}

fn holder_is_live(conn: &Connection, holder: TaskId) -> Result<bool> {
    let state: Option<TaskState> = conn
        .prepare_cached("SELECT state FROM tasks WHERE id = ?1")?
        .query_row([holder.0.as_bytes()], |row| enum_at(row, 0))
        .optional()?;
    Ok(state.is_some_and(|s| !s.is_terminal()))
}

/// Drops `owner`'s reservation of a key without a result; whether there was one.
fn release(conn: &Connection, key: &str, owner: TaskId) -> Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM idempotency WHERE key = ?1 AND owner = ?2 AND value IS NULL")?
        .execute((key, owner.0.as_bytes()))?;
    Ok(n > 0)
}
