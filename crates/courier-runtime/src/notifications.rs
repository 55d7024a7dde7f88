//! Notifications for people (not the notifier, which wakes nodes): the
//! [`Notifications`] handle that sends, dismisses and replays them, its options,
//! and the hooks an application plugs in. Every write goes through the node's
//! `StoreActor`, so each one reaches the live streams of every node the way any
//! other change does.

use std::sync::Arc;
use std::time::Duration;

use courier_core::{
    Cursor, Dismissal, NewNotification, NotificationFilter, NotificationMode, NotificationNotice, NotificationRecord,
    NotificationSent, NotificationTtl, Replay, Subscriber, Target, Viewer, check_key,
};
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

use crate::error::RuntimeError;
use crate::handle::Courier;
use crate::store_actor::{DismissGroup, DismissNotification, SendNotification, SetSourceSubscription};

/// Largest payload accepted, in bytes of JSON.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// How notifications are kept.
///
/// ```
/// use std::time::Duration;
/// use courier_runtime::NotificationOptions;
/// let options = NotificationOptions::default();
/// assert_eq!(options.ttl.queued, Duration::from_secs(24 * 3600));
/// assert_eq!(options.cleanup_interval, Duration::from_secs(600));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NotificationOptions {
    /// How long stored modes are kept (`notifications.queued_ttl`, `.timeseries_ttl`).
    pub ttl: NotificationTtl,
    /// How often one node of the cluster deletes expired ones (`notifications.cleanup_interval`).
    pub cleanup_interval: Duration,
}

impl Default for NotificationOptions {
    fn default() -> Self {
        NotificationOptions {
            ttl: NotificationTtl::default(),
            cleanup_interval: Duration::from_secs(600),
        }
    }
}

type Filter = Arc<dyn Fn(&mut NewNotification) -> bool + Send + Sync>;
type SentHook = Arc<dyn Fn(&NotificationSent) + Send + Sync>;
type DismissedHook = Arc<dyn Fn(&Subscriber, &[Uuid]) + Send + Sync>;

/// What an application runs around sends and dismissals, on the node that makes
/// them (set on the builder: `before_notification_sent`, `on_notification_sent`,
/// `on_notification_dismissed`).
#[derive(Clone, Default)]
pub struct NotificationHooks {
    filters: Vec<Filter>,
    sent: Vec<SentHook>,
    dismissed: Vec<DismissedHook>,
}

impl NotificationHooks {
    pub(crate) fn add_filter(&mut self, f: Filter) {
        self.filters.push(f);
    }

    pub(crate) fn add_sent(&mut self, f: SentHook) {
        self.sent.push(f);
    }

    pub(crate) fn add_dismissed(&mut self, f: DismissedHook) {
        self.dismissed.push(f);
    }

    /// Runs the filters in order; false if one suppressed the notification.
    pub(crate) fn admit(&self, notification: &mut NewNotification) -> bool {
        self.filters.iter().all(|f| f(notification))
    }

    pub(crate) fn sent(&self, sent: &NotificationSent) {
        for hook in &self.sent {
            hook(sent);
        }
    }

    pub(crate) fn dismissed(&self, subscriber: &Subscriber, ids: &[Uuid]) {
        if !ids.is_empty() {
            for hook in &self.dismissed {
                hook(subscriber, ids);
            }
        }
    }
}

/// Why a notification call failed.
#[derive(Debug, Error)]
pub enum NotificationError {
    /// The notification is not acceptable; `field` says which part.
    #[error("invalid notification {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Too large: the payload, or an ephemeral notification for the cluster's
    /// notifier (which carries at most `max` bytes and cannot fetch an ephemeral
    /// notification from the store).
    #[error("notification too large: {bytes} bytes, at most {max} {what}")]
    TooLarge {
        /// How big it is.
        bytes: usize,
        /// The limit.
        max: usize,
        /// Which limit.
        what: &'static str,
    },
    /// The runtime (store) failed (boxed: the common results stay small).
    #[error(transparent)]
    Runtime(Box<RuntimeError>),
}

impl From<RuntimeError> for NotificationError {
    fn from(e: RuntimeError) -> Self {
        NotificationError::Runtime(Box::new(e))
    }
}

impl From<courier_core::StoreError> for NotificationError {
    fn from(e: courier_core::StoreError) -> Self {
        RuntimeError::from(e).into()
    }
}

impl From<actix::MailboxError> for NotificationError {
    fn from(e: actix::MailboxError) -> Self {
        RuntimeError::from(e).into()
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> NotificationError {
    NotificationError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Checks what a sender controls: a JSON-object payload of at most
/// [`MAX_PAYLOAD`] bytes, a type and a group of printable text.
pub fn validate(notification: &NewNotification) -> Result<(), NotificationError> {
    check_key("type", &notification.kind).map_err(|e| invalid("type", e.0))?;
    if let Some(group) = &notification.group {
        check_key("group", group).map_err(|e| invalid("group", e.0))?;
    }
    match &notification.target {
        Target::Broadcast => {}
        other => check_key(other.kind(), other.key()).map_err(|e| invalid("target", e.0))?,
    }
    if !notification.payload.is_object() {
        return Err(invalid("payload", "must be a JSON object"));
    }
    let bytes = serde_json::to_vec(&notification.payload)
        .map_err(|e| invalid("payload", e.to_string()))?
        .len();
    if bytes > MAX_PAYLOAD {
        return Err(NotificationError::TooLarge {
            bytes,
            max: MAX_PAYLOAD,
            what: "for a payload",
        });
    }
    Ok(())
}

/// Sends, dismisses and replays notifications for people. Get one from
/// [`Courier::notifications`].
///
/// ```no_run
/// # async fn demo(courier: courier_runtime::Courier) -> Result<(), Box<dyn std::error::Error>> {
/// use courier_core::NotificationMode;
/// use serde_json::json;
/// let notifications = courier.notifications();
/// notifications.user("u-42").send("generic", json!({"title": "New reply", "message": "Someone replied."})).await?;
/// notifications
///     .session("sid-1")
///     .group("deploy")
///     .mode(NotificationMode::Timeseries)
///     .send("generic", json!({"title": "Deploying", "message": "step 2/3"}))
///     .await?;
/// notifications.subscribe_source("u-42", "blog:tech").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Notifications {
    courier: Courier,
}

/// A notification being composed for one target (see [`Notifications::to`]).
pub struct Compose {
    notifications: Notifications,
    target: Target,
    mode: NotificationMode,
    group: Option<String>,
}

impl Compose {
    /// Sets the mode (default queued; broadcasts are always ephemeral).
    pub fn mode(mut self, mode: NotificationMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the group: this notification replaces the live one of the same target and group.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Sends a notification of `kind` (`generic` toasts in the browser client,
    /// with `payload.title` and `payload.message`). `None` if a hook suppressed it.
    pub async fn send(self, kind: &str, payload: Value) -> Result<Option<NotificationSent>, NotificationError> {
        let mut new = NewNotification::new(self.target, kind, payload).with_mode(self.mode);
        new.group = self.group;
        self.notifications.send(new).await
    }
}

impl Courier {
    /// Notifications for people.
    pub fn notifications(&self) -> Notifications {
        Notifications { courier: self.clone() }
    }
}

impl Notifications {
    /// A notification for `target`.
    pub fn to(&self, target: Target) -> Compose {
        Compose {
            notifications: self.clone(),
            target,
            mode: NotificationMode::Queued,
            group: None,
        }
    }

    /// A notification for one browser session.
    pub fn session(&self, session: impl Into<String>) -> Compose {
        self.to(Target::Session(session.into()))
    }

    /// A notification for every session of a user.
    pub fn user(&self, user: impl Into<String>) -> Compose {
        self.to(Target::User(user.into()))
    }

    /// A notification for every user subscribed to a source.
    pub fn source(&self, source: impl Into<String>) -> Compose {
        self.to(Target::Source(source.into()))
    }

    /// A notification for every open connection (always ephemeral).
    pub fn broadcast(&self) -> Compose {
        self.to(Target::Broadcast)
    }

    /// The options in force.
    pub fn options(&self) -> &NotificationOptions {
        self.courier.node.notification_options()
    }

    /// Sends `notification` after the node's filters (`None` if one suppressed
    /// it), then runs the sent hooks.
    pub async fn send(&self, mut notification: NewNotification) -> Result<Option<NotificationSent>, NotificationError> {
        validate(&notification)?;
        let node = &self.courier.node;
        if !node.notification_hooks().admit(&mut notification) {
            return Ok(None);
        }
        // A hook may have rewritten it.
        validate(&notification)?;
        self.check_transport(&notification)?;
        let write = SendNotification {
            notification,
            ttl: node.notification_options().ttl,
        };
        let sent = node.writes().send(write).await??;
        node.notification_hooks().sent(&sent);
        Ok(Some(sent))
    }

    /// An ephemeral notification is not stored, so the notifier must carry it
    /// whole to the other nodes.
    fn check_transport(&self, notification: &NewNotification) -> Result<(), NotificationError> {
        let Some(max) = self.courier.notifier().max_payload() else {
            return Ok(());
        };
        if notification.effective_mode() != NotificationMode::Ephemeral {
            return Ok(());
        }
        let notice = NotificationNotice::Sent {
            id: notification.id,
            seq: i64::MAX,
            target: notification.target.clone(),
            mode: NotificationMode::Ephemeral,
            replaced: Vec::new(),
            envelope: Some(courier_core::envelope(
                &notification.kind,
                notification.id,
                NotificationMode::Ephemeral,
                chrono::Utc::now(),
                &notification.payload,
                notification.group.as_deref(),
            )),
        };
        // The message around the notice: its key, the origin, the channel framing.
        let bytes = serde_json::to_vec(&notice).map(|v| v.len()).unwrap_or(usize::MAX) + 128;
        if bytes > max {
            return Err(NotificationError::TooLarge {
                bytes,
                max,
                what: "for an ephemeral notification on this cluster's notifier (send it queued or timeseries, which \
                       travel by id)",
            });
        }
        Ok(())
    }

    /// Dismisses a notification for the viewer's subscriber (see
    /// [`NotificationStore::dismiss_notification`](courier_core::NotificationStore::dismiss_notification)).
    pub async fn dismiss(&self, viewer: &Viewer, id: Uuid) -> Result<Dismissal, NotificationError> {
        let write = DismissNotification {
            viewer: viewer.clone(),
            id,
        };
        let node = &self.courier.node;
        let outcome = node.writes().send(write).await??;
        if outcome == Dismissal::Dismissed {
            node.notification_hooks().dismissed(&viewer.subscriber(), &[id]);
        }
        Ok(outcome)
    }

    /// Dismisses a group for the viewer's subscriber; the ids newly dismissed.
    pub async fn dismiss_group(&self, viewer: &Viewer, group: &str) -> Result<Vec<Uuid>, NotificationError> {
        check_key("group", group).map_err(|e| invalid("group", e.0))?;
        let write = DismissGroup {
            viewer: viewer.clone(),
            group: group.to_string(),
        };
        let node = &self.courier.node;
        let ids = node.writes().send(write).await??;
        node.notification_hooks().dismissed(&viewer.subscriber(), &ids);
        Ok(ids)
    }

    /// Subscribes a user to a source; whether it was new.
    pub async fn subscribe_source(&self, user: &str, source: &str) -> Result<bool, NotificationError> {
        self.set_subscription(user, source, true).await
    }

    /// Unsubscribes a user from a source; whether it was subscribed.
    pub async fn unsubscribe_source(&self, user: &str, source: &str) -> Result<bool, NotificationError> {
        self.set_subscription(user, source, false).await
    }

    async fn set_subscription(&self, user: &str, source: &str, subscribed: bool) -> Result<bool, NotificationError> {
        check_key("user_id", user).map_err(|e| invalid("user_id", e.0))?;
        check_key("source", source).map_err(|e| invalid("source", e.0))?;
        let write = SetSourceSubscription {
            user: user.to_string(),
            source: source.to_string(),
            subscribed,
        };
        Ok(self.courier.node.writes().send(write).await??)
    }

    /// What a connecting viewer is sent before it goes live.
    pub async fn replay(
        &self,
        viewer: &Viewer,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Replay, NotificationError> {
        Ok(self.courier.store().replay_notifications(viewer, cursor, limit).await?)
    }

    /// Stored notifications by id.
    pub async fn get(&self, ids: &[Uuid]) -> Result<Vec<NotificationRecord>, NotificationError> {
        Ok(self.courier.store().get_notifications(ids).await?)
    }

    /// Stored notifications, newest first.
    pub async fn list(&self, filter: &NotificationFilter) -> Result<Vec<NotificationRecord>, NotificationError> {
        Ok(self.courier.store().list_notifications(filter).await?)
    }

    /// The sources a user is subscribed to.
    pub async fn user_sources(&self, user: &str) -> Result<Vec<String>, NotificationError> {
        Ok(self.courier.store().user_sources(user).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_are_objects_of_bounded_size_and_names_are_printable() {
        let ok = NewNotification::new(Target::User("u".into()), "generic", json!({"title": "t"}));
        assert!(validate(&ok).is_ok());
        let not_object = NewNotification::new(Target::User("u".into()), "generic", json!([1]));
        assert!(matches!(
            validate(&not_object),
            Err(NotificationError::Invalid { field: "payload", .. })
        ));
        let huge = NewNotification::new(
            Target::User("u".into()),
            "generic",
            json!({"x": "y".repeat(MAX_PAYLOAD)}),
        );
        assert!(matches!(validate(&huge), Err(NotificationError::TooLarge { .. })));
        let bad_group = ok.clone().with_group("a\nb");
        assert!(matches!(
            validate(&bad_group),
            Err(NotificationError::Invalid { field: "group", .. })
        ));
        let bad_type = NewNotification::new(Target::User("u".into()), "", json!({}));
        assert!(matches!(
            validate(&bad_type),
            Err(NotificationError::Invalid { field: "type", .. })
        ));
    }

    #[test]
    fn filters_run_in_order_and_may_rewrite_or_suppress() {
        let mut hooks = NotificationHooks::default();
        hooks.add_filter(Arc::new(|n: &mut NewNotification| {
            n.payload["stamped"] = json!(true);
            true
        }));
        hooks.add_filter(Arc::new(|n: &mut NewNotification| n.kind != "spam"));
        let mut n = NewNotification::new(Target::User("u".into()), "generic", json!({}));
        assert!(hooks.admit(&mut n));
        assert_eq!(n.payload["stamped"], json!(true));
        let mut spam = NewNotification::new(Target::User("u".into()), "spam", json!({}));
        assert!(!hooks.admit(&mut spam));
    }
}
