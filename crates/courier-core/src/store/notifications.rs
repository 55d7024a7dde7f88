//! Notifications for people: sending, dismissing, replaying to a connecting
//! browser, persistent subscriptions to sources, and expiry.

use async_trait::async_trait;
use uuid::Uuid;

use crate::change::Committed;
use crate::error::StoreResult;
use crate::notification::{
    Cursor, Dismissal, NewNotification, NotificationFilter, NotificationRecord, NotificationSent, NotificationTtl,
    Replay, Viewer,
};

/// Notifications (see [`crate::notification`] for the model).
///
/// Who can see a notification: a viewer sees notifications targeted at its
/// session, at its user, and at sources it may read (its own `sources` and its
/// user's persistent subscriptions). Dismissals are per subscriber
/// ([`Viewer::subscriber`]).
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Sends a notification. Stored modes are kept for their TTL from `ttl`; a
    /// notification with a group first deletes the live one of the same target
    /// and group (with its dismissals), atomically, so concurrent senders leave
    /// exactly one. An ephemeral one (broadcasts always) is not stored, but its
    /// event is logged like any other. The record answered carries the
    /// notification's `seq` (its event's).
    /// Change: `NotificationSent` (with what it replaced).
    async fn send_notification(
        &self,
        new: NewNotification,
        ttl: &NotificationTtl,
    ) -> StoreResult<Committed<NotificationSent>>;

    /// Dismisses a notification for the viewer's subscriber: `NotFound` if the
    /// viewer cannot see it (or it expired, was replaced, never was stored),
    /// `NotDismissible` for a timeseries one. Dismissing twice changes nothing
    /// the second time. Change: `NotificationsDismissed`.
    async fn dismiss_notification(&self, viewer: &Viewer, id: Uuid) -> StoreResult<Committed<Dismissal>>;

    /// Dismisses, for the viewer's subscriber, every live queued notification
    /// the viewer can see in `group`; the ids newly dismissed.
    /// Change: `NotificationsDismissed` (if any).
    async fn dismiss_group(&self, viewer: &Viewer, group: &str) -> StoreResult<Committed<Vec<Uuid>>>;

    /// What a connecting viewer is sent before it goes live: its live queued
    /// notifications not dismissed by its subscriber, and, with a cursor, the
    /// timeseries notifications after it (at most `limit` of each, oldest
    /// first), and whether notifications after the cursor were deleted by expiry
    /// before it came back.
    async fn replay_notifications(&self, viewer: &Viewer, cursor: Option<Cursor>, limit: u32) -> StoreResult<Replay>;

    /// The stored notifications among `ids`, in no particular order.
    async fn get_notifications(&self, ids: &[Uuid]) -> StoreResult<Vec<NotificationRecord>>;

    /// Stored notifications matching `filter`, newest first.
    async fn list_notifications(&self, filter: &NotificationFilter) -> StoreResult<Vec<NotificationRecord>>;

    /// Subscribes a user to a source; whether it was new.
    /// Change: `SourceSubscription` (if new).
    async fn subscribe_source(&self, user: &str, source: &str) -> StoreResult<Committed<bool>>;

    /// Unsubscribes a user from a source; whether it was subscribed.
    /// Change: `SourceSubscription` (if it was).
    async fn unsubscribe_source(&self, user: &str, source: &str) -> StoreResult<Committed<bool>>;

    /// The sources a user is subscribed to, sorted.
    async fn user_sources(&self, user: &str) -> StoreResult<Vec<String>>;

    /// Deletes up to `limit` expired notifications with their dismissals, and
    /// remembers the newest timeseries one deleted (so a replay from before it can
    /// say it may be incomplete); how many.
    async fn sweep_notifications(&self, limit: u32) -> StoreResult<u64>;
}
