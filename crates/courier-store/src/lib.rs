//! Opens Courier's stores by URL: [`SqliteStore`], the embedded default (one
//! file, or memory), and [`PostgresStore`], for clusters. Both implement
//! [`courier_core::Store`] (each in its own crate, where its SQL lives) and pass
//! one conformance suite (`crates/courier-store-conformance`, run by each store
//! crate's `tests/conformance.rs`).
//!
//! Nothing above this crate sees SQL, and nothing in it makes policy (retry
//! decisions, replay): the runtime makes those and hands the store their outcome.
//!
//! ```no_run
//! # async fn demo() -> Result<(), courier_core::StoreError> {
//! use courier_core::Store;
//! let store = courier_store::open("sqlite::memory:").await?;
//! store.init().await?;
//! assert_eq!(store.backend(), "sqlite");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use courier_core::{Clock, Store, StoreError};

pub use courier_store_postgres::{PostgresOptions, PostgresStore, WriteVolume};
pub use courier_store_sqlite::{SqliteOptions, SqliteStore, WriterLoad};

/// Opens the store a `COURIER_STORE_URL` names, without initialising it:
/// `postgres://...` / `postgresql://...` for Postgres; `sqlite::memory:` for a
/// private in-memory SQLite database; anything else (optionally prefixed
/// `sqlite://` or `sqlite:`) is a SQLite file path.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with_clock(url, Clock::system()).await
}

/// [`open`], with the local clock SQLite should use (Postgres always uses the
/// database's clock).
pub async fn open_with_clock(url: &str, clock: Clock) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, clock, &StoreSettings::default()).await
}

/// The store settings that are not in its URL (`[store]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreSettings {
    /// Postgres only: a statement running longer is cancelled (`None`: never).
    pub statement_timeout: Option<Duration>,
    /// Postgres only: connections the node's pool opens at most (at least 1).
    pub pool_size: usize,
    /// SQLite only: `true` fsyncs at every commit (`synchronous=FULL`); `false`
    /// (`NORMAL`, WAL) may lose the last commits on power loss, never corrupts.
    pub sqlite_synchronous_full: bool,
    /// Both stores: what one priority level is worth in waiting in the claim
    /// order (see [`courier_core::PriorityAgeing`] for the bound it gives).
    pub priority_ageing: courier_core::PriorityAgeing,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            statement_timeout: Some(courier_store_postgres::DEFAULT_STATEMENT_TIMEOUT),
            pool_size: courier_store_postgres::DEFAULT_POOL_SIZE,
            sqlite_synchronous_full: false,
            priority_ageing: courier_core::PriorityAgeing::DEFAULT,
        }
    }
}

/// [`open_with_clock`], with `settings`.
pub async fn open_with(url: &str, clock: Clock, settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PostgresOptions::new(url)
            .statement_timeout(settings.statement_timeout)
            .pool_size(settings.pool_size)
            .priority_ageing(settings.priority_ageing);
        let store = PostgresStore::connect(options).await?;
        return Ok(Arc::new(store));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let options = if path == ":memory:" || path.is_empty() {
        SqliteOptions::memory()
    } else {
        SqliteOptions::file(path)
    };
    let options = options
        .clock(clock)
        .synchronous_full(settings.sqlite_synchronous_full)
        .priority_ageing(settings.priority_ageing);
    let store = SqliteStore::open(options).await?;
    Ok(Arc::new(store))
}

/// [`open_with`] for SQLite only, keeping the concrete type (tests read what it runs with).
#[doc(hidden)]
pub async fn open_sqlite_with(path: &str, settings: &StoreSettings) -> Result<SqliteStore, StoreError> {
    SqliteStore::open(
        SqliteOptions::file(path)
            .synchronous_full(settings.sqlite_synchronous_full)
            .priority_ageing(settings.priority_ageing),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_synchronous_follows_the_setting_and_defaults_to_normal() {
        let dir = std::env::temp_dir().join(format!("courier-store-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let normal = dir.join("normal.db");
        let full = dir.join("full.db");
        let store = open_sqlite_with(normal.to_str().unwrap(), &StoreSettings::default())
            .await
            .unwrap();
        assert_eq!(store.synchronous().await.unwrap(), "normal");
        let settings = StoreSettings {
            sqlite_synchronous_full: true,
            ..StoreSettings::default()
        };
        let store = open_sqlite_with(full.to_str().unwrap(), &settings).await.unwrap();
        assert_eq!(store.synchronous().await.unwrap(), "full");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
