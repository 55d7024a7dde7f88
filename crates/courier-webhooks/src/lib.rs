//! Courier's webhooks: what is registered, how deliveries are signed, the
//! dispatcher that turns events into deliveries once per cluster, and the
//! activity that makes one delivery attempt.
//!
//! Every delivery is a durable execution of the built-in activity
//! `courier.webhook.deliver`, so its retries (on the webhook schedule,
//! `Retry-After` honoured), dead letter and replay are the runtime's, and every
//! record this crate keeps is written through the runtime's [`Courier`] handle.
//! This crate serves no HTTP: `courier-http` exposes [`Webhooks`] as
//! `/v1/webhooks`. Signing secrets are kept sealed under `webhooks.secret_key`
//! ([`sealing`]); without that key nothing can be registered.
//!
//! ```no_run
//! # #[actix::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use courier_runtime::{Courier, WorkerOptions};
//! use courier_webhooks::sealing::SecretKeys;
//! use courier_webhooks::{NewWebhook, WebhookOptions, Webhooks};
//!
//! # let store: std::sync::Arc<dyn courier_core::Store> = unimplemented!();
//! let options = WebhookOptions {
//!     // `openssl rand -base64 32`, the same on every node.
//!     secret_keys: SecretKeys::parse(&std::env::var("COURIER_WEBHOOKS_SECRET_KEY")?, &[] as &[&str])?,
//!     ..WebhookOptions::default()
//! };
//! let builder = Courier::builder().store(store).worker(WorkerOptions::default());
//! // Registers the delivery activity and starts the dispatcher with the node.
//! let courier = courier_webhooks::install(builder, options.clone()).start().await?;
//! let webhooks = Webhooks::with_options(courier.clone(), options);
//! let hook = webhooks
//!     .create(NewWebhook { url: "https://example.com/hooks".into(), ..NewWebhook::default() })
//!     .await?;
//! println!("signing secret, shown once: {}", hook.secret);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod attempt_reads;
mod deliver;
pub mod destination;
mod dispatcher;
mod options;
mod registration;
pub mod sealing;
pub mod signing;

use std::sync::{Arc, OnceLock};

use actix::Actor;
use courier_runtime::{Courier, CourierBuilder};

use crate::attempt_reads::AttemptReads;

pub use deliver::{DELIVER, DeliverArgs};
pub use options::WebhookOptions;
pub use registration::{
    DEFAULT_GRACE_PERIOD, DeliveryView, MAX_GRACE_PERIOD, NewWebhook, ReplayedDeliveries, SealReport, WebhookError,
    Webhooks,
};

/// Registers the delivery activity on `builder` and, once the node starts,
/// starts its webhook dispatcher (which acts on one node of the cluster at a
/// time) and seals the secrets stored in the open or under a retired key
/// ([`Webhooks::seal_stored_secrets`], once).
pub fn install(builder: CourierBuilder, options: WebhookOptions) -> CourierBuilder {
    // The activity needs the node's handle, and the attempt reads its store,
    // which exist only once it starts.
    let node: Arc<OnceLock<(Courier, AttemptReads)>> = Arc::new(OnceLock::new());
    let client = deliver::client(&options);
    let (for_activity, activity_options) = (node.clone(), options.clone());
    builder
        .activity_with(
            DELIVER,
            deliver::function_options(&options),
            move |ctx, args: DeliverArgs| {
                let (node, client, options) = (for_activity.clone(), client.clone(), activity_options.clone());
                async move {
                    let (courier, reads) = node
                        .get()
                        .cloned()
                        .ok_or_else(|| courier_core::TaskError::new("not_ready", "the node is still starting"))?;
                    deliver::deliver(courier, &reads, client, options, ctx, args).await
                }
            },
        )
        .on_start(move |courier| {
            let _ = node.set((courier.clone(), AttemptReads::start(courier.store().clone())));
            let webhooks = Webhooks::with_options(courier.clone(), options.clone());
            actix::spawn(async move { report_sealing(webhooks.seal_stored_secrets().await) });
            dispatcher::WebhookDispatcher::new(courier.clone(), options).start();
        })
}

/// Logs what the start's sealing pass did: the operator learns that secrets
/// were sealed, or that they stay in the open for want of a key.
fn report_sealing(report: Result<SealReport, WebhookError>) {
    match report {
        Ok(report) => {
            if report.sealed > 0 {
                tracing::info!(
                    sealed = report.sealed,
                    "sealed webhook secrets stored in the open by an earlier version"
                );
            }
            if report.resealed > 0 {
                tracing::info!(
                    resealed = report.resealed,
                    "sealed webhook secrets again under webhooks.secret_key (they were under a retired key)"
                );
            }
            if report.in_the_open > 0 {
                tracing::warn!(
                    in_the_open = report.in_the_open,
                    "webhook secrets are stored in the open: set webhooks.secret_key (COURIER_WEBHOOKS_SECRET_KEY) \
                     to seal them"
                );
            }
            if report.unreadable > 0 {
                tracing::warn!(
                    unreadable = report.unreadable,
                    "webhook secrets are sealed under a key this node does not have; their deliveries fail"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "sealing stored webhook secrets failed; the next start tries again"),
    }
}
