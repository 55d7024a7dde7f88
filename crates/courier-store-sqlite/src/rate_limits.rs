//! Rate-limit buckets: [`RateLimitStore`] for [`SqliteStore`]. A take is one
//! read and one upsert on the writer thread, which serialises takes.

use async_trait::async_trait;
use courier_core::{
    LeaseToken, RateLimitStore, StoreResult, TaskId, TokenGrant, nul_refused, take_tokens, text_has_nul,
};
use rusqlite::{OptionalExtension, params};

use crate::SqliteStore;

#[async_trait]
impl RateLimitStore for SqliteStore {
    async fn take_tokens(&self, bucket: &str, per_second: f64, burst: f64, want: u32) -> StoreResult<TokenGrant> {
        if text_has_nul(bucket) {
            return Err(nul_refused("bucket"));
        }
        let bucket = bucket.to_string();
        self.write(move |conn, now| {
            let held: Option<(f64, i64)> = conn
                .prepare_cached("SELECT tokens, refreshed_at FROM rate_buckets WHERE bucket = ?1")?
                .query_row([&bucket], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let tokens = match held {
                // A clock that went back refills nothing rather than draining.
                Some((tokens, at)) => (tokens + (now - at).max(0) as f64 / 1e6 * per_second).min(burst),
                None => burst,
            };
            let grant = take_tokens(tokens, want, per_second);
            conn.prepare_cached(
                "INSERT INTO rate_buckets (bucket, tokens, refreshed_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (bucket) DO UPDATE SET tokens = excluded.tokens, refreshed_at = excluded.refreshed_at",
            )?
            .execute(params![bucket, tokens - f64::from(grant.granted), now])?;
            Ok(grant)
        })
        .await
    }

    async fn take_slots(&self, bucket: &str, max: u32, holders: &[(TaskId, LeaseToken)]) -> StoreResult<u32> {
        if text_has_nul(bucket) {
            return Err(nul_refused("bucket"));
        }
        let (bucket, holders) = (bucket.to_string(), holders.to_vec());
        self.write(move |conn, now| {
            // Slots whose task finished, failed, or lost or outlived its lease are free.
            conn.prepare_cached(
                "DELETE FROM key_slots WHERE bucket = ?1 AND NOT EXISTS (
                     SELECT 1 FROM tasks t WHERE t.id = key_slots.task_id AND t.state = 'running'
                         AND t.lease_token = key_slots.lease_token AND t.lease_expires_at > ?2)",
            )?
            .execute(params![bucket, now])?;
            let live: i64 = conn
                .prepare_cached("SELECT count(*) FROM key_slots WHERE bucket = ?1")?
                .query_row([&bucket], |row| row.get(0))?;
            let free = (i64::from(max) - live).max(0) as usize;
            let granted = free.min(holders.len());
            let mut give = conn.prepare_cached(
                "INSERT INTO key_slots (bucket, task_id, lease_token) VALUES (?1, ?2, ?3)
                 ON CONFLICT (bucket, task_id) DO UPDATE SET lease_token = excluded.lease_token",
            )?;
            for (task, lease) in &holders[..granted] {
                give.execute(params![bucket, task.0.as_bytes(), lease.0.as_bytes()])?;
            }
            Ok(granted as u32)
        })
        .await
    }
}
