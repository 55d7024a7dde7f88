//! `WebhookDispatcher`: turns new events into deliveries, once per cluster.
//!
//! It follows the event log from the webhook cursor kept in the store. Each
//! round it reads a page of events after the cursor, matches them against the
//! webhooks, and enqueues a delivery (a durable execution) per match (a
//! disabled webhook's matches are recorded as skipped deliveries instead),
//! moving the cursor in the same transaction with a compare-and-set: if another
//! node got there first nothing is written, so every event reaches every webhook
//! once however many nodes run a dispatcher. Only the holder of the
//! `courier.webhooks` role reads, so other nodes do not repeat the work.

use std::time::Duration;

use actix::prelude::*;
use courier_core::metric;
use courier_core::{EventFilter, NewDelivery, NewExecution, Notice, Topic};
use courier_runtime::{Courier, RuntimeError};
use uuid::Uuid;

use crate::deliver::spec;
use crate::options::WebhookOptions;

/// Events matched per round.
const PAGE: u32 = 500;

/// The role whose holder turns events into deliveries.
const ROLE: &str = "courier.webhooks";

/// The actor. See the module documentation.
pub(crate) struct WebhookDispatcher {
    courier: Courier,
    options: WebhookOptions,
    running: bool,
    again: bool,
}

impl WebhookDispatcher {
    pub(crate) fn new(courier: Courier, options: WebhookOptions) -> Self {
        WebhookDispatcher {
            courier,
            options,
            running: false,
            again: false,
        }
    }

    fn round(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            self.again = true;
            return;
        }
        self.running = true;
        self.again = false;
        let courier = self.courier.clone();
        let options = self.options.clone();
        async move { enqueue_round(&courier, &options).await }
            .into_actor(self)
            .map(|result, act, ctx| {
                act.running = false;
                match result {
                    Ok(more) if more || act.again => act.round(ctx),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "webhook dispatch round failed; will retry"),
                }
            })
            .spawn(ctx);
    }
}

/// One round; whether there may be more to do at once.
async fn enqueue_round(courier: &Courier, options: &WebhookOptions) -> Result<bool, RuntimeError> {
    let store = courier.store();
    let role_ttl = options.poll * 5 + Duration::from_secs(5);
    if !courier.hold_role(ROLE, role_ttl).await? {
        return Ok(false);
    }
    let from = store.webhook_cursor().await?;
    let events = store.read_events(&EventFilter::after(from).limit(PAGE)).await?;
    let Some(to) = events.last().map(|e| e.seq) else {
        return Ok(false);
    };
    let webhooks = store.list_webhooks(0, 0).await?;
    let mut deliveries = Vec::new();
    for event in &events {
        // A disabled webhook's events are still recorded, as skipped deliveries
        // its owner can replay once it is enabled again.
        for hook in webhooks
            .iter()
            .filter(|h| h.subscribes_to(event) && event.timestamp >= h.created_at)
        {
            let id = Uuid::now_v7();
            let mut execution = NewExecution::new(spec(options, id));
            execution.idempotency_key = Some(format!("courier.webhook:{}:{}", hook.id, event.seq));
            deliveries.push(NewDelivery {
                id,
                webhook_id: hook.id,
                event_seq: event.seq,
                event_type: event.event_type,
                execution,
                skipped: !hook.enabled,
            });
        }
    }
    let skipped = deliveries.iter().filter(|d| d.skipped).count();
    let count = deliveries.len() - skipped;
    if courier.enqueue_deliveries(from, to, deliveries).await? {
        metrics::counter!(metric::WEBHOOK_DELIVERIES).increment(count as u64);
        metrics::counter!(metric::WEBHOOK_DELIVERIES_SKIPPED).increment(skipped as u64);
        Ok(events.len() as u32 == PAGE)
    } else {
        // Another node moved the cursor: look again from where it left it.
        Ok(true)
    }
}

impl Actor for WebhookDispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let notifier = self.courier.notifier().clone();
        async move { notifier.subscribe(vec![Topic::Events]).await }
            .into_actor(self)
            .map(|sub, _, ctx| {
                if let Ok(sub) = sub {
                    ctx.add_stream(futures::stream::unfold(sub, |mut sub| async move {
                        sub.next().await.map(|n| (n, sub))
                    }));
                }
            })
            .spawn(ctx);
        ctx.run_interval(self.options.poll, |act, ctx| act.round(ctx));
    }
}

/// The log grew: look for deliveries to make.
impl StreamHandler<Notice> for WebhookDispatcher {
    fn handle(&mut self, _: Notice, ctx: &mut Self::Context) {
        self.round(ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}
