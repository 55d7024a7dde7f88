//! Registering webhooks, rotating their secrets and reading what was delivered
//! to them: [`Webhooks`], the API `courier-http` serves as `/v1/webhooks`.
//!
//! Secrets reach the store sealed (see [`crate::sealing`]); the registration
//! and rotation answers are the only places they are seen in the open.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use courier_core::{
    DeliveryAttempt, DeliveryRecord, DeliveryReplay, DeliveryState, EventType, ExecutionId, NewExecution, StoreError,
    TaskId, TaskState, WebhookRecord,
};
use courier_runtime::{Courier, RuntimeError};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::destination;
use crate::options::WebhookOptions;
use crate::sealing::SealError;
use crate::signing;

/// Longest URL accepted.
const MAX_URL: usize = 2048;
/// Longest header value accepted.
const MAX_HEADER_VALUE: usize = 4096;
/// Skipped deliveries replayed per store write.
const REPLAY_PAGE: u32 = 500;
/// Most skipped deliveries one replay call makes; the answer says if more wait.
const MAX_REPLAY: usize = 10_000;
/// Longest grace period of a rotation: the old secret must not outlive the
/// rotation by long, since a rotation is often the answer to a leak.
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(7 * 86_400);
/// The grace period of a rotation that names none.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(86_400);

/// Headers a registration may not set: they frame the request (a receiver
/// or a proxy in between would read a different message than was signed) or
/// are the ones Courier signs and identifies deliveries with.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-webhook-signature",
    "x-event-type",
    "x-task-id",
];

/// What to register.
///
/// ```
/// use courier_webhooks::NewWebhook;
/// let hook = NewWebhook { url: "https://example.com/in".into(), ..NewWebhook::default() };
/// assert!(hook.event_types.is_empty(), "every event type by default");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = CreateWebhook, description = "A webhook to register."))]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// An http(s) URL with a host, at most 2048 characters.
    #[cfg_attr(feature = "openapi", schema(format = "uri", max_length = 2048))]
    pub url: String,
    /// Only these event types (empty: every type).
    #[serde(default)]
    pub event_types: Vec<EventType>,
    /// Only events of this execution.
    #[serde(default)]
    pub execution_id: Option<ExecutionId>,
    /// Only events of this task.
    #[serde(default)]
    pub task_id: Option<TaskId>,
    /// Extra headers sent with every delivery.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = header_map))]
    pub headers: BTreeMap<String, String>,
    /// A human description.
    #[serde(default)]
    pub description: Option<String>,
}

/// The `headers` a registration accepts: what `create` checks, as a schema.
#[cfg(feature = "openapi")]
fn header_map() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    courier_core::openapi::schema(serde_json::json!({
        "type": "object",
        "propertyNames": { "type": "string", "pattern": "^[A-Za-z0-9_-]+$" },
        "additionalProperties": { "type": "string", "maxLength": 4096, "pattern": "^[^\\r\\n]*$" },
        "description": "Extra headers sent with every delivery (names of letters, digits, `-`, `_`; values without line breaks, at most 4096 bytes).",
    }))
}

/// A delivery with its attempts, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Delivery))]
pub struct DeliveryView {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: DeliveryRecord,
    /// Its attempts.
    pub attempt_log: Vec<DeliveryAttempt>,
}

/// What [`Webhooks::replay_skipped`] did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ReplayedDeliveries))]
pub struct ReplayedDeliveries {
    /// The deliveries replayed, oldest first: a skipped one is pending again,
    /// made by a new execution; a failed one is tried again by its own.
    pub replayed: Vec<Uuid>,
    /// More deliveries wait than one call replays (10,000): call again.
    pub more: bool,
}

/// Why a webhook call failed.
#[derive(Debug, Error)]
pub enum WebhookError {
    /// The registration is not acceptable; `field` says which part.
    #[error("{message} ({field}: {detail})")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong, as a sentence.
        message: String,
        /// The offending value, or why it was refused.
        detail: String,
    },
    /// No webhook has this id.
    #[error("webhook {0} not found")]
    NotFound(Uuid),
    /// `webhooks.max_endpoints` webhooks are registered already.
    #[error("{limit} webhooks are registered, the most allowed (webhooks.max_endpoints)")]
    TooMany {
        /// The setting's value.
        limit: u32,
    },
    /// The webhook is disabled, so what was asked (a replay) would only be skipped again.
    #[error("webhook {0} is disabled; enable it first")]
    Disabled(Uuid),
    /// No `webhooks.secret_key` is set, so no secret can be stored: nothing is
    /// registered or rotated until one is.
    #[error("webhook secrets can't be stored: webhooks.secret_key is not set")]
    NoSecretKey,
    /// The runtime (store) failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl From<StoreError> for WebhookError {
    fn from(e: StoreError) -> Self {
        WebhookError::Runtime(e.into())
    }
}

fn invalid(field: &'static str, message: impl Into<String>, detail: impl Into<String>) -> WebhookError {
    WebhookError::Invalid {
        field,
        message: message.into(),
        detail: detail.into(),
    }
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

impl From<SealError> for WebhookError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::NoKey { .. } => WebhookError::NoSecretKey,
            // Sealing fails only for want of a key; opening is delivery's.
            other => WebhookError::Runtime(RuntimeError::Invalid(other.to_string())),
        }
    }
}

/// What [`Webhooks::seal_stored_secrets`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SealReport {
    /// Secrets found in the open (written by a version before sealing) and sealed.
    pub sealed: usize,
    /// Secrets sealed under a retired key and sealed again under the current one.
    pub resealed: usize,
    /// Secrets still in the open because no `webhooks.secret_key` is set.
    pub in_the_open: usize,
    /// Sealed secrets no configured key opens (named in the log, one by one).
    pub unreadable: usize,
}

/// Registers webhooks and reads their deliveries, through a node's handle.
/// Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    courier: Courier,
    options: WebhookOptions,
}

impl Webhooks {
    /// The webhooks of `courier`'s cluster, with the default options (only
    /// global destinations, at most 1000 webhooks, and no key to seal secrets
    /// with, so nothing can be registered: see [`Webhooks::with_options`]).
    pub fn new(courier: Courier) -> Self {
        Webhooks::with_options(courier, WebhookOptions::default())
    }

    /// The webhooks of `courier`'s cluster, registered under `options`'
    /// destination allow-list and endpoint cap, their secrets sealed under its keys.
    pub fn with_options(courier: Courier, options: WebhookOptions) -> Self {
        Webhooks { courier, options }
    }

    /// Checks and registers a webhook. The answer is the only time its secret is
    /// returned in the open: the store keeps it sealed, listings leave it out.
    ///
    /// Refused: URLs that are not http(s), or whose host is a literal non-global
    /// address not in `webhooks.allow_private` (names are checked when
    /// delivering, as they may resolve differently then); headers Courier sets
    /// itself; more than `webhooks.max_endpoints` webhooks (the count is read
    /// before writing, so concurrent registrations may pass it by a few); any
    /// registration while no `webhooks.secret_key` is set.
    pub async fn create(&self, new: NewWebhook) -> Result<WebhookRecord, WebhookError> {
        let url = reqwest::Url::parse(&new.url).map_err(|e| invalid("url", "invalid url", e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || new.url.len() > MAX_URL {
            return Err(invalid(
                "url",
                format!("the url must be http(s) with a host, at most {MAX_URL} characters"),
                destination::redact(&new.url),
            ));
        }
        if let Some(ip) = destination::literal_host(&url) {
            destination::check(url.host_str().unwrap_or_default(), ip, &self.options.allow_private)
                .map_err(|e| invalid("url", "the url's host is not a global address", e.to_string()))?;
        }
        for (name, value) in &new.headers {
            if !valid_header_name(name) || value.len() > MAX_HEADER_VALUE || value.contains(['\r', '\n']) {
                return Err(invalid("headers", "invalid header", name.clone()));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(invalid(
                    "headers",
                    "this header is set by Courier and can't be overridden",
                    name.clone(),
                ));
            }
        }
        if self.options.secret_keys.current().is_none() {
            return Err(WebhookError::NoSecretKey);
        }
        let registered = self.courier.store().list_webhooks(0, 0).await?.len();
        if registered >= self.options.max_endpoints as usize {
            return Err(WebhookError::TooMany {
                limit: self.options.max_endpoints,
            });
        }
        let now = self.courier.store().now().await?;
        let id = Uuid::now_v7();
        let secret = signing::new_secret();
        let hook = WebhookRecord {
            id,
            url: new.url,
            event_types: new.event_types,
            execution_id: new.execution_id,
            task_id: new.task_id,
            headers: new.headers,
            secret: self.options.secret_keys.seal(id, &secret)?,
            previous_secret: None,
            previous_secret_until: None,
            description: new.description,
            enabled: true,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        self.courier.create_webhook(hook.clone()).await?;
        Ok(WebhookRecord { secret, ..hook })
    }

    /// Gives a webhook a new secret, returned in the open this once (the
    /// record's `secret`). The secret it replaces goes on signing deliveries,
    /// beside the new one, for `grace` (at most [`MAX_GRACE_PERIOD`]; zero:
    /// not at all), so receivers can move to the new one without refusing a
    /// delivery; a secret displaced before by an earlier rotation stops signing
    /// at once. Refused while no `webhooks.secret_key` is set.
    pub async fn rotate_secret(&self, id: Uuid, grace: Duration) -> Result<WebhookRecord, WebhookError> {
        if grace > MAX_GRACE_PERIOD {
            return Err(invalid(
                "grace_period",
                "the grace period is at most 7d",
                courier_core::format_duration(grace),
            ));
        }
        if self.options.secret_keys.current().is_none() {
            return Err(WebhookError::NoSecretKey);
        }
        // A secret still in the open (from a version before sealing) is sealed
        // first, so the rotation does not move it into the previous secret as it is.
        let hook = self.get(id).await?;
        if !crate::sealing::is_sealed(&hook.secret) {
            let sealed = self.options.secret_keys.seal(id, &hook.secret)?;
            self.courier.replace_webhook_secret(id, hook.secret, sealed).await?;
        }
        let secret = signing::new_secret();
        let sealed = self.options.secret_keys.seal(id, &secret)?;
        let rotated = self
            .courier
            .rotate_webhook_secret(id, sealed, grace)
            .await?
            .ok_or(WebhookError::NotFound(id))?;
        Ok(WebhookRecord { secret, ..rotated })
    }

    /// Seals every stored secret that is not sealed under the current key:
    /// those in the open (written by a version before sealing) and those sealed
    /// under a retired key, previous secrets included. Each is a
    /// compare-and-set, so a rotation or another node's pass at the same time
    /// wins and nothing is undone. Without a key it only counts secrets in the
    /// open. Run once when the node starts.
    pub async fn seal_stored_secrets(&self) -> Result<SealReport, WebhookError> {
        let mut report = SealReport::default();
        for hook in self.courier.store().list_webhooks(0, 0).await? {
            for stored in [Some(&hook.secret), hook.previous_secret.as_ref()]
                .into_iter()
                .flatten()
            {
                let in_the_open = !crate::sealing::is_sealed(stored);
                if !self.options.secret_keys.needs_sealing(stored) {
                    report.in_the_open += usize::from(in_the_open);
                    continue;
                }
                let secret = match self.options.secret_keys.open(hook.id, stored) {
                    Ok(secret) => secret,
                    Err(e) => {
                        tracing::warn!(webhook = %hook.id, error = %e, "a webhook secret can't be re-sealed");
                        report.unreadable += 1;
                        continue;
                    }
                };
                let sealed = self.options.secret_keys.seal(hook.id, &secret)?;
                if self
                    .courier
                    .replace_webhook_secret(hook.id, stored.clone(), sealed)
                    .await?
                {
                    if in_the_open {
                        report.sealed += 1;
                    } else {
                        report.resealed += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Webhooks, oldest first.
    pub async fn list(&self, limit: u32, offset: u32) -> Result<Vec<WebhookRecord>, WebhookError> {
        Ok(self.courier.store().list_webhooks(limit, offset).await?)
    }

    /// One webhook.
    pub async fn get(&self, id: Uuid) -> Result<WebhookRecord, WebhookError> {
        self.courier
            .store()
            .get_webhook(id)
            .await?
            .ok_or(WebhookError::NotFound(id))
    }

    /// Deletes a webhook with its deliveries.
    pub async fn delete(&self, id: Uuid) -> Result<(), WebhookError> {
        if self.courier.delete_webhook(id).await? {
            Ok(())
        } else {
            Err(WebhookError::NotFound(id))
        }
    }

    /// Enables a webhook (after a `410 Gone` disabled it, say) or disables it;
    /// the webhook as it is now.
    pub async fn set_enabled(&self, id: Uuid, enabled: bool) -> Result<WebhookRecord, WebhookError> {
        let reason = (!enabled).then_some("disabled over the API");
        if !self.courier.set_webhook_enabled(id, enabled, reason).await? {
            return Err(WebhookError::NotFound(id));
        }
        self.get(id).await
    }

    /// The webhook, refused if disabled: a replay to it would only be skipped again.
    async fn enabled(&self, id: Uuid) -> Result<WebhookRecord, WebhookError> {
        let hook = self.get(id).await?;
        if !hook.enabled {
            return Err(WebhookError::Disabled(id));
        }
        Ok(hook)
    }

    /// Replays the deliveries skipped while the webhook was disabled (those
    /// recorded at or after `since`, if given), oldest first: each becomes
    /// pending again, made by a new execution. A delivery is replayed once
    /// however many callers race. Refused while the webhook is disabled.
    pub async fn replay_skipped(
        &self,
        id: Uuid,
        since: Option<DateTime<Utc>>,
    ) -> Result<ReplayedDeliveries, WebhookError> {
        self.enabled(id).await?;
        let mut report = ReplayedDeliveries::default();
        // Bounded even if racing callers keep taking every page from under us.
        for _ in 0..2 * MAX_REPLAY / REPLAY_PAGE as usize {
            let page = self
                .courier
                .store()
                .list_deliveries_in_state(id, DeliveryState::Skipped, since, REPLAY_PAGE)
                .await?;
            if page.is_empty() {
                return Ok(report);
            }
            if report.replayed.len() >= MAX_REPLAY {
                report.more = true;
                return Ok(report);
            }
            let replays = page
                .iter()
                .map(|d| DeliveryReplay {
                    delivery_id: d.id,
                    execution: NewExecution::new(crate::deliver::spec(&self.options, d.id)),
                })
                .collect();
            let replayed = self.courier.replay_deliveries(replays).await?;
            if replayed.is_empty() {
                // Every one of them was replayed by a racing caller meanwhile;
                // the next page is theirs too, or empty.
                continue;
            }
            report.replayed.extend(replayed);
        }
        report.more = true;
        Ok(report)
    }

    /// Recovers the deliveries that failed (every attempt used) recorded at or
    /// after `since`, if given, oldest first: each one's dead-lettered step is
    /// replayed, so its execution tries the endpoint again from the first step
    /// of the retry schedule and the delivery turns `pending`, then
    /// `delivered` or `failed` again. A delivery is recovered once however many
    /// callers race (a dead letter is replayed once). Refused while the webhook
    /// is disabled.
    pub async fn recover_failed(
        &self,
        id: Uuid,
        since: Option<DateTime<Utc>>,
    ) -> Result<ReplayedDeliveries, WebhookError> {
        self.enabled(id).await?;
        let store = self.courier.store();
        // One read: a recovered delivery stays `failed` until its next attempt
        // is recorded, so paging by state would read it again.
        let failed = store
            .list_deliveries_in_state(id, DeliveryState::Failed, since, MAX_REPLAY as u32 + 1)
            .await?;
        let mut report = ReplayedDeliveries {
            more: failed.len() > MAX_REPLAY,
            ..ReplayedDeliveries::default()
        };
        for delivery in failed.into_iter().take(MAX_REPLAY) {
            let steps = self.courier.steps(delivery.execution_id, None, 1000).await?;
            let mut recovered = false;
            for step in steps.iter().filter(|t| t.state == TaskState::Failed) {
                match self.courier.replay_dead_letter(step.id).await {
                    Ok(_) => recovered = true,
                    // Replayed by a racing caller (or discarded) meanwhile.
                    Err(RuntimeError::Store(StoreError::DeadLetterNotFound(_) | StoreError::ExecutionState { .. })) => {
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if recovered {
                report.replayed.push(delivery.id);
            }
        }
        Ok(report)
    }

    /// A webhook's deliveries, newest first, each with its attempts.
    pub async fn deliveries(&self, id: Uuid, limit: u32, offset: u32) -> Result<Vec<DeliveryView>, WebhookError> {
        let hook = self.get(id).await?;
        let store = self.courier.store();
        let mut out = Vec::new();
        for delivery in store.list_deliveries(hook.id, limit, offset).await? {
            let attempt_log = store.list_delivery_attempts(delivery.id).await?;
            out.push(DeliveryView { delivery, attempt_log });
        }
        Ok(out)
    }
}
