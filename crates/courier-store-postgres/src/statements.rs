//! Every statement goes through the connection's prepared-statement cache: the hot
//! paths (claim, commit) run the same few statements thousands of times a second,
//! and parsing and planning them once per connection is most of what caching buys.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use crate::error::Result;

/// Parameters of a statement.
pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// Runs a query, returning its rows.
pub(crate) async fn query<C: GenericClient>(client: &C, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query(&statement, params).await?)
}

/// Runs a query whose parameters' types are given rather than inferred (statements
/// assembled from optional parts, where some parameters go unused).
pub(crate) async fn query_typed<C: GenericClient>(
    client: &C,
    sql: &str,
    types: &[Type],
    params: &Params<'_>,
) -> Result<Vec<Row>> {
    let statement = client.prepare_typed_cached(sql, types).await?;
    Ok(client.query(&statement, params).await?)
}

/// Runs a query that returns at most one row.
pub(crate) async fn query_opt<C: GenericClient>(client: &C, sql: &str, params: &Params<'_>) -> Result<Option<Row>> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query_opt(&statement, params).await?)
}

/// Runs a query that returns exactly one row.
pub(crate) async fn query_one<C: GenericClient>(client: &C, sql: &str, params: &Params<'_>) -> Result<Row> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query_one(&statement, params).await?)
}

/// Runs a statement, returning how many rows it touched.
pub(crate) async fn execute<C: GenericClient>(client: &C, sql: &str, params: &Params<'_>) -> Result<u64> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.execute(&statement, params).await?)
}
