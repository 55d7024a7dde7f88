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
//!
//! Most events match no webhook (a busy node's log is mostly its own
//! deliveries' events), and a round runs after every commit that appends some.
//! So a round that matches nothing writes nothing: it remembers how far it
//! looked, and the cursor moves over those events with the next delivery, or
//! at the latest [`CHECKPOINT`] later. The role is renewed a third of the way
//! through its lease, not every round, and a node that finds it held elsewhere
//! asks again a poll interval later, not at the next commit. Forgetting what
//! was looked at (a restart, another node moving the cursor) only means
//! looking again.

use std::time::{Duration, Instant};

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

/// How long events that matched nothing may be looked at without moving the
/// stored cursor over them.
const CHECKPOINT: Duration = Duration::from_secs(1);

/// The actor. See the module documentation.
pub(crate) struct WebhookDispatcher {
    courier: Courier,
    options: WebhookOptions,
    running: bool,
    again: bool,
    /// Carried from round to round.
    state: RoundState,
}

/// What a round leaves the next one.
#[derive(Clone, Copy, Debug, Default)]
struct RoundState {
    role: Role,
    /// Events after the stored cursor already looked at, none matching.
    looked: Option<Looked>,
}

/// What this node knows of the role.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Role {
    /// Not asked yet, or a round failed: ask at once.
    #[default]
    Unknown,
    /// Held here; renewed at `renew_at`.
    Held { renew_at: Instant },
    /// Held elsewhere when last asked; asked again at `ask_at`.
    Elsewhere { ask_at: Instant },
}

/// Events `(cursor, to]` matched no webhook; first seen at `since`.
#[derive(Clone, Copy, Debug)]
struct Looked {
    cursor: i64,
    to: i64,
    since: Instant,
}

impl WebhookDispatcher {
    pub(crate) fn new(courier: Courier, options: WebhookOptions) -> Self {
        WebhookDispatcher {
            courier,
            options,
            running: false,
            again: false,
            state: RoundState::default(),
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
        let mut state = self.state;
        async move {
            let result = enqueue_round(&courier, &options, &mut state).await;
            (result, state)
        }
        .into_actor(self)
        .map(|(result, state), act, ctx| {
            act.running = false;
            match result {
                Ok(more) => {
                    act.state = state;
                    if more || act.again {
                        act.round(ctx)
                    }
                }
                Err(e) => {
                    // Start over: take the role again and read the cursor afresh.
                    act.state = RoundState::default();
                    tracing::warn!(error = %e, "webhook dispatch round failed; will retry")
                }
            }
        })
        .spawn(ctx);
    }
}

/// One round; whether there may be more to do at once.
async fn enqueue_round(
    courier: &Courier,
    options: &WebhookOptions,
    state: &mut RoundState,
) -> Result<bool, RuntimeError> {
    let store = courier.store();
    let role_ttl = options.poll * 5 + Duration::from_secs(5);
    let now = Instant::now();
    let ask = match state.role {
        Role::Unknown => true,
        Role::Held { renew_at: at } | Role::Elsewhere { ask_at: at } => now >= at,
    };
    if ask {
        *state = if courier.hold_role(ROLE, role_ttl).await? {
            RoundState {
                role: Role::Held {
                    renew_at: now + role_ttl / 3,
                },
                ..*state
            }
        } else {
            RoundState {
                role: Role::Elsewhere {
                    ask_at: now + options.poll,
                },
                looked: None,
            }
        };
    }
    if !matches!(state.role, Role::Held { .. }) {
        return Ok(false);
    }
    let from = store.webhook_cursor().await?;
    // What was looked at counts only while the cursor is where it was then.
    let looked = state.looked.take().filter(|l| l.cursor == from);
    let start = looked.map_or(from, |l| l.to);
    let events = store.read_events(&EventFilter::after(start).limit(PAGE)).await?.events;
    let to = events.last().map_or(start, |e| e.seq);
    if to == from {
        return Ok(false);
    }
    let more = events.len() as u32 == PAGE;
    let webhooks = if events.is_empty() {
        Vec::new()
    } else {
        store.list_webhooks(0, 0).await?
    };
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
    if deliveries.is_empty() {
        let since = looked.map_or_else(Instant::now, |l| l.since);
        if since.elapsed() < CHECKPOINT {
            state.looked = Some(Looked {
                cursor: from,
                to,
                since,
            });
            return Ok(more);
        }
    }
    let skipped = deliveries.iter().filter(|d| d.skipped).count();
    let count = deliveries.len() - skipped;
    if courier.enqueue_deliveries(from, to, deliveries).await? {
        metrics::counter!(metric::WEBHOOK_DELIVERIES).increment(count as u64);
        metrics::counter!(metric::WEBHOOK_DELIVERIES_SKIPPED).increment(skipped as u64);
        Ok(more)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use courier_core::Store;
    use courier_store_sqlite::{SqliteOptions, SqliteStore};

    use super::*;

    async fn node() -> (Courier, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(SqliteOptions::memory()).await.unwrap());
        let courier = Courier::builder().store(store.clone()).start().await.unwrap();
        (courier, store)
    }

    /// A node that finds the role held elsewhere does not ask again at its next
    /// round (every commit starts one): it waits a poll interval. It asked on
    /// every round before, a write each time on every node but the holder.
    #[actix_rt::test]
    async fn a_node_that_finds_the_role_taken_waits_a_poll_before_asking_again() {
        let (courier, store) = node().await;
        let options = WebhookOptions::default();
        assert!(
            store
                .try_acquire_singleton(ROLE, "other", Duration::from_secs(60))
                .await
                .unwrap()
        );
        let mut state = RoundState::default();
        assert!(!enqueue_round(&courier, &options, &mut state).await.unwrap());
        assert!(matches!(state.role, Role::Elsewhere { .. }), "{state:?}");

        // The role comes free; a round within the poll interval leaves it free.
        assert!(
            store
                .try_acquire_singleton(ROLE, "other", Duration::ZERO)
                .await
                .unwrap()
        );
        assert!(!enqueue_round(&courier, &options, &mut state).await.unwrap());
        assert!(
            store
                .try_acquire_singleton(ROLE, "third", Duration::ZERO)
                .await
                .unwrap(),
            "the round took the role it was told to wait for"
        );

        // After the interval it asks, and takes it.
        state.role = Role::Elsewhere { ask_at: Instant::now() };
        enqueue_round(&courier, &options, &mut state).await.unwrap();
        assert!(matches!(state.role, Role::Held { .. }), "{state:?}");
        assert!(
            !store
                .try_acquire_singleton(ROLE, "third", Duration::ZERO)
                .await
                .unwrap()
        );
    }

    /// The holder renews a third of the way through the lease, not every round,
    /// and a round that matches nothing moves no cursor until the checkpoint.
    #[actix_rt::test]
    async fn rounds_that_match_nothing_write_nothing_until_the_checkpoint() {
        let (courier, store) = node().await;
        let options = WebhookOptions::default();
        let mut state = RoundState::default();
        enqueue_round(&courier, &options, &mut state).await.unwrap();
        let Role::Held { renew_at } = state.role else {
            panic!("the role was not taken: {state:?}");
        };
        assert!(
            renew_at > Instant::now() + Duration::from_secs(2),
            "renewed a third of the way through"
        );

        // Executions of a function no webhook asks about (none is registered).
        for i in 0..3 {
            courier.dispatch("nobody", i).await.unwrap();
        }
        let head = store
            .read_events(&EventFilter::after(0).limit(1000))
            .await
            .unwrap()
            .events
            .last()
            .unwrap()
            .seq;
        enqueue_round(&courier, &options, &mut state).await.unwrap();
        assert_eq!(state.role, Role::Held { renew_at }, "the role was not asked for again");
        assert_eq!(
            store.webhook_cursor().await.unwrap(),
            0,
            "nothing matched: no cursor write yet"
        );
        let looked = state.looked.expect("the events looked at are remembered");
        assert_eq!((looked.cursor, looked.to), (0, head));

        // At the checkpoint the cursor moves over them.
        state.looked = Some(Looked {
            since: Instant::now() - CHECKPOINT,
            ..looked
        });
        enqueue_round(&courier, &options, &mut state).await.unwrap();
        assert_eq!(store.webhook_cursor().await.unwrap(), head);
        assert!(state.looked.is_none());
    }
}
