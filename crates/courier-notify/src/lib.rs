//! Courier's notifiers: implementations of [`courier_core::Notifier`], which
//! wakes waiters (in-process `wait_for`, orchestrators, workers, SSE and
//! WebSocket sessions) when the store changes.
//!
//! [`LocalNotifier`] is the default for a single node. Every notifier delivers to
//! this node's subscribers through a [`Hub`]; cluster transports add a way for
//! notices to cross nodes. Notices only say *that* something changed; the store
//! says what. This crate is not the event log (that lives in the store) and does
//! not deliver to the outside world (that is `courier-http`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use courier_core::{Notice, Notifier, Topic};
//! let notifier = courier_notify::LocalNotifier::new();
//! let mut work = notifier.subscribe(vec![Topic::Work]).await.unwrap();
//! notifier.publish(vec![Notice::Work { queue: "default".into() }]).await.unwrap();
//! assert!(matches!(work.next().await, Some(Notice::Work { .. })));
//! # }
//! ```
#![deny(missing_docs)]

mod hub;
mod local;

pub use hub::{DEFAULT_MAILBOX, Hub, HubStats};
pub use local::LocalNotifier;
