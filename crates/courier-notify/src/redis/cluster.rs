//! Redis Cluster for the notifier: sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`,
//! Redis 7), so that a notice travels only within the shard owning its
//! channel's slot instead of being broadcast to every node of the cluster.
//!
//! - [`key_slot`]: a channel's slot, as Redis computes it (CRC16/XMODEM of the
//!   name, or of its `{hashtag}`, mod 16384).
//! - [`SlotMap`]: which master owns which slots, read from `CLUSTER SLOTS` on
//!   the first node that answers (the ones last known, then the seeds).
//! - Every connection to a master checks with `ROLE` that it is one: a
//!   replica takes `SSUBSCRIBE` for its master's slots without a word.
//! - [`ClusterPublisher`]: one multiplexed connection per master; a publish
//!   call's `SPUBLISH`es are grouped by master and pipelined, the groups sent
//!   concurrently. After an error (`MOVED`, a master gone) the slot map is read
//!   again and the call retried once.
//! - [`ClusterSubscriptionConnector`]: one subscription "connection" for the
//!   [`FanoutActor`](crate::FanoutActor), made of one RESP3 connection per
//!   master owning a subscribed channel, opened as channels arrive. Losing any
//!   of them, a refused `SSUBSCRIBE` (`MOVED`: the map is stale), or an
//!   `sunsubscribe` the server sends by itself (the slot migrated, or the master
//!   was demoted by a failover) ends the whole subscription: the actor then
//!   reconnects (reading the slot map afresh), re-subscribes everything and
//!   resyncs every subscriber, exactly as after any reconnection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::channel::mpsc;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::config::RedisNode;
use super::connect::{Dialer, REDIAL_EVERY, Reply, after_handshake};
use crate::cluster::Publisher;
use crate::fanout::{Connection, Connector, Incoming, Link};

/// How many hash slots a Redis Cluster has.
pub const SLOTS: u16 = 16384;

/// The hash slot of `key` (a channel name or a key), as Redis Cluster computes
/// it: CRC16/XMODEM of the key mod 16384, or of the part between the first `{`
/// and the next `}` if that part is not empty (a hashtag, which puts keys
/// together on one slot).
///
/// ```
/// use courier_notify::key_slot;
/// assert_eq!(key_slot(b"foo"), 12182);
/// assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
/// assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
/// ```
pub fn key_slot(key: &[u8]) -> u16 {
    crc16_xmodem(hashtag(key)) % SLOTS
}

/// The part of `key` that is hashed: its hashtag, if it has a non-empty one.
fn hashtag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(close) = key[open + 1..].iter().position(|&b| b == b'}')
        && close > 0
    {
        return &key[open + 1..open + 1 + close];
    }
    key
}

/// CRC16 with the XMODEM parameters (polynomial 0x1021, initial value 0, no
/// reflection), the checksum Redis Cluster hashes keys with.
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Which master serves which slots, as one node said in `CLUSTER SLOTS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SlotMap {
    /// `(first slot, last slot, master)`, sorted by first slot.
    ranges: Vec<(u16, u16, RedisNode)>,
}

impl SlotMap {
    /// Reads the map from the first node that answers among `known` (the masters
    /// of the last map, which see a failover first) and then the seeds.
    pub(crate) async fn read(dialer: &Dialer, name: &str, known: &[RedisNode]) -> Result<Self, String> {
        let mut nodes: Vec<RedisNode> = known.to_vec();
        for seed in &dialer.config().nodes {
            if !nodes.contains(seed) {
                nodes.push(seed.clone());
            }
        }
        let question = redis::cmd("CLUSTER").arg("SLOTS").clone();
        let (reply, from) = dialer.ask_first(&nodes, name, "CLUSTER", question).await?;
        let map = SlotMap::parse(&reply, &from).map_err(|e| format!("{from}: CLUSTER SLOTS: {e}"))?;
        tracing::debug!(%from, masters = map.masters().len(), "Redis Cluster slot map read");
        Ok(map)
    }

    /// Reads a `CLUSTER SLOTS` answer given by `from` (a master's empty or `?`
    /// host means `from`'s own).
    fn parse(reply: &Reply, from: &RedisNode) -> Result<Self, String> {
        let Reply::Array(Some(ranges)) = reply else {
            return Err(format!("not a list of slot ranges: {reply:?}"));
        };
        let mut map = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Reply::Array(Some(items)) = range else {
                return Err(format!("not a slot range: {range:?}"));
            };
            let (Some(Reply::Integer(first)), Some(Reply::Integer(last)), Some(Reply::Array(Some(master)))) =
                (items.first(), items.get(1), items.get(2))
            else {
                return Err(format!("a slot range without its master: {range:?}"));
            };
            let slot = |n: i64| u16::try_from(n).ok().filter(|s| *s < SLOTS);
            let (Some(first), Some(last)) = (slot(*first), slot(*last)) else {
                return Err(format!("slots out of range: {first}-{last}"));
            };
            let host = match master.first() {
                Some(Reply::Bulk(Some(host))) => String::from_utf8_lossy(host).into_owned(),
                other => return Err(format!("a master without a host: {other:?}")),
            };
            let port = match master.get(1) {
                Some(Reply::Integer(port)) => u16::try_from(*port).map_err(|_| format!("bad port {port}"))?,
                other => return Err(format!("a master without a port: {other:?}")),
            };
            let host = if host.is_empty() || host == "?" {
                from.host.clone()
            } else {
                host
            };
            map.push((first, last, RedisNode { host, port }));
        }
        if map.is_empty() {
            return Err("no slot is served (is the cluster set up?)".into());
        }
        map.sort_by_key(|(first, _, _)| *first);
        Ok(SlotMap { ranges: map })
    }

    /// The master serving `slot`, if any does.
    pub(crate) fn master_for(&self, slot: u16) -> Option<&RedisNode> {
        let i = self.ranges.partition_point(|(first, _, _)| *first <= slot);
        let (_, last, master) = self.ranges.get(i.checked_sub(1)?)?;
        (slot <= *last).then_some(master)
    }

    /// The master serving `channel`'s slot, or an error naming the channel.
    fn master_of(&self, channel: &str) -> Result<&RedisNode, String> {
        let slot = key_slot(channel.as_bytes());
        self.master_for(slot)
            .ok_or_else(|| format!("no master serves slot {slot} (of {channel}): the cluster is down?"))
    }

    /// Every master, once each.
    pub(crate) fn masters(&self) -> Vec<RedisNode> {
        let mut masters: Vec<RedisNode> = Vec::new();
        for (_, _, master) in &self.ranges {
            if !masters.contains(master) {
                masters.push(master.clone());
            }
        }
        masters
    }

    /// `channels` grouped by the master that serves their slot.
    fn group<'a>(
        &self,
        channels: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<RedisNode, Vec<String>>, String> {
        let mut groups: HashMap<RedisNode, Vec<String>> = HashMap::new();
        for channel in channels {
            groups
                .entry(self.master_of(channel)?.clone())
                .or_default()
                .push(channel.to_string());
        }
        Ok(groups)
    }
}

/// A multiplexed connection to `node`, which must be a master (`ROLE`), named
/// `name`, whose driver runs on a task of its own (aborted through the
/// returned handle).
async fn open_multiplexed(
    dialer: &Dialer,
    node: &RedisNode,
    name: &str,
    config: redis::AsyncConnectionConfig,
    protocol: ProtocolVersion,
) -> Result<(MultiplexedConnection, AbortHandle), String> {
    let io = dialer.dial_cluster_master(node, name).await?;
    let info = after_handshake().set_protocol(protocol);
    let (connection, driver) = MultiplexedConnection::new_with_config(&info, io, config)
        .await
        .map_err(|e| format!("{node}: {e}"))?;
    Ok((connection, tokio::spawn(driver).abort_handle()))
}

// ---------------------------------------------------------------------------
// Publishing side
// ---------------------------------------------------------------------------

/// Publishes with `SPUBLISH` to the master owning each channel's slot: one
/// multiplexed connection per master, named `name`, each publish call one
/// pipeline per master, all sent at once.
pub(crate) struct ClusterPublisher {
    dialer: Arc<Dialer>,
    name: String,
    response_timeout: Duration,
    state: tokio::sync::Mutex<PublisherState>,
}

#[derive(Default)]
struct PublisherState {
    slots: Option<SlotMap>,
    /// Masters last known (kept after the map is dropped, to ask them first).
    known: Vec<RedisNode>,
    connections: HashMap<RedisNode, (MultiplexedConnection, AbortHandle)>,
    retry_at: Option<Instant>,
    last_error: String,
}

impl Drop for PublisherState {
    fn drop(&mut self) {
        for (_, driver) in self.connections.values() {
            driver.abort();
        }
    }
}

impl ClusterPublisher {
    pub(crate) fn new(dialer: Arc<Dialer>, name: String, response_timeout: Duration) -> Self {
        ClusterPublisher {
            dialer,
            name,
            response_timeout,
            state: tokio::sync::Mutex::new(PublisherState::default()),
        }
    }

    /// Reads the slot map (if none is held), so that a cluster that cannot be
    /// reached is an error when the notifier is made.
    pub(crate) async fn ready(&self) -> Result<(), String> {
        let mut state = self.state.lock().await;
        self.slots(&mut state).await.map(|_| ())
    }

    async fn slots(&self, state: &mut PublisherState) -> Result<SlotMap, String> {
        if let Some(slots) = &state.slots {
            return Ok(slots.clone());
        }
        if state.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(format!("Redis Cluster unreachable: {}", state.last_error));
        }
        match SlotMap::read(&self.dialer, &self.name, &state.known).await {
            Ok(slots) => {
                state.known = slots.masters();
                state.slots = Some(slots.clone());
                state.retry_at = None;
                Ok(slots)
            }
            Err(reason) => {
                state.retry_at = Some(Instant::now() + REDIAL_EVERY);
                state.last_error = reason.clone();
                Err(reason)
            }
        }
    }

    /// The messages grouped by master, each group with its master's connection.
    async fn route(
        &self,
        messages: &[(String, String)],
    ) -> Result<Vec<(RedisNode, MultiplexedConnection, Vec<usize>)>, String> {
        let mut state = self.state.lock().await;
        let slots = self.slots(&mut state).await?;
        let mut groups: HashMap<RedisNode, Vec<usize>> = HashMap::new();
        for (i, (channel, _)) in messages.iter().enumerate() {
            groups.entry(slots.master_of(channel)?.clone()).or_default().push(i);
        }
        let mut routed = Vec::with_capacity(groups.len());
        for (node, indexes) in groups {
            if !state.connections.contains_key(&node) {
                let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(self.response_timeout));
                let opened = open_multiplexed(&self.dialer, &node, &self.name, config, ProtocolVersion::RESP2).await?;
                state.connections.insert(node.clone(), opened);
            }
            let connection = state.connections[&node].0.clone();
            routed.push((node, connection, indexes));
        }
        Ok(routed)
    }

    /// Drops the slot map and every connection: the next call reads the map
    /// again and dials the masters it names. With `failed`, not before a second
    /// has passed: while a master is down (a failover under way) each publish
    /// then fails at once instead of dialling it again.
    async fn forget(&self, failed: Option<&str>) {
        let mut state = self.state.lock().await;
        state.slots = None;
        for (_, (_, driver)) in state.connections.drain() {
            driver.abort();
        }
        if let Some(reason) = failed {
            state.retry_at = Some(Instant::now() + REDIAL_EVERY);
            state.last_error = reason.to_string();
        }
    }

    async fn attempt(&self, messages: &[(String, String)]) -> Result<(), String> {
        let routed = self.route(messages).await?;
        let sends = routed.into_iter().map(|(node, mut connection, indexes)| async move {
            let mut pipe = redis::pipe();
            for i in indexes {
                let (channel, payload) = &messages[i];
                pipe.cmd("SPUBLISH").arg(channel).arg(payload).ignore();
            }
            pipe.query_async::<()>(&mut connection)
                .await
                .map_err(|e| format!("{node}: SPUBLISH: {e}"))
        });
        futures::future::try_join_all(sends).await.map(|_| ())
    }
}

#[async_trait]
impl Publisher for ClusterPublisher {
    async fn publish(&self, messages: Vec<(String, String)>) -> Result<(), String> {
        match self.attempt(&messages).await {
            Ok(()) => Ok(()),
            Err(first) => {
                // A stale map (MOVED after a failover or a resharding) or a
                // master gone: read the map again and try once more.
                tracing::debug!(error = %first, name = %self.name, "Redis Cluster publish failed; reading the slot map again");
                self.forget(None).await;
                let again = self.attempt(&messages).await;
                if let Err(reason) = &again {
                    self.forget(Some(reason)).await;
                }
                again
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Subscription side
// ---------------------------------------------------------------------------

/// Opens the fanout actor's subscription over a Redis Cluster: reads the slot
/// map; the returned [`Connection`]'s link dials the masters as channels are
/// subscribed on them.
pub(crate) struct ClusterSubscriptionConnector {
    pub(crate) dialer: Arc<Dialer>,
    pub(crate) name: String,
    pub(crate) operation_timeout: Duration,
    /// The masters of the last map read, asked first for the next one.
    pub(crate) known: Mutex<Vec<RedisNode>>,
}

#[async_trait]
impl Connector for ClusterSubscriptionConnector {
    async fn connect(&self) -> Result<Connection, String> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let slots = SlotMap::read(&self.dialer, &self.name, &known).await?;
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = slots.masters();
        let (sender, messages) = mpsc::unbounded();
        let (broken, mut ended) = watch::channel(None::<String>);
        let shared = Arc::new(Shared {
            sender,
            broken,
            leaving: Mutex::new(HashSet::new()),
        });
        let link = Arc::new(ShardedLink {
            dialer: self.dialer.clone(),
            name: self.name.clone(),
            operation_timeout: self.operation_timeout,
            slots,
            shared,
            shards: tokio::sync::Mutex::new(HashMap::new()),
        });
        let name = self.name.clone();
        let end = async move {
            if let Ok(reason) = ended.wait_for(Option::is_some).await {
                tracing::info!(name = %name, reason = ?*reason, "Redis Cluster subscription ends; it will be made again");
            }
        };
        Ok(Connection {
            link,
            messages: messages.take_until(end).boxed(),
        })
    }
}

/// What the push handlers of every shard connection share with the link.
struct Shared {
    sender: mpsc::UnboundedSender<Incoming>,
    /// Set (once) to why the subscription ended; the message stream ends then.
    broken: watch::Sender<Option<String>>,
    /// Channels this link is unsubscribing: an `sunsubscribe` for one of them
    /// is the confirmation; for any other, the server's own doing.
    leaving: Mutex<HashSet<String>>,
}

impl Shared {
    fn fail(&self, reason: String) {
        self.broken.send_if_modified(|broken| {
            if broken.is_some() {
                return false;
            }
            *broken = Some(reason);
            true
        });
    }

    fn failed(&self) -> Option<String> {
        self.broken.borrow().clone()
    }

    /// Handles one push from the connection to `node`.
    fn push(&self, node: &RedisNode, push: PushInfo) {
        let text = |value: Option<&Value>| match value {
            Some(Value::BulkString(bytes)) => Some(bytes.clone()),
            Some(Value::SimpleString(text)) => Some(text.clone().into_bytes()),
            _ => None,
        };
        match push.kind {
            PushKind::SMessage => {
                if let (Some(channel), Some(payload)) = (text(push.data.first()), text(push.data.get(1))) {
                    let _ = self.sender.unbounded_send(Incoming {
                        channel: String::from_utf8_lossy(&channel).into_owned(),
                        payload,
                    });
                }
            }
            PushKind::SUnsubscribe => {
                let channel = text(push.data.first())
                    .map(|c| String::from_utf8_lossy(&c).into_owned())
                    .unwrap_or_default();
                let asked = self.leaving.lock().unwrap_or_else(|p| p.into_inner()).remove(&channel);
                if !asked {
                    self.fail(format!(
                        "{node} unsubscribed {channel} by itself (its slot moved, or a failover demoted it)"
                    ));
                }
            }
            PushKind::Disconnection => self.fail(format!("the connection to {node} was lost")),
            _ => {}
        }
    }
}

/// One subscription connection per master, all ending together.
struct ShardedLink {
    dialer: Arc<Dialer>,
    name: String,
    operation_timeout: Duration,
    slots: SlotMap,
    shared: Arc<Shared>,
    shards: tokio::sync::Mutex<HashMap<RedisNode, (MultiplexedConnection, AbortHandle)>>,
}

impl Drop for ShardedLink {
    fn drop(&mut self) {
        for (_, driver) in self.shards.get_mut().values() {
            driver.abort();
        }
    }
}

impl ShardedLink {
    /// The subscription connection to `node`, dialled (RESP3, its pushes going
    /// to [`Shared::push`]) if there is none yet.
    async fn shard(&self, node: &RedisNode) -> Result<MultiplexedConnection, String> {
        let mut shards = self.shards.lock().await;
        if let Some((connection, _)) = shards.get(node) {
            return Ok(connection.clone());
        }
        let shared = self.shared.clone();
        let from = node.clone();
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(self.operation_timeout))
            .set_push_sender(move |push: PushInfo| {
                shared.push(&from, push);
                Ok::<(), ()>(())
            });
        let opened = open_multiplexed(&self.dialer, node, &self.name, config, ProtocolVersion::RESP3).await?;
        tracing::debug!(%node, name = %self.name, "Redis Cluster subscription connection open");
        let connection = opened.0.clone();
        shards.insert(node.clone(), opened);
        Ok(connection)
    }

    /// Sends `command` once per channel to each channel's master (one pipeline
    /// each, all at once); each is answered by one confirmation. Any failure
    /// ends the whole subscription.
    async fn each_master(&self, command: &'static str, channels: Vec<String>) -> Result<(), String> {
        if let Some(reason) = self.shared.failed() {
            return Err(reason);
        }
        let groups = self.slots.group(channels.iter().map(String::as_str))?;
        let sends = groups.into_iter().map(|(node, channels)| async move {
            let mut connection = self.shard(&node).await?;
            let mut pipe = redis::pipe();
            for channel in &channels {
                pipe.cmd(command).arg(channel);
            }
            let replies = connection
                .req_packed_commands(&pipe, 0, channels.len())
                .await
                .map_err(|e| format!("{node}: {command}: {e}"))?;
            // A refusal (MOVED: the map is stale) comes back as a value.
            match replies.into_iter().find_map(|reply| match reply {
                Value::ServerError(error) => Some(error),
                _ => None,
            }) {
                Some(error) => Err(format!("{node}: {command}: {error}")),
                None => Ok(()),
            }
        });
        let result = futures::future::try_join_all(sends).await.map(|_| ());
        if let Err(reason) = &result {
            self.shared.fail(reason.clone());
        }
        result
    }
}

#[async_trait]
impl Link for ShardedLink {
    async fn subscribe(&self, channels: Vec<String>) -> Result<(), String> {
        self.each_master("SSUBSCRIBE", channels).await
    }

    async fn unsubscribe(&self, channels: Vec<String>) -> Result<(), String> {
        self.shared
            .leaving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(channels.iter().cloned());
        self.each_master("SUNSUBSCRIBE", channels).await
    }

    async fn ping(&self) -> Result<(), String> {
        if let Some(reason) = self.shared.failed() {
            return Err(reason);
        }
        let shards: Vec<(RedisNode, MultiplexedConnection)> = self
            .shards
            .lock()
            .await
            .iter()
            .map(|(node, (connection, _))| (node.clone(), connection.clone()))
            .collect();
        let pings = shards.into_iter().map(|(node, mut connection)| async move {
            redis::cmd("PING")
                .query_async::<Value>(&mut connection)
                .await
                .map(|_| ())
                .map_err(|e| format!("{node}: PING: {e}"))
        });
        let result = futures::future::try_join_all(pings).await.map(|_| ());
        if let Err(reason) = &result {
            self.shared.fail(reason.clone());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> RedisNode {
        RedisNode {
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    fn range(first: i64, last: i64, host: &str, port: i64) -> Reply {
        Reply::Array(Some(vec![
            Reply::Integer(first),
            Reply::Integer(last),
            Reply::Array(Some(vec![bulk(host), Reply::Integer(port), bulk("id")])),
            Reply::Array(Some(vec![bulk(host), Reply::Integer(port + 3), bulk("replica")])),
        ]))
    }

    #[test]
    fn crc16_is_xmodem() {
        // The XMODEM check value.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(crc16_xmodem(b""), 0);
    }

    #[test]
    fn hashtags_follow_the_redis_rule() {
        assert_eq!(hashtag(b"{user1000}.following"), b"user1000");
        assert_eq!(
            hashtag(b"foo{}{bar}"),
            b"foo{}{bar}",
            "an empty first tag: the whole key"
        );
        assert_eq!(hashtag(b"foo{{bar}}zap"), b"{bar", "from the first {{ to the next }}");
        assert_eq!(hashtag(b"foo{bar}{zap}"), b"bar", "only the first tag");
        assert_eq!(hashtag(b"foo{bar"), b"foo{bar", "no closing }}");
        assert_eq!(key_slot(b"123456789"), 0x31C3 % SLOTS);
    }

    #[test]
    fn a_slot_map_is_read_and_searched() {
        let reply = Reply::Array(Some(vec![
            range(5461, 10922, "127.0.0.1", 7001),
            range(0, 5460, "127.0.0.1", 7000),
            range(10923, 16383, "", 7002),
        ]));
        let map = SlotMap::parse(&reply, &node(7000)).unwrap();
        assert_eq!(map.master_for(0), Some(&node(7000)));
        assert_eq!(map.master_for(5460), Some(&node(7000)));
        assert_eq!(map.master_for(5461), Some(&node(7001)));
        assert_eq!(
            map.master_for(16383),
            Some(&node(7002)),
            "an empty host is the answering node's"
        );
        assert_eq!(map.masters().len(), 3);
        let groups = map.group(["foo", "{foo}.bar", "bar"]).unwrap();
        assert_eq!(groups[&node(7002)], vec!["foo".to_string(), "{foo}.bar".to_string()]);
        assert_eq!(groups[&node(7000)], vec!["bar".to_string()], "bar is slot 5061");

        let partial = Reply::Array(Some(vec![range(0, 100, "h", 1)]));
        let map = SlotMap::parse(&partial, &node(1)).unwrap();
        assert_eq!(map.master_for(101), None);
        assert!(map.master_of("foo").unwrap_err().contains("slot 12182"));
        assert!(SlotMap::parse(&Reply::Array(Some(vec![])), &node(1)).is_err());
        assert!(SlotMap::parse(&Reply::Array(Some(vec![range(0, 20000, "h", 1)])), &node(1)).is_err());
    }
}
