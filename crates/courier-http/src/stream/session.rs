//! What every stream session does, whatever its wire: join the node's log tail,
//! apply its batches to each feed (one for an SSE stream, one per subscription
//! of a WebSocket), read a gap from the store when a feed missed a batch, and
//! stall when the client stops reading.
//!
//! A session never waits for its client: when the client's outbox is full the
//! session stops writing (the event that did not fit is read again later), waits
//! for room, tells the client it lagged, and catches every feed up from the
//! log. A slow client therefore never slows the tail or another session, and
//! never misses an event.
//!
//! A session actor implements [`Session`] (how to queue an event and the
//! "lagged" notice on its wire) and calls the functions here from its handlers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use courier_core::Event;
use courier_core::metric;
use futures::future::LocalBoxFuture;

use super::follow::{Applied, Follower};
use super::tail::{Batch, Closing, Join, Joined, Leave};
use crate::Http;

/// What became of a message queued for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Queued.
    Queued,
    /// The client's outbox is full: it is not reading.
    Full,
    /// The client is gone.
    Gone,
}

/// One follower of the log inside a session.
struct Feed {
    follower: Follower,
    catching_up: bool,
    /// Which feed of this name it is: a catch-up that started for an earlier
    /// one (since removed and added again) leaves it alone.
    generation: u64,
}

/// Ids of sessions in the log tail, unique in the process.
static NEXT_MEMBER: AtomicU64 = AtomicU64::new(1);

/// The state every session keeps.
pub(crate) struct Core {
    http: Http,
    feeds: BTreeMap<String, Feed>,
    /// The session's id in the log tail, chosen here so that a session which
    /// stops before the tail's answer arrives still leaves.
    member: u64,
    /// The join was sent: leaving must be sent too.
    joining: bool,
    /// The tail answered the join: its batches are this session's to apply.
    joined: bool,
    stalled: bool,
    /// Resets of the log seen; a catch-up begun before one is discarded.
    resets: u64,
    generations: u64,
}

impl Core {
    pub(crate) fn new(http: Http) -> Self {
        Core {
            http,
            feeds: BTreeMap::new(),
            member: NEXT_MEMBER.fetch_add(1, Ordering::Relaxed),
            joining: false,
            joined: false,
            stalled: false,
            resets: 0,
            generations: 0,
        }
    }

    pub(crate) fn http(&self) -> &Http {
        &self.http
    }

    /// Whether the client is not reading (writes are held back until it does).
    pub(crate) fn stalled(&self) -> bool {
        self.stalled
    }

    /// The cursor of a feed.
    pub(crate) fn cursor(&self, feed: &str) -> Option<i64> {
        self.feeds.get(feed).map(|f| f.follower.cursor)
    }

    /// How many feeds the session has.
    pub(crate) fn feed_count(&self) -> usize {
        self.feeds.len()
    }

    /// Whether the session has this feed.
    pub(crate) fn has_feed(&self, feed: &str) -> bool {
        self.feeds.contains_key(feed)
    }

    /// Drops a feed; whether it existed.
    pub(crate) fn remove_feed(&mut self, feed: &str) -> bool {
        self.feeds.remove(feed).is_some()
    }
}

/// A stream session's wire.
pub(crate) trait Session: Actor<Context = Context<Self>> + Handler<Batch> + Handler<Closing> {
    /// The session's core.
    fn core(&mut self) -> &mut Core;

    /// Queues `event`, matched by `feed`, for the client (`rendered` is the tail's
    /// SSE frame of it, rendered once for every session).
    fn send_event(&mut self, feed: &str, event: &Event, rendered: Option<&Bytes>) -> Sent;

    /// Queues the notice that the client fell behind and is being caught up from
    /// `after` (the lowest cursor of its feeds).
    fn send_lagged(&mut self, after: i64) -> Sent;

    /// Queues the notice that the log's head went back to `head` (the database
    /// lost acknowledged commits): what the client saw after `head` is gone,
    /// and new events will reuse those numbers.
    fn send_reset(&mut self, head: i64) -> Sent;

    /// Resolves once the client has room again (true), or is gone (false).
    fn room(&self) -> LocalBoxFuture<'static, bool>;
}

/// Joins the node's log tail; once joined, catches up every feed behind the
/// tail's cursor (what the tail read before the session joined).
pub(crate) fn join<S: Session>(act: &mut S, ctx: &mut Context<S>) {
    let join = Join {
        id: act.core().member,
        batches: ctx.address().recipient(),
        closing: ctx.address().recipient(),
    };
    // Queued now, so a `Leave` sent from `stopped` (even before the answer
    // comes back) reaches the tail after it.
    act.core().joining = true;
    act.core()
        .http
        .tail()
        .send(join)
        .into_actor(act)
        .map(|joined, act, ctx| match joined {
            Ok(Joined { cursor }) => {
                act.core().joined = true;
                let behind: Vec<String> = act
                    .core()
                    .feeds
                    .iter()
                    .filter(|(_, f)| f.follower.cursor < cursor)
                    .map(|(id, _)| id.clone())
                    .collect();
                for feed in behind {
                    catch_up(act, feed, cursor, ctx);
                }
            }
            Err(_) => ctx.stop(),
        })
        .spawn(ctx);
}

/// Leaves the log tail (from the session's `stopped`).
pub(crate) fn leave<S: Session>(act: &mut S) {
    let core = act.core();
    if std::mem::take(&mut core.joining) {
        core.joined = false;
        core.http.tail().do_send(Leave(core.member));
    }
}

/// Adds a feed at `follower`'s cursor and catches it up to the tail.
pub(crate) fn add_feed<S: Session>(act: &mut S, feed: String, follower: Follower, ctx: &mut Context<S>) {
    let cursor = follower.cursor;
    let core = act.core();
    core.generations += 1;
    let generation = core.generations;
    core.feeds.insert(
        feed.clone(),
        Feed {
            follower,
            catching_up: false,
            generation,
        },
    );
    let upto = act.core().http.tail_cursor();
    if act.core().joined && upto > cursor {
        catch_up(act, feed, upto, ctx);
    }
}

/// Handles what became of a message the session queued itself (a keepalive, a
/// reply): a full outbox stalls the session, a gone client stops it. Whether it
/// was queued.
pub(crate) fn settle<S: Session>(act: &mut S, sent: Sent, ctx: &mut Context<S>) -> bool {
    match sent {
        Sent::Queued => true,
        Sent::Full => {
            stall(act, ctx);
            false
        }
        Sent::Gone => {
            ctx.stop();
            false
        }
    }
}

/// Applies a live batch from the tail to every feed.
pub(crate) fn on_batch<S: Session>(act: &mut S, batch: Batch, ctx: &mut Context<S>) {
    if batch.reset {
        // Every feed goes back to the head, so the numbers issued again are read
        // (not skipped as already seen), and the client hears why.
        act.core().resets += 1;
        for state in act.core().feeds.values_mut() {
            state.follower.cursor = state.follower.cursor.min(batch.to);
            state.catching_up = false;
        }
        let sent = act.send_reset(batch.to);
        settle(act, sent, ctx);
        return;
    }
    if act.core().stalled || !act.core().joined {
        // Caught up from the log later.
        return;
    }
    let feeds: Vec<String> = act.core().feeds.keys().cloned().collect();
    for feed in feeds {
        if act.core().stalled {
            // The feeds not reached keep their cursors and catch up after the stall.
            return;
        }
        let Some(state) = act.core().feeds.get_mut(&feed) else {
            continue;
        };
        if state.catching_up {
            continue;
        }
        match state.follower.apply(&batch) {
            Applied::Emit(picked) => {
                for i in picked {
                    if !send(act, &feed, &batch.events[i], Some(&batch.frames[i]), ctx) {
                        break;
                    }
                }
            }
            Applied::Gap { upto } => catch_up(act, feed, upto, ctx),
        }
    }
}

/// Sends one event of `feed`; at the first the client has no room for, the feed's
/// cursor goes back to just before it, so it is read from the log again later.
fn send<S: Session>(act: &mut S, feed: &str, event: &Event, rendered: Option<&Bytes>, ctx: &mut Context<S>) -> bool {
    let sent = act.send_event(feed, event, rendered);
    if sent == Sent::Full
        && let Some(state) = act.core().feeds.get_mut(feed)
    {
        state.follower.cursor = state.follower.cursor.min(event.seq - 1);
    }
    settle(act, sent, ctx)
}

/// The client is not reading: stop writing, and when it has room again tell it
/// it lagged and catch every feed up from the log.
pub(crate) fn stall<S: Session>(act: &mut S, ctx: &mut Context<S>) {
    if act.core().stalled {
        return;
    }
    act.core().stalled = true;
    metrics::counter!(metric::STREAM_LAGGED).increment(1);
    act.room()
        .into_actor(act)
        .map(|open, act, ctx| {
            if !open {
                ctx.stop();
                return;
            }
            act.core().stalled = false;
            let after = act.core().feeds.values().map(|f| f.follower.cursor).min().unwrap_or(0);
            let sent = act.send_lagged(after);
            if settle(act, sent, ctx) {
                let upto = act.core().http.tail_cursor();
                let feeds: Vec<String> = act.core().feeds.keys().cloned().collect();
                for feed in feeds {
                    catch_up(act, feed, upto, ctx);
                }
            }
        })
        .spawn(ctx);
}

/// Reads what `feed` missed from the store, a page at a time, up to at least
/// `upto`, and sends it.
pub(crate) fn catch_up<S: Session>(act: &mut S, feed: String, upto: i64, ctx: &mut Context<S>) {
    let core = act.core();
    if core.stalled {
        return;
    }
    let Some(state) = core.feeds.get_mut(&feed) else { return };
    if state.catching_up {
        return;
    }
    state.catching_up = true;
    let generation = state.generation;
    let mut follower = state.follower.clone();
    let resets = core.resets;
    let store = core.http.courier().store().clone();
    let max_event_bytes = core.http.options().max_event_bytes;
    async move {
        let result = follower.catch_up_page(&store, upto, max_event_bytes).await;
        (follower, result)
    }
    .into_actor(act)
    .map(move |(follower, result), act, ctx| {
        if act.core().resets != resets {
            // Read before the log went back: the next batch starts a fresh catch-up.
            return;
        }
        let Some(state) = act.core().feeds.get_mut(&feed).filter(|s| s.generation == generation) else {
            return;
        };
        state.catching_up = false;
        match result {
            Ok((events, done)) => {
                state.follower = follower;
                for event in &events {
                    if !send(act, &feed, event, None, ctx) {
                        return;
                    }
                }
                if !done {
                    catch_up(act, feed, upto, ctx);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "stream catch-up failed; retrying");
                ctx.run_later(Duration::from_millis(200), move |act, ctx| {
                    catch_up(act, feed, upto, ctx)
                });
            }
        }
    })
    .spawn(ctx);
}
