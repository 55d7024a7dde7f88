//! `NotificationHub`: one per node, the fan-out from notification changes to the
//! browser streams open on this node.
//!
//! It holds the node's one subscription to the notifier's notifications channel
//! (never one per stream) and an index of open streams by who they are
//! (session, user, the sources they may read). A stream is a member of the hub,
//! not an actor of its own, so that an idle one costs a few hundred bytes: the
//! hub writes each frame straight into the stream's body channel, rendered once
//! for every member it goes to.
//!
//! A new member starts *buffering*: it receives what arrives while its replay is
//! being read and written, and goes live (`GoLive`) with the ids it replayed, so
//! nothing is lost or sent twice in between. A member whose channel is full (a
//! client not reading) is dropped from the hub and told to reconnect once it has
//! room: its reconnect replays every stored notification. A notifier resync (the
//! transport may have lost messages) does the same for every member.
//!
//! Notices that carry no envelope (too big for the transport) are completed from
//! the store; notices are handled in arrival order, so such a read holds back the
//! ones after it instead of letting them overtake.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use courier_core::{
    Notice, NotificationMode, NotificationNotice, Notifier, Store, Subscriber, Target, Topic, Viewer,
    dismissed_envelope,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::outbox::{Refused, Sender};

/// One SSE frame of the notification stream.
pub(crate) fn frame(seq: Option<i64>, event: &str, data: &Value) -> Bytes {
    let id = seq.map(|s| format!("id: {s}\n")).unwrap_or_default();
    Bytes::from(format!("{id}event: {event}\ndata: {data}\n\n"))
}

/// Tells a stream to reconnect (it fell behind, or notices may have been lost).
fn reconnect_frame(reason: &str) -> Bytes {
    frame(None, "reconnect", &json!({ "reason": reason }))
}

/// A stream joins: who it is, the sources its user subscribes to, and its body
/// channel. Answers the member's id.
#[derive(Message)]
#[rtype(result = "u64")]
pub(crate) struct Join {
    pub viewer: Viewer,
    pub user_sources: Vec<String>,
    pub out: Sender,
}

/// A member has written its replay: send it what it buffered (less what it
/// replayed), then live.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct GoLive {
    pub member: u64,
    pub replayed: HashSet<Uuid>,
}

/// A member's stream ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Leave(pub u64);

/// Tell every member the server is shutting down, and close their streams.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseAll;

/// How many streams are open on this node.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct Count;

/// An audience a member belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Session(String),
    User(String),
    Source(String),
}

/// A frame for members, and the notification it carries (to skip replayed ones).
#[derive(Clone)]
struct Outgoing {
    notification: Option<Uuid>,
    bytes: Bytes,
}

struct Member {
    viewer: Viewer,
    sources: HashSet<String>,
    out: Sender,
    /// Frames held while the replay is written; `None` once live.
    buffer: Option<Vec<Outgoing>>,
}

/// The actor. See the module documentation.
pub(crate) struct NotificationHub {
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    keepalive: Duration,
    members: HashMap<u64, Member>,
    index: HashMap<Key, HashSet<u64>>,
    next_id: u64,
    /// Notices waiting for an earlier one's store read.
    pending: VecDeque<NotificationNotice>,
    reading: bool,
}

impl NotificationHub {
    pub(crate) fn new(store: Arc<dyn Store>, notifier: Arc<dyn Notifier>, keepalive: Duration) -> Self {
        NotificationHub {
            store,
            notifier,
            keepalive,
            members: HashMap::new(),
            index: HashMap::new(),
            next_id: 0,
            pending: VecDeque::new(),
            reading: false,
        }
    }

    fn keys_of(member: &Member) -> Vec<Key> {
        let mut keys = vec![Key::Session(member.viewer.session.clone())];
        if let Some(user) = &member.viewer.user {
            keys.push(Key::User(user.clone()));
        }
        keys.extend(member.sources.iter().cloned().map(Key::Source));
        keys
    }

    fn remove(&mut self, id: u64) -> Option<Member> {
        let member = self.members.remove(&id)?;
        for key in Self::keys_of(&member) {
            if let Some(set) = self.index.get_mut(&key) {
                set.remove(&id);
                if set.is_empty() {
                    self.index.remove(&key);
                }
            }
        }
        Some(member)
    }

    /// Members a notification for `target` goes to.
    fn audience(&self, target: &Target) -> Vec<u64> {
        let key = match target {
            Target::Broadcast => return self.members.keys().copied().collect(),
            Target::Session(s) => Key::Session(s.clone()),
            Target::User(u) => Key::User(u.clone()),
            Target::Source(s) => Key::Source(s.clone()),
        };
        self.index
            .get(&key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Members whose dismissals are `subscriber`'s.
    fn subscribers(&self, subscriber: &Subscriber) -> Vec<u64> {
        let key = match subscriber {
            Subscriber::User(u) => Key::User(u.clone()),
            Subscriber::Session(s) => Key::Session(s.clone()),
        };
        self.index
            .get(&key)
            .map(|set| {
                set.iter()
                    .copied()
                    .filter(|id| {
                        self.members
                            .get(id)
                            .is_some_and(|m| &m.viewer.subscriber() == subscriber)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Queues `frame` for each member; a member that cannot take it is dropped
    /// and told to reconnect when it can.
    fn send(&mut self, members: &[u64], frame: &Outgoing) {
        let mut lagging = Vec::new();
        for id in members {
            let Some(member) = self.members.get_mut(id) else {
                continue;
            };
            if let Some(buffer) = &mut member.buffer {
                buffer.push(frame.clone());
                continue;
            }
            match member.out.try_send(frame.bytes.clone()) {
                Ok(()) => {}
                Err(Refused::Full) => lagging.push(*id),
                Err(Refused::Closed) => {
                    self.remove(*id);
                }
            }
        }
        for id in lagging {
            self.lag(id, "lagged");
        }
    }

    /// Drops a member and, once its client has room, tells it to reconnect.
    fn lag(&mut self, id: u64, reason: &'static str) {
        let Some(member) = self.remove(id) else { return };
        metrics::counter!(courier_core::metric::STREAM_LAGGED).increment(1);
        let out = member.out;
        actix::spawn(async move {
            let _ = out.send(reconnect_frame(reason)).await;
            // Dropping the last sender ends the response.
        });
    }

    fn handle_notice(&mut self, notice: NotificationNotice, ctx: &mut Context<Self>) {
        if self.reading {
            self.pending.push_back(notice);
            return;
        }
        match notice {
            NotificationNotice::Sent {
                id,
                seq,
                target,
                mode,
                replaced,
                envelope: Some(envelope),
            } => self.deliver_sent(id, seq, &target, mode, &replaced, &envelope),
            NotificationNotice::Sent {
                id,
                seq,
                target,
                mode,
                replaced,
                envelope: None,
            } => {
                // Too big for the transport: read it (stored modes only travel this way).
                self.reading = true;
                let store = self.store.clone();
                async move { store.get_notifications(&[id]).await }
                    .into_actor(self)
                    .map(move |result, act, ctx| {
                        act.reading = false;
                        match result {
                            Ok(found) => match found.into_iter().next() {
                                Some(record) => {
                                    act.deliver_sent(id, seq, &target, mode, &replaced, &record.envelope())
                                }
                                // Replaced or expired since: nothing left to show.
                                None => act.dismiss_replaced(&target, &replaced),
                            },
                            Err(e) => {
                                tracing::warn!(error = %e, notification = %id, "could not read a notification; its audience will reconnect");
                                for member in act.audience(&target) {
                                    act.lag(member, "unavailable");
                                }
                            }
                        }
                        act.drain(ctx);
                    })
                    .spawn(ctx);
            }
            NotificationNotice::Dismissed { ids, seq, subscriber } => {
                let members = self.subscribers(&subscriber);
                let now = chrono::Utc::now();
                for (i, id) in ids.iter().enumerate() {
                    // The last frame carries the dismissal's sequence number.
                    let frame_seq = (i + 1 == ids.len()).then_some(seq);
                    let outgoing = Outgoing {
                        notification: None,
                        bytes: frame(frame_seq, "notification", &dismissed_envelope(*id, now)),
                    };
                    self.send(&members, &outgoing);
                }
            }
            NotificationNotice::Subscription {
                user,
                source,
                subscribed,
            } => {
                let members: Vec<u64> = self
                    .index
                    .get(&Key::User(user))
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default();
                for id in members {
                    let Some(member) = self.members.get_mut(&id) else {
                        continue;
                    };
                    // A source the token grants stays readable whatever the subscription.
                    if subscribed {
                        member.sources.insert(source.clone());
                        self.index.entry(Key::Source(source.clone())).or_default().insert(id);
                    } else if !member.viewer.sources.contains(&source) {
                        member.sources.remove(&source);
                        if let Some(set) = self.index.get_mut(&Key::Source(source.clone())) {
                            set.remove(&id);
                        }
                    }
                }
            }
        }
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        while !self.reading {
            let Some(next) = self.pending.pop_front() else { return };
            self.handle_notice(next, ctx);
        }
    }

    fn dismiss_replaced(&mut self, target: &Target, replaced: &[Uuid]) {
        if replaced.is_empty() {
            return;
        }
        let members = self.audience(target);
        let now = chrono::Utc::now();
        for old in replaced {
            let outgoing = Outgoing {
                notification: None,
                bytes: frame(None, "notification", &dismissed_envelope(*old, now)),
            };
            self.send(&members, &outgoing);
        }
    }

    fn deliver_sent(
        &mut self,
        id: Uuid,
        seq: i64,
        target: &Target,
        _mode: NotificationMode,
        replaced: &[Uuid],
        envelope: &Value,
    ) {
        let members = self.audience(target);
        if !members.is_empty() {
            let outgoing = Outgoing {
                notification: Some(id),
                bytes: frame(Some(seq), "notification", envelope),
            };
            self.send(&members, &outgoing);
        }
        // After the replacement, so a client that shows a group in one place can
        // update it there; the dismissal of the old id then finds nothing to remove.
        self.dismiss_replaced(target, replaced);
    }
}

impl Actor for NotificationHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(65_536);
        let notifier = self.notifier.clone();
        async move { notifier.subscribe(vec![Topic::Notifications]).await }
            .into_actor(self)
            .map(|sub, _, ctx| match sub {
                Ok(sub) => {
                    ctx.add_stream(futures::stream::unfold(sub, |mut sub| async move {
                        sub.next().await.map(|n| (n, sub))
                    }));
                }
                Err(e) => tracing::error!(error = %e, "notification streams get no live notifications"),
            })
            .spawn(ctx);
        // One timer for every stream: idle ones get a keepalive comment, and a
        // write to a closed one finds it gone.
        let keepalive = Bytes::from_static(b": keepalive\n\n");
        ctx.run_interval(self.keepalive, move |act, _| {
            let ids: Vec<u64> = act.members.keys().copied().collect();
            let mut gone = Vec::new();
            for id in ids {
                let Some(member) = act.members.get(&id) else { continue };
                if member.out.is_closed() {
                    gone.push(id);
                } else if member.out.is_empty() {
                    // Nothing queued: the connection is idle.
                    let _ = member.out.try_send(keepalive.clone());
                }
            }
            for id in gone {
                act.remove(id);
            }
        });
    }
}

/// Notifications changed somewhere in the cluster.
impl StreamHandler<Notice> for NotificationHub {
    fn handle(&mut self, notice: Notice, ctx: &mut Self::Context) {
        match notice {
            Notice::Notification(notice) => self.handle_notice(*notice, ctx),
            Notice::Resync => {
                // Notices may have been lost: every stream replays from the store.
                tracing::info!(
                    streams = self.members.len(),
                    "notifier resynced; notification streams reconnect"
                );
                let ids: Vec<u64> = self.members.keys().copied().collect();
                for id in ids {
                    self.lag(id, "resync");
                }
            }
            _ => {}
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

/// Registers a stream, buffering until it goes live.
impl Handler<Join> for NotificationHub {
    type Result = u64;

    fn handle(&mut self, msg: Join, _: &mut Self::Context) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let sources: HashSet<String> = msg.viewer.sources.iter().cloned().chain(msg.user_sources).collect();
        let member = Member {
            viewer: msg.viewer,
            sources,
            out: msg.out,
            buffer: Some(Vec::new()),
        };
        for key in Self::keys_of(&member) {
            self.index.entry(key).or_default().insert(id);
        }
        self.members.insert(id, member);
        id
    }
}

/// Flushes what a member buffered (less what it replayed) and makes it live.
impl Handler<GoLive> for NotificationHub {
    type Result = ();

    fn handle(&mut self, msg: GoLive, _: &mut Self::Context) {
        let Some(member) = self.members.get_mut(&msg.member) else {
            return;
        };
        let buffered = member.buffer.take().unwrap_or_default();
        let mut full = false;
        for frame in buffered {
            if frame.notification.is_some_and(|id| msg.replayed.contains(&id)) {
                continue;
            }
            if member.out.try_send(frame.bytes).is_err() {
                full = true;
                break;
            }
        }
        if full {
            self.lag(msg.member, "lagged");
        }
    }
}

/// Forgets a stream.
impl Handler<Leave> for NotificationHub {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Self::Context) {
        self.remove(msg.0);
    }
}

/// Ends every stream with a final event.
impl Handler<CloseAll> for NotificationHub {
    type Result = ();

    fn handle(&mut self, _: CloseAll, _: &mut Self::Context) {
        let ids: Vec<u64> = self.members.keys().copied().collect();
        for id in ids {
            if let Some(member) = self.remove(id) {
                let _ = member
                    .out
                    .try_send(frame(None, "shutdown", &json!({"reconnect": true})));
            }
        }
    }
}

/// How many streams are open.
impl Handler<Count> for NotificationHub {
    type Result = usize;

    fn handle(&mut self, _: Count, _: &mut Self::Context) -> usize {
        self.members.len()
    }
}
