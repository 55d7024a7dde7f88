//! The built-in activity `courier.webhook.deliver`: one attempt of one delivery.
//!
//! It is a durable task like any other, so its retries (on the webhook
//! schedule, honouring `Retry-After`), dead letter and replay are the runtime's.
//! Each attempt is recorded (status, latency, the start of the response); a
//! `410 Gone` disables the webhook and stops retrying.

use std::time::{Duration, Instant};

use courier_core::metric;
use courier_core::{DeliveryAttempt, DeliveryState, TaskError, TaskKind, TaskSpec};
use courier_runtime::{ActivityContext, Courier, FunctionOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::options::WebhookOptions;
use crate::signing::{seed_signature, standard_signature};

/// The activity's name.
pub const DELIVER: &str = "courier.webhook.deliver";

/// Most of a response body kept with an attempt.
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
        .build()
        .expect("the webhook HTTP client builds")
}

/// `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok()
}

/// One attempt.
pub(crate) async fn deliver(
    courier: Courier,
    http: reqwest::Client,
    options: WebhookOptions,
    ctx: ActivityContext,
    args: DeliverArgs,
) -> Result<Value, TaskError> {
    let store = courier.store().clone();
    let Some(delivery) = store.get_delivery(args.delivery_id).await? else {
        // The webhook was deleted with its deliveries: nothing left to do.
        return Ok(json!({"skipped": "delivery deleted"}));
    };
    let Some(webhook) = store.get_webhook(delivery.webhook_id).await? else {
        return Ok(json!({"skipped": "webhook deleted"}));
    };
    if !webhook.enabled {
        return Err(TaskError::non_retryable(
            "webhook_disabled",
            format!(
                "webhook {} is disabled: {}",
                webhook.id,
                webhook.disabled_reason.unwrap_or_default()
            ),
        ));
    }
    let event = store
        .read_events(&courier_core::EventFilter::after(delivery.event_seq - 1).limit(1))
        .await?
        .into_iter()
        .find(|e| e.seq == delivery.event_seq)
        .ok_or_else(|| {
            TaskError::non_retryable(
                "event_trimmed",
                format!("event {} is no longer in the log", delivery.event_seq),
            )
        })?;

    let body = serde_json::to_vec(&json!({
        "id": delivery.id,
        "seq": event.seq,
        "event_type": event.event_type,
        "task_id": event.task_id,
        "execution_id": event.execution_id,
        "timestamp": event.timestamp,
        "data": event.data,
    }))?;
    let id = delivery.id.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let mut request = http.post(&webhook.url);
    for (name, value) in &webhook.headers {
        request = request.header(name, value);
    }
    request = request
        .header("Content-Type", "application/json")
        .header("X-Webhook-Signature", seed_signature(&webhook.secret, &body))
        .header("X-Event-Type", event.event_type.as_str())
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            standard_signature(&webhook.secret, &id, timestamp, &body),
        );
    if let Some(task) = event.task_id {
        request = request.header("X-Task-ID", task.to_string());
    }

    let started = Instant::now();
    let sent = request.body(body).send().await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let attempt_no = ctx.attempt();
    let last = attempt_no >= options.retry.attempts();
    let (status, response, error, outcome) = match sent {
        Ok(response) => {
            let status = response.status();
            let after = retry_after(response.headers());
            let text = response.text().await.unwrap_or_default();
            let excerpt: String = text.chars().take(RESPONSE_EXCERPT).collect();
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
        Err(e) => {
            let error = TaskError::new("transport", e.to_string());
            (None, None, Some(error.message.clone()), Err(error))
        }
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
        }
    )
    .increment(1);
    courier
        .record_delivery_attempt(
            DeliveryAttempt {
                delivery_id: delivery.id,
                attempt: attempt_no,
                status,
                latency_ms,
                response,
                error,
                at: chrono::Utc::now(),
            },
            state,
        )
        .await
        .map_err(|e| TaskError::new("store", e.to_string()))?;
    outcome
}
