//! Courier's embedded default store: [`courier_core::Store`] on SQLite (bundled,
//! so nothing needs installing), in one file or in private memory.
//!
//! This crate is for running Courier on one machine: development, tests, and
//! single-node deployments. It is not for clusters (several nodes cannot share a
//! SQLite file safely over a network; use `courier-store-postgres`), and it makes
//! no policy: retry decisions, replay and routing belong to the runtime, which
//! hands the store their outcome.
//!
//! How it works: one thread owns the only write connection and runs every write,
//! claims included, so they are serialized without lock contention, and writes
//! that arrive together are committed together. File databases run in WAL mode
//! with a few reader threads, so reads never wait for writes, and a thread of
//! its own checkpoints the log so that the writer never stops to. Every time the
//! store stamps or compares comes from the configured
//! [`Clock`](courier_core::Clock).
//!
//! Claims take due work by the `claim_at` column: due time minus priority ×
//! [`PriorityAgeing`](courier_core::PriorityAgeing) (which states the bound this
//! gives), generated from `scheduled_for` and `priority`, so no write path can
//! forget it, and the key of every claim index. The ageing is the store's
//! ([`SqliteOptions::priority_ageing`]), applied by `init`: a different one
//! rebuilds the column and its indexes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), courier_core::StoreError> {
//! use courier_core::{ClaimRequest, NewExecution, Store, TaskKind, TaskSpec, TaskStore};
//! use courier_store_sqlite::{SqliteOptions, SqliteStore};
//!
//! let store = SqliteStore::open(SqliteOptions::file("courier.db")).await?;
//! store.init().await?;
//! let spec = TaskSpec::new(TaskKind::Activity, "send_email", serde_json::json!({"to": "a@b.c"}));
//! store.dispatch(vec![NewExecution::new(spec)]).await?;
//! let claimed = store
//!     .claim_tasks(&ClaimRequest::new("worker-1", 10, std::time::Duration::from_secs(30)))
//!     .await?;
//! assert_eq!(claimed.value.len(), 1);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod cache;
mod children;
mod claim;
mod codec;
mod commit;
mod complete;
mod context;
mod dead_letters;
mod dispatch;
mod error;
mod event_log;
mod executions;
mod family;
mod functions;
mod leases;
mod maintenance;
mod migrations;
mod nodes;
mod notifications;
mod options;
mod pauses;
mod priority_ageing;
#[cfg(test)]
mod query_plan;
mod rate_limits;
mod readers;
mod rows;
mod schedules;
mod seed;
mod signals;
mod store;
mod tasks;
mod wake;
mod wal;
mod webhooks;
mod writer;

pub use options::SqliteOptions;
pub use store::SqliteStore;
pub use writer::WriterLoad;
