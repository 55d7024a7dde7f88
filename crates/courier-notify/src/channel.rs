//! Channel names and the JSON messages on them: what crosses between nodes.
//!
//! The names and message shapes are seed 000's, under a configurable prefix
//! (`courier` unless told otherwise), plus two channels of Courier's own:
//!
//! | channel | message |
//! |---|---|
//! | `<prefix>:task:{task_id}` | `{"task_id": "...", "state": "completed", "origin": "..."}` |
//! | `<prefix>:execution:{execution_id}` | `{"execution_id": "...", "state": "running", "origin": "..."}`, and `"child_task_id"`, `"child_state"` when a child settled |
//! | `<prefix>:work` | `{"queue": "...", "origin": "..."}` |
//! | `<prefix>:events` | `{"origin": "..."}` |
//! | `<prefix>:notifications` | `{"notification": {"what": "sent" \| "dismissed" \| "subscription", ...}, "origin": "..."}` (see `courier_core::NotificationNotice`) |
//!
//! `origin` is the publishing notifier's random id, so that a node ignores its own
//! echoes (it delivered to its own subscribers when it published). Messages from
//! other publishers (the seed's own, without `origin`, or with `{"state": ...}`
//! only, the id being in the channel name) are understood too. Payloads carry ids
//! and state names only, never results or arguments: Postgres limits a payload
//! to 8000 bytes, and a woken subscriber reads the store anyway. The one
//! exception is a notification's browser envelope, which travels along when it
//! fits ([`Channels::encode_within`] drops it otherwise, and a receiving node
//! reads the notification from the store by id).

use std::str::FromStr;
use std::sync::Arc;

use courier_core::{ExecutionId, ExecutionState, Notice, NotificationNotice, TaskId, TaskState, Topic};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "courier";

/// The longest channel suffix after the prefix: `:execution:` and a UUID.
pub const LONGEST_SUFFIX: usize = ":execution:".len() + 36;

/// Channel names under one prefix, and the codec for the messages on them.
///
/// ```
/// use courier_core::{Notice, TaskId, TaskState, Topic};
/// use courier_notify::Channels;
///
/// let channels = Channels::new("courier").unwrap();
/// let task_id: TaskId = "0190f3e0-0000-7000-8000-000000000001".parse().unwrap();
/// assert_eq!(channels.name(&Topic::Task(task_id)), "courier:task:0190f3e0-0000-7000-8000-000000000001");
///
/// let notice = Notice::Task { task_id, state: TaskState::Completed };
/// let (channel, payload) = channels.encode(&notice, "node-a").unwrap();
/// assert_eq!(
///     payload,
///     r#"{"task_id":"0190f3e0-0000-7000-8000-000000000001","state":"completed","origin":"node-a"}"#
/// );
/// let decoded = channels.decode(&channel, payload.as_bytes()).unwrap();
/// assert_eq!(decoded.notice, notice);
/// assert_eq!(decoded.origin.as_deref(), Some("node-a"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channels {
    prefix: Arc<str>,
}

/// A message understood: the notice, and who published it (if it said).
///
/// ```
/// use courier_core::Notice;
/// use courier_notify::Channels;
/// let decoded = Channels::default().decode("courier:work", br#"{"queue": "emails"}"#).unwrap();
/// assert_eq!(decoded.notice, Notice::Work { queue: "emails".into() });
/// assert_eq!(decoded.origin, None); // a publisher that does not say who it is
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// What changed.
    pub notice: Notice,
    /// The publishing notifier's id (`None` for publishers that do not send one).
    pub origin: Option<String>,
}

/// Why a prefix cannot be used.
///
/// ```
/// use courier_notify::Channels;
/// let err = Channels::new("my app").unwrap_err();
/// assert!(err.to_string().contains("without spaces"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid channel prefix {prefix:?}: {reason}")]
pub struct PrefixError {
    /// The prefix given.
    pub prefix: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a message that arrived on a channel was ignored.
///
/// ```
/// use courier_notify::{Channels, Malformed};
/// let channels = Channels::default();
/// assert!(matches!(channels.decode("elsewhere:work", b"{}"), Err(Malformed::Channel(_))));
/// assert!(matches!(channels.decode("courier:work", b"oops"), Err(Malformed::Payload { .. })));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Malformed {
    /// The channel is not one of ours.
    #[error("channel {0:?} is not a Courier channel under this prefix")]
    Channel(String),
    /// The payload is not a JSON object of the expected shape.
    #[error("payload on {channel:?} is not a valid message: {reason}")]
    Payload {
        /// The channel.
        channel: String,
        /// What is wrong.
        reason: String,
    },
}

/// Every field any message may carry; which ones must be there depends on the channel.
#[derive(Deserialize)]
struct WireIn {
    task_id: Option<String>,
    execution_id: Option<String>,
    state: Option<String>,
    child_task_id: Option<String>,
    child_state: Option<String>,
    queue: Option<String>,
    notification: Option<NotificationNotice>,
    origin: Option<String>,
}

#[derive(Serialize)]
struct TaskOut<'a> {
    task_id: TaskId,
    state: &'static str,
    origin: &'a str,
}

#[derive(Serialize)]
struct ExecutionOut<'a> {
    execution_id: ExecutionId,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    child_task_id: Option<TaskId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    child_state: Option<&'static str>,
    origin: &'a str,
}

#[derive(Serialize)]
struct WorkOut<'a> {
    queue: &'a str,
    origin: &'a str,
}

#[derive(Serialize)]
struct EventsOut<'a> {
    origin: &'a str,
}

#[derive(Serialize)]
struct NotificationOut<'a> {
    notification: &'a NotificationNotice,
    origin: &'a str,
}

impl Channels {
    /// Channels under `prefix`: not empty, at most 200 bytes, printable ASCII without
    /// spaces or quotes (so that every channel name is safe in any transport and log).
    pub fn new(prefix: &str) -> Result<Self, PrefixError> {
        let error = |reason: &str| PrefixError {
            prefix: prefix.to_string(),
            reason: reason.to_string(),
        };
        if prefix.is_empty() {
            return Err(error("it is empty"));
        }
        if prefix.len() > 200 {
            return Err(error("it is longer than 200 bytes"));
        }
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\'' && b != b'\\')
        {
            return Err(error(
                "use printable ASCII without spaces, quotes or backslashes (letters, digits, - _ . : and the like)",
            ));
        }
        Ok(Channels { prefix: prefix.into() })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The length in bytes of the longest channel name under this prefix.
    pub fn longest_name(&self) -> usize {
        self.prefix.len() + LONGEST_SUFFIX
    }

    /// The channel carrying `topic`'s notices.
    pub fn name(&self, topic: &Topic) -> String {
        match topic {
            Topic::Task(id) => format!("{}:task:{id}", self.prefix),
            Topic::Execution(id) => format!("{}:execution:{id}", self.prefix),
            Topic::Work => format!("{}:work", self.prefix),
            Topic::Events => format!("{}:events", self.prefix),
            Topic::Notifications => format!("{}:notifications", self.prefix),
        }
    }

    /// The topic a channel name carries, if it is one of ours.
    pub fn topic(&self, channel: &str) -> Option<Topic> {
        let rest = channel.strip_prefix(&*self.prefix)?.strip_prefix(':')?;
        match rest {
            "work" => Some(Topic::Work),
            "events" => Some(Topic::Events),
            "notifications" => Some(Topic::Notifications),
            _ => {
                if let Some(id) = rest.strip_prefix("task:") {
                    TaskId::from_str(id).ok().map(Topic::Task)
                } else if let Some(id) = rest.strip_prefix("execution:") {
                    ExecutionId::from_str(id).ok().map(Topic::Execution)
                } else {
                    None
                }
            }
        }
    }

    /// The channel and JSON payload for `notice`, published by `origin`; `None` for
    /// [`Notice::Resync`], which only ever concerns the node that raises it.
    pub fn encode(&self, notice: &Notice, origin: &str) -> Option<(String, String)> {
        let topic = notice.topic()?;
        let payload = match notice {
            Notice::Task { task_id, state } => serde_json::to_string(&TaskOut {
                task_id: *task_id,
                state: state.as_str(),
                origin,
            }),
            Notice::Execution {
                execution_id,
                state,
                child,
            } => serde_json::to_string(&ExecutionOut {
                execution_id: *execution_id,
                state: state.as_str(),
                child_task_id: child.map(|(id, _)| id),
                child_state: child.map(|(_, s)| s.as_str()),
                origin,
            }),
            Notice::Work { queue } => serde_json::to_string(&WorkOut { queue, origin }),
            Notice::Events => serde_json::to_string(&EventsOut { origin }),
            Notice::Notification(notification) => serde_json::to_string(&NotificationOut { notification, origin }),
            Notice::Resync => return None,
        }
        .expect("plain structs of strings and JSON values serialize");
        Some((self.name(&topic), payload))
    }

    /// [`encode`](Self::encode) for a transport that carries at most `max` bytes
    /// per message: a notification's envelope is left out when the message would
    /// be longer (receivers read the notification from the store). Other notices
    /// are encoded as they are.
    pub fn encode_within(&self, notice: &Notice, origin: &str, max: usize) -> Option<(String, String)> {
        let encoded = self.encode(notice, origin)?;
        match notice {
            Notice::Notification(notification) if encoded.1.len() > max => {
                self.encode(&Notice::Notification(Box::new(notification.without_envelope())), origin)
            }
            _ => Some(encoded),
        }
    }

    /// Reads a message that arrived on `channel`. The channel says which task,
    /// execution or stream it concerns; an id in the payload, if present, must agree.
    pub fn decode(&self, channel: &str, payload: &[u8]) -> Result<Decoded, Malformed> {
        let topic = self
            .topic(channel)
            .ok_or_else(|| Malformed::Channel(channel.to_string()))?;
        let bad = |reason: String| Malformed::Payload {
            channel: channel.to_string(),
            reason,
        };
        let wire: WireIn = serde_json::from_slice(payload).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        let notice = match topic {
            Topic::Task(task_id) => {
                same_id(wire.task_id.as_deref(), &task_id.to_string(), "task_id").map_err(bad)?;
                Notice::Task {
                    task_id,
                    state: parse_state(wire.state.as_deref(), "state").map_err(bad)?,
                }
            }
            Topic::Execution(execution_id) => {
                same_id(wire.execution_id.as_deref(), &execution_id.to_string(), "execution_id").map_err(bad)?;
                let child = match (wire.child_task_id.as_deref(), wire.child_state.as_deref()) {
                    (None, None) => None,
                    (Some(id), Some(_)) => Some((
                        TaskId::from_str(id).map_err(|e| bad(format!("child_task_id {id:?}: {e}")))?,
                        parse_state::<TaskState>(wire.child_state.as_deref(), "child_state").map_err(bad)?,
                    )),
                    _ => return Err(bad("child_task_id and child_state come together".into())),
                };
                Notice::Execution {
                    execution_id,
                    state: parse_state::<ExecutionState>(wire.state.as_deref(), "state").map_err(bad)?,
                    child,
                }
            }
            Topic::Work => Notice::Work {
                queue: wire.queue.ok_or_else(|| bad("no \"queue\"".into()))?,
            },
            Topic::Events => Notice::Events,
            Topic::Notifications => Notice::Notification(Box::new(
                wire.notification.ok_or_else(|| bad("no \"notification\"".into()))?,
            )),
        };
        Ok(Decoded {
            notice,
            origin: wire.origin,
        })
    }
}

impl Default for Channels {
    fn default() -> Self {
        Channels {
            prefix: DEFAULT_PREFIX.into(),
        }
    }
}

fn same_id(given: Option<&str>, expected: &str, field: &str) -> Result<(), String> {
    match given {
        Some(id) if !id.eq_ignore_ascii_case(expected) => {
            Err(format!("{field} {id:?} does not match the channel's id {expected}"))
        }
        _ => Ok(()),
    }
}

fn parse_state<S: FromStr>(given: Option<&str>, field: &str) -> Result<S, String>
where
    S::Err: std::fmt::Display,
{
    let text = given.ok_or_else(|| format!("no {field:?}"))?;
    text.parse().map_err(|e| format!("{field}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels() -> Channels {
        Channels::new("t1").unwrap()
    }

    #[test]
    fn every_notice_round_trips() {
        let exec = ExecutionId::new();
        let task = TaskId::for_step(exec, 2);
        let notices = [
            Notice::Task {
                task_id: task,
                state: TaskState::Failed,
            },
            Notice::Execution {
                execution_id: exec,
                state: ExecutionState::Running,
                child: None,
            },
            Notice::Execution {
                execution_id: exec,
                state: ExecutionState::Running,
                child: Some((task, TaskState::Completed)),
            },
            Notice::Work { queue: "emails".into() },
            Notice::Events,
            Notice::Notification(Box::new(NotificationNotice::Dismissed {
                ids: vec![uuid::Uuid::now_v7()],
                seq: 4,
                subscriber: courier_core::Subscriber::User("u".into()),
            })),
        ];
        for notice in notices {
            let (channel, payload) = channels().encode(&notice, "me").unwrap();
            let decoded = channels().decode(&channel, payload.as_bytes()).unwrap();
            assert_eq!(decoded.notice, notice);
            assert_eq!(decoded.origin.as_deref(), Some("me"));
        }
        assert_eq!(channels().encode(&Notice::Resync, "me"), None);
    }

    #[test]
    fn the_wire_shapes_are_seed_000s_plus_origin() {
        let exec: ExecutionId = "0190f3e0-0000-7000-8000-0000000000aa".parse().unwrap();
        let task: TaskId = "0190f3e0-0000-7000-8000-0000000000bb".parse().unwrap();
        let encode = |n: Notice| channels().encode(&n, "o").unwrap();
        assert_eq!(
            encode(Notice::Execution {
                execution_id: exec,
                state: ExecutionState::TimedOut,
                child: None
            }),
            (
                "t1:execution:0190f3e0-0000-7000-8000-0000000000aa".to_string(),
                r#"{"execution_id":"0190f3e0-0000-7000-8000-0000000000aa","state":"timed_out","origin":"o"}"#
                    .to_string()
            )
        );
        assert_eq!(
            encode(Notice::Execution {
                execution_id: exec,
                state: ExecutionState::Running,
                child: Some((task, TaskState::Completed))
            })
            .1,
            r#"{"execution_id":"0190f3e0-0000-7000-8000-0000000000aa","state":"running","child_task_id":"0190f3e0-0000-7000-8000-0000000000bb","child_state":"completed","origin":"o"}"#
        );
        assert_eq!(
            encode(Notice::Work { queue: "q".into() }),
            ("t1:work".to_string(), r#"{"queue":"q","origin":"o"}"#.to_string())
        );
        assert_eq!(
            encode(Notice::Events),
            ("t1:events".to_string(), r#"{"origin":"o"}"#.to_string())
        );
    }

    #[test]
    fn seed_publishers_without_ids_or_origin_are_understood() {
        let task = TaskId::for_step(ExecutionId::new(), 1);
        let channel = channels().name(&Topic::Task(task));
        let decoded = channels().decode(&channel, br#"{"state": "completed"}"#).unwrap();
        assert_eq!(
            decoded,
            Decoded {
                notice: Notice::Task {
                    task_id: task,
                    state: TaskState::Completed
                },
                origin: None
            }
        );
        assert_eq!(channels().decode("t1:events", b"{}").unwrap().notice, Notice::Events);
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let task = TaskId::for_step(ExecutionId::new(), 1);
        let channel = channels().name(&Topic::Task(task));
        let other = TaskId::for_step(ExecutionId::new(), 1);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (&channel, b"not json".to_vec()),
            (&channel, b"[1,2]".to_vec()),
            (&channel, br#"{"state": "exploded"}"#.to_vec()),
            (&channel, br#"{"task_id": 7, "state": "completed"}"#.to_vec()),
            (
                &channel,
                format!(r#"{{"task_id": "{other}", "state": "completed"}}"#).into_bytes(),
            ),
            (&channel, vec![0xff, 0xfe]),
            ("t1:work", b"{}".to_vec()),
            ("t1:task:not-a-uuid", br#"{"state": "completed"}"#.to_vec()),
            ("other:task:x", b"{}".to_vec()),
            ("t1:nothing", b"{}".to_vec()),
        ];
        for (channel, payload) in cases {
            assert!(channels().decode(channel, &payload).is_err(), "{channel} {payload:?}");
        }
        let exec = ExecutionId::new();
        let channel = channels().name(&Topic::Execution(exec));
        assert!(
            channels()
                .decode(&channel, br#"{"state": "running", "child_state": "completed"}"#)
                .is_err()
        );
    }

    #[test]
    fn a_notification_too_big_for_the_transport_travels_without_its_envelope() {
        let notice = Notice::Notification(Box::new(NotificationNotice::Sent {
            id: uuid::Uuid::now_v7(),
            seq: 7,
            target: courier_core::Target::User("u".into()),
            mode: courier_core::NotificationMode::Queued,
            replaced: Vec::new(),
            envelope: Some(serde_json::json!({"payload": "x".repeat(10_000)})),
        }));
        let (_, whole) = channels().encode_within(&notice, "o", 100_000).unwrap();
        assert!(whole.len() > 10_000);
        let (channel, small) = channels().encode_within(&notice, "o", 7_999).unwrap();
        assert!(small.len() < 7_999);
        match channels().decode(&channel, small.as_bytes()).unwrap().notice {
            Notice::Notification(n) => assert!(matches!(
                *n,
                NotificationNotice::Sent {
                    envelope: None,
                    seq: 7,
                    ..
                }
            )),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(Channels::new("").is_err());
        assert!(Channels::new("has space").is_err());
        assert!(Channels::new("quo\"te").is_err());
        assert!(Channels::new(&"x".repeat(201)).is_err());
        let ok = Channels::new("app-1.courier:v2").unwrap();
        let exec = ExecutionId::new();
        assert_eq!(
            ok.topic(&ok.name(&Topic::Execution(exec))),
            Some(Topic::Execution(exec))
        );
        assert_eq!(ok.longest_name(), ok.name(&Topic::Execution(exec)).len());
    }
}
