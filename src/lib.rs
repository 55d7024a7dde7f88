//! Courier: durable task execution with real-time notification delivery.
//!
//! Register activities and orchestrators, dispatch them, and Courier persists
//! every execution and task, hands work to workers under leases, retries, times
//! out, sleeps durably, waits for signals, and tells everyone who cares the
//! moment anything changes. This facade re-exports the public API of the
//! workspace's crates:
//!
//! * [`core`], records, states, events, errors, and the `Store` / `Notifier` contracts;
//! * [`store`], the SQLite (embedded default) and Postgres stores;
//! * [`notify`], notifiers;
//! * [`http`], the HTTP surface (REST API, streams, webhooks), mountable into an actix-web app;
//! * the runtime ([`Courier`], [`OrchestratorContext`], [`ActivityContext`], ...) at the top level.
//!
//! ```no_run
//! # #[actix::main] async fn main() -> Result<(), courier::RuntimeError> {
//! use courier::{Courier, WorkerOptions};
//! use courier::core::TaskError;
//! let courier = Courier::builder()
//!     .activity("double", |_ctx, n: i64| async move { Ok::<_, TaskError>(n * 2) })
//!     .worker(WorkerOptions::default())
//!     .start()
//!     .await?;
//! let id = courier.dispatch("double", 21).await?;
//! assert_eq!(courier.result_when_done::<i64>(id, None).await?, 42);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub use courier_core as core;
pub use courier_http as http;
pub use courier_notify as notify;
pub use courier_runtime::*;
pub use courier_store as store;
