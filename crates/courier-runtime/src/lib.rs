//! Courier's runtime: the actix actors that run durable functions, and the Rust
//! API to register, dispatch, wait for and steer them.
//!
//! It sees the store and the notifier only through their contracts
//! ([`courier_core::Store`], [`courier_core::Notifier`]) and holds no SQL and no
//! network client: opening a store or a notifier by URL is the `courier` facade's
//! and the CLI's job.
//!
//! A node is a tree of actors under a `Coordinator`; `actors.md` at the
//! repository root draws it and lists every message. Which part holds what:
//!
//! | module | holds |
//! |---|---|
//! | `builder`, `handle`, `admin`, `external` | the public API: [`CourierBuilder`], and [`Courier`]'s dispatch and reads, its writes from outside (cancel, signals, dead letters, cleanup, roles, webhook records), and external workers' calls |
//! | `store_actor` | the `StoreActor`, the node's one door for writes: every write is a named message there |
//! | `claim_offer` | an idle worker's standing claim, which the next group commit that makes work for it runs |
//! | `admission`, `readiness` | the bound on group-commit writes waiting in the `StoreActor` (callers past it wait), and whether its writes work (`/readyz`) |
//! | `wake` | whom a write's changes wake, decided in one place |
//! | `coordinator`, `worker`, `maintenance` | the node's supervised actors: start and drain, claiming, cluster housekeeping |
//! | `lease` | the `TaskLeaseActor`: holds one lease, renews it, writes the outcome fenced |
//! | `activity` | [`ActivityContext`] and the runner of one activity attempt (cache, idempotency, time limit, panics) |
//! | `orchestrator`, `execution` | [`OrchestratorContext`] and its replay driver; the `ExecutionActor` that runs an orchestrator |
//! | `live` | the registry of executions held in memory on this node |
//! | `notifications` | [`Notifications`]: notifications for people, their options and hooks |
//! | `function`, `options`, `retry` | registered functions, options, the retry verdict |
//!
//! ```no_run
//! # #[actix::main] async fn main() -> Result<(), courier_runtime::RuntimeError> {
//! use std::sync::Arc;
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
//! # let store: Arc<dyn courier_core::Store> = unimplemented!();
//! // `store` is any courier_core::Store, e.g. courier_store::open("sqlite::memory:").
//! let courier = Courier::builder()
//!     .store(store)
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
mod admin;
mod admission;
mod builder;
mod child_execution;
mod claim_offer;
mod coordinator;
mod error;
mod execution;
mod external;
pub use external::EXTERNAL_OWNER;
mod flow_control;
mod function;
pub mod function_settings;
mod handle;
mod lease;
mod live;
mod maintenance;
mod node;
mod notifications;
mod options;
mod orchestrator;
mod presence;
mod readiness;
mod retry;
mod scheduler;
mod schedules;
mod select;
mod store_actor;
mod wake;
mod wake_count;
mod worker;

pub use activity::ActivityContext;
pub use builder::{CourierBuilder, StoreOpener};
pub use child_execution::{ChildExecution, ChildOptions};
pub use error::RuntimeError;
pub use function::Registry;
pub use handle::{Courier, ExecutionView};
pub use notifications::{
    Compose, MAX_PAYLOAD as MAX_NOTIFICATION_PAYLOAD, NotificationError, NotificationHooks, NotificationOptions,
    Notifications, validate as validate_notification,
};
pub use options::{
    AppliedOptions, DispatchOptions, FunctionOptions, KeyFn, MaintenanceOptions, PollBackoff, WorkerOptions,
};
pub use orchestrator::OrchestratorContext;
pub use presence::{DEFAULT_REPORT_EVERY, FORGET_AFTER, ReportPart, ReportSource};
pub use scheduler::TICK as SCHEDULER_TICK;
pub use schedules::{MAX_BACKFILL, MAX_SCHEDULE_ID};
pub use select::Selected;
pub use store_actor::CleanupReport;
