//! Delivery: the built-in functions every accepted message runs through.
//!
//! - `courier.ingest.deliver`, an orchestrator: one execution per message. It
//!   calls its provider's activity once per recipient, all at once, and returns
//!   one [`RecipientResult`] per recipient **in recipient order** (a failed
//!   recipient is `ok: false` with the reason; the others are unaffected).
//! - `courier.ingest.provider.<name>`, an activity per configured provider:
//!   renders the message for one recipient and hands it to the provider. Its
//!   retry policy is the provider's; a permanent failure (a 4xx but 429, an SMTP
//!   5xx, a template error) is not retried.
//! - `courier.ingest.callback`, an activity called once per recipient result
//!   when a result hook or `ingest.callback_url` is configured.
//!
//! Being durable functions, deliveries inherit the runtime's retries, fencing,
//! dead letters with replay, the event log and the dashboard.

use std::sync::Arc;

use courier_core::{ExecutionId, TaskError, metric};
use courier_runtime::{ActivityContext, FunctionOptions, OrchestratorContext};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::message::{Message, Recipient};
use crate::provider::http::{Signing, client, post_json};
use crate::provider::{Delivery, Provider, ProviderError};
use crate::template::Templates;

/// The orchestrator every accepted message becomes an execution of.
pub const DELIVER: &str = "courier.ingest.deliver";

/// The activity that runs the result hook and the result callback.
pub const CALLBACK: &str = "courier.ingest.callback";

/// The activity delivering through the provider named `provider`.
pub fn provider_activity(provider: &str) -> String {
    format!("courier.ingest.provider.{provider}")
}

/// One recipient's outcome, as the execution's result lists it.
///
/// ```
/// use courier_ingest::RecipientResult;
/// let r: RecipientResult = serde_json::from_value(serde_json::json!(
///     {"recipient": {"account": {"address": "a@example.com"}}, "ok": false, "detail": "550 5.1.1 no such user"}
/// )).unwrap();
/// assert!(!r.ok);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecipientResult {
    /// The recipient, as the message gave it.
    pub recipient: Value,
    /// Whether the provider accepted it.
    pub ok: bool,
    /// What the other side said (the SMTP reply, the HTTP status), or why it failed.
    pub detail: String,
}

/// What the result hook and callback receive for each recipient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecipientReport {
    /// The message's execution.
    pub execution_id: ExecutionId,
    /// The recipient's position in the message.
    pub index: usize,
    /// The provider that delivered (or tried to).
    pub provider: String,
    /// The outcome.
    #[serde(flatten)]
    pub result: RecipientResult,
}

/// A Rust hook run once per recipient result (through the callback activity,
/// so once even across restarts).
pub type ResultHook = Arc<dyn Fn(&RecipientReport) + Send + Sync>;

/// One recipient's delivery: the activity's arguments. The message travels
/// without its recipient list, so a long list is not copied once per recipient.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SendArgs {
    /// The recipient's position in the message.
    pub index: usize,
    /// Who receives it.
    pub recipient: Recipient,
    /// The body template.
    pub message: String,
    /// The subject template.
    #[serde(default)]
    pub subject: Option<String>,
    /// A named template.
    #[serde(default)]
    pub template: Option<String>,
    /// Template variables.
    #[serde(default)]
    pub vars: Map<String, Value>,
}

/// The orchestrator: one step per recipient, then one callback per result.
pub(crate) async fn orchestrate(
    ctx: OrchestratorContext,
    message: Message,
    with_callback: bool,
) -> Result<Vec<RecipientResult>, TaskError> {
    let activity = provider_activity(&message.provider);
    let calls: Vec<_> = message
        .recipient
        .iter()
        .enumerate()
        .map(|(index, recipient)| {
            ctx.call::<_, String>(
                &activity,
                SendArgs {
                    index,
                    recipient: recipient.clone(),
                    message: message.message.clone(),
                    subject: message.subject.clone(),
                    template: message.template.clone(),
                    vars: message.vars.clone(),
                },
            )
        })
        .collect();
    let outcomes = futures::future::join_all(calls).await;
    let results: Vec<RecipientResult> = message
        .recipient
        .iter()
        .zip(outcomes)
        .map(|(recipient, outcome)| RecipientResult {
            recipient: recipient.to_value(),
            ok: outcome.is_ok(),
            detail: match outcome {
                Ok(detail) => detail,
                Err(error) => error.message,
            },
        })
        .collect();
    if with_callback {
        // Taken in recipient order, after every result is in, so a replay
        // takes the same steps whatever order the deliveries settled in.
        let execution_id = ctx.execution_id();
        let callbacks: Vec<_> = results
            .iter()
            .enumerate()
            .map(|(index, result)| {
                ctx.call::<_, Value>(
                    CALLBACK,
                    RecipientReport {
                        execution_id,
                        index,
                        provider: message.provider.clone(),
                        result: result.clone(),
                    },
                )
            })
            .collect();
        for (index, outcome) in futures::future::join_all(callbacks).await.into_iter().enumerate() {
            if let Err(error) = outcome {
                tracing::warn!(%execution_id, index, %error, "the result callback gave up");
            }
        }
    }
    Ok(results)
}

/// One attempt of one recipient's delivery.
pub(crate) async fn send(
    ctx: ActivityContext,
    provider_name: &str,
    provider: &dyn Provider,
    templates: &Templates,
    args: SendArgs,
) -> Result<String, TaskError> {
    let rendered = templates
        .render(&args.message, args.subject.as_deref(), args.template.as_deref(), &args.vars, &args.recipient)
        .map_err(|e| {
            metrics::counter!(metric::INGEST_DELIVERIES, "provider" => provider_name.to_string(), "outcome" => "permanent").increment(1);
            TaskError::non_retryable("template", e.to_string())
        })?;
    let delivery = Delivery {
        id: format!("{}:{}", ctx.execution_id(), args.index),
        execution_id: ctx.execution_id(),
        index: args.index,
        recipient: args.recipient,
        rendered,
        vars: args.vars,
        attempt: ctx.attempt(),
    };
    match provider.deliver(&delivery).await {
        Ok(detail) => {
            metrics::counter!(metric::INGEST_DELIVERIES, "provider" => provider_name.to_string(), "outcome" => "ok")
                .increment(1);
            Ok(detail)
        }
        Err(error) => {
            let outcome = if error.permanent { "permanent" } else { "transient" };
            metrics::counter!(metric::INGEST_DELIVERIES, "provider" => provider_name.to_string(), "outcome" => outcome)
                .increment(1);
            tracing::info!(provider = provider_name, delivery = %delivery.id, recipient = %delivery.recipient.label(), permanent = error.permanent, detail = %error.detail, "delivery failed");
            Err(task_error(error))
        }
    }
}

fn task_error(error: ProviderError) -> TaskError {
    let mut task = if error.permanent {
        TaskError::non_retryable("permanent", error.detail)
    } else {
        TaskError::new("transient", error.detail)
    };
    task.retry_after_ms = error.retry_after.map(|d| d.as_millis() as u64);
    task
}

/// Where results are called back to.
#[derive(Clone, Default)]
pub(crate) struct Callback {
    pub hook: Option<ResultHook>,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub client: Option<reqwest::Client>,
}

impl Callback {
    pub(crate) fn is_configured(&self) -> bool {
        self.hook.is_some() || self.url.is_some()
    }

    /// Runs the hook (once: a checkpoint records that it ran, so a retry of
    /// the POST does not run it again), then POSTs the report if a URL is set.
    pub(crate) async fn run(&self, ctx: ActivityContext, report: RecipientReport) -> Result<Value, TaskError> {
        if let Some(hook) = &self.hook
            && ctx.previous_checkpoint().is_none()
        {
            hook(&report);
            ctx.checkpoint(json!({"hook": "ran"})).await?;
        }
        if let (Some(url), Some(client)) = (&self.url, &self.client) {
            let id = format!("{}:{}:result", report.execution_id, report.index);
            let signing = self.secret.as_deref().map(|secret| Signing { secret, id: &id });
            let body =
                serde_json::to_value(&report).map_err(|e| TaskError::non_retryable("serialization", e.to_string()))?;
            post_json(client, url, &body, signing, &[]).await.map_err(task_error)?;
        }
        Ok(Value::Null)
    }
}

/// The options the orchestrator runs with.
pub(crate) fn orchestrator_options(queue: &str) -> FunctionOptions {
    FunctionOptions::default().queue(queue.to_string())
}

/// The callback client.
pub(crate) fn callback_client() -> reqwest::Client {
    client(std::time::Duration::from_secs(30))
}
