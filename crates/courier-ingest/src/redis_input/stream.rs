//! The Redis Stream input (`ingest.stream`, read by the consumer group
//! `ingest.group`): seed 001's stream worker, done so that no entry is lost.
//!
//! - On start (and after Redis lost it) the group is created at the stream's
//!   beginning (`XGROUP CREATE <stream> <group> 0 MKSTREAM`), so entries written
//!   before any node ran are consumed.
//! - Each node reads as one consumer, `<node id>-<pid>-<8 hex digits>`, with
//!   `XREADGROUP ... COUNT n BLOCK 1000 STREAMS <stream> >`, `n` being the room
//!   left in the intake: when `ingest.queue_size` messages await their commit,
//!   the consumer stops reading. An entry's field `message` holds the JSON
//!   message.
//! - A valid entry becomes an execution whose idempotency key is the entry id
//!   ([`Origin::Stream`]); the entry is acknowledged (`XACK`) only once that
//!   execution is committed. If the store refuses it, it stays pending and is
//!   taken again later (a redelivered entry never makes a second execution).
//! - Reclaim: every `ingest.reclaim_after / 2` (at least a second) the consumer
//!   lists the entries pending longer than `ingest.reclaim_after` on any
//!   consumer (`XPENDING <stream> <group> IDLE <ms> - + 100`, which also gives
//!   their delivery counts) and takes them over (`XCLAIM`), leaving out those
//!   it holds itself (an entry waiting here for room is not abandoned; taking
//!   it again would only count one more delivery against it). `XAUTOCLAIM`
//!   could not leave those out. An entry delivered more than
//!   `ingest.max_deliveries` times is dead-lettered.
//! - Dead letters go to `<stream>:dead` (`entry`, `reason` = `unparsable`,
//!   `invalid` or `max_deliveries`, `detail`, `message`, `consumer`), and the
//!   original is then acknowledged: two commands, since on a Redis Cluster the
//!   two streams may hash to different slots (a failure between them leaves the
//!   entry pending, to be dead-lettered again: a duplicate, never a loss).
//! - Trimming of the stream and of `<stream>:dead`, at start and every minute:
//!   `XTRIM MINID ~` past `ingest.stream_max_age`, `XTRIM MAXLEN ~` at
//!   `ingest.stream_max_len`.
//! - Errors (Redis down, connection lost, `READONLY` from a master demoted by a
//!   failover) are logged and counted (`courier_ingest_errors_total{input="stream"}`)
//!   and the consumer re-dials and retries, with backoff from 100 ms to 5 s, for
//!   as long as the node runs. With Sentinel each re-dial asks the sentinels
//!   where the master is, and a move they announce (`+switch-master`) makes
//!   both connections re-dial before their next command. On a Redis Cluster
//!   both connections are the `redis` crate's cluster client, which sends each
//!   command to the master owning its key's slot and follows `MOVED`/`ASK`,
//!   resharding and failovers itself.
//! - On shutdown the consumer stops reading, commits and acknowledges what it
//!   holds, and stays in the group: whatever is still pending on it is taken
//!   over by another node after `ingest.reclaim_after`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use courier_core::metric;
use courier_notify::{MasterSwitches, RedisConnection, RedisConnector};
use redis::streams::{StreamClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{FromRedisValue, RedisError};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::{Backoff, is_stopped, node_id, pause, stopped};
use crate::intake::{Intake, IntakeError, Origin};
use crate::options::IngestOptions;

/// Most entries read, or reclaimed, in one round trip.
const BATCH: usize = 100;
/// How long a read blocks waiting for new entries.
const BLOCK_MS: u64 = 1000;
/// How often the stream is trimmed.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// Most pages of `XPENDING` looked at per reclaim round.
const RECLAIM_PAGES: usize = 10;

/// The stream input's settings.
#[derive(Clone, Debug)]
pub(crate) struct StreamOptions {
    pub stream: String,
    pub group: String,
    pub reclaim_after: Duration,
    pub max_deliveries: u32,
    pub max_age: Option<Duration>,
    pub max_len: Option<u64>,
    pub max_message_bytes: usize,
}

impl StreamOptions {
    pub(crate) fn new(stream: String, options: &IngestOptions) -> Self {
        StreamOptions {
            stream,
            group: options.group.clone(),
            reclaim_after: options.reclaim_after,
            max_deliveries: options.max_deliveries,
            max_age: options.stream_max_age,
            max_len: options.stream_max_len,
            max_message_bytes: options.max_message_bytes.max(64),
        }
    }

    fn reclaim_every(&self) -> Duration {
        (self.reclaim_after / 2).max(Duration::from_secs(1))
    }
}

/// Starts the consumer; it runs until `stop` turns true.
pub(crate) fn start(
    intake: Intake,
    connector: RedisConnector,
    options: StreamOptions,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let name = format!(
        "{}-{}-{:08x}",
        node_id(&intake),
        std::process::id(),
        rand::random::<u32>()
    );
    tracing::info!(stream = %options.stream, group = %options.group, consumer = %name, "ingest: Redis stream input starting");
    // Taken before the first dial, so that no move of the master is missed.
    let switches = connector.master_switches(&format!("courier-ingest-{name}-sentinel"));
    let consumer = Arc::new(Consumer {
        ops: Ops::new(
            connector.clone(),
            format!("courier-ingest-{name}-ops"),
            switches.clone(),
        ),
        reader_switches: switches,
        dead: format!("{}:dead", options.stream),
        intake,
        connector,
        options,
        name,
        in_hand: Mutex::new(HashSet::new()),
    });
    tokio::spawn(consumer.run(stop))
}

/// A failed Redis call.
#[derive(Debug)]
struct Failure {
    detail: String,
    /// The group (or the stream) is gone: Redis restarted without it, or someone deleted it.
    no_group: bool,
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        let no_group = e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP");
        Failure {
            detail: e.to_string(),
            no_group,
        }
    }
}

impl From<String> for Failure {
    fn from(detail: String) -> Self {
        Failure {
            detail,
            no_group: false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// The connection for everything but the blocking read (acks, dead letters,
/// claims, trims), re-dialled after a connection error, after an answer saying
/// the server is no longer the master, and when Sentinel moves the master.
struct Ops {
    connector: RedisConnector,
    name: String,
    connection: tokio::sync::Mutex<(Option<RedisConnection>, MasterSwitches)>,
}

impl Ops {
    fn new(connector: RedisConnector, name: String, switches: MasterSwitches) -> Self {
        Ops {
            connector,
            name,
            connection: tokio::sync::Mutex::new((None, switches)),
        }
    }

    async fn connection(&self) -> Result<RedisConnection, Failure> {
        let mut held = self.connection.lock().await;
        let (connection, switches) = &mut *held;
        if switches.switched() {
            *connection = None;
        }
        if let Some(connection) = connection {
            return Ok(connection.clone());
        }
        let dialled = self.connector.connection(&self.name).await?;
        *connection = Some(dialled.clone());
        Ok(dialled)
    }

    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Failure> {
        let mut connection = self.connection().await?;
        let result = cmd.query_async(&mut connection).await;
        self.settle(result).await
    }

    /// Forgets the connection after an error that calls for a fresh one (no
    /// answer, or a server that is no longer the master), so the next call dials
    /// afresh, through the sentinels if there are any.
    async fn settle<T>(&self, result: redis::RedisResult<T>) -> Result<T, Failure> {
        if let Err(e) = &result
            && RedisConnector::should_redial(e)
        {
            self.connection.lock().await.0 = None;
        }
        result.map_err(Into::into)
    }
}

/// One node's consumer of the group.
struct Consumer {
    intake: Intake,
    connector: RedisConnector,
    options: StreamOptions,
    name: String,
    dead: String,
    ops: Ops,
    /// Moves of the master (Sentinel) from before the reader's first dial; the
    /// read loop takes it into its [`State`].
    reader_switches: MasterSwitches,
    /// Entries being handled here, so that a reclaim round leaves them alone.
    in_hand: Mutex<HashSet<String>>,
}

/// What the read loop keeps between rounds.
struct State {
    reader: Option<RedisConnection>,
    /// Moves of the master since the reader was dialled.
    switches: MasterSwitches,
    group_ready: bool,
    next_trim: Instant,
    next_reclaim: Instant,
}

fn count_error() {
    metrics::counter!(metric::INGEST_ERRORS, "input" => "stream").increment(1);
}

impl Consumer {
    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        let mut backoff = Backoff::new();
        let mut state = State {
            reader: None,
            switches: self.reader_switches.clone(),
            group_ready: false,
            next_trim: Instant::now(),
            next_reclaim: Instant::now() + self.options.reclaim_every(),
        };
        while !is_stopped(&stop) {
            while tasks.try_join_next().is_some() {}
            match self.round(&mut state, &mut tasks, &mut stop).await {
                Ok(()) => backoff.reset(),
                Err(failure) => {
                    count_error();
                    state.reader = None;
                    state.group_ready = false;
                    let wait = backoff.next_wait();
                    tracing::warn!(
                        stream = %self.options.stream,
                        consumer = %self.name,
                        error = %failure,
                        retry_in = ?wait,
                        "ingest stream: Redis error"
                    );
                    pause(wait, &mut stop).await;
                }
            }
        }
        // Stop reading; finish (commit and acknowledge) what is in hand. The
        // consumer stays in the group: what is still pending is reclaimed by others.
        let held = tasks.len();
        while tasks.join_next().await.is_some() {}
        tracing::info!(stream = %self.options.stream, consumer = %self.name, finished = held, "ingest: Redis stream input stopped");
    }

    /// One step: (re)connect and set up if needed, trim or reclaim when due,
    /// else read one batch.
    async fn round(
        self: &Arc<Self>,
        state: &mut State,
        tasks: &mut JoinSet<()>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Failure> {
        if state.switches.switched() && state.reader.take().is_some() {
            tracing::info!(stream = %self.options.stream, consumer = %self.name, "ingest stream: the Redis master moved; reading from the new one");
        }
        if state.reader.is_none() {
            state.reader = Some(
                self.connector
                    .connection(&format!("courier-ingest-{}", self.name))
                    .await?,
            );
        }
        if !state.group_ready {
            self.create_group().await?;
            state.group_ready = true;
        }
        let now = Instant::now();
        if now >= state.next_trim {
            state.next_trim = now + TRIM_EVERY;
            self.trim().await?;
        }
        let Some(room) = self.wait_for_room(stop).await else {
            return Ok(());
        };
        if Instant::now() >= state.next_reclaim {
            let result = self.reclaim(room, tasks, stop).await;
            state.next_reclaim = Instant::now() + self.options.reclaim_every();
            return self.or_recreate(result, state).await;
        }
        let reader = state.reader.as_mut().expect("connected above");
        let read = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.options.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(room)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&self.options.stream)
            .arg(">")
            .query_async::<Option<StreamReadReply>>(reader)
            .await;
        let reply = match read {
            Ok(reply) => reply,
            Err(e) => return self.or_recreate(Err(e.into()), state).await,
        };
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                self.spawn(tasks, entry, None);
            }
        }
        Ok(())
    }

    /// A missing group is recreated at once (Redis restarted without its data,
    /// or someone deleted the stream); other failures go back to the caller.
    async fn or_recreate(&self, result: Result<(), Failure>, state: &mut State) -> Result<(), Failure> {
        match result {
            Err(failure) if failure.no_group => {
                count_error();
                tracing::warn!(stream = %self.options.stream, group = %self.options.group, "ingest stream: the consumer group is gone; creating it again");
                self.create_group().await?;
                state.group_ready = true;
                Ok(())
            }
            other => other,
        }
    }

    /// `XGROUP CREATE <stream> <group> 0 MKSTREAM`; an existing group is fine.
    async fn create_group(&self) -> Result<(), Failure> {
        let created = self
            .ops
            .query::<()>(
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&self.options.stream)
                    .arg(&self.options.group)
                    .arg("0")
                    .arg("MKSTREAM"),
            )
            .await;
        match created {
            Ok(()) => {
                tracing::info!(stream = %self.options.stream, group = %self.options.group, "ingest stream: consumer group created");
                Ok(())
            }
            Err(failure) if failure.detail.contains("BUSYGROUP") => Ok(()),
            Err(failure) => Err(failure),
        }
    }

    /// Trims the stream and its dead letters by age and by length, as configured.
    async fn trim(&self) -> Result<(), Failure> {
        for stream in [&self.options.stream, &self.dead] {
            if let Some(age) = self.options.max_age {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64;
                let min_ms = now.saturating_sub(age.as_millis() as u64);
                let trimmed: u64 = self
                    .ops
                    .query(
                        redis::cmd("XTRIM")
                            .arg(stream)
                            .arg("MINID")
                            .arg("~")
                            .arg(format!("{min_ms}-0")),
                    )
                    .await?;
                if trimmed > 0 {
                    tracing::debug!(%stream, trimmed, "ingest stream: trimmed by age");
                }
            }
            if let Some(len) = self.options.max_len {
                let trimmed: u64 = self
                    .ops
                    .query(redis::cmd("XTRIM").arg(stream).arg("MAXLEN").arg("~").arg(len))
                    .await?;
                if trimmed > 0 {
                    tracing::debug!(%stream, trimmed, "ingest stream: trimmed by length");
                }
            }
        }
        Ok(())
    }

    /// Waits until the intake has room, and says how many entries to read
    /// (the room left, at most [`BATCH`]); `None` once told to stop. The room
    /// is not held while reading: each entry waits for its own place.
    async fn wait_for_room(&self, stop: &mut watch::Receiver<bool>) -> Option<usize> {
        let permit = tokio::select! {
            permit = self.intake.room() => permit,
            _ = stopped(stop) => return None,
        };
        let free = self.intake.capacity().saturating_sub(self.intake.in_flight()) + 1;
        drop(permit);
        Some(free.clamp(1, BATCH))
    }

    /// Takes over entries pending too long on any consumer but those in hand here.
    async fn reclaim(
        self: &Arc<Self>,
        mut room: usize,
        tasks: &mut JoinSet<()>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Failure> {
        let idle_ms = self.options.reclaim_after.as_millis() as u64;
        let mut start = "-".to_string();
        for page in 0..RECLAIM_PAGES {
            if page > 0 {
                match self.wait_for_room(stop).await {
                    Some(free) => room = free,
                    None => return Ok(()),
                }
            }
            let pending: StreamPendingCountReply = self
                .ops
                .query(
                    redis::cmd("XPENDING")
                        .arg(&self.options.stream)
                        .arg(&self.options.group)
                        .arg("IDLE")
                        .arg(idle_ms)
                        .arg(&start)
                        .arg("+")
                        .arg(room),
                )
                .await?;
            let Some(last) = pending.ids.last() else {
                return Ok(());
            };
            start = format!("({}", last.id);
            let full_page = pending.ids.len() >= room;
            let deliveries: HashMap<String, usize> = {
                let in_hand = self.in_hand.lock().unwrap_or_else(|p| p.into_inner());
                pending
                    .ids
                    .iter()
                    .filter(|p| !in_hand.contains(&p.id))
                    .map(|p| (p.id.clone(), p.times_delivered))
                    .collect()
            };
            if !deliveries.is_empty() {
                let mut claim = redis::cmd("XCLAIM");
                claim
                    .arg(&self.options.stream)
                    .arg(&self.options.group)
                    .arg(&self.name)
                    .arg(idle_ms);
                for id in deliveries.keys() {
                    claim.arg(id);
                }
                let claimed: StreamClaimReply = self.ops.query(&claim).await?;
                if !claimed.ids.is_empty() {
                    metrics::counter!(metric::INGEST_RECLAIMED).increment(claimed.ids.len() as u64);
                    tracing::info!(stream = %self.options.stream, consumer = %self.name, entries = claimed.ids.len(), "ingest stream: reclaimed entries pending on other consumers");
                }
                for entry in claimed.ids {
                    // Delivered once more by this claim.
                    let delivered = deliveries.get(&entry.id).copied().unwrap_or(0) + 1;
                    self.spawn(tasks, entry, Some(delivered));
                }
            }
            if !full_page {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Handles `entry` on its own task (it waits there for room, if it must).
    fn spawn(self: &Arc<Self>, tasks: &mut JoinSet<()>, entry: StreamId, delivered: Option<usize>) {
        let fresh = self
            .in_hand
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(entry.id.clone());
        if !fresh {
            return;
        }
        let this = self.clone();
        tasks.spawn(async move {
            let id = entry.id.clone();
            this.handle(entry, delivered).await;
            this.in_hand.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        });
    }

    /// Commits a valid entry then acknowledges it; dead-letters the others.
    async fn handle(&self, entry: StreamId, delivered: Option<usize>) {
        let raw: Option<Vec<u8>> = match entry.map.get("message") {
            Some(redis::Value::BulkString(bytes)) => Some(bytes.clone()),
            Some(redis::Value::SimpleString(text)) => Some(text.clone().into_bytes()),
            Some(_) | None => None,
        };
        let original = raw.as_deref().unwrap_or_default();
        if let Some(delivered) = delivered
            && delivered > self.options.max_deliveries as usize
        {
            let detail = format!(
                "delivered {delivered} times, more than ingest.max_deliveries ({})",
                self.options.max_deliveries
            );
            return self.dead_letter(&entry.id, "max_deliveries", &detail, original).await;
        }
        let origin = Origin::Stream {
            stream: self.options.stream.clone(),
            entry: entry.id.clone(),
        };
        let Some(raw) = raw.as_deref() else {
            // Refused like any message that is not one (before, only dead-lettered:
            // `courier_ingest_refused_total` missed it).
            self.intake.refused_by_input(&origin, "invalid");
            return self
                .dead_letter(&entry.id, "unparsable", "the entry has no `message` field", b"")
                .await;
        };
        if raw.len() > self.options.max_message_bytes {
            self.intake.refused_by_input(&origin, "too_large");
            let detail = format!(
                "the message is {} bytes, more than ingest.max_message_bytes ({})",
                raw.len(),
                self.options.max_message_bytes
            );
            return self.dead_letter(&entry.id, "invalid", &detail, raw).await;
        }
        let value: serde_json::Value = match serde_json::from_slice(raw) {
            Ok(value) => value,
            Err(e) => {
                self.intake.refused_by_input(&origin, "invalid");
                let detail = format!("not JSON: {e}");
                return self.dead_letter(&entry.id, "unparsable", &detail, raw).await;
            }
        };
        let message = match self.intake.check(value) {
            Ok(message) => message,
            Err(invalid) => {
                let detail = invalid.to_string();
                self.intake.refused(&origin, &IntakeError::Invalid(invalid));
                return self.dead_letter(&entry.id, "invalid", &detail, raw).await;
            }
        };
        let permit = self.intake.room().await;
        match self.intake.commit(message, origin, permit).await {
            Ok(execution) => {
                tracing::trace!(entry = %entry.id, %execution, "ingest stream: entry committed");
                self.ack(&entry.id).await;
            }
            Err(error) => {
                // Left pending: taken again after ingest.reclaim_after, by this node or
                // another. The intake counted it (refused, reason `store`).
                tracing::warn!(stream = %self.options.stream, entry = %entry.id, %error, "ingest stream: entry not committed; it stays pending and will be retried");
            }
        }
    }

    /// `XACK`, tried twice (the second time on a fresh connection).
    async fn ack(&self, id: &str) {
        let mut ack = redis::cmd("XACK");
        ack.arg(&self.options.stream).arg(&self.options.group).arg(id);
        let mut last = None;
        for _ in 0..2 {
            match self.ops.query::<u64>(&ack).await {
                Ok(_) => return,
                Err(failure) => last = Some(failure),
            }
        }
        count_error();
        if let Some(failure) = last {
            tracing::warn!(stream = %self.options.stream, entry = %id, error = %failure, "ingest stream: could not acknowledge a committed entry; it will be reclaimed (and found committed)");
        }
    }

    /// Adds the entry to `<stream>:dead`, then acknowledges it: two commands,
    /// not one transaction, since on a Redis Cluster the two streams may live
    /// in different slots. If the acknowledgement fails the entry stays
    /// pending and is dead-lettered again later (a duplicate dead letter, never
    /// a lost entry).
    async fn dead_letter(&self, id: &str, reason: &'static str, detail: &str, message: &[u8]) {
        tracing::warn!(stream = %self.options.stream, entry = %id, reason, detail, "ingest stream: entry dead-lettered");
        let mut add = redis::cmd("XADD");
        add.arg(&self.dead)
            .arg("*")
            .arg("entry")
            .arg(id)
            .arg("reason")
            .arg(reason)
            .arg("detail")
            .arg(detail)
            .arg("message")
            .arg(message)
            .arg("consumer")
            .arg(&self.name);
        let mut ack = redis::cmd("XACK");
        ack.arg(&self.options.stream).arg(&self.options.group).arg(id);
        let done = async {
            self.ops.query::<String>(&add).await?;
            self.ops.query::<u64>(&ack).await
        };
        match done.await {
            Ok(_) => self.intake.dead_lettered(reason),
            Err(failure) => {
                count_error();
                tracing::warn!(stream = %self.options.stream, entry = %id, error = %failure, "ingest stream: could not dead-letter an entry; it stays pending");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reclaim_runs_every_half_reclaim_after_at_least_a_second() {
        let mut options = StreamOptions::new("s".into(), &IngestOptions::default());
        assert_eq!(options.reclaim_every(), Duration::from_secs(30));
        options.reclaim_after = Duration::from_millis(500);
        assert_eq!(options.reclaim_every(), Duration::from_secs(1));
    }

    #[test]
    fn a_missing_group_is_recognised() {
        let e = RedisError::from((redis::ErrorKind::Extension, "NOGROUP", "No such key".to_string()));
        assert!(Failure::from(e).no_group);
    }
}
