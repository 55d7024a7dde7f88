//! The `slack` provider: Slack's incoming webhooks (`webhook_url`), a JSON body
//! with a `text` field (the subject in bold above the body, when there is one).
//!
//! An incoming webhook posts to the channel it was created for; a recipient's
//! `channel_id` (or bare address) is passed as `channel` for the older webhooks
//! that may still honour it. Slack answers 404 / 410 for a removed webhook or
//! channel: permanent, as is any 4xx but 429.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::http::{client, post_json};
use super::{Delivery, Provider, ProviderConfig, ProviderError, ProviderSetupError};
use crate::message::Recipient;

/// Posts to a Slack incoming webhook.
pub struct SlackProvider {
    webhook_url: String,
    client: reqwest::Client,
}

impl SlackProvider {
    /// Reads `webhook_url` from `config`.
    pub fn new(name: &str, config: &ProviderConfig, timeout: Duration) -> Result<Self, ProviderSetupError> {
        Ok(SlackProvider {
            webhook_url: webhook_url(name, config)?,
            client: client(timeout),
        })
    }
}

/// The required `webhook_url`, checked to be a URL.
pub(super) fn webhook_url(name: &str, config: &ProviderConfig) -> Result<String, ProviderSetupError> {
    let url = config.required(name, "webhook_url")?;
    reqwest::Url::parse(url).map_err(|e| ProviderSetupError {
        name: name.to_string(),
        detail: format!("`webhook_url` is not a URL: {e}"),
    })?;
    Ok(url.to_string())
}

#[async_trait]
impl Provider for SlackProvider {
    fn check_recipient(&self, _recipient: &Recipient) -> Result<(), String> {
        Ok(())
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<String, ProviderError> {
        let text = match &delivery.rendered.subject {
            Some(subject) if !subject.trim().is_empty() => format!("*{}*\n{}", subject.trim(), delivery.rendered.text),
            _ => delivery.rendered.text.clone(),
        };
        let mut body = json!({ "text": text });
        let channel = delivery
            .recipient
            .channel_id
            .as_ref()
            .map(|c| c.as_str().map(str::to_string).unwrap_or_else(|| c.to_string()))
            .or_else(|| delivery.recipient.address().map(str::to_string));
        if let (Some(channel), Value::Object(map)) = (channel, &mut body) {
            map.insert("channel".into(), Value::String(channel));
        }
        post_json(&self.client, &self.webhook_url, &body, None, &[]).await
    }
}
