//! Webhooks: registrations, deliveries (each a durable execution of the built-in
//! `courier.webhook.deliver` activity), and the attempts made for each.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{Event, EventType};
use crate::execution::NewExecution;
use crate::id::{ExecutionId, TaskId};
use crate::state::string_enum;

/// A registered webhook.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = WebhookWithSecret))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookRecord {
    /// Its id.
    pub id: Uuid,
    /// Where deliveries are POSTed (listings show it without the credentials it
    /// may carry: `https://***@host/`).
    pub url: String,
    /// Only these event types (empty: every type).
    #[serde(default)]
    pub event_types: Vec<EventType>,
    /// Only events of this execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<ExecutionId>,
    /// Only events of this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// Extra headers sent with every delivery.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The signing secret. In the store it is opaque text: sealed by
    /// `courier-webhooks` (`sealed:v1:...`), or `whsec_` + base64 as written by
    /// versions before sealing. The registration and rotation answers carry it
    /// open (`whsec_...`), once; listings leave it out.
    pub secret: String,
    /// The secret this one replaced at its last rotation, stored like `secret`;
    /// deliveries are also signed with it until `previous_secret_until`.
    /// Never serialized: no answer shows it, sealed or not.
    #[serde(default, skip_serializing)]
    pub previous_secret: Option<String>,
    /// Until when (store clock) deliveries still carry a signature made with
    /// the previous secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// A human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether deliveries are made (a `410 Gone` answer disables it).
    pub enabled: bool,
    /// Why it was disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// When it was registered (store clock).
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Function names of Courier's own built-in work start with this; their events
/// are never delivered to webhooks (a delivery's own events would loop).
pub const INTERNAL_PREFIX: &str = "courier.";

impl WebhookRecord {
    /// The previous secret (as stored) while it still signs at `now`: until
    /// `previous_secret_until`, exclusive.
    ///
    /// ```
    /// # use courier_core::*;
    /// # use chrono::{Duration, Utc};
    /// let now = Utc::now();
    /// let hook = WebhookRecord {
    ///     id: uuid::Uuid::new_v4(), url: "https://example.com/hook".into(), event_types: vec![],
    ///     execution_id: None, task_id: None, headers: Default::default(), secret: "new".into(),
    ///     previous_secret: Some("old".into()), previous_secret_until: Some(now + Duration::hours(1)),
    ///     description: None, enabled: true, disabled_reason: None, created_at: now, updated_at: now,
    /// };
    /// assert_eq!(hook.previous_secret_at(now), Some("old"));
    /// assert_eq!(hook.previous_secret_at(now + Duration::hours(1)), None);
    /// ```
    pub fn previous_secret_at(&self, now: DateTime<Utc>) -> Option<&str> {
        match (&self.previous_secret, self.previous_secret_until) {
            (Some(secret), Some(until)) if now < until => Some(secret),
            _ => None,
        }
    }

    /// Whether `event` should be delivered to this webhook.
    ///
    /// ```
    /// # use courier_core::*;
    /// # use chrono::Utc;
    /// let mut hook = WebhookRecord {
    ///     id: uuid::Uuid::new_v4(), url: "https://example.com/hook".into(),
    ///     event_types: vec![EventType::ExecutionCompleted], execution_id: None, task_id: None,
    ///     headers: Default::default(), secret: "whsec_x".into(), previous_secret: None,
    ///     previous_secret_until: None, description: None,
    ///     enabled: true, disabled_reason: None, created_at: Utc::now(), updated_at: Utc::now(),
    /// };
    /// let event = Event {
    ///     seq: 1, event_type: EventType::ExecutionCompleted, execution_id: Some(ExecutionId::new()),
    ///     task_id: None, timestamp: Utc::now(), data: serde_json::json!({"function": "charge"}),
    ///     internal: false,
    /// };
    /// assert!(hook.matches(&event));
    /// // An internal execution's events never go out, even those that do not
    /// // name their function (progress of a webhook delivery, say).
    /// let progress = Event { internal: true, data: serde_json::json!({"percent": 50}), ..event.clone() };
    /// assert!(!hook.matches(&progress));
    /// hook.enabled = false;
    /// assert!(!hook.matches(&event));
    /// // Still one of its events: recorded as a skipped delivery.
    /// assert!(hook.subscribes_to(&event));
    /// ```
    pub fn matches(&self, event: &Event) -> bool {
        self.enabled && self.subscribes_to(event)
    }

    /// Whether `event` is one this webhook asks for, enabled or not: the events
    /// that arrive while it is disabled are recorded as skipped deliveries.
    pub fn subscribes_to(&self, event: &Event) -> bool {
        // The store marks every event of an internal execution (progress and
        // heartbeats do not name their function); an event built elsewhere may
        // still say it in its data.
        let internal = event.internal
            || event
                .data
                .get("function")
                .and_then(|f| f.as_str())
                .is_some_and(crate::is_internal);
        !internal
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
            && self.execution_id.is_none_or(|id| event.execution_id == Some(id))
            && self.task_id.is_none_or(|id| event.task_id == Some(id))
    }
}

string_enum! {
    /// Where a delivery is.
    DeliveryState {
        /// Not yet delivered; being attempted or waiting for a retry.
        Pending => "pending",
        /// A 2xx answer arrived.
        Delivered => "delivered",
        /// Given up (attempts exhausted, or the endpoint answered 410); its task is
        /// a dead letter and can be replayed.
        Failed => "failed",
        /// Not attempted: the webhook was disabled when the event arrived or when
        /// its attempt came up. Replayed on request once the webhook is enabled.
        Skipped => "skipped",
    }
}

/// One event's delivery to one webhook.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Its id (also the `webhook-id` header, stable across retries).
    pub id: Uuid,
    /// The webhook.
    pub webhook_id: Uuid,
    /// The event's sequence number.
    pub event_seq: i64,
    /// The event's type.
    pub event_type: EventType,
    /// The durable execution that makes the attempts (a replay of a skipped
    /// delivery gets a new one). A delivery skipped when its event arrived keeps
    /// the id reserved for it, which no execution holds until it is replayed.
    pub execution_id: ExecutionId,
    /// Where it is.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last HTTP status received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// The last error (transport failure or non-2xx summary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A delivery with what an attempt of it reads, read together (see
/// [`WebhookStore::get_deliveries_for_attempts`](crate::WebhookStore::get_deliveries_for_attempts)):
/// one store call, and on Postgres one statement, for all the attempts that
/// start at once.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryForAttempt {
    /// The delivery.
    pub delivery: DeliveryRecord,
    /// Its webhook; `None` once deleted.
    pub webhook: Option<WebhookRecord>,
    /// Its event; `None` once trimmed from the log.
    pub event: Option<Event>,
}

/// One attempt of a delivery.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// The delivery.
    pub delivery_id: Uuid,
    /// Which attempt (1-based).
    pub attempt: u32,
    /// The HTTP status, if a response arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long the request took.
    pub latency_ms: u64,
    /// The start of the response body (at most 1 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// What went wrong, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was made (the store stamps it when recorded).
    pub at: DateTime<Utc>,
}

/// A delivery to create, with the execution that will make its attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewDelivery {
    /// Its id.
    pub id: Uuid,
    /// The webhook.
    pub webhook_id: Uuid,
    /// The event's sequence number.
    pub event_seq: i64,
    /// The event's type.
    pub event_type: EventType,
    /// The execution to dispatch for it (as [`Store::dispatch`](crate::Store::dispatch) would).
    pub execution: NewExecution,
    /// The webhook is disabled: the delivery is recorded as
    /// [`DeliveryState::Skipped`] and its execution is not dispatched (its id is
    /// kept as the delivery's `execution_id`).
    #[serde(default)]
    pub skipped: bool,
}

/// A skipped delivery to make after all, by a new execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReplay {
    /// The delivery.
    pub delivery_id: Uuid,
    /// The execution that will make its attempts (as [`Store::dispatch`](crate::Store::dispatch) would).
    pub execution: NewExecution,
}
