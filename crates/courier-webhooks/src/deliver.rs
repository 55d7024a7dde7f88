//! The built-in activity `courier.webhook.deliver`: one attempt of one delivery.
//!
//! It is a durable task like any other, so its retries (on the webhook
//! schedule, honouring `Retry-After`), dead letter and replay are the runtime's.
//! Each attempt is recorded (status, latency, the start of the response) in the
//! commit that completes its task, so it costs no commit of its own; a
//! `410 Gone` disables the webhook and stops retrying. A delivery whose webhook
//! is disabled when its attempt comes up is marked skipped, not failed. An attempt whose
//! destination is not a global address (see [`crate::destination`]) fails
//! without retrying: the address is a setting to fix, after which the dead
//! letter can be replayed. So does one whose secret no configured key opens
//! (`secret_unreadable`, see [`crate::sealing`]): the keys are settings to fix.
//!
//! The secret is opened for each attempt and never leaves the request's
//! signatures. While a rotation's grace period lasts, the Standard Webhooks
//! `webhook-signature` carries two signatures, `v1,<new> v1,<previous>`, so
//! receivers still on the previous secret verify; seed 002's
//! `X-Webhook-Signature` holds one value and is signed with the current secret
//! only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_core::metric;
use courier_core::{
    DeliveryAttempt, DeliveryForAttempt, DeliveryState, Store, TaskError, TaskKind, TaskSpec, WebhookRecord,
};
use courier_runtime::{ActivityContext, Courier, FunctionOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::attempt_reads::AttemptReads;
use crate::destination::{self, GuardedResolver};
use crate::options::WebhookOptions;
use crate::signing::{seed_signature, standard_signature};

/// The activity's name.
pub const DELIVER: &str = "courier.webhook.deliver";

/// Most of a response body read and kept with an attempt: the rest is never
/// read, the connection is dropped instead.
const RESPONSE_EXCERPT: usize = 1024;

/// The activity's arguments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeliverArgs {
    /// The delivery to attempt.
    pub delivery_id: Uuid,
}

/// The function options deliveries run with.
pub(crate) fn function_options(options: &WebhookOptions) -> FunctionOptions {
    FunctionOptions::default()
        .queue(options.queue.clone())
        .retry(options.retry.clone())
        .max_concurrent(options.concurrency)
        .timeout(options.timeout + Duration::from_secs(5))
}

/// The task a delivery's execution runs.
pub(crate) fn spec(options: &WebhookOptions, delivery_id: Uuid) -> TaskSpec {
    let mut spec = TaskSpec::new(TaskKind::Activity, DELIVER, json!(DeliverArgs { delivery_id }));
    spec.queue = options.queue.clone();
    spec.retry = options.retry.clone();
    spec.timeout = Some(options.timeout + Duration::from_secs(5));
    spec
}

/// The HTTP client deliveries use.
pub(crate) fn client(options: &WebhookOptions) -> reqwest::Client {
    // rustls needs a process-wide crypto provider; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(options.timeout)
        .user_agent(concat!("courier-webhooks/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve names itself, past the destination check.
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver {
            allow: Arc::new(options.allow_private.clone()),
        }))
        .build()
        .expect("the webhook HTTP client builds")
}

/// `Retry-After` in seconds or as an HTTP date, at most `cap`: a receiver
/// may slow its deliveries down, not park them for longer than the schedule would.
fn retry_after(headers: &reqwest::header::HeaderMap, cap: Duration) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let asked = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok()?
    };
    Some(asked.min(cap))
}

/// The start of a response body, at most [`RESPONSE_EXCERPT`] bytes; the
/// response is dropped after, closing its connection, so an endless body holds
/// neither the worker nor memory. Kept as text: bytes that are not UTF-8, and
/// NUL (which no store keeps), become U+FFFD.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < RESPONSE_EXCERPT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(RESPONSE_EXCERPT);
    without_nul(String::from_utf8_lossy(&bytes).into_owned())
}

/// `text` with every NUL replaced by U+FFFD: an attempt's record must be
/// storable whatever the receiver answered.
fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// Refuses a URL whose host is a literal non-global address (names are
/// checked by the client's resolver when it connects).
fn check_literal(url: &str, options: &WebhookOptions) -> Result<(), TaskError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| TaskError::non_retryable("invalid_url", format!("{}: {e}", destination::redact(url))))?;
    match destination::literal_host(&parsed) {
        Some(ip) => destination::check(parsed.host_str().unwrap_or_default(), ip, &options.allow_private)
            .map_err(|e| TaskError::non_retryable("destination_refused", e.to_string())),
        None => Ok(()),
    }
}

/// The secrets an attempt signs with, opened: the current one, and the
/// previous one while its grace period lasts.
struct Signing {
    current: String,
    previous: Option<String>,
}

impl Signing {
    /// Opens the webhook's secrets. A current secret no configured key opens
    /// fails the attempt for good, naming the webhook (never a secret or a
    /// key); a previous one only loses its signature, since receivers that
    /// moved to the current secret verify without it.
    async fn open(store: &dyn Store, options: &WebhookOptions, webhook: &WebhookRecord) -> Result<Signing, TaskError> {
        let keys = &options.secret_keys;
        let current = keys
            .open(webhook.id, &webhook.secret)
            .map_err(|e| TaskError::non_retryable("secret_unreadable", e.to_string()))?;
        // The grace period ends by the store's clock, which set it; asked only
        // while the node's own clock says it may not have ended, give or take skew.
        let previous = match webhook.previous_secret_until {
            Some(until) if until > chrono::Utc::now() - chrono::Duration::minutes(5) => webhook
                .previous_secret_at(store.now().await?)
                .and_then(|previous| match keys.open(webhook.id, previous) {
                    Ok(previous) => Some(previous),
                    Err(e) => {
                        tracing::warn!(webhook = %webhook.id, error = %e, "signing with the current secret only");
                        None
                    }
                }),
            _ => None,
        };
        Ok(Signing { current, previous })
    }

    /// The `webhook-signature` value: the current secret's signature, then
    /// the previous one's while it lasts (Standard Webhooks' space-separated list).
    fn standard(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut header = standard_signature(&self.current, id, timestamp, body);
        if let Some(previous) = &self.previous {
            header.push(' ');
            header.push_str(&standard_signature(previous, id, timestamp, body));
        }
        header
    }
}

/// One attempt.
pub(crate) async fn deliver(
    courier: Courier,
    reads: &AttemptReads,
    http: reqwest::Client,
    options: WebhookOptions,
    ctx: ActivityContext,
    args: DeliverArgs,
) -> Result<Value, TaskError> {
    let store = courier.store().clone();
    // One read, shared with the attempts starting alongside: the delivery,
    // its webhook and its event.
    let Some(DeliveryForAttempt {
        delivery,
        webhook,
        event,
    }) = reads.read(args.delivery_id).await?
    else {
        // The webhook was deleted with its deliveries: nothing left to do.
        return Ok(json!({"skipped": "delivery deleted"}));
    };
    let Some(webhook) = webhook else {
        return Ok(json!({"skipped": "webhook deleted"}));
    };
    if !webhook.enabled {
        // Disabled since the delivery was enqueued: recorded as skipped, like the
        // events that arrive while it is disabled, and replayed with them.
        courier
            .skip_delivery(delivery.id)
            .await
            .map_err(|e| TaskError::new("store", e.to_string()))?;
        metrics::counter!(metric::WEBHOOK_DELIVERIES_SKIPPED).increment(1);
        return Ok(json!({"skipped": "webhook disabled"}));
    }
    let event = event.ok_or_else(|| {
        TaskError::non_retryable(
            "event_trimmed",
            format!("event {} is no longer in the log", delivery.event_seq),
        )
    })?;

    // `type`, as the events API and the streams name it; `event_type` is the
    // name earlier deliveries used, kept so receivers written for it go on working.
    let body = serde_json::to_vec(&json!({
        "id": delivery.id,
        "seq": event.seq,
        "type": event.event_type,
        "event_type": event.event_type,
        "task_id": event.task_id,
        "execution_id": event.execution_id,
        "timestamp": event.timestamp,
        "data": event.data,
    }))?;
    let id = delivery.id.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let ready = match Signing::open(store.as_ref(), &options, &webhook).await {
        Ok(signing) => check_literal(&webhook.url, &options).map(|()| signing),
        Err(unreadable) => Err(unreadable),
    };

    let started = Instant::now();
    let sent = match ready {
        Ok(signing) => {
            let mut request = http.post(&webhook.url);
            for (name, value) in &webhook.headers {
                request = request.header(name, value);
            }
            request = request
                .header("Content-Type", "application/json")
                .header("X-Webhook-Signature", seed_signature(&signing.current, &body))
                .header("X-Event-Type", event.event_type.as_str())
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signing.standard(&id, timestamp, &body));
            if let Some(task) = event.task_id {
                request = request.header("X-Task-ID", task.to_string());
            }
            request
                .body(body)
                .send()
                .await
                .map_err(|e| match destination::describe(e) {
                    (text, true) => TaskError::non_retryable("destination_refused", text),
                    (text, false) => TaskError::new("transport", text),
                })
        }
        Err(refused) => Err(refused),
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    let attempt_no = ctx.attempt();
    let last = attempt_no >= options.retry.attempts();
    let (status, response, error, outcome) = match sent {
        Ok(response) => {
            let status = response.status();
            let after = retry_after(response.headers(), options.longest_retry_step());
            let excerpt = excerpt(response).await;
            if status.is_success() {
                (
                    Some(status.as_u16()),
                    Some(excerpt),
                    None,
                    Ok(json!({"status": status.as_u16()})),
                )
            } else if status == reqwest::StatusCode::GONE {
                courier
                    .set_webhook_enabled(webhook.id, false, Some("the endpoint answered 410 Gone"))
                    .await
                    .map_err(|e| TaskError::new("store", e.to_string()))?;
                let e = TaskError::non_retryable("http_410", "the endpoint answered 410 Gone; webhook disabled");
                (Some(410), Some(excerpt), Some(e.message.clone()), Err(e))
            } else {
                let mut e = TaskError::new(
                    format!("http_{}", status.as_u16()),
                    format!("the endpoint answered {status}"),
                );
                e.retry_after_ms = after.map(|d| d.as_millis() as u64);
                (Some(status.as_u16()), Some(excerpt), Some(e.message.clone()), Err(e))
            }
        }
        Err(error) => (None, None, Some(error.message.clone()), Err(error)),
    };
    let state = match &outcome {
        Ok(_) => DeliveryState::Delivered,
        Err(e) if e.non_retryable || last => DeliveryState::Failed,
        Err(_) => DeliveryState::Pending,
    };
    metrics::counter!(
        metric::WEBHOOK_ATTEMPTS,
        "outcome" => match state {
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Pending => "retrying",
            DeliveryState::Skipped => "skipped",
        }
    )
    .increment(1);
    // Written with the task's outcome, in one commit.
    ctx.record_delivery_attempt(
        DeliveryAttempt {
            delivery_id: delivery.id,
            attempt: attempt_no,
            status,
            latency_ms,
            response,
            error: error.map(without_nul),
            at: chrono::Utc::now(),
        },
        state,
    );
    outcome
}
