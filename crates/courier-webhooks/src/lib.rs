//! Courier's webhooks: what is registered, how deliveries are signed, the
//! dispatcher that turns events into deliveries once per cluster, and the
//! activity that makes one delivery attempt.
//!
//! Every delivery is a durable execution of the built-in activity
//! `courier.webhook.deliver`, so its retries (on the webhook schedule,
//! `Retry-After` honoured), dead letter and replay are the runtime's, and every
//! record this crate keeps is written through the runtime's [`Courier`] handle.
//! This crate serves no HTTP: `courier-http` exposes [`Webhooks`] as
//! `/v1/webhooks`.
//!
//! ```no_run
//! # #[actix::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use courier_runtime::{Courier, WorkerOptions};
//! use courier_webhooks::{NewWebhook, WebhookOptions, Webhooks};
//!
//! # let store: std::sync::Arc<dyn courier_core::Store> = unimplemented!();
//! let builder = Courier::builder().store(store).worker(WorkerOptions::default());
//! // Registers the delivery activity and starts the dispatcher with the node.
//! let courier = courier_webhooks::install(builder, WebhookOptions::default()).start().await?;
//! let webhooks = Webhooks::with_options(courier.clone(), WebhookOptions::default());
//! let hook = webhooks
//!     .create(NewWebhook { url: "https://example.com/hooks".into(), ..NewWebhook::default() })
//!     .await?;
//! println!("sign-in secret, shown once: {}", hook.secret);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod deliver;
pub mod destination;
mod dispatcher;
mod options;
mod registration;
pub mod signing;

use std::sync::{Arc, OnceLock};

use actix::Actor;
use courier_runtime::{Courier, CourierBuilder};

pub use deliver::{DELIVER, DeliverArgs};
pub use options::WebhookOptions;
pub use registration::{DeliveryView, NewWebhook, ReplayedDeliveries, WebhookError, Webhooks};

/// Registers the delivery activity on `builder` and, once the node starts,
/// starts its webhook dispatcher (which acts on one node of the cluster at a time).
pub fn install(builder: CourierBuilder, options: WebhookOptions) -> CourierBuilder {
    // The activity needs the node's handle, which exists only once it starts.
    let node: Arc<OnceLock<Courier>> = Arc::new(OnceLock::new());
    let client = deliver::client(&options);
    let (for_activity, activity_options) = (node.clone(), options.clone());
    builder
        .activity_with(
            DELIVER,
            deliver::function_options(&options),
            move |ctx, args: DeliverArgs| {
                let (node, client, options) = (for_activity.clone(), client.clone(), activity_options.clone());
                async move {
                    let courier = node
                        .get()
                        .cloned()
                        .ok_or_else(|| courier_core::TaskError::new("not_ready", "the node is still starting"))?;
                    deliver::deliver(courier, client, options, ctx, args).await
                }
            },
        )
        .on_start(move |courier| {
            let _ = node.set(courier.clone());
            dispatcher::WebhookDispatcher::new(courier.clone(), options).start();
        })
}
