//! The `webhook` provider: a JSON POST per recipient to `url`, signed like
//! Courier's own webhooks when `secret` is set (`X-Webhook-Signature` and the
//! Standard Webhooks `webhook-id` / `webhook-timestamp` / `webhook-signature`).
//!
//! `webhook-id` is the delivery's stable id (`<execution id>:<recipient index>`),
//! the same on every attempt, so a receiver can drop a duplicate.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::http::{Signing, client, post_json};
use super::{Delivery, Provider, ProviderConfig, ProviderError, ProviderSetupError};
use crate::message::Recipient;

/// Delivers by POSTing JSON to one URL.
pub struct WebhookProvider {
    url: String,
    secret: Option<String>,
    client: reqwest::Client,
}

impl WebhookProvider {
    /// Reads `url` (required) and `secret` (optional) from `config`.
    pub fn new(name: &str, config: &ProviderConfig, timeout: Duration) -> Result<Self, ProviderSetupError> {
        let url = config.required(name, "url")?;
        reqwest::Url::parse(url).map_err(|e| ProviderSetupError {
            name: name.to_string(),
            detail: format!("`url` is not a URL: {e}"),
        })?;
        Ok(WebhookProvider {
            url: url.to_string(),
            secret: config.setting("secret").map(str::to_string),
            client: client(timeout),
        })
    }
}

#[async_trait]
impl Provider for WebhookProvider {
    fn check_recipient(&self, _recipient: &Recipient) -> Result<(), String> {
        Ok(())
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<String, ProviderError> {
        let body = json!({
            "id": delivery.id,
            "execution_id": delivery.execution_id,
            "index": delivery.index,
            "attempt": delivery.attempt,
            "recipient": delivery.recipient,
            "subject": delivery.rendered.subject,
            "message": delivery.rendered.text,
            "html": delivery.rendered.html,
            "vars": delivery.vars,
        });
        let signing = self.secret.as_deref().map(|secret| Signing {
            secret,
            id: &delivery.id,
        });
        post_json(
            &self.client,
            &self.url,
            &body,
            signing,
            &[("X-Courier-Delivery", delivery.id.clone())],
        )
        .await
    }
}
