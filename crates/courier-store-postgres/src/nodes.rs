//! The cluster's nodes: [`NodeStore`] for [`PostgresStore`]. One row per node,
//! each write one statement stamped with the database's clock.

use std::time::Duration;

use async_trait::async_trait;
use courier_core::{HoldsNul, NodeRecord, NodeReport, NodeStore, StoreResult, nul_refused, text_has_nul};
use tokio_postgres::Row;

use crate::PostgresStore;
use crate::codec::{from_json, micros, now_plus, to_json};
use crate::error::{Error, Result};
use crate::statements::{execute, query, query_one};

const COLUMNS: &str = "id, started_at, seen_at, report";

fn check(id: &str, report: &NodeReport) -> StoreResult<()> {
    if text_has_nul(id) {
        return Err(nul_refused("id"));
    }
    report.check_nul()
}

#[async_trait]
impl NodeStore for PostgresStore {
    async fn join_node(&self, id: &str, report: &NodeReport) -> StoreResult<NodeRecord> {
        check(id, report)?;
        let client = self.client().await?;
        let sql = format!(
            "INSERT INTO nodes ({COLUMNS}) VALUES ($1, now(), now(), $2)
             ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at,
                 seen_at = excluded.seen_at, report = excluded.report
             RETURNING {COLUMNS}"
        );
        let row = query_one(&client, &sql, &[&id, &to_json(report)?]).await?;
        Ok(record(&row)?)
    }

    async fn report_node(&self, id: &str, report: &NodeReport) -> StoreResult<bool> {
        check(id, report)?;
        let client = self.client().await?;
        let n = execute(
            &client,
            "UPDATE nodes SET seen_at = now(), report = $2 WHERE id = $1",
            &[&id, &to_json(report)?],
        )
        .await?;
        Ok(n > 0)
    }

    async fn leave_node(&self, id: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        Ok(execute(&client, "DELETE FROM nodes WHERE id = $1", &[&id]).await? > 0)
    }

    async fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        let client = self.client().await?;
        // The column's collation is "C": byte order, as Rust sorts.
        let sql = format!("SELECT {COLUMNS} FROM nodes ORDER BY id");
        let rows = query(&client, &sql, &[]).await?;
        Ok(rows.iter().map(record).collect::<Result<_>>()?)
    }

    async fn forget_nodes(&self, older_than: Duration) -> StoreResult<u64> {
        let client = self.client().await?;
        let sql = format!("DELETE FROM nodes WHERE seen_at < {}", now_plus("-$1::int8"));
        Ok(execute(&client, &sql, &[&micros(older_than)]).await?)
    }
}

fn record(row: &Row) -> Result<NodeRecord> {
    Ok(NodeRecord {
        id: row.try_get(0).map_err(Error::from)?,
        started_at: row.try_get(1).map_err(Error::from)?,
        seen_at: row.try_get(2).map_err(Error::from)?,
        report: from_json(row.try_get(3).map_err(Error::from)?, "node report")?,
    })
}
