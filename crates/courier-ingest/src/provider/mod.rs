//! Providers: what carries a rendered message to one recipient.
//!
//! A provider is one type implementing [`Provider`]. Each configured provider
//! becomes a registered activity (`courier.ingest.provider.<name>`) with its own
//! retry policy, so a delivery is a durable task like any other: retried by
//! policy, fenced, dead-lettered when it gives up, replayable.
//!
//! Adding one means writing a file here that implements the trait and naming
//! its `kind` in [`build`]:
//!
//! ```
//! use async_trait::async_trait;
//! use courier_ingest::provider::{Delivery, Provider, ProviderError};
//! use courier_ingest::Recipient;
//!
//! struct Pager;
//!
//! #[async_trait]
//! impl Provider for Pager {
//!     fn check_recipient(&self, recipient: &Recipient) -> Result<(), String> {
//!         recipient.account.as_ref().and_then(|a| a.number.as_ref()).map(|_| ()).ok_or("account.number is required".into())
//!     }
//!     async fn deliver(&self, delivery: &Delivery) -> Result<String, ProviderError> {
//!         // Page delivery.recipient with delivery.rendered.text ...
//!         Ok("paged".into())
//!     }
//! }
//! ```

mod email;
pub(crate) mod http;
mod log;
mod slack;
mod teams;
mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use courier_core::RetryPolicy;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::message::Recipient;

pub use email::EmailProvider;
pub use log::LogProvider;
pub use slack::SlackProvider;
pub use teams::TeamsProvider;
pub use webhook::WebhookProvider;

/// One message rendered for one recipient.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rendered {
    /// The subject, when the message has one.
    pub subject: Option<String>,
    /// The plain-text body.
    pub text: String,
    /// An HTML body, when the template is HTML (a `.html` named template).
    pub html: Option<String>,
}

/// What a provider is asked to deliver: one recipient of one message.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// A stable id for this recipient of this message (`<execution id>:<index>`):
    /// the same on every attempt, so a receiver can drop a duplicate.
    pub id: String,
    /// The execution delivering the message.
    pub execution_id: courier_core::ExecutionId,
    /// The recipient's position in the message.
    pub index: usize,
    /// Who receives it.
    pub recipient: Recipient,
    /// The message rendered for them.
    pub rendered: Rendered,
    /// The message's template variables (everything but its known fields).
    pub vars: serde_json::Map<String, Value>,
    /// The attempt, from 1.
    pub attempt: u32,
}

/// Why a delivery failed, and whether trying again could help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ProviderError {
    /// Retrying cannot help (a 4xx other than 429, an SMTP 5xx, a bad address).
    pub permanent: bool,
    /// What the other side said: the SMTP reply, the HTTP status and body.
    pub detail: String,
    /// Retry no sooner than this (an HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    /// A failure that retrying may cure (a timeout, a 5xx, a 429).
    pub fn transient(detail: impl Into<String>) -> Self {
        ProviderError {
            permanent: false,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A failure retrying cannot cure.
    pub fn permanent(detail: impl Into<String>) -> Self {
        ProviderError {
            permanent: true,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The verdict for an HTTP status: 429 and 5xx retry, other 4xx do not.
    pub fn from_status(status: u16, detail: impl Into<String>) -> Self {
        if status == 429 || status >= 500 || status == 408 {
            ProviderError::transient(detail)
        } else {
            ProviderError::permanent(detail)
        }
    }
}

/// Carries messages to recipients.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Checks a recipient when the message is taken in, so a message no one
    /// could deliver is refused at the door. The error says what is missing.
    fn check_recipient(&self, recipient: &Recipient) -> Result<(), String>;

    /// Delivers to one recipient; `Ok` carries what the other side said.
    async fn deliver(&self, delivery: &Delivery) -> Result<String, ProviderError>;
}

/// One provider's settings: `[ingest.providers.<name>]`.
///
/// `kind` defaults to the name, so `[ingest.providers.email]` is an email
/// provider; `[ingest.providers.alerts] kind = "slack"` is a second Slack one.
/// The remaining keys are the kind's own (`smtp_url`, `from`, `reply_to` for
/// email; `webhook_url` for slack and teams; `url`, `secret` for webhook).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderConfig {
    /// email, slack, teams, webhook or log; the provider's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// How its deliveries retry; a sensible schedule when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Most deliveries of this provider running at once per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// How long one attempt may take.
    #[serde(
        default,
        with = "courier_core::serde_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// The kind's own settings.
    #[serde(flatten)]
    pub settings: BTreeMap<String, Value>,
}

/// Why a provider could not be set up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ingest.providers.{name}: {detail}")]
pub struct ProviderSetupError {
    /// The provider's name.
    pub name: String,
    /// What is wrong.
    pub detail: String,
}

impl ProviderConfig {
    /// The kind, defaulting to `name`.
    pub fn kind<'a>(&'a self, name: &'a str) -> &'a str {
        self.kind.as_deref().unwrap_or(name)
    }

    /// A string setting, if present.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// A string setting that must be present.
    pub fn required(&self, name: &str, key: &str) -> Result<&str, ProviderSetupError> {
        self.setting(key).ok_or_else(|| ProviderSetupError {
            name: name.to_string(),
            detail: format!("`{key}` is required for a {} provider", self.kind(name)),
        })
    }
}

/// Builds the provider `config` describes.
pub fn build(name: &str, config: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderSetupError> {
    let timeout = config.timeout.unwrap_or(Duration::from_secs(30));
    Ok(match config.kind(name) {
        "email" => Arc::new(EmailProvider::new(name, config, timeout)?),
        "log" => Arc::new(LogProvider::new(name)),
        "slack" => Arc::new(SlackProvider::new(name, config, timeout)?),
        "teams" => Arc::new(TeamsProvider::new(name, config, timeout)?),
        "webhook" => Arc::new(WebhookProvider::new(name, config, timeout)?),
        other => {
            return Err(ProviderSetupError {
                name: name.to_string(),
                detail: format!("unknown kind `{other}` (email, slack, teams, webhook or log)"),
            });
        }
    })
}

/// The retry policy a provider uses when its settings name none: quick first
/// retries, then backing off to a few minutes, for about an hour in all.
pub fn default_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 10,
        initial_delay: Duration::from_secs(1),
        backoff_factor: 2.0,
        max_delay: Duration::from_secs(600),
        ..RetryPolicy::default()
    }
}
