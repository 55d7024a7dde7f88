//! `LogTail`: the one reader of the event log on this node.
//!
//! SSE and WebSocket sessions join the tail; whenever the log grows (a `Events`
//! notice, or a poll as a safety net) the tail reads the new events once and
//! sends every session the same batch, `(from, to]`, which each session filters
//! for its own subscriptions. Sending never waits: a session whose mailbox is
//! full misses the batch, and the next batch it does receive (or an empty one the
//! tail sends it when it has room again) starts after its cursor, so it reads the
//! gap from the log itself. A slow session therefore never slows the others, and
//! never misses an event.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use courier_core::{Event, EventFilter, Notice, Notifier, Store, Topic};

/// Events read from the store per query.
const READ_PAGE: u32 = 1000;

/// A batch of the log: every event with `from < seq <= to`, and each event's
/// SSE frame, rendered once for every session that sends it.
///
/// A `reset` batch (empty, `from == to` == the log's head) says the head went
/// back below what was already read: the database lost acknowledged commits,
/// and the numbers after `to` will be handed out again to other events.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub(crate) struct Batch {
    pub from: i64,
    pub to: i64,
    pub events: Arc<Vec<Event>>,
    pub frames: Arc<Vec<bytes::Bytes>>,
    pub reset: bool,
}

impl Batch {
    pub(crate) fn new(from: i64, to: i64, events: Vec<Event>) -> Self {
        let frames = events.iter().map(super::frame::sse).collect();
        Batch {
            from,
            to,
            events: Arc::new(events),
            frames: Arc::new(frames),
            reset: false,
        }
    }

    /// The log's head went back to `head`.
    pub(crate) fn reset(head: i64) -> Self {
        Batch {
            reset: true,
            ..Batch::new(head, head, Vec::new())
        }
    }
}

/// The server is shutting down: send a final event and close.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct Closing;

/// A session joins under its own id (unique in the process); the answer is the
/// tail's cursor (events up to it the session must read itself).
#[derive(Message)]
#[rtype(result = "Joined")]
pub(crate) struct Join {
    pub id: u64,
    pub batches: Recipient<Batch>,
    pub closing: Recipient<Closing>,
}

/// The answer to `Join`.
#[derive(MessageResponse, Clone, Copy)]
pub(crate) struct Joined {
    pub cursor: i64,
}

/// A session leaves.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Leave(pub u64);

/// How many sessions follow the tail.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct Members;

/// Tell every session the server is closing.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseAll;

struct Member {
    batches: Recipient<Batch>,
    closing: Recipient<Closing>,
}

/// The actor. See the module documentation.
pub(crate) struct LogTail {
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    poll: Duration,
    max_event_bytes: usize,
    cursor: Arc<AtomicI64>,
    /// Counts every batch read, for `/v1/stats`.
    stats: Arc<crate::stats::Stats>,
    members: HashMap<u64, Member>,
    /// Members that missed a batch and have not been sent one since.
    behind: HashSet<u64>,
    reading: bool,
    again: bool,
    checking_head: bool,
}

impl LogTail {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        notifier: Arc<dyn Notifier>,
        poll: Duration,
        max_event_bytes: usize,
        cursor: Arc<AtomicI64>,
        stats: Arc<crate::stats::Stats>,
    ) -> Self {
        LogTail {
            store,
            notifier,
            poll,
            max_event_bytes,
            cursor,
            stats,
            members: HashMap::new(),
            behind: HashSet::new(),
            reading: false,
            again: false,
            checking_head: false,
        }
    }

    /// Compares the log's head with the cursor. A head behind the cursor means
    /// the database lost commits it had acknowledged (a restore, a failover to a
    /// lagging standby, SQLite with `synchronous = normal` after a power cut):
    /// the sequences after it will be issued again, to other events, and a
    /// cursor past them would skip those silently. So the tail goes back to the
    /// head and tells every session to reset.
    fn check_head(&mut self, ctx: &mut Context<Self>) {
        if self.checking_head || self.reading {
            return;
        }
        self.checking_head = true;
        let store = self.store.clone();
        async move { store.last_event_seq().await }
            .into_actor(self)
            .map(|head, act, ctx| {
                act.checking_head = false;
                if let Ok(head) = head {
                    act.reset_if_behind(head);
                }
                // The reads asked for while the head was being read.
                if act.again {
                    act.read(ctx);
                }
            })
            .spawn(ctx);
    }

    /// Goes back to `head` and tells every session to reset, if the cursor is
    /// past it (see [`check_head`](Self::check_head)).
    fn reset_if_behind(&mut self, head: i64) {
        let cursor = self.cursor.load(Ordering::SeqCst);
        if head < cursor {
            tracing::error!(
                head,
                cursor,
                "the event log's head went backwards (the database lost acknowledged commits); streams reset"
            );
            metrics::counter!(courier_core::metric::EVENT_LOG_RESETS).increment(1);
            self.cursor.store(head, Ordering::SeqCst);
            self.broadcast(Batch::reset(head));
        }
    }

    fn read(&mut self, ctx: &mut Context<Self>) {
        // Not while the head is being read either: a read would move the
        // cursor the head is compared with. Each tick starts both, so were
        // reads let through, the comparison would have to be dropped for the
        // one in flight, tick after tick, and a lost head could go unnoticed.
        if self.reading || self.checking_head {
            self.again = true;
            return;
        }
        self.reading = true;
        self.again = false;
        let store = self.store.clone();
        let from = self.cursor.load(Ordering::SeqCst);
        async move {
            store
                .read_events(&EventFilter::after(from).limit(READ_PAGE))
                .await
                .map(|page| page.events)
        }
        .into_actor(self)
        .map(move |result, act, ctx| {
            act.reading = false;
            match result {
                Ok(mut events) if !events.is_empty() => {
                    super::frame::trim(&mut events, act.max_event_bytes);
                    let full = events.len() as u32 == READ_PAGE;
                    let to = events.last().map_or(from, |e| e.seq);
                    act.cursor.store(to, Ordering::SeqCst);
                    act.stats.record(&events);
                    act.broadcast(Batch::new(from, to, events));
                    if full || act.again {
                        act.read(ctx);
                    }
                }
                Ok(_) => {
                    if act.again {
                        act.read(ctx);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "event log tail could not read; will retry"),
            }
        })
        .spawn(ctx);
    }

    fn broadcast(&mut self, batch: Batch) {
        let mut gone = Vec::new();
        for (id, member) in &self.members {
            match member.batches.try_send(batch.clone()) {
                Ok(()) => {
                    self.behind.remove(id);
                }
                Err(SendError::Full(_)) => {
                    if self.behind.insert(*id) {
                        metrics::counter!(courier_core::metric::STREAM_LAGGED).increment(1);
                    }
                }
                Err(SendError::Closed(_)) => gone.push(*id),
            }
        }
        for id in gone {
            self.members.remove(&id);
            self.behind.remove(&id);
        }
    }

    /// Sends members that missed a batch an empty one at the current cursor, so
    /// they catch up even if no further events come.
    fn nudge_behind(&mut self) {
        let cursor = self.cursor.load(Ordering::SeqCst);
        let behind: Vec<u64> = self.behind.iter().copied().collect();
        for id in behind {
            let Some(member) = self.members.get(&id) else {
                self.behind.remove(&id);
                continue;
            };
            let nudge = Batch::new(cursor, cursor, Vec::new());
            if member.batches.try_send(nudge).is_ok() {
                self.behind.remove(&id);
            }
        }
    }
}

impl Actor for LogTail {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(65_536);
        // Start at the log's head: sessions ask for older events themselves.
        let store = self.store.clone();
        async move { store.last_event_seq().await }
            .into_actor(self)
            .map(|head, act, ctx| {
                if let Ok(head) = head {
                    act.cursor.store(head, Ordering::SeqCst);
                }
                act.read(ctx);
            })
            .spawn(ctx);
        let notifier = self.notifier.clone();
        async move { notifier.subscribe(vec![Topic::Events]).await }
            .into_actor(self)
            .map(|sub, _, ctx| match sub {
                Ok(sub) => {
                    ctx.add_stream(futures::stream::unfold(sub, |mut sub| async move {
                        sub.next().await.map(|n| (n, sub))
                    }));
                }
                Err(e) => tracing::warn!(error = %e, "event log tail gets no notices; polling only"),
            })
            .spawn(ctx);
        ctx.run_interval(self.poll, |act, ctx| {
            act.nudge_behind();
            act.check_head(ctx);
            act.read(ctx);
        });
    }
}

/// The log grew (or notices may have been missed): read it.
impl StreamHandler<Notice> for LogTail {
    fn handle(&mut self, _: Notice, ctx: &mut Self::Context) {
        self.read(ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

/// Registers a session.
impl Handler<Join> for LogTail {
    type Result = Joined;

    fn handle(&mut self, msg: Join, _: &mut Self::Context) -> Joined {
        self.members.insert(
            msg.id,
            Member {
                batches: msg.batches,
                closing: msg.closing,
            },
        );
        Joined {
            cursor: self.cursor.load(Ordering::SeqCst),
        }
    }
}

/// Forgets a session.
impl Handler<Leave> for LogTail {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Self::Context) {
        self.members.remove(&msg.0);
        self.behind.remove(&msg.0);
    }
}

/// Counts the sessions.
impl Handler<Members> for LogTail {
    type Result = usize;

    fn handle(&mut self, _: Members, _: &mut Self::Context) -> usize {
        self.members.len()
    }
}

/// Tells every session to close with a final event.
impl Handler<CloseAll> for LogTail {
    type Result = ();

    fn handle(&mut self, _: CloseAll, _: &mut Self::Context) {
        for member in self.members.values() {
            member.closing.do_send(Closing);
        }
    }
}
