//! The cluster's nodes: [`NodeStore`] for [`SqliteStore`]. One row per node,
//! each write one statement on the writer thread.

use std::time::Duration;

use async_trait::async_trait;
use courier_core::{HoldsNul, NodeRecord, NodeReport, NodeStore, StoreResult, nul_refused, text_has_nul};
use rusqlite::{Connection, Row, params};

use crate::SqliteStore;
use crate::codec::{before, json, json_at, time_at};
use crate::error::Result;

const COLUMNS: &str = "id, started_at, seen_at, report";

fn check(id: &str, report: &NodeReport) -> StoreResult<()> {
    if text_has_nul(id) {
        return Err(nul_refused("id"));
    }
    report.check_nul()
}

#[async_trait]
impl NodeStore for SqliteStore {
    async fn join_node(&self, id: &str, report: &NodeReport) -> StoreResult<NodeRecord> {
        check(id, report)?;
        let (id, report) = (id.to_string(), report.clone());
        self.write(move |conn, now| join(conn, now, &id, &report)).await
    }

    async fn report_node(&self, id: &str, report: &NodeReport) -> StoreResult<bool> {
        check(id, report)?;
        let (id, report) = (id.to_string(), report.clone());
        self.write(move |conn, now| {
            let n = conn
                .prepare_cached("UPDATE nodes SET seen_at = ?2, report = ?3 WHERE id = ?1")?
                .execute(params![id, now, json(&report)?])?;
            Ok(n > 0)
        })
        .await
    }

    async fn leave_node(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |conn, _| Ok(conn.prepare_cached("DELETE FROM nodes WHERE id = ?1")?.execute([id])? > 0))
            .await
    }

    async fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        self.read(|conn, _| list(conn)).await
    }

    async fn forget_nodes(&self, older_than: Duration) -> StoreResult<u64> {
        self.write(move |conn, now| {
            let n = conn
                .prepare_cached("DELETE FROM nodes WHERE seen_at < ?1")?
                .execute([before(now, older_than)])?;
            Ok(n as u64)
        })
        .await
    }
}

fn record_at(row: &Row<'_>) -> rusqlite::Result<NodeRecord> {
    Ok(NodeRecord {
        id: row.get(0)?,
        started_at: time_at(row, 1)?,
        seen_at: time_at(row, 2)?,
        report: json_at(row, 3)?,
    })
}

fn join(conn: &Connection, now: i64, id: &str, report: &NodeReport) -> Result<NodeRecord> {
    let sql = format!(
        "INSERT INTO nodes ({COLUMNS}) VALUES (?1, ?2, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, \
         seen_at = excluded.seen_at, report = excluded.report \
         RETURNING {COLUMNS}"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![id, now, json(report)?], record_at)?)
}

fn list(conn: &Connection) -> Result<Vec<NodeRecord>> {
    // TEXT compares with BINARY collation (memcmp of UTF-8): byte order.
    let sql = format!("SELECT {COLUMNS} FROM nodes ORDER BY id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], record_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
