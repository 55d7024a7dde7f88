//! The Redis pub/sub input (`ingest.channel`): seed 001's channel, each
//! message's payload being one JSON message.
//!
//! **Best effort, by nature of pub/sub**: Redis hands a published message to
//! the clients subscribed at that moment and keeps nothing. A message
//! published while no node is subscribed (all stopped, or reconnecting after
//! Redis or the network went away) is gone, and nobody is told. Senders that
//! need every message delivered write to the stream instead (`ingest.stream`),
//! or use TCP or HTTP, which answer once the execution is committed.
//!
//! Each message is checked, then waits for room in the intake (reading
//! stops meanwhile) and is committed as an execution of the delivery
//! orchestrator; a message carrying an `id` is deduplicated by it (two nodes
//! subscribed to the same channel both receive every message: give messages an
//! `id` to have them delivered once). An invalid message is counted
//! (`courier_ingest_refused_total{input="pubsub"}`) and logged with the
//! reason. After an error the subscription is made again, with backoff from
//! 100 ms to 5 s; with Sentinel, on the master the sentinels name, and at once
//! when they announce that the master moved. On a Redis Cluster the input keeps
//! classic `SUBSCRIBE` on the first seed node that answers (a `PUBLISH` on any
//! node of a cluster reaches every node's subscribers), and moves to the next
//! seed that answers when that node goes away.

use std::time::Duration;

use courier_core::metric;
use courier_notify::{MasterSwitches, RedisConnector};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::{Backoff, is_stopped, node_id, pause, stopped};
use crate::intake::{Intake, Origin};

/// How often the subscription connection is checked with a PING.
const PING_EVERY: Duration = Duration::from_secs(15);
/// How long a PING may take before the connection is given up.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Subscribes to `channel` and feeds the intake until `stop` turns true.
pub(crate) fn start(
    intake: Intake,
    connector: RedisConnector,
    channel: String,
    max_message_bytes: usize,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let name = format!(
        "courier-ingest-sub-{}-{}-{:08x}",
        node_id(&intake),
        std::process::id(),
        rand::random::<u32>()
    );
    let input = PubSubInput {
        intake,
        connector,
        channel,
        max_message_bytes: max_message_bytes.max(64),
        name,
    };
    tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        let mut backoff = Backoff::new();
        let mut switches = input.connector.master_switches(&format!("{}-sentinel", input.name));
        while !is_stopped(&stop) {
            match input.session(&mut tasks, &mut backoff, &mut switches, &mut stop).await {
                Ok(()) => {}
                Err(error) => {
                    metrics::counter!(metric::INGEST_ERRORS, "input" => "pubsub").increment(1);
                    let wait = backoff.next_wait();
                    tracing::warn!(channel = %input.channel, %error, retry_in = ?wait, "ingest pubsub: Redis error; subscribing again");
                    pause(wait, &mut stop).await;
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!(channel = %input.channel, "ingest: Redis pub/sub input stopped");
    })
}

struct PubSubInput {
    intake: Intake,
    connector: RedisConnector,
    channel: String,
    max_message_bytes: usize,
    name: String,
}

impl PubSubInput {
    /// One subscription, until it fails (`Err`), or the master moves or the
    /// input is stopped (`Ok`).
    async fn session(
        &self,
        tasks: &mut JoinSet<()>,
        backoff: &mut Backoff,
        switches: &mut MasterSwitches,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        // A move before this dial is one the dial follows.
        switches.switched();
        let mut pubsub = self.connector.pubsub(&self.name).await?;
        pubsub
            .subscribe(&self.channel)
            .await
            .map_err(|e| format!("SUBSCRIBE {}: {e}", self.channel))?;
        let (mut sink, mut messages) = pubsub.split();
        backoff.reset();
        tracing::info!(channel = %self.channel, name = %self.name, "ingest: Redis pub/sub input subscribed");
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => self.take(message.get_payload_bytes(), tasks).await,
                    None => return Err("the subscription connection closed".into()),
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(format!("PING: {e}")),
                        Err(_) => return Err(format!("PING: no answer within {PING_TIMEOUT:?}")),
                    }
                }
                to = switches.next() => {
                    tracing::info!(channel = %self.channel, master = %to, "ingest pubsub: the Redis master moved; subscribing on the new one");
                    return Ok(());
                }
                _ = stopped(stop) => return Ok(()),
            }
            while tasks.try_join_next().is_some() {}
        }
    }

    /// Checks one payload, waits for room, and commits it on a task of its own.
    async fn take(&self, payload: &[u8], tasks: &mut JoinSet<()>) {
        let origin = Origin::PubSub;
        if payload.len() > self.max_message_bytes {
            self.intake.refused_by_input(&origin, "too_large");
            tracing::warn!(channel = %self.channel, bytes = payload.len(), limit = self.max_message_bytes, "ingest pubsub: message refused: too large");
            return;
        }
        let value: serde_json::Value = match serde_json::from_slice(payload) {
            Ok(value) => value,
            Err(e) => {
                self.intake.refused_by_input(&origin, "invalid");
                tracing::warn!(channel = %self.channel, error = %e, "ingest pubsub: message refused: not JSON");
                return;
            }
        };
        let message = match self.intake.check(value) {
            Ok(message) => message,
            Err(invalid) => {
                self.intake.refused_by_input(&origin, "invalid");
                tracing::warn!(channel = %self.channel, field = %invalid.field, reason = %invalid.detail, "ingest pubsub: message refused: invalid");
                return;
            }
        };
        let permit = self.intake.room().await;
        let intake = self.intake.clone();
        tasks.spawn(async move {
            // A refusal (the store, a stopping node) is counted and logged by the intake.
            let _ = intake.commit(message, origin, permit).await;
        });
    }
}
