//! Redis Sentinel: finding the master, and hearing when it moves.
//!
//! **Discovery.** Each (re)connection asks the sentinels in turn
//! `SENTINEL get-master-addr-by-name <master>` (with the sentinels' own AUTH, if
//! they have one), dials the address the first one gives, and checks with `ROLE`
//! that it is the master. The sentinel that answered last is asked first, and an
//! attempt cut short by its caller's time limit leaves the next one to start
//! after the sentinel it was waiting on. A sentinel that has not seen a failover yet names the
//! old master, by then dead or a replica: the next sentinel is asked. If some
//! sentinel answered but no address it gave was the master (a failover in
//! progress), the round is tried again after a short pause, a few times; after
//! that the caller's own reconnection backoff takes over. The error names every
//! sentinel and what went wrong with it.
//!
//! **Following a failover.** A dead master breaks its connections, and the
//! re-dial finds the new one through the sentinels. A master that is demoted
//! while still alive (a manual failover, or one cut off and back) may keep
//! connections that still work but reach a replica, where a PUBLISH is heard by
//! nobody else. So one task per [`Dialer`](super::connect::Dialer) also listens to
//! the sentinels' `+switch-master` channel (on one connection, to whichever
//! sentinel answers, re-established when lost) and announces each move of the
//! master on a `watch` channel: the notifier's subscription connection ends when
//! it reaches a node that is no longer the master (see [`moved_away`]), its
//! publisher re-dials, and ingestion's inputs (through
//! [`MasterSwitches`](super::MasterSwitches)) re-dial too.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::{RedisNode, RedisSentinel};
use super::connect::{Io, Opener, Reply, after_handshake, auth};
use crate::throttle::Throttle;

/// How many times a discovery round is tried while a failover seems under way.
const DISCOVERY_ROUNDS: usize = 3;
/// The pause between those rounds.
const DISCOVERY_PAUSE: Duration = Duration::from_millis(300);
/// How often the `+switch-master` connection is pinged, to notice a dead sentinel.
const WATCH_PING_EVERY: Duration = Duration::from_secs(15);
/// The longest wait between two rounds of trying to watch when no sentinel answers.
const WATCH_RETRY_MAX: Duration = Duration::from_secs(5);

/// The channel on which sentinels announce a new master:
/// `<master name> <old ip> <old port> <new ip> <new port>`.
const SWITCH_MASTER: &str = "+switch-master";

/// How to reach the sentinels of one master.
struct Sentinels {
    nodes: Vec<RedisNode>,
    settings: RedisSentinel,
    opener: Opener,
}

/// Discovery and the `+switch-master` watch for one
/// [`Dialer`](super::connect::Dialer).
pub(crate) struct Sentinel {
    sentinels: Arc<Sentinels>,
    /// Where the sentinels last said the master moved; receivers hear of each move.
    moved: Arc<watch::Sender<Option<RedisNode>>>,
    /// The watching task, started by the first [`Sentinel::moves`]; ended with this.
    watcher: OnceLock<AbortOnDrop>,
    /// Which sentinel to ask first (an index into the list, taken modulo its length).
    next: AtomicUsize,
}

/// Aborts its task when dropped: the watcher ends with the dialer that owns it.
struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl Sentinel {
    pub(crate) fn new(nodes: Vec<RedisNode>, settings: RedisSentinel, opener: Opener) -> Self {
        Sentinel {
            sentinels: Arc::new(Sentinels {
                nodes,
                settings,
                opener,
            }),
            moved: Arc::new(watch::Sender::new(None)),
            watcher: OnceLock::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// Asks the sentinels in turn where the master is and dials it with
    /// `dial_master` (which checks its ROLE); see the module doc.
    pub(crate) async fn discover<F, Fut>(&self, dial_master: F) -> Result<(Box<dyn Io>, RedisNode), String>
    where
        F: Fn(RedisNode) -> Fut,
        Fut: Future<Output = Result<Box<dyn Io>, String>>,
    {
        let master_name = &self.sentinels.settings.master;
        let mut failures = Vec::new();
        for round in 0..DISCOVERY_ROUNDS {
            if round > 0 {
                tokio::time::sleep(DISCOVERY_PAUSE).await;
            }
            failures.clear();
            let mut tried: Vec<RedisNode> = Vec::new();
            let count = self.sentinels.nodes.len();
            let first = self.next.load(Ordering::Relaxed);
            for i in (first..first + count).map(|i| i % count) {
                let sentinel = &self.sentinels.nodes[i];
                // The caller may give up on this attempt while a sentinel (or the
                // master it names) does not answer: the next attempt then starts
                // with the sentinel after it, so one dead host cannot stall them all.
                self.next.store(i + 1, Ordering::Relaxed);
                let master = match self.sentinels.ask(sentinel).await {
                    Ok(Some(master)) => master,
                    Ok(None) => {
                        failures.push(format!("sentinel {sentinel}: monitors no master named {master_name:?}"));
                        continue;
                    }
                    Err(reason) => {
                        failures.push(format!("sentinel {sentinel}: {reason}"));
                        continue;
                    }
                };
                if tried.contains(&master) {
                    failures.push(format!("sentinel {sentinel}: names {master} too"));
                    continue;
                }
                tried.push(master.clone());
                match dial_master(master.clone()).await {
                    Ok(io) => {
                        // Asked first next time: it knew.
                        self.next.store(i, Ordering::Relaxed);
                        return Ok((io, master));
                    }
                    Err(reason) => failures.push(format!("sentinel {sentinel} names {master}: {reason}")),
                }
            }
            // No sentinel named anything: waiting here will not help; the
            // caller's backoff decides when to ask again.
            if tried.is_empty() {
                break;
            }
        }
        Err(format!("no master {master_name:?} found: {}", failures.join("; ")))
    }

    /// Where the master moved, each time the sentinels announce it. The first call
    /// starts the watching task (on the current Tokio runtime), its connection
    /// named `watcher_name`.
    pub(crate) fn moves(&self, watcher_name: &str) -> watch::Receiver<Option<RedisNode>> {
        self.watcher.get_or_init(|| match tokio::runtime::Handle::try_current() {
            Ok(runtime) => AbortOnDrop(Some(runtime.spawn(watch_switches(
                self.sentinels.clone(),
                self.moved.clone(),
                watcher_name.to_string(),
            )))),
            Err(_) => {
                tracing::warn!(
                    master = %self.sentinels.settings.master,
                    "no Tokio runtime to watch the sentinels' +switch-master on; a failover is followed when connections fail"
                );
                AbortOnDrop(None)
            }
        });
        self.moved.subscribe()
    }
}

impl Sentinels {
    /// AUTH for the sentinels' own user and password, if they have one.
    fn auth(&self) -> Vec<(&'static str, redis::Cmd)> {
        auth(self.settings.username.as_deref(), self.settings.password.as_deref())
            .map(|cmd| ("AUTH", cmd))
            .into_iter()
            .collect()
    }

    /// `SENTINEL get-master-addr-by-name`: the master's address, or `None` if this
    /// sentinel monitors no master of that name.
    async fn ask(&self, sentinel: &RedisNode) -> Result<Option<RedisNode>, String> {
        let mut setup = self.auth();
        setup.push((
            "SENTINEL",
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.settings.master)
                .clone(),
        ));
        let (_, replies) = self.opener.open_with(sentinel, &setup).await?;
        match replies.last() {
            Some(Reply::Array(None) | Reply::Bulk(None)) => Ok(None),
            Some(Reply::Array(Some(items))) => match items.as_slice() {
                [Reply::Bulk(Some(host)), Reply::Bulk(Some(port))] => {
                    let host = String::from_utf8_lossy(host).into_owned();
                    let port = String::from_utf8_lossy(port);
                    let port = port.parse::<u16>().map_err(|_| format!("it gave the port {port:?}"))?;
                    Ok(Some(RedisNode { host, port }))
                }
                other => Err(format!(
                    "unexpected answer to SENTINEL get-master-addr-by-name: {other:?}"
                )),
            },
            Some(Reply::Error(error)) => Err(format!("SENTINEL get-master-addr-by-name refused: {error}")),
            other => Err(format!(
                "unexpected answer to SENTINEL get-master-addr-by-name: {other:?} (is this a sentinel?)"
            )),
        }
    }

    /// A connection to `sentinel`, named `name`, subscribed to `+switch-master`.
    async fn subscribe(&self, sentinel: &RedisNode, name: &str) -> Result<redis::aio::PubSub, String> {
        let mut setup = self.auth();
        setup.push(("CLIENT SETNAME", redis::cmd("CLIENT").arg("SETNAME").arg(name).clone()));
        let (io, _) = self.opener.open_with(sentinel, &setup).await?;
        let subscribed = async {
            let mut pubsub = redis::aio::PubSub::new(&after_handshake(), io).await?;
            pubsub.subscribe(SWITCH_MASTER).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(self.opener.timeout, subscribed).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.opener.timeout)),
        }
    }

    /// The new master of a `+switch-master` message, if it is about ours.
    fn switched_to(&self, payload: &str) -> Option<RedisNode> {
        match payload.split_whitespace().collect::<Vec<_>>().as_slice() {
            [name, _, _, host, port] if *name == self.settings.master => Some(RedisNode {
                host: host.to_string(),
                port: port.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// Watches `+switch-master` on one sentinel at a time, for as long as the dialer
/// lives, and announces each move of our master on `moved`.
async fn watch_switches(sentinels: Arc<Sentinels>, moved: Arc<watch::Sender<Option<RedisNode>>>, name: String) {
    let master = sentinels.settings.master.clone();
    let log = Throttle::new(Duration::from_secs(30));
    let mut wait = Duration::from_millis(100);
    for sentinel in sentinels.nodes.iter().cycle() {
        let reason = match sentinels.subscribe(sentinel, &name).await {
            Ok(pubsub) => {
                wait = Duration::from_millis(100);
                tracing::debug!(%sentinel, %master, "watching the sentinel's +switch-master");
                listen(&sentinels, pubsub, &moved).await
            }
            Err(reason) => reason,
        };
        if let Some(held_back) = log.allow() {
            tracing::warn!(%sentinel, %master, %reason, held_back, "cannot watch +switch-master on this sentinel; trying the next");
        }
        if sentinel == sentinels.nodes.last().expect("a sentinel config has sentinels") {
            // A round through every sentinel found none to watch: pause before the next.
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(WATCH_RETRY_MAX);
        }
    }
}

/// Hears `+switch-master` until the connection fails; why it did.
async fn listen(sentinels: &Sentinels, pubsub: redis::aio::PubSub, moved: &watch::Sender<Option<RedisNode>>) -> String {
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval(WATCH_PING_EVERY);
    ping.reset();
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return "the sentinel closed the connection".into();
                };
                let payload = String::from_utf8_lossy(message.get_payload_bytes()).into_owned();
                if let Some(to) = sentinels.switched_to(&payload) {
                    tracing::info!(master = %sentinels.settings.master, %to, announcement = %payload, "Redis Sentinel moved the master; re-dialling");
                    moved.send_replace(Some(to));
                }
            }
            _ = ping.tick() => {
                let limit = sentinels.opener.timeout;
                match tokio::time::timeout(limit, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return format!("PING: {e}"),
                    Err(_) => return format!("PING: no answer within {limit:?}"),
                }
            }
        }
    }
}

/// Resolves once the sentinels announce that the master has moved away from
/// `node` (never, once nobody can announce it any more).
pub(crate) async fn moved_away(mut moves: watch::Receiver<Option<RedisNode>>, node: RedisNode) {
    loop {
        if moves.changed().await.is_err() {
            return std::future::pending().await;
        }
        let to = moves.borrow_and_update().clone();
        if to.as_ref() != Some(&node) {
            tracing::info!(from = %node, to = ?to.map(|n| n.to_string()), "Redis master moved; closing the subscription connection to re-dial");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinels(master: &str) -> Sentinels {
        Sentinels {
            nodes: vec![RedisNode {
                host: "s".into(),
                port: 26379,
            }],
            settings: RedisSentinel {
                master: master.into(),
                username: None,
                password: None,
            },
            opener: Opener::for_tests(),
        }
    }

    #[test]
    fn a_switch_master_announcement_is_read_for_our_master_only() {
        let s = sentinels("mymaster");
        assert_eq!(
            s.switched_to("mymaster 10.0.0.1 6379 10.0.0.2 6380"),
            Some(RedisNode {
                host: "10.0.0.2".into(),
                port: 6380
            })
        );
        assert_eq!(s.switched_to("other 10.0.0.1 6379 10.0.0.2 6380"), None);
        assert_eq!(s.switched_to("mymaster 10.0.0.1 6379"), None);
        assert_eq!(s.switched_to("mymaster 10.0.0.1 6379 10.0.0.2 port"), None);
    }

    #[tokio::test]
    async fn a_connection_ends_when_the_master_moves_away_from_it_only() {
        let (tx, rx) = watch::channel(None);
        let here = RedisNode {
            host: "10.0.0.2".into(),
            port: 6379,
        };
        let mut ends = Box::pin(moved_away(rx, here.clone()));
        // A move to where this connection already is (it re-dialled first) is no reason.
        tx.send_replace(Some(here));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut ends)
                .await
                .is_err()
        );
        tx.send_replace(Some(RedisNode {
            host: "10.0.0.3".into(),
            port: 6379,
        }));
        tokio::time::timeout(Duration::from_secs(1), ends)
            .await
            .expect("ends at a move elsewhere");
    }
}
