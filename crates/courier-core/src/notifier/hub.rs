//! The in-process hub: per-topic lists of subscriber mailboxes, and delivery into them.
//!
//! Every notifier delivers to this node's subscribers through a hub, whether the
//! notice was published here or arrived from another node, so local waiters wake
//! the instant a commit is published.
//!
//! A cluster transport also needs to know when a topic's last local subscriber has
//! gone, so that it can stop listening to that channel: it installs a
//! [`TopicListener`] with [`Hub::set_listener`]. (It learns about first subscribers
//! from its own `subscribe`, which must wait for the server's confirmation anyway.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use super::{Delivery, Mailbox, Notice, Subscription, Topic};
use dashmap::DashMap;

/// How many notices a subscription may hold before it is told to resync.
pub const DEFAULT_MAILBOX: usize = 256;

/// Subscribers by topic.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use courier_core::{Hub, Notice, Topic};
/// let hub = Hub::new();
/// let mut sub = hub.subscribe(vec![Topic::Work]);
/// hub.deliver(&[Notice::Work { queue: "default".into() }]);
/// assert_eq!(sub.next().await, Some(Notice::Work { queue: "default".into() }));
/// # }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

/// Told by a [`Hub`] when a topic's subscriber list changes between empty and not.
///
/// Called synchronously from [`Hub::subscribe`] and from a subscription's drop, on
/// whatever thread that happens: an implementation must not block and must not call
/// back into the hub (sending a message to an actor is the intended use).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use courier_core::Topic;
/// use courier_core::{Hub, TopicListener};
///
/// #[derive(Default)]
/// struct Count(AtomicUsize, AtomicUsize);
/// impl TopicListener for Count {
///     fn first_subscriber(&self, _: &Topic) { self.0.fetch_add(1, Ordering::SeqCst); }
///     fn last_unsubscribed(&self, _: &Topic) { self.1.fetch_add(1, Ordering::SeqCst); }
/// }
///
/// let hub = Hub::new();
/// let count = Arc::new(Count::default());
/// assert!(hub.set_listener(count.clone()));
/// let a = hub.subscribe(vec![Topic::Work]);
/// let b = hub.subscribe(vec![Topic::Work]);
/// drop(a);
/// drop(b);
/// assert_eq!(count.0.load(Ordering::SeqCst), 1);
/// assert_eq!(count.1.load(Ordering::SeqCst), 1);
/// ```
pub trait TopicListener: Send + Sync + 'static {
    /// `topic` got its first subscriber on this node.
    fn first_subscriber(&self, topic: &Topic);
    /// `topic`'s last subscriber on this node went away.
    fn last_unsubscribed(&self, topic: &Topic);
}

#[derive(Default)]
struct HubInner {
    topics: DashMap<Topic, Vec<(u64, Mailbox)>>,
    listener: OnceLock<Arc<dyn TopicListener>>,
    next_id: AtomicU64,
    mailbox: AtomicU64,
    lagged: AtomicU64,
    delivered: AtomicU64,
}

impl Default for Hub {
    /// The same as [`Hub::new`].
    fn default() -> Self {
        Hub::new()
    }
}

/// Counters of what the hub did, for metrics.
///
/// ```
/// use courier_core::{Hub, Notice, Topic};
/// let hub = Hub::new();
/// let _sub = hub.subscribe(vec![Topic::Events]);
/// hub.deliver(&[Notice::Events]);
/// assert_eq!((hub.stats().topics, hub.stats().delivered), (1, 1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Notices queued into a mailbox.
    pub delivered: u64,
    /// Notices that found a full mailbox (each such subscriber was told to resync).
    pub lagged: u64,
    /// Topics with at least one subscriber.
    pub topics: usize,
}

/// Unregisters a subscription's mailboxes when the subscription is dropped.
struct Registration {
    hub: Weak<HubInner>,
    id: u64,
    topics: Vec<Topic>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(hub) = self.hub.upgrade() else { return };
        for topic in &self.topics {
            let emptied = hub.topics.remove_if_mut(topic, |_, subs| {
                subs.retain(|(id, _)| *id != self.id);
                subs.is_empty()
            });
            if emptied.is_some()
                && let Some(listener) = hub.listener.get()
            {
                listener.last_unsubscribed(topic);
            }
        }
    }
}

impl Hub {
    /// An empty hub with mailboxes of [`DEFAULT_MAILBOX`].
    pub fn new() -> Self {
        Self::with_mailbox(DEFAULT_MAILBOX)
    }

    /// An empty hub whose subscriptions hold up to `capacity` notices.
    pub fn with_mailbox(capacity: usize) -> Self {
        let hub = Hub { inner: Arc::default() };
        hub.inner.mailbox.store(capacity.max(1) as u64, Ordering::Relaxed);
        hub
    }

    /// Registers a subscription to `topics`; it is active on return.
    pub fn subscribe(&self, topics: Vec<Topic>) -> Subscription {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let capacity = self.inner.mailbox.load(Ordering::Relaxed) as usize;
        let registration = Registration {
            hub: Arc::downgrade(&self.inner),
            id,
            topics: topics.clone(),
        };
        let (subscription, mailbox) = Subscription::channel(capacity, Box::new(registration));
        for topic in topics {
            let first = match self.inner.topics.entry(topic.clone()) {
                dashmap::mapref::entry::Entry::Occupied(mut subs) => {
                    subs.get_mut().push((id, mailbox.clone()));
                    false
                }
                dashmap::mapref::entry::Entry::Vacant(slot) => {
                    slot.insert(vec![(id, mailbox.clone())]);
                    true
                }
            };
            // Called with no map guard held, so the listener may read the hub.
            if first && let Some(listener) = self.inner.listener.get() {
                listener.first_subscriber(&topic);
            }
        }
        subscription
    }

    /// Installs the one listener told about topics gaining their first subscriber or
    /// losing their last. `false` (and no change) if one is already installed.
    pub fn set_listener(&self, listener: Arc<dyn TopicListener>) -> bool {
        self.inner.listener.set(listener).is_ok()
    }

    /// Delivers each notice to the subscribers of its topic.
    pub fn deliver(&self, notices: &[Notice]) {
        for notice in notices {
            match notice.topic() {
                Some(topic) => {
                    if let Some(subs) = self.inner.topics.get(&topic) {
                        for (_, mailbox) in subs.iter() {
                            self.count(mailbox.deliver(notice.clone()));
                        }
                    }
                }
                None => self.resync_all(),
            }
        }
    }

    /// Tells every subscriber to re-check the store (after a transport reconnected
    /// and notices may have been missed).
    pub fn resync_all(&self) {
        for subs in self.inner.topics.iter() {
            for (_, mailbox) in subs.iter() {
                self.count(mailbox.deliver(Notice::Resync));
            }
        }
    }

    /// The topics that currently have subscribers (a cluster transport subscribes to these).
    pub fn topics(&self) -> Vec<Topic> {
        self.inner.topics.iter().map(|e| e.key().clone()).collect()
    }

    /// Whether anyone here listens to `topic`.
    pub fn has_subscribers(&self, topic: &Topic) -> bool {
        self.inner.topics.contains_key(topic)
    }

    /// Counters so far.
    pub fn stats(&self) -> HubStats {
        HubStats {
            delivered: self.inner.delivered.load(Ordering::Relaxed),
            lagged: self.inner.lagged.load(Ordering::Relaxed),
            topics: self.inner.topics.len(),
        }
    }

    fn count(&self, delivery: Delivery) {
        match delivery {
            Delivery::Delivered => {
                self.inner.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Delivery::Lagged => {
                self.inner.lagged.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("a subscriber's mailbox is full; it will resync from the store");
            }
            Delivery::Closed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{TaskId, TaskState};

    use super::*;

    fn task_notice(id: TaskId) -> Notice {
        Notice::Task {
            task_id: id,
            state: TaskState::Completed,
        }
    }

    #[tokio::test]
    async fn notices_reach_only_their_topics_subscribers() {
        let hub = Hub::new();
        let a = TaskId(uuid_like(1));
        let b = TaskId(uuid_like(2));
        let mut sub_a = hub.subscribe(vec![Topic::Task(a)]);
        let mut sub_b = hub.subscribe(vec![Topic::Task(b)]);
        hub.deliver(&[task_notice(a)]);
        assert_eq!(sub_a.next().await, Some(task_notice(a)));
        assert_eq!(sub_b.next_within(Duration::from_millis(20)).await, None);
    }

    #[tokio::test]
    async fn dropping_a_subscription_unregisters_it() {
        let hub = Hub::new();
        let sub = hub.subscribe(vec![Topic::Work, Topic::Events]);
        assert_eq!(hub.stats().topics, 2);
        drop(sub);
        assert_eq!(hub.stats().topics, 0);
        hub.deliver(&[Notice::Events]);
        assert_eq!(hub.stats().delivered, 0);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_to_resync_and_does_not_block_others() {
        let hub = Hub::with_mailbox(1);
        let mut slow = hub.subscribe(vec![Topic::Events]);
        let mut fast = hub.subscribe(vec![Topic::Events]);
        hub.deliver(&[Notice::Events]);
        assert_eq!(fast.next().await, Some(Notice::Events));
        hub.deliver(&[Notice::Events]);
        assert_eq!(fast.next().await, Some(Notice::Events));
        assert_eq!(hub.stats().lagged, 1);
        assert_eq!(slow.next().await, Some(Notice::Resync));
    }

    fn uuid_like(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }
}
