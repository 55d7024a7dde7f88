//! The `FanoutActor`: one per cluster notifier per node. It holds the node's one
//! subscription connection (a Redis pub/sub connection, or one non-pooled Postgres
//! connection doing LISTEN) and routes every message that arrives on it into the
//! node's [`Hub`], which hands it to each local subscriber's bounded mailbox.
//!
//! Who talks to it: the notifier's `subscribe` sends [`Activate`] (and waits until
//! the server has confirmed the channels); the hub's [`TopicListener`] sends
//! [`Sweep`] when a topic's last local subscriber has gone (channels are then
//! unsubscribed lazily, in batches); the notifier sends [`Shutdown`] when dropped;
//! anyone may ask [`SubscribedChannels`]. Messages from the server arrive as a stream
//! owned by the actor.
//!
//! Subscription changes go to the server in *rounds*: one at a time, each one
//! SUBSCRIBE/LISTEN for everything newly wanted and one UNSUBSCRIBE/UNLISTEN for
//! everything no longer wanted, so that the two never race on one channel, and a
//! burst of subscribers costs a few round trips, not one each.
//!
//! When the connection drops (the message stream ends, a ping goes unanswered, or a
//! round fails), the actor reconnects with capped exponential backoff (and jitter),
//! subscribes every channel the hub still has, and *then* calls
//! [`Hub::resync_all`], so every subscriber re-checks the store: a notice published
//! while this node was deaf is never a lost wake-up. While disconnected, `Activate`
//! is answered at once (the subscriber is registered locally; the resync after the
//! reconnect covers it), so `subscribe` neither fails nor hangs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use courier_core::{NotifierStats, Topic};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::oneshot;

use crate::channel::Channels;
use crate::cluster::ClusterOptions;
use crate::throttle::Throttle;
use courier_core::{Hub, TopicListener};

/// How many channels go into one SUBSCRIBE/LISTEN batch.
const CHUNK: usize = 1000;

/// One message that arrived on a subscription connection.
pub(crate) struct Incoming {
    pub(crate) channel: String,
    pub(crate) payload: Vec<u8>,
}

/// A live subscription connection.
#[async_trait]
pub(crate) trait Link: Send + Sync + 'static {
    /// Subscribes to `channels`; returns once the server has confirmed all of them.
    async fn subscribe(&self, channels: Vec<String>) -> Result<(), String>;
    /// Unsubscribes from `channels`.
    async fn unsubscribe(&self, channels: Vec<String>) -> Result<(), String>;
    /// A round trip, to notice a connection that died without closing.
    async fn ping(&self) -> Result<(), String>;
}

/// A freshly opened subscription connection: its link, and the messages that arrive
/// on it (the stream ends when the connection is lost).
pub(crate) struct Connection {
    pub(crate) link: Arc<dyn Link>,
    pub(crate) messages: BoxStream<'static, Incoming>,
}

/// Opens subscription connections, one at a time.
#[async_trait]
pub(crate) trait Connector: Send + Sync + 'static {
    async fn connect(&self) -> Result<Connection, String>;
}

/// Counters shared by a cluster notifier and its actor.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_failures: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) connected: AtomicBool,
    pub(crate) subscribed: AtomicUsize,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> NotifierStats {
        NotifierStats {
            published: self.published.load(Ordering::Relaxed),
            publish_failures: self.publish_failures.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            subscribed_channels: self.subscribed.load(Ordering::Relaxed),
        }
    }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// Makes sure the server delivers `topics`' channels to this node. `done` fires once
/// the server has confirmed them (at once if it already had, or if the connection
/// is down: the resync after the reconnect covers that case).
///
/// ```no_run
/// # #[actix_rt::main] async fn main() {
/// use courier_core::{Notifier, Topic};
/// use courier_notify::*;
/// let notifier = RedisNotifier::connect("redis://127.0.0.1:6379", "courier").await.unwrap();
/// // What `subscribe` does once the subscription is registered in the hub:
/// let (done, confirmed) = tokio::sync::oneshot::channel();
/// notifier.fanout().send(Activate { topics: vec![Topic::Work], done }).await.unwrap();
/// confirmed.await.unwrap();
/// # }
/// ```
#[derive(Message)]
#[rtype(result = "()")]
pub struct Activate {
    /// The topics a new local subscription listens to (already registered in the hub).
    pub topics: Vec<Topic>,
    /// Fired when the channels are active.
    pub done: oneshot::Sender<()>,
}

/// Some topic lost its last local subscriber: unsubscribe unused channels soon.
///
/// ```no_run
/// # #[actix_rt::main] async fn main() {
/// use courier_core::{Notifier, Topic};
/// use courier_notify::*;
/// let notifier = RedisNotifier::connect("redis://127.0.0.1:6379", "courier").await.unwrap();
/// let sub = notifier.subscribe(vec![Topic::Work]).await.unwrap();
/// drop(sub); // the hub's listener sends `Sweep` by itself; sending one is harmless
/// notifier.fanout().send(Sweep).await.unwrap();
/// # }
/// ```
#[derive(Message)]
#[rtype(result = "()")]
pub struct Sweep;

/// The channels the server has confirmed for this node, sorted.
///
/// ```no_run
/// # #[actix_rt::main] async fn main() {
/// use courier_core::{Notifier, Topic};
/// use courier_notify::*;
/// let notifier = RedisNotifier::connect("redis://127.0.0.1:6379", "courier").await.unwrap();
/// let _sub = notifier.subscribe(vec![Topic::Events]).await.unwrap();
/// let channels = notifier.fanout().send(SubscribedChannels).await.unwrap();
/// assert_eq!(channels, vec!["courier:events".to_string()]);
/// # }
/// ```
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct SubscribedChannels;

/// Closes the subscription connection and stops the actor (dropping the notifier
/// sends it).
///
/// ```no_run
/// # #[actix_rt::main] async fn main() {
/// use courier_core::{Notifier, Topic};
/// use courier_notify::*;
/// let notifier = RedisNotifier::connect("redis://127.0.0.1:6379", "courier").await.unwrap();
/// notifier.fanout().send(Shutdown).await.unwrap();
/// # }
/// ```
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// What the connection's message stream yields (internal).
enum Frame {
    /// A message arrived.
    Message(Incoming),
    /// Connection `generation` is gone.
    Closed(u64),
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

/// Bridges one subscription connection into the node's [`Hub`].
///
/// A `RedisNotifier` or `PostgresNotifier` starts one and hands out its address;
/// ask it which channels the server has confirmed:
///
/// ```no_run
/// # #[actix_rt::main] async fn main() {
/// use courier_core::{Notifier, Topic};
/// use courier_notify::{RedisNotifier, SubscribedChannels};
/// let notifier = RedisNotifier::connect("redis://127.0.0.1:6379", "courier").await.unwrap();
/// let _sub = notifier.subscribe(vec![Topic::Work]).await.unwrap();
/// let channels = notifier.fanout().send(SubscribedChannels).await.unwrap();
/// assert_eq!(channels, vec!["courier:work".to_string()]);
/// # }
/// ```
pub struct FanoutActor {
    backend: &'static str,
    connector: Arc<dyn Connector>,
    hub: Hub,
    channels: Channels,
    origin: Arc<str>,
    counters: Arc<Counters>,
    options: ClusterOptions,
    /// The live connection, if any.
    link: Option<Arc<dyn Link>>,
    /// Bumped whenever a connection comes or goes, so late results of an old one are ignored.
    generation: u64,
    stream: Option<SpawnHandle>,
    ever_connected: bool,
    attempt: u32,
    /// Confirmed by the server on the current connection.
    confirmed: HashSet<Topic>,
    /// Being subscribed by the round in flight.
    adding: HashSet<Topic>,
    /// To subscribe in the next round.
    wanted: HashSet<Topic>,
    round_in_flight: bool,
    /// Resync every subscriber once the next round (the post-reconnect one) succeeds.
    resync_due: bool,
    waiters: Vec<(Vec<Topic>, oneshot::Sender<()>)>,
    /// Topics whose last local subscriber left (filled by the hub's listener).
    gone: Arc<Mutex<Vec<Topic>>>,
    sweep_requested: Arc<AtomicBool>,
    sweep_scheduled: bool,
    pinging: bool,
    first_connect: Option<oneshot::Sender<Result<(), String>>>,
    owns_system: bool,
    malformed_log: Throttle,
    connect_log: Throttle,
}

/// The hub's listener: records topics that lost their last subscriber and asks the
/// actor for one sweep at a time.
struct SweepListener {
    fanout: Addr<FanoutActor>,
    gone: Arc<Mutex<Vec<Topic>>>,
    requested: Arc<AtomicBool>,
}

impl TopicListener for SweepListener {
    fn first_subscriber(&self, _topic: &Topic) {
        // Nothing to do here: the notifier's `subscribe` sends `Activate` and waits
        // for the server's confirmation, which a listener could not do.
    }

    fn last_unsubscribed(&self, topic: &Topic) {
        self.gone.lock().unwrap_or_else(|e| e.into_inner()).push(topic.clone());
        if !self.requested.swap(true, Ordering::AcqRel) {
            self.fanout.do_send(Sweep);
        }
    }
}

/// What a cluster notifier gives its actor.
pub(crate) struct FanoutParts {
    pub(crate) backend: &'static str,
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) hub: Hub,
    pub(crate) channels: Channels,
    pub(crate) origin: Arc<str>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) options: ClusterOptions,
}

impl FanoutActor {
    fn new(parts: FanoutParts, first_connect: oneshot::Sender<Result<(), String>>, owns_system: bool) -> Self {
        FanoutActor {
            backend: parts.backend,
            connector: parts.connector,
            hub: parts.hub,
            channels: parts.channels,
            origin: parts.origin,
            counters: parts.counters,
            options: parts.options,
            link: None,
            generation: 0,
            stream: None,
            ever_connected: false,
            attempt: 0,
            confirmed: HashSet::new(),
            adding: HashSet::new(),
            wanted: HashSet::new(),
            round_in_flight: false,
            resync_due: false,
            waiters: Vec::new(),
            gone: Arc::default(),
            sweep_requested: Arc::default(),
            sweep_scheduled: false,
            pinging: false,
            first_connect: Some(first_connect),
            owns_system,
            malformed_log: Throttle::new(Duration::from_secs(10)),
            connect_log: Throttle::new(Duration::from_secs(10)),
        }
    }

    /// Starts the actor (on the current actix arbiter, or on a thread with an actix
    /// system of its own when called outside one), installs its listener on the hub,
    /// and waits for its first connection. Fails with the reason if that first
    /// connection cannot be made: a node should not start deaf without saying so.
    pub(crate) async fn launch(parts: FanoutParts) -> Result<Addr<FanoutActor>, String> {
        let (first_tx, first_rx) = oneshot::channel();
        let addr = if actix_rt::Arbiter::try_current().is_some() {
            FanoutActor::new(parts, first_tx, false).start()
        } else {
            let (addr_tx, addr_rx) = oneshot::channel();
            std::thread::Builder::new()
                .name(format!("courier-fanout-{}", parts.backend))
                .spawn(move || {
                    let system = actix_rt::System::new();
                    system.block_on(async move {
                        let _ = addr_tx.send(FanoutActor::new(parts, first_tx, true).start());
                    });
                    // Runs until the actor stops its system (see `stopped`).
                    let _ = system.run();
                })
                .map_err(|e| format!("cannot start the fanout thread: {e}"))?;
            addr_rx
                .await
                .map_err(|_| "the fanout thread died while starting".to_string())?
        };
        match first_rx.await {
            Ok(Ok(())) => Ok(addr),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err("the fanout actor stopped before connecting".into()),
        }
    }

    fn listener(&self, ctx: &Context<Self>) -> SweepListener {
        SweepListener {
            fanout: ctx.address(),
            gone: self.gone.clone(),
            requested: self.sweep_requested.clone(),
        }
    }

    /// Opens a connection after the backoff for the current attempt.
    fn schedule_connect(&mut self, ctx: &mut Context<Self>) {
        let delay = backoff(self.attempt, self.options.backoff_min, self.options.backoff_max);
        ctx.run_later(delay, |act, ctx| act.connect(ctx));
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let connector = self.connector.clone();
        let limit = self.options.connect_timeout;
        let attempt = async move {
            match tokio::time::timeout(limit, connector.connect()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no connection within {limit:?}")),
            }
        };
        ctx.spawn(attempt.into_actor(self).map(|result, act, ctx| match result {
            Ok(connection) => act.connected(ctx, connection),
            Err(reason) => act.connect_failed(ctx, reason),
        }));
    }

    fn connected(&mut self, ctx: &mut Context<Self>, connection: Connection) {
        self.generation += 1;
        let generation = self.generation;
        self.link = Some(connection.link);
        let reconnected = self.ever_connected;
        if reconnected {
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                backend = self.backend,
                attempts = self.attempt + 1,
                "notifier subscription connection re-established; re-subscribing and resyncing"
            );
        }
        self.ever_connected = true;
        self.attempt = 0;
        self.counters.connected.store(true, Ordering::Relaxed);
        let messages = connection
            .messages
            .map(Frame::Message)
            .chain(futures::stream::once(async move { Frame::Closed(generation) }));
        self.stream = Some(ctx.add_stream(messages));
        // Everything the hub has now, then (after a reconnection) a resync once the
        // server has confirmed it. The first connection has nobody to resync: the
        // notifier is handed out only after it.
        self.gone.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.wanted = self.hub.topics().into_iter().collect();
        self.resync_due = reconnected;
        self.reconcile(ctx);
        if let Some(first) = self.first_connect.take() {
            let _ = first.send(Ok(()));
        }
    }

    fn connect_failed(&mut self, ctx: &mut Context<Self>, reason: String) {
        if let Some(first) = self.first_connect.take() {
            let _ = first.send(Err(reason));
            ctx.stop();
            return;
        }
        self.attempt = self.attempt.saturating_add(1);
        if let Some(held_back) = self.connect_log.allow() {
            tracing::warn!(
                backend = self.backend,
                attempt = self.attempt,
                held_back,
                %reason,
                "notifier cannot reconnect its subscription connection; retrying"
            );
        }
        self.schedule_connect(ctx);
    }

    /// The connection is gone: forget what the server had, let every waiter go (the
    /// resync after the reconnect covers them) and reconnect.
    fn lost(&mut self, ctx: &mut Context<Self>, reason: &str) {
        if self.link.take().is_none() {
            return;
        }
        self.generation += 1;
        if let Some(stream) = self.stream.take() {
            ctx.cancel_future(stream);
        }
        self.confirmed.clear();
        self.adding.clear();
        self.wanted.clear();
        self.round_in_flight = false;
        self.pinging = false;
        self.counters.connected.store(false, Ordering::Relaxed);
        self.counters.subscribed.store(0, Ordering::Relaxed);
        self.release_all_waiters();
        tracing::warn!(backend = self.backend, %reason, "notifier subscription connection lost; reconnecting");
        self.schedule_connect(ctx);
    }

    /// Starts the next round of subscription changes, unless one is in flight (it
    /// calls this again when it ends) or there is nothing to do.
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let Some(link) = self.link.clone() else { return };
        if self.round_in_flight {
            return;
        }
        let remove: Vec<Topic> = {
            let mut gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
            gone.drain(..)
                .filter(|t| self.confirmed.contains(t) && !self.hub.has_subscribers(t))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect()
        };
        for topic in &remove {
            // No longer confirmed from now on: a subscriber arriving during this
            // round waits for the next one, which subscribes again after this
            // unsubscribe, never before it.
            self.confirmed.remove(topic);
        }
        let add: Vec<Topic> = self.wanted.drain().filter(|t| !self.confirmed.contains(t)).collect();
        let resync = self.resync_due;
        self.resync_due = false;
        if add.is_empty() && remove.is_empty() {
            self.publish_gauge();
            self.release_all_waiters();
            if resync {
                self.hub.resync_all();
            }
            return;
        }
        self.round_in_flight = true;
        self.adding = add.iter().cloned().collect();
        self.publish_gauge();
        let generation = self.generation;
        let limit = self.options.operation_timeout;
        let add_names: Vec<String> = add.iter().map(|t| self.channels.name(t)).collect();
        let remove_names: Vec<String> = remove.iter().map(|t| self.channels.name(t)).collect();
        let round = async move {
            // Both go out at once (pipelined on the one connection); they name
            // disjoint channels, so their order does not matter. The time limit is
            // per batch, so re-subscribing many channels after a reconnect is not
            // mistaken for a dead connection.
            let unsubscribe = async {
                for chunk in remove_names.chunks(CHUNK) {
                    bounded(limit, link.unsubscribe(chunk.to_vec())).await?;
                }
                Ok::<(), String>(())
            };
            let subscribe = async {
                for chunk in add_names.chunks(CHUNK) {
                    bounded(limit, link.subscribe(chunk.to_vec())).await?;
                }
                Ok::<(), String>(())
            };
            futures::try_join!(unsubscribe, subscribe).map(|_| ())
        };
        ctx.spawn(round.into_actor(self).map(move |result, act, ctx| {
            if act.generation != generation {
                return; // that connection is gone, and its state with it
            }
            act.round_in_flight = false;
            match result {
                Ok(()) => {
                    let added = std::mem::take(&mut act.adding);
                    act.confirmed.extend(added);
                    act.publish_gauge();
                    act.release_satisfied_waiters();
                    if resync {
                        act.hub.resync_all();
                    }
                    act.reconcile(ctx);
                }
                Err(reason) => {
                    act.resync_due = true;
                    act.lost(ctx, &format!("subscription change failed: {reason}"));
                }
            }
        }));
    }

    fn publish_gauge(&self) {
        self.counters.subscribed.store(self.confirmed.len(), Ordering::Relaxed);
    }

    fn release_satisfied_waiters(&mut self) {
        let confirmed = &self.confirmed;
        let mut kept = Vec::with_capacity(self.waiters.len());
        for (topics, done) in self.waiters.drain(..) {
            if done.is_closed() {
                continue;
            }
            if topics.iter().all(|t| confirmed.contains(t)) {
                let _ = done.send(());
            } else {
                kept.push((topics, done));
            }
        }
        self.waiters = kept;
    }

    fn release_all_waiters(&mut self) {
        for (_, done) in self.waiters.drain(..) {
            let _ = done.send(());
        }
    }

    fn ping(&mut self, ctx: &mut Context<Self>) {
        let Some(link) = self.link.clone() else { return };
        if self.pinging || self.round_in_flight {
            return;
        }
        self.pinging = true;
        let generation = self.generation;
        let limit = self.options.operation_timeout;
        let ping = async move { bounded(limit, link.ping()).await };
        ctx.spawn(ping.into_actor(self).map(move |result, act, ctx| {
            if act.generation != generation {
                return;
            }
            act.pinging = false;
            if let Err(reason) = result {
                act.lost(ctx, &reason);
            }
        }));
    }

    fn arrived(&mut self, message: Incoming) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        match self.channels.decode(&message.channel, &message.payload) {
            Ok(decoded) => {
                if decoded.origin.as_deref() != Some(&*self.origin) {
                    self.hub.deliver(&[decoded.notice]);
                }
            }
            Err(malformed) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                if let Some(held_back) = self.malformed_log.allow() {
                    tracing::warn!(
                        backend = self.backend,
                        held_back,
                        error = %malformed,
                        payload = %String::from_utf8_lossy(&message.payload[..message.payload.len().min(200)]),
                        "ignoring a malformed notifier message"
                    );
                }
            }
        }
    }
}

/// `operation`'s result, or an error if the server took longer than `limit`.
async fn bounded(limit: Duration, operation: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    match tokio::time::timeout(limit, operation).await {
        Ok(result) => result,
        Err(_) => Err(format!("the server did not answer within {limit:?}")),
    }
}

/// The delay before connection attempt `attempt` (0 = at once): doubling from `min`,
/// capped at `max`, with ±20% jitter so that a cluster's nodes do not reconnect in step.
fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let doubled = min.saturating_mul(1u32 << (attempt - 1).min(20));
    let capped = doubled.min(max);
    capped.mul_f64(rand::random_range(0.8..1.2))
}

impl Actor for FanoutActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Subscribers send `Activate` with `send` and wait on it: room for bursts.
        ctx.set_mailbox_capacity(4096);
        let listener = self.listener(ctx);
        if !self.hub.set_listener(Arc::new(listener)) {
            tracing::warn!(
                backend = self.backend,
                "the hub already had a topic listener; channels will not be unsubscribed"
            );
        }
        let every = self.options.ping_interval.max(Duration::from_millis(100));
        ctx.run_interval(every, |act, ctx| act.ping(ctx));
        self.connect(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.link = None;
        self.counters.connected.store(false, Ordering::Relaxed);
        self.counters.subscribed.store(0, Ordering::Relaxed);
        self.release_all_waiters();
        if self.owns_system {
            System::current().stop();
        }
    }
}

impl StreamHandler<Frame> for FanoutActor {
    /// Delivers a message into the hub, or notices that the connection closed.
    fn handle(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        match frame {
            Frame::Message(message) => self.arrived(message),
            Frame::Closed(generation) if generation == self.generation => {
                self.lost(ctx, "the server closed the subscription connection")
            }
            Frame::Closed(_) => {}
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // Not the end of the actor (the default): `Frame::Closed` handled it.
    }
}

impl Handler<Activate> for FanoutActor {
    type Result = ();

    /// Queues the topics not yet confirmed for the next round, and parks `done` until
    /// they are; answers at once if they already are or if the connection is down.
    fn handle(&mut self, msg: Activate, ctx: &mut Context<Self>) {
        if self.link.is_none() || msg.topics.iter().all(|t| self.confirmed.contains(t)) {
            let _ = msg.done.send(());
            return;
        }
        for topic in &msg.topics {
            if !self.confirmed.contains(topic) && !self.adding.contains(topic) {
                self.wanted.insert(topic.clone());
            }
        }
        self.waiters.push((msg.topics, msg.done));
        self.reconcile(ctx);
    }
}

impl Handler<Sweep> for FanoutActor {
    type Result = ();

    /// Schedules one unsubscribe round after the configured delay (batching every
    /// topic that goes quiet meanwhile).
    fn handle(&mut self, _: Sweep, ctx: &mut Context<Self>) {
        self.sweep_requested.store(false, Ordering::Release);
        if self.sweep_scheduled {
            return;
        }
        self.sweep_scheduled = true;
        ctx.run_later(self.options.unsubscribe_delay, |act, ctx| {
            act.sweep_scheduled = false;
            act.reconcile(ctx);
        });
    }
}

impl Handler<SubscribedChannels> for FanoutActor {
    type Result = MessageResult<SubscribedChannels>;

    /// Lists the confirmed channels.
    fn handle(&mut self, _: SubscribedChannels, _ctx: &mut Context<Self>) -> Self::Result {
        let mut names: Vec<String> = self.confirmed.iter().map(|t| self.channels.name(t)).collect();
        names.sort();
        MessageResult(names)
    }
}

impl Handler<Shutdown> for FanoutActor {
    type Result = ();

    /// Stops the actor, which drops (closes) the connection.
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        assert_eq!(backoff(0, min, max), Duration::ZERO);
        let first = backoff(1, min, max);
        assert!(first >= Duration::from_millis(80) && first <= Duration::from_millis(120));
        let third = backoff(3, min, max);
        assert!(third >= Duration::from_millis(320) && third <= Duration::from_millis(480));
        assert!(backoff(40, min, max) <= Duration::from_secs(6));
    }
}
