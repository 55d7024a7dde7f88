//! Every statement goes through the connection's prepared-statement cache: the hot
//! paths (claim, commit) run the same few statements thousands of times a second,
//! and parsing and planning them once per connection is most of what caching buys.
//!
//! The helpers run on anything [`Statements`]: a pooled connection on its own
//! (each statement its own transaction) or a [`Tx`](crate::transaction::Tx).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::{Client, ClientWrapper};
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use crate::error::Result;

/// Statements this process's stores have sent to Postgres, `BEGIN`, `COMMIT`
/// and `ROLLBACK` included: what the server's `pg_stat_statements` would count
/// for them, known without that extension (which a stock server has not
/// loaded).
static SENT: AtomicU64 = AtomicU64::new(0);

/// Counts `n` statements sent.
pub(crate) fn count(n: u64) {
    SENT.fetch_add(n, Ordering::Relaxed);
}

/// Statements this process's stores have sent so far (see [`SENT`]).
pub(crate) fn sent() -> u64 {
    SENT.load(Ordering::Relaxed)
}

/// Parameters of a statement.
pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// Where statements run: a connection, alone or inside a transaction.
pub(crate) trait Statements: Sync {
    /// The connection the statements are prepared on and sent over.
    fn connection(&self) -> &ClientWrapper;

    /// Awaits `request` (one statement), made on [`Statements::connection`],
    /// and counts it ([`sent`]); a transaction first makes sure it has begun.
    fn send<T: Send, F>(&self, request: F) -> impl Future<Output = Result<T>> + Send
    where
        F: Future<Output = std::result::Result<T, tokio_postgres::Error>> + Send;
}

impl Statements for Client {
    fn connection(&self) -> &ClientWrapper {
        self
    }

    async fn send<T: Send, F>(&self, request: F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, tokio_postgres::Error>> + Send,
    {
        count(1);
        Ok(request.await?)
    }
}

/// Runs a query, returning its rows.
pub(crate) async fn query<C: Statements>(client: &C, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
    let statement = client.connection().prepare_cached(sql).await?;
    client.send(client.connection().query(&statement, params)).await
}

/// Runs a query whose parameters' types are given rather than inferred (statements
/// assembled from optional parts, where some parameters go unused).
pub(crate) async fn query_typed<C: Statements>(
    client: &C,
    sql: &str,
    types: &[Type],
    params: &Params<'_>,
) -> Result<Vec<Row>> {
    let statement = client.connection().prepare_typed_cached(sql, types).await?;
    client.send(client.connection().query(&statement, params)).await
}

/// Runs a query that returns at most one row.
pub(crate) async fn query_opt<C: Statements>(client: &C, sql: &str, params: &Params<'_>) -> Result<Option<Row>> {
    let statement = client.connection().prepare_cached(sql).await?;
    client.send(client.connection().query_opt(&statement, params)).await
}

/// Runs a query that returns exactly one row.
pub(crate) async fn query_one<C: Statements>(client: &C, sql: &str, params: &Params<'_>) -> Result<Row> {
    let statement = client.connection().prepare_cached(sql).await?;
    client.send(client.connection().query_one(&statement, params)).await
}

/// Runs a statement, returning how many rows it touched.
pub(crate) async fn execute<C: Statements>(client: &C, sql: &str, params: &Params<'_>) -> Result<u64> {
    let statement = client.connection().prepare_cached(sql).await?;
    client.send(client.connection().execute(&statement, params)).await
}

/// Runs statements given as text, without parameters (DDL).
pub(crate) async fn batch_execute<C: Statements>(client: &C, sql: &str) -> Result<()> {
    client.send(client.connection().batch_execute(sql)).await
}
