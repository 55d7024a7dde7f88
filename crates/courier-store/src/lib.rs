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

use courier_core::{Clock, Store, StoreError};

pub use courier_store_postgres::{PostgresOptions, PostgresStore};
pub use courier_store_sqlite::{SqliteOptions, SqliteStore};

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
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::connect(PostgresOptions::new(url)).await?;
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
    let store = SqliteStore::open(options.clock(clock)).await?;
    Ok(Arc::new(store))
}
