//! Running work in a transaction, again when Postgres asks for it.
//!
//! Under READ COMMITTED, the only aborts worth retrying are deadlocks (two
//! transactions locking rows in opposite orders, e.g. a cancel against a claim)
//! and, should an operator raise the isolation level, serialization failures.
//! Both mean "nothing was written, try again", so the whole transaction reruns a
//! few times before the caller is told the store is unavailable.

use std::time::Duration;

/// How many times a transaction is rerun after a retryable abort.
pub(crate) const MAX_RETRIES: u32 = 5;

/// Waits a little longer after each abort so that the transactions that collided
/// do not collide again in lockstep.
pub(crate) async fn back_off(retry: u32) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos()
        % 5;
    tokio::time::sleep(Duration::from_millis(u64::from(retry * 3 + jitter))).await;
}

/// Runs `$body` (an expression whose value is a future of `Result<T>`, using
/// `$tx: &Transaction`) in a fresh transaction and commits it; reruns it on a
/// deadlock or serialization failure. Evaluates to `StoreResult<T>`.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut retries = 0u32;
        loop {
            let outcome: $crate::error::Result<_> = async {
                let mut client = $store.client().await?;
                let transaction = client.transaction().await?;
                let value = {
                    let $tx = &transaction;
                    $body.await?
                };
                transaction.commit().await?;
                Ok(value)
            }
            .await;
            match outcome {
                Err(e) if e.is_retryable() && retries < $crate::transaction::MAX_RETRIES => {
                    retries += 1;
                    tracing::debug!(
                        retries,
                        "retrying a Postgres transaction after a deadlock or serialization failure"
                    );
                    $crate::transaction::back_off(retries).await;
                }
                other => break other.map_err(courier_core::StoreError::from),
            }
        }
    }};
}
pub(crate) use in_transaction;
