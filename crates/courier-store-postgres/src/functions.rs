//! Functions' settings: [`FunctionStore`] for [`PostgresStore`]. One row per
//! function; a write is one upsert, whose row lock makes concurrent writes to a
//! name take turns, each reading the revision the previous one left.

use async_trait::async_trait;
use courier_core::{FunctionRecord, FunctionSettings, FunctionStore, HoldsNul, StoreResult, nul_refused, text_has_nul};
use tokio_postgres::Row;

use crate::PostgresStore;
use crate::codec::{from_json, to_json};
use crate::error::{Error, Result};
use crate::statements::{execute, query, query_one, query_opt};

const COLUMNS: &str = "name, settings, revision, updated_at";

#[async_trait]
impl FunctionStore for PostgresStore {
    async fn put_function_settings(&self, name: &str, settings: &FunctionSettings) -> StoreResult<FunctionRecord> {
        if text_has_nul(name) {
            return Err(nul_refused("name"));
        }
        settings.check_nul()?;
        let client = self.client().await?;
        let sql = format!(
            "INSERT INTO function_settings (name, settings, revision, updated_at) VALUES ($1, $2, 1, now())
             ON CONFLICT (name) DO UPDATE SET settings = excluded.settings,
                 revision = function_settings.revision + 1, updated_at = excluded.updated_at
             RETURNING {COLUMNS}"
        );
        let row = query_one(&client, &sql, &[&name, &to_json(settings)?]).await?;
        Ok(record(&row)?)
    }

    async fn get_function_settings(&self, name: &str) -> StoreResult<Option<FunctionRecord>> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM function_settings WHERE name = $1");
        let row = query_opt(&client, &sql, &[&name]).await?;
        Ok(row.as_ref().map(record).transpose()?)
    }

    async fn list_function_settings(&self) -> StoreResult<Vec<FunctionRecord>> {
        let client = self.client().await?;
        // The column's collation is "C": byte order, as Rust sorts.
        let sql = format!("SELECT {COLUMNS} FROM function_settings ORDER BY name");
        let rows = query(&client, &sql, &[]).await?;
        Ok(rows.iter().map(record).collect::<Result<_>>()?)
    }

    async fn delete_function_settings(&self, name: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        Ok(execute(&client, "DELETE FROM function_settings WHERE name = $1", &[&name]).await? > 0)
    }
}

fn record(row: &Row) -> Result<FunctionRecord> {
    Ok(FunctionRecord {
        name: row.try_get(0).map_err(Error::from)?,
        settings: from_json(row.try_get(1).map_err(Error::from)?, "function settings")?,
        revision: row.try_get(2).map_err(Error::from)?,
        updated_at: row.try_get(3).map_err(Error::from)?,
    })
}
