//! Courier's runtime: the actix actors that run durable functions, and the Rust
//! API to register, dispatch, wait for and steer them.
//!
//! A node is a tree of actors under a `Coordinator`: the `StoreActor` owns the
//! node's writes and group-commits them; the `WorkerActor` claims work in
//! batches; a `TaskLeaseActor` holds each lease (renewing it, fencing its
//! result); an `ExecutionActor` drives each orchestrator held in memory,
//! replaying it deterministically from history after a crash; the
//! `MaintenanceActor` does cluster-wide housekeeping. `actors.md` at the
//! repository root draws the tree and lists every message.
//!
//! The runtime sees the store and the notifier only through their traits
//! ([`courier_core::Store`], [`courier_core::Notifier`]); it holds no SQL.
//!
//! ```no_run
//! # #[actix::main] async fn main() -> Result<(), courier_runtime::RuntimeError> {
//! use std::time::Duration;
//! use courier_runtime::{Courier, OrchestratorContext, WorkerOptions};
//! use courier_core::TaskError;
//!
//! async fn greet(ctx: OrchestratorContext, name: String) -> Result<String, TaskError> {
//!     let greeting: String = ctx.call("format", &name).await?;
//!     ctx.sleep(Duration::from_millis(10)).await?;
//!     Ok(greeting)
//! }
//!
//! let courier = Courier::builder()
//!     .store_url("sqlite::memory:")
//!     .activity("format", |_ctx, name: String| async move { Ok::<_, TaskError>(format!("hello {name}")) })
//!     .orchestrator("greet", greet)
//!     .worker(WorkerOptions::default())
//!     .start()
//!     .await?;
//! let id = courier.dispatch("greet", "ada").await?;
//! let out: String = courier.result_when_done(id, Some(Duration::from_secs(5))).await?;
//! assert_eq!(out, "hello ada");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod activity;
mod coordinator;
mod courier;
mod error;
mod execution;
mod external;
mod function;
mod lease;
mod maintenance;
mod node;
mod options;
mod orchestrator;
mod store_actor;
mod worker;

pub use activity::ActivityContext;
pub use courier::{CleanupReport, Courier, CourierBuilder, ExecutionView};
pub use error::RuntimeError;
pub use function::Registry;
pub use options::{DispatchOptions, FunctionOptions, KeyFn, MaintenanceOptions, PollBackoff, WorkerOptions};
pub use orchestrator::OrchestratorContext;

/// Where the embedded default keeps its data: `COURIER_STORE_URL`'s default.
pub const DEFAULT_STORE_URL: &str = "./courier.db";

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
