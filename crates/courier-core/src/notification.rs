//! Notifications for people: what is sent to whom, how it is kept, and who has
//! dismissed it. (Not to be confused with the *notifier*, which wakes nodes and
//! waiters.)
//!
//! A notification has a **target**: one browser session, every session of one
//! user, a named source users subscribe to (`blog:tech`), or every open
//! connection. Its **mode** says how it is kept:
//!
//! | mode | stored | replayed | dismissible |
//! |---|---|---|---|
//! | `queued` (default) | until dismissed or its TTL (24 h) | on every connect | yes |
//! | `timeseries` | until its TTL (7 days) | only after the client's cursor | no |
//! | `ephemeral` | never | never | no |
//!
//! Broadcasts are ephemeral whatever mode is asked. A notification with a
//! **group** replaces the live one of the same target and group. Dismissal is
//! per **subscriber**: the user when the connection carries one, else the session.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::state::string_enum;

string_enum! {
    /// How a notification is kept and replayed.
    ///
    /// ```
    /// use courier_core::NotificationMode;
    /// assert_eq!("timeseries".parse::<NotificationMode>().unwrap(), NotificationMode::Timeseries);
    /// assert!(NotificationMode::Queued.is_dismissible());
    /// ```
    NotificationMode {
        /// Stored, replayed on every connect until dismissed.
        Queued => "queued",
        /// Stored, replayed only after a cursor; not dismissible.
        Timeseries => "timeseries",
        /// Never stored, never replayed, not dismissible.
        Ephemeral => "ephemeral",
    }
}

impl NotificationMode {
    /// Whether a notification of this mode can be dismissed.
    pub fn is_dismissible(self) -> bool {
        self == NotificationMode::Queued
    }

    /// Whether notifications of this mode are stored.
    pub fn is_stored(self) -> bool {
        self != NotificationMode::Ephemeral
    }
}

/// Whom a notification is for.
///
/// ```
/// use courier_core::Target;
/// let t = Target::User("u-7".into());
/// assert_eq!((t.kind(), t.key()), ("user", "u-7"));
/// assert_eq!(Target::parse("source", Some("blog:tech")).unwrap(), Target::Source("blog:tech".into()));
/// assert!(Target::parse("user", None).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// One browser session.
    Session(String),
    /// Every session of one user.
    User(String),
    /// Every user subscribed to a source (and connections allowed to read it).
    Source(String),
    /// Every open connection.
    Broadcast,
}

/// Why a target could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// Longest session id, user id, source name or group accepted.
pub const MAX_KEY: usize = 200;

impl Target {
    /// `session`, `user`, `source` or `broadcast`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Session(_) => "session",
            Target::User(_) => "user",
            Target::Source(_) => "source",
            Target::Broadcast => "broadcast",
        }
    }

    /// The session id, user id or source name (empty for a broadcast).
    pub fn key(&self) -> &str {
        match self {
            Target::Session(k) | Target::User(k) | Target::Source(k) => k,
            Target::Broadcast => "",
        }
    }

    /// A target from its kind and key, checking the key is present, not blank,
    /// at most [`MAX_KEY`] bytes and without control characters.
    pub fn parse(kind: &str, key: Option<&str>) -> Result<Target, TargetError> {
        let key = |what: &str| -> Result<String, TargetError> {
            let key = key.ok_or_else(|| TargetError(format!("a {kind} target needs its {what}")))?;
            check_key(what, key)?;
            Ok(key.to_string())
        };
        match kind {
            "session" => Ok(Target::Session(key("session_id")?)),
            "user" => Ok(Target::User(key("user_id")?)),
            "source" => Ok(Target::Source(key("source")?)),
            "broadcast" => Ok(Target::Broadcast),
            other => Err(TargetError(format!(
                "unknown target {other:?}: use session, user, source or broadcast"
            ))),
        }
    }
}

/// Checks a session id, user id, source name or group: not blank, at most
/// [`MAX_KEY`] bytes, no control characters.
pub fn check_key(what: &str, key: &str) -> Result<(), TargetError> {
    if key.trim().is_empty() || key.len() > MAX_KEY || key.chars().any(char::is_control) {
        return Err(TargetError(format!(
            "{what} must be 1 to {MAX_KEY} bytes without control characters"
        )));
    }
    Ok(())
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json!({"kind": self.kind(), "key": self.key()}).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            kind: String,
            #[serde(default)]
            key: Option<String>,
        }
        let raw = Raw::deserialize(d)?;
        let key = raw.key.filter(|k| !k.is_empty());
        Target::parse(&raw.kind, key.as_deref()).map_err(serde::de::Error::custom)
    }
}

/// Who dismisses: the user when the connection carries one, else the session.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "key")]
pub enum Subscriber {
    /// A signed-in user (on every device).
    User(String),
    /// An anonymous browser session.
    Session(String),
}

impl Subscriber {
    /// The key stored with a dismissal: `user:<id>` or `session:<id>`.
    pub fn storage_key(&self) -> String {
        match self {
            Subscriber::User(id) => format!("user:{id}"),
            Subscriber::Session(id) => format!("session:{id}"),
        }
    }
}

/// What one connection may read: its session, its user, and sources beyond the
/// user's persistent subscriptions.
///
/// ```
/// use courier_core::{Subscriber, Viewer};
/// let anonymous = Viewer::session("s-1");
/// assert_eq!(anonymous.subscriber(), Subscriber::Session("s-1".into()));
/// let signed_in = Viewer { user: Some("u-1".into()), ..Viewer::session("s-2") };
/// assert_eq!(signed_in.subscriber(), Subscriber::User("u-1".into()));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    /// The browser session.
    pub session: String,
    /// The signed-in user, if any.
    #[serde(default)]
    pub user: Option<String>,
    /// Sources this connection may read besides the user's subscriptions.
    #[serde(default)]
    pub sources: Vec<String>,
}

impl Viewer {
    /// An anonymous session.
    pub fn session(session: impl Into<String>) -> Self {
        Viewer {
            session: session.into(),
            user: None,
            sources: Vec::new(),
        }
    }

    /// Whose dismissals apply to this connection.
    pub fn subscriber(&self) -> Subscriber {
        match &self.user {
            Some(user) => Subscriber::User(user.clone()),
            None => Subscriber::Session(self.session.clone()),
        }
    }
}

/// A notification to send.
///
/// ```
/// use courier_core::{NewNotification, NotificationMode, Target};
/// let n = NewNotification::new(Target::Broadcast, "generic", serde_json::json!({"title": "Hi"}))
///     .with_mode(NotificationMode::Queued);
/// assert_eq!(n.effective_mode(), NotificationMode::Ephemeral, "broadcasts are never stored");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewNotification {
    /// Its id (chosen by the sender, so it can answer before the commit).
    pub id: Uuid,
    /// Whom it is for.
    pub target: Target,
    /// What kind of notification (`generic` toasts in the browser client).
    #[serde(rename = "type")]
    pub kind: String,
    /// How it is kept.
    pub mode: NotificationMode,
    /// Replaces the live notification of the same target and group.
    #[serde(default)]
    pub group: Option<String>,
    /// What it says (a JSON object).
    pub payload: Value,
}

impl NewNotification {
    /// A queued notification with a fresh id.
    pub fn new(target: Target, kind: impl Into<String>, payload: Value) -> Self {
        NewNotification {
            id: Uuid::now_v7(),
            target,
            kind: kind.into(),
            mode: NotificationMode::Queued,
            group: None,
            payload,
        }
    }

    /// Sets the mode.
    pub fn with_mode(mut self, mode: NotificationMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the group.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// The mode it is kept in: broadcasts are ephemeral whatever was asked.
    pub fn effective_mode(&self) -> NotificationMode {
        match self.target {
            Target::Broadcast => NotificationMode::Ephemeral,
            _ => self.mode,
        }
    }
}

/// A notification as kept (or, for an ephemeral one, as it went out).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Notification))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// Its id.
    pub id: Uuid,
    /// Its position in the event log (the SSE `id:`): later notifications have
    /// higher ones, in commit order.
    pub seq: i64,
    /// Whom it is for.
    pub target: Target,
    /// What kind of notification.
    #[serde(rename = "type")]
    pub kind: String,
    /// How it is kept (the effective mode).
    pub mode: NotificationMode,
    /// Its group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// What it says.
    pub payload: Value,
    /// When it was sent (store clock).
    pub created_at: DateTime<Utc>,
    /// When it is deleted (stored modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl NotificationRecord {
    /// What the browser receives: `{type, id, mode, created_at (epoch seconds),
    /// payload, group?}` (seed 004's shape).
    pub fn envelope(&self) -> Value {
        envelope(
            &self.kind,
            self.id,
            self.mode,
            self.created_at,
            &self.payload,
            self.group.as_deref(),
        )
    }
}

/// The browser envelope of a notification (see [`NotificationRecord::envelope`]).
pub fn envelope(
    kind: &str,
    id: Uuid,
    mode: NotificationMode,
    created_at: DateTime<Utc>,
    payload: &Value,
    group: Option<&str>,
) -> Value {
    let mut map = Map::new();
    map.insert("type".into(), json!(kind));
    map.insert("id".into(), json!(id));
    map.insert("mode".into(), json!(mode));
    map.insert("created_at".into(), json!(epoch_seconds(created_at)));
    map.insert("payload".into(), payload.clone());
    if let Some(group) = group {
        map.insert("group".into(), json!(group));
    }
    Value::Object(map)
}

/// The envelope telling a browser that notifications were dismissed (`type:
/// "dismissed"`, `payload.notification_id`), one per dismissed id.
pub fn dismissed_envelope(notification: Uuid, at: DateTime<Utc>) -> Value {
    json!({
        "type": "dismissed",
        "id": Uuid::now_v7(),
        "mode": NotificationMode::Ephemeral,
        "created_at": epoch_seconds(at),
        "payload": {"notification_id": notification},
    })
}

/// Seconds since the Unix epoch, with microseconds.
pub fn epoch_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1_000_000.0
}

/// What sending did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationSent {
    /// The notification as it went out.
    pub notification: NotificationRecord,
    /// Live notifications of the same target and group it replaced.
    pub replaced: Vec<Uuid>,
}

/// What dismissing one notification did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Dismissal {
    /// Dismissed for the subscriber (or it already was).
    Dismissed,
    /// The notification cannot be dismissed (timeseries or ephemeral).
    NotDismissible,
    /// The viewer cannot see a notification with that id (or there is none).
    NotFound,
}

/// Where a reconnecting client left off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cursor {
    /// The last SSE id it saw (`Last-Event-ID`).
    Seq(i64),
    /// The `created_at` of the last notification it saw (`?since=`).
    Time(DateTime<Utc>),
}

/// What a connecting client is sent before it goes live.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replay {
    /// Queued notifications it can see and has not dismissed, oldest first.
    pub queued: Vec<NotificationRecord>,
    /// Timeseries notifications after its cursor, oldest first (none without a cursor).
    pub timeseries: Vec<NotificationRecord>,
    /// Whether notifications after its cursor may have been deleted (TTL) before
    /// it came back, so the replay may be incomplete.
    pub reset: bool,
}

/// How long each stored mode is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationTtl {
    /// Queued notifications (default 24 h).
    #[serde(with = "crate::duration::serde_duration")]
    pub queued: Duration,
    /// Timeseries notifications (default 7 days).
    #[serde(with = "crate::duration::serde_duration")]
    pub timeseries: Duration,
}

impl Default for NotificationTtl {
    fn default() -> Self {
        NotificationTtl {
            queued: Duration::from_secs(24 * 3600),
            timeseries: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl NotificationTtl {
    /// The TTL of a mode (`None` for ephemeral).
    pub fn of(&self, mode: NotificationMode) -> Option<Duration> {
        match mode {
            NotificationMode::Queued => Some(self.queued),
            NotificationMode::Timeseries => Some(self.timeseries),
            NotificationMode::Ephemeral => None,
        }
    }
}

/// Which stored notifications to list (inspection, `GET /v1/notifications`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NotificationFilter {
    /// Only this target's.
    pub target: Option<Target>,
    /// Only this mode's.
    pub mode: Option<NotificationMode>,
    /// Only with `seq` below this (paging, newest first).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// What the live notification stream on each node needs to hear: sent and
/// dismissed notifications, and changed subscriptions. Carried by the notifier on
/// its `notifications` channel; the envelope travels along when it fits the
/// transport (else a node reads it from the store by id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "what")]
pub enum NotificationNotice {
    /// A notification was sent.
    Sent {
        /// Its id.
        id: Uuid,
        /// Its SSE id.
        seq: i64,
        /// Whom it is for.
        target: Target,
        /// Its mode.
        mode: NotificationMode,
        /// Live notifications of the same target and group it replaced.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replaced: Vec<Uuid>,
        /// The browser envelope, when it travels along.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        envelope: Option<Value>,
    },
    /// Notifications were dismissed for one subscriber.
    Dismissed {
        /// The notifications.
        ids: Vec<Uuid>,
        /// Its SSE id.
        seq: i64,
        /// For whom.
        subscriber: Subscriber,
    },
    /// A user subscribed to a source, or unsubscribed.
    Subscription {
        /// The user.
        user: String,
        /// The source.
        source: String,
        /// Subscribed (true) or unsubscribed.
        subscribed: bool,
    },
}

impl NotificationNotice {
    /// The notice without its envelope (what a transport with a small payload
    /// limit carries; receivers read the notification from the store).
    pub fn without_envelope(&self) -> NotificationNotice {
        match self {
            NotificationNotice::Sent {
                id,
                seq,
                target,
                mode,
                replaced,
                ..
            } => NotificationNotice::Sent {
                id: *id,
                seq: *seq,
                target: target.clone(),
                mode: *mode,
                replaced: replaced.clone(),
                envelope: None,
            },
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_as_kind_and_key() {
        for target in [
            Target::Session("s".into()),
            Target::User("u".into()),
            Target::Source("blog:tech".into()),
            Target::Broadcast,
        ] {
            let json = serde_json::to_value(&target).unwrap();
            assert_eq!(serde_json::from_value::<Target>(json).unwrap(), target);
        }
        assert!(serde_json::from_value::<Target>(json!({"kind": "user", "key": ""})).is_err());
        assert!(serde_json::from_value::<Target>(json!({"kind": "planet", "key": "x"})).is_err());
    }

    #[test]
    fn keys_must_be_printable_and_bounded() {
        assert!(Target::parse("user", Some("ok")).is_ok());
        assert!(Target::parse("user", Some("  ")).is_err());
        assert!(Target::parse("user", Some("a\u{0}b")).is_err());
        assert!(Target::parse("user", Some(&"x".repeat(MAX_KEY + 1))).is_err());
    }

    #[test]
    fn the_envelope_has_seed_004s_shape() {
        let at = DateTime::from_timestamp(1_700_000_000, 250_000_000).unwrap();
        let id = Uuid::now_v7();
        let e = envelope(
            "generic",
            id,
            NotificationMode::Queued,
            at,
            &json!({"title": "t"}),
            Some("g"),
        );
        assert_eq!(
            e,
            json!({"type": "generic", "id": id, "mode": "queued", "created_at": 1_700_000_000.25,
                   "payload": {"title": "t"}, "group": "g"})
        );
        let d = dismissed_envelope(id, at);
        assert_eq!(d["type"], "dismissed");
        assert_eq!(d["payload"]["notification_id"], json!(id));
    }

    #[test]
    fn notices_round_trip_and_shed_their_envelope() {
        let sent = NotificationNotice::Sent {
            id: Uuid::now_v7(),
            seq: 9,
            target: Target::User("u".into()),
            mode: NotificationMode::Queued,
            replaced: vec![Uuid::now_v7()],
            envelope: Some(json!({"big": "x"})),
        };
        let back: NotificationNotice = serde_json::from_str(&serde_json::to_string(&sent).unwrap()).unwrap();
        assert_eq!(back, sent);
        assert!(matches!(
            sent.without_envelope(),
            NotificationNotice::Sent { envelope: None, .. }
        ));
    }
}
