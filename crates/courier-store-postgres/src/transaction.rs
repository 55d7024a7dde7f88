//! Running work in a transaction, again when Postgres asks for it.
//!
//! Under READ COMMITTED, the only aborts worth retrying are deadlocks (two
//! transactions locking rows in opposite orders, e.g. a cancel against a claim)
//! and, should an operator raise the isolation level, serialization failures.
//! Both mean "nothing was written, try again", so the whole transaction reruns a
//! few times before the caller is told the store is unavailable.
//!
//! A transaction is a [`Tx`], not the driver's own: `BEGIN` costs no round trip
//! of its own but goes out with the transaction's first statement, and the hot
//! writes (claims, group commits) send `COMMIT` with their last statement
//! ([`Tx::query_one_and_commit`]). The driver sends requests in the order their
//! futures are first polled and the server answers them in that order, so a
//! pipelined `BEGIN` runs before the statement behind it, and a `COMMIT` behind
//! a statement that failed finds its transaction aborted and rolls it back.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use deadpool_postgres::{Client, ClientWrapper, Object};
use futures::future::try_join;
use tokio_postgres::Row;

use crate::error::Result;
use crate::statements::{self, Params, Statements};

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

/// No statement has been sent: the connection is outside any transaction.
const NOT_BEGUN: u8 = 0;
/// `BEGIN` has been sent: the transaction must be committed or rolled back.
const BEGUN: u8 = 1;
/// `COMMIT` or `ROLLBACK` has been sent and answered.
const ENDED: u8 = 2;

/// A transaction on a pooled connection; see the module documentation.
///
/// Dropped before it ended (its future was cancelled, say by a timeout), it takes
/// its connection out of the pool and closes it, which makes the server roll the
/// transaction back: no one is ever handed a connection still inside a
/// transaction.
pub(crate) struct Tx {
    client: Option<Client>,
    /// Statements take `&Tx`, and the futures holding it must be `Send`.
    state: AtomicU8,
}

impl Tx {
    pub(crate) fn new(client: Client) -> Self {
        Tx {
            client: Some(client),
            state: AtomicU8::new(NOT_BEGUN),
        }
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a Tx holds its connection until it is dropped")
    }

    /// Runs `sql`, returning its one row, and commits the transaction in the same
    /// flight. A transaction whose only statement this is runs it on its own,
    /// which Postgres commits by itself. On an error the transaction is rolled
    /// back (by the `COMMIT`, or by [`Tx::end`] should the `COMMIT` not have gone
    /// out) and is over.
    pub(crate) async fn query_one_and_commit(&self, sql: &str, params: &Params<'_>) -> Result<Row> {
        let statement = self.connection().prepare_cached(sql).await?;
        let query = self.connection().query_one(&statement, params);
        match self.state.swap(ENDED, Ordering::AcqRel) {
            NOT_BEGUN => {
                statements::count(1);
                Ok(query.await?)
            }
            BEGUN => {
                statements::count(2);
                match try_join(query, self.connection().batch_execute("COMMIT")).await {
                    Ok((row, ())) => Ok(row),
                    Err(e) => {
                        // Whether the COMMIT was sent depends on where the query
                        // failed; `end` sends a ROLLBACK, harmless if it was.
                        self.state.store(BEGUN, Ordering::Release);
                        Err(e.into())
                    }
                }
            }
            _ => Err(ended()),
        }
    }

    /// Ends the transaction with the outcome of its body: commits it after
    /// `Ok`, rolls it back after `Err`. A connection whose rollback failed is
    /// closed rather than handed out again.
    pub(crate) async fn end<T>(mut self, outcome: Result<T>) -> Result<T> {
        let begun = self.state.load(Ordering::Acquire) == BEGUN;
        match outcome {
            Ok(value) => {
                if begun {
                    statements::count(1);
                    self.connection().batch_execute("COMMIT").await?;
                }
                self.state.store(ENDED, Ordering::Release);
                Ok(value)
            }
            Err(e) => {
                if begun {
                    statements::count(1);
                    if self.connection().batch_execute("ROLLBACK").await.is_ok() {
                        self.state.store(ENDED, Ordering::Release);
                    } else {
                        drop(Object::take(self.client.take().expect("held until dropped")));
                    }
                }
                Err(e)
            }
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.state.load(Ordering::Acquire) == BEGUN
            && let Some(client) = self.client.take()
        {
            drop(Object::take(client));
        }
    }
}

impl Statements for Tx {
    fn connection(&self) -> &ClientWrapper {
        self.client()
    }

    async fn send<T: Send, F>(&self, request: F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, tokio_postgres::Error>> + Send,
    {
        match self.state.load(Ordering::Acquire) {
            NOT_BEGUN => {
                self.state.store(BEGUN, Ordering::Release);
                statements::count(2);
                let ((), value) = try_join(self.connection().batch_execute("BEGIN"), request).await?;
                Ok(value)
            }
            BEGUN => {
                statements::count(1);
                Ok(request.await?)
            }
            _ => Err(ended()),
        }
    }
}

/// A statement after the transaction's end: a bug in the store, reported rather
/// than run outside the transaction.
fn ended() -> crate::error::Error {
    crate::error::corrupt("a statement was sent after its transaction ended")
}

/// Runs `$body` (an expression whose value is a future of `Result<T>`, using
/// `$tx: &Tx`) in a fresh transaction and commits it; reruns it on a
/// deadlock or serialization failure. Evaluates to `StoreResult<T>`.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut retries = 0u32;
        loop {
            let outcome: $crate::error::Result<_> = async {
                let transaction = $crate::transaction::Tx::new($store.client().await?);
                let outcome = {
                    let $tx = &transaction;
                    $body.await
                };
                transaction.end(outcome).await
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::statements::{execute, query_one};
    use crate::{PostgresOptions, PostgresStore};

    fn url() -> String {
        std::env::var("COURIER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// A store with one connection, an admin connection beside it, and a
    /// scratch table of its own.
    struct Scratch {
        store: PostgresStore,
        admin: tokio_postgres::Client,
        table: String,
    }

    impl Scratch {
        async fn new() -> Scratch {
            let store = PostgresStore::connect(PostgresOptions::new(url()).pool_size(1))
                .await
                .expect("Postgres reachable");
            let (admin, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
                .await
                .expect("admin");
            tokio::spawn(connection);
            let table = format!("courier_tx_test_{}", uuid::Uuid::new_v4().simple());
            admin
                .batch_execute(&format!("CREATE TABLE {table} (n int)"))
                .await
                .expect("scratch table");
            Scratch { store, admin, table }
        }

        async fn tx(&self) -> Tx {
            Tx::new(self.store.client().await.expect("a connection"))
        }

        fn insert(&self, n: i32) -> String {
            format!("INSERT INTO {} VALUES ({n}) RETURNING n", self.table)
        }

        async fn rows(&self) -> Vec<i32> {
            let sql = format!("SELECT n FROM {} ORDER BY n", self.table);
            let rows = self.admin.query(&sql, &[]).await.expect("read");
            rows.iter().map(|r| r.get(0)).collect()
        }

        /// The state of the pool's one connection, as the server sees it.
        async fn pool_connection_state(&self) -> (i32, String) {
            let client = self.store.client().await.expect("a connection");
            let pid: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .expect("pid")
                .get(0);
            drop(client);
            let state: String = self
                .admin
                .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
                .await
                .expect("activity")
                .get(0);
            (pid, state)
        }

        async fn drop_table(self) {
            let _ = self.admin.batch_execute(&format!("DROP TABLE {}", self.table)).await;
        }
    }

    fn failed<T>() -> Result<T> {
        Err(crate::error::corrupt("the body failed"))
    }

    #[tokio::test]
    async fn the_first_statement_belongs_to_the_transaction_its_begin_went_out_with() {
        let s = Scratch::new().await;
        let tx = s.tx().await;
        execute(&tx, &s.insert(1), &[]).await.expect("inserted");
        assert!(tx.end(failed::<()>()).await.is_err());
        assert_eq!(s.rows().await, Vec::<i32>::new(), "rolled back with its transaction");

        let tx = s.tx().await;
        execute(&tx, &s.insert(2), &[]).await.expect("inserted");
        tx.end(Ok(())).await.expect("committed");
        assert_eq!(s.rows().await, vec![2]);
        s.drop_table().await;
    }

    #[tokio::test]
    async fn a_commit_sent_with_the_last_statement_commits_both_or_neither() {
        let s = Scratch::new().await;
        let tx = s.tx().await;
        execute(&tx, &s.insert(1), &[]).await.expect("inserted");
        let row = tx.query_one_and_commit(&s.insert(2), &[]).await.expect("committed");
        assert_eq!(row.get::<_, i32>(0), 2);
        tx.end(Ok(())).await.expect("nothing left to do");
        assert_eq!(s.rows().await, vec![1, 2]);

        let tx = s.tx().await;
        execute(&tx, &s.insert(3), &[]).await.expect("inserted");
        let division = tx
            .query_one_and_commit("SELECT 1 / (n - n) FROM (SELECT 1 AS n) x", &[])
            .await;
        assert!(division.is_err(), "division by zero");
        assert!(tx.end(division).await.is_err());
        assert_eq!(
            s.rows().await,
            vec![1, 2],
            "the COMMIT behind a failed statement rolled back"
        );
        let (_, state) = s.pool_connection_state().await;
        assert_eq!(
            state, "idle",
            "the connection went back to the pool outside any transaction"
        );

        // A transaction of one statement runs it on its own.
        let tx = s.tx().await;
        tx.query_one_and_commit(&s.insert(4), &[]).await.expect("committed");
        tx.end(Ok(())).await.expect("nothing left to do");
        assert_eq!(s.rows().await, vec![1, 2, 4]);
        s.drop_table().await;
    }

    #[tokio::test]
    async fn a_transaction_dropped_before_its_end_closes_its_connection() {
        let s = Scratch::new().await;
        let (before, _) = s.pool_connection_state().await;
        let tx = s.tx().await;
        execute(&tx, &s.insert(1), &[]).await.expect("inserted");
        drop(tx);
        let (after, state) = s.pool_connection_state().await;
        assert_ne!(before, after, "a new connection, not the one inside the transaction");
        assert_eq!(state, "idle");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.rows().await.is_empty() {
            assert!(Instant::now() < deadline, "the server rolled the transaction back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // And nothing after the end runs outside the transaction.
        let tx = s.tx().await;
        tx.query_one_and_commit(&s.insert(5), &[]).await.expect("committed");
        assert!(query_one(&tx, &s.insert(6), &[]).await.is_err());
        tx.end(Ok(())).await.expect("ended");
        assert_eq!(s.rows().await, vec![5]);
        s.drop_table().await;
    }
}
