//! Rate-limit buckets: [`RateLimitStore`] for [`PostgresStore`]. A take is an
//! upsert that refills the bucket by the database's clock and locks its row,
//! then the update that takes the tokens, in one transaction: concurrent takes
//! of one bucket queue on the row and each sees what the last one left.

use async_trait::async_trait;
use courier_core::{
    LeaseToken, RateLimitStore, StoreResult, TaskId, TokenGrant, nul_refused, take_tokens, text_has_nul,
};
use uuid::Uuid;

use crate::PostgresStore;
use crate::error::Result;
use crate::statements::{execute, query_one};
use crate::transaction::{Tx, in_transaction};

#[async_trait]
impl RateLimitStore for PostgresStore {
    async fn take_tokens(&self, bucket: &str, per_second: f64, burst: f64, want: u32) -> StoreResult<TokenGrant> {
        if text_has_nul(bucket) {
            return Err(nul_refused("bucket"));
        }
        in_transaction!(self, |tx| take(tx, bucket, per_second, burst, want))
    }

    async fn take_slots(&self, bucket: &str, max: u32, holders: &[(TaskId, LeaseToken)]) -> StoreResult<u32> {
        if text_has_nul(bucket) {
            return Err(nul_refused("bucket"));
        }
        let lock = self.lock_name(&format!("slots:{bucket}"));
        in_transaction!(self, |tx| take_slots(tx, &lock, bucket, max, holders))
    }
}

/// Counts the bucket's live slots and gives the free ones out under a lock on
/// the bucket, so two claimers of one key take turns and the second counts the
/// first's slots.
async fn take_slots(tx: &Tx, lock: &str, bucket: &str, max: u32, holders: &[(TaskId, LeaseToken)]) -> Result<u32> {
    execute(tx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&lock]).await?;
    // Slots whose task finished, failed, or lost or outlived its lease are free.
    execute(
        tx,
        "DELETE FROM key_slots ks WHERE ks.bucket = $1 AND NOT EXISTS (
             SELECT 1 FROM tasks t WHERE t.id = ks.task_id AND t.state = 'running'
                 AND t.lease_token = ks.lease_token AND t.lease_expires_at > now())",
        &[&bucket],
    )
    .await?;
    let live: i64 = query_one(tx, "SELECT count(*) FROM key_slots WHERE bucket = $1", &[&bucket])
        .await?
        .try_get(0)?;
    let granted = ((i64::from(max) - live).max(0) as usize).min(holders.len());
    if granted > 0 {
        let tasks: Vec<Uuid> = holders[..granted].iter().map(|(t, _)| t.0).collect();
        let leases: Vec<Uuid> = holders[..granted].iter().map(|(_, l)| l.0).collect();
        execute(
            tx,
            "INSERT INTO key_slots (bucket, task_id, lease_token)
             SELECT $1, t, l FROM unnest($2::uuid[], $3::uuid[]) AS h(t, l)
             ON CONFLICT (bucket, task_id) DO UPDATE SET lease_token = excluded.lease_token",
            &[&bucket, &tasks, &leases],
        )
        .await?;
    }
    Ok(granted as u32)
}

async fn take(tx: &Tx, bucket: &str, per_second: f64, burst: f64, want: u32) -> Result<TokenGrant> {
    // A clock that went back refills nothing rather than draining.
    let row = query_one(
        tx,
        "INSERT INTO rate_buckets AS b (bucket, tokens, refreshed_at) VALUES ($1, $3, now())
         ON CONFLICT (bucket) DO UPDATE SET
             tokens = least($3, b.tokens + greatest(extract(epoch FROM now() - b.refreshed_at)::float8, 0) * $2),
             refreshed_at = now()
         RETURNING tokens",
        &[&bucket, &per_second, &burst],
    )
    .await?;
    let tokens: f64 = row.try_get(0)?;
    let grant = take_tokens(tokens, want, per_second);
    if grant.granted > 0 {
        execute(
            tx,
            "UPDATE rate_buckets SET tokens = tokens - $2 WHERE bucket = $1",
            &[&bucket, &f64::from(grant.granted)],
        )
        .await?;
    }
    Ok(grant)
}
