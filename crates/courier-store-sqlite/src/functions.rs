//! Functions' settings: [`FunctionStore`] for [`SqliteStore`]. One row per
//! function; a write is one upsert on the writer thread, so writes to one name
//! are serialized and each takes the next revision.

use async_trait::async_trait;
use courier_core::{FunctionRecord, FunctionSettings, FunctionStore, HoldsNul, StoreResult, nul_refused, text_has_nul};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::codec::{json, json_at, time_at};
use crate::error::Result;

const COLUMNS: &str = "name, settings, revision, updated_at";

#[async_trait]
impl FunctionStore for SqliteStore {
    async fn put_function_settings(&self, name: &str, settings: &FunctionSettings) -> StoreResult<FunctionRecord> {
        if text_has_nul(name) {
            return Err(nul_refused("name"));
        }
        settings.check_nul()?;
        let (name, settings) = (name.to_string(), settings.clone());
        self.write(move |conn, now| put(conn, now, &name, &settings)).await
    }

    async fn get_function_settings(&self, name: &str) -> StoreResult<Option<FunctionRecord>> {
        let name = name.to_string();
        self.read(move |conn, _| get(conn, &name)).await
    }

    async fn list_function_settings(&self) -> StoreResult<Vec<FunctionRecord>> {
        self.read(|conn, _| list(conn)).await
    }

    async fn delete_function_settings(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_string();
        self.write(move |conn, _| delete(conn, &name)).await
    }
}

fn record_at(row: &Row<'_>) -> rusqlite::Result<FunctionRecord> {
    Ok(FunctionRecord {
        name: row.get(0)?,
        settings: json_at(row, 1)?,
        revision: row.get(2)?,
        updated_at: time_at(row, 3)?,
    })
}

fn put(conn: &Connection, now: i64, name: &str, settings: &FunctionSettings) -> Result<FunctionRecord> {
    let sql = format!(
        "INSERT INTO function_settings (name, settings, revision, updated_at) VALUES (?1, ?2, 1, ?3) \
         ON CONFLICT (name) DO UPDATE SET settings = excluded.settings, \
         revision = function_settings.revision + 1, updated_at = excluded.updated_at \
         RETURNING {COLUMNS}"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![name, json(settings)?, now], record_at)?)
}

fn get(conn: &Connection, name: &str) -> Result<Option<FunctionRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM function_settings WHERE name = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([name], record_at).optional()?)
}

fn list(conn: &Connection) -> Result<Vec<FunctionRecord>> {
    // TEXT compares with BINARY collation (memcmp of UTF-8): byte order.
    let sql = format!("SELECT {COLUMNS} FROM function_settings ORDER BY name");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], record_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn delete(conn: &Connection, name: &str) -> Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM function_settings WHERE name = ?1")?
        .execute([name])?;
    Ok(n > 0)
}
