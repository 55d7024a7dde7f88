//! Rate-limit buckets: [`RateLimitStore`] for [`PostgresStore`]. A take is an
//! upsert that refills the bucket by the database's clock and locks its row,
//! then the update that takes the tokens, in one transaction: concurrent takes
//! of one bucket queue on the row and each sees what the last one left.

use async_trait::async_trait;
use courier_core::{RateLimitStore, StoreResult, TokenGrant, nul_refused, take_tokens, text_has_nul};
use deadpool_postgres::Transaction;

use crate::PostgresStore;
use crate::error::Result;
use crate::statements::{execute, query_one};
use crate::transaction::in_transaction;

#[async_trait]
impl RateLimitStore for PostgresStore {
    async fn take_tokens(&self, bucket: &str, per_second: f64, burst: f64, want: u32) -> StoreResult<TokenGrant> {
        if text_has_nul(bucket) {
            return Err(nul_refused("bucket"));
        }
        in_transaction!(self, |tx| take(tx, bucket, per_second, burst, want))
    }
}

async fn take(tx: &Transaction<'_>, bucket: &str, per_second: f64, burst: f64, want: u32) -> Result<TokenGrant> {
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
