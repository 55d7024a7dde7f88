//! Courier: durable task execution with real-time notification delivery.
//!
//! Register activities and orchestrators, dispatch them, and Courier persists
//! every execution and task, hands work to workers under leases, retries, times
//! out, sleeps durably, waits for signals, and tells everyone who cares the
//! moment anything changes. This facade re-exports the public API of the
//! workspace's crates, and opens stores and notifiers by URL:
//!
//! * [`core`], records, states, events, errors, and the `Store` / `Notifier` contracts;
//! * [`store`], the SQLite (embedded default) and Postgres stores;
//! * [`notify`], notifiers;
//! * [`http`], the HTTP surface (REST API, streams), mountable into an actix-web app;
//! * [`webhooks`], webhook registrations, signatures and durable deliveries;
//! * [`ingest`], messages taken in (TCP, HTTP, Redis) and delivered through providers;
//! * the runtime ([`Courier`], [`OrchestratorContext`], [`ActivityContext`], ...) at the top level;
//! * [`CourierBuilderExt`], which gives the runtime's builder `store_url` and
//!   `notifier_url`, and [`bootstrap`], a node on the embedded default in one call.
//!
//! ```no_run
//! # #[actix::main] async fn main() -> Result<(), courier::RuntimeError> {
//! use courier::{Courier, CourierBuilderExt, WorkerOptions};
//! use courier::core::TaskError;
//! let courier = Courier::builder()
//!     .store_url("sqlite::memory:")
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
pub use courier_ingest as ingest;
pub use courier_notify as notify;
pub use courier_runtime::*;
pub use courier_store as store;
pub use courier_webhooks as webhooks;

/// Where the embedded default keeps its data: `COURIER_STORE_URL`'s default.
pub const DEFAULT_STORE_URL: &str = "./courier.db";

/// Opening by URL, for the runtime's [`CourierBuilder`] (which takes only
/// opened stores and notifiers, so that it depends on no database driver).
pub trait CourierBuilderExt {
    /// Opens the store this URL names when the node starts: a SQLite path,
    /// `sqlite::memory:`, or a `postgres://` DSN (see [`store::open`]).
    fn store_url(self, url: impl Into<String>) -> CourierBuilder;
}

impl CourierBuilderExt for CourierBuilder {
    fn store_url(self, url: impl Into<String>) -> CourierBuilder {
        let url = url.into();
        self.open_store(move |clock| async move { store::open_with_clock(&url, clock).await })
    }
}

/// Opens the notifier a `COURIER_NOTIFIER_URL` names (`memory`, `redis://...`,
/// `postgres://...`), with channels under `prefix` (see [`notify::open`]).
pub async fn open_notifier(url: &str, prefix: &str) -> Result<std::sync::Arc<dyn core::Notifier>, notify::OpenError> {
    notify::open(url, prefix).await
}

/// Starts a node on the embedded default in one call: SQLite at
/// `COURIER_STORE_URL` (default `./courier.db`), the in-process notifier, and an
/// in-process worker running `registry`'s functions.
pub async fn bootstrap(registry: Registry) -> Result<Courier, RuntimeError> {
    let url = std::env::var("COURIER_STORE_URL").unwrap_or_else(|_| DEFAULT_STORE_URL.to_string());
    Courier::builder()
        .store_url(url)
        .registry(registry)
        .worker(WorkerOptions::default())
        .start()
        .await
}
