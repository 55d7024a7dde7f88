//! The `teams` provider: Microsoft Teams through a Workflows ("When a Teams
//! webhook request is received") webhook, `webhook_url`. The body is a message
//! with one Adaptive Card attachment (the Office 365 connector cards are
//! retired): the subject as a bold heading, the body as wrapped text.
//!
//! Workflows answers 202 Accepted on success; 4xx but 429 is permanent.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::http::{client, post_json};
use super::slack::webhook_url;
use super::{Delivery, Provider, ProviderConfig, ProviderError, ProviderSetupError};
use crate::message::Recipient;

/// Posts Adaptive Cards to a Teams Workflows webhook.
pub struct TeamsProvider {
    webhook_url: String,
    client: reqwest::Client,
}

impl TeamsProvider {
    /// Reads `webhook_url` from `config`.
    pub fn new(name: &str, config: &ProviderConfig, timeout: Duration) -> Result<Self, ProviderSetupError> {
        Ok(TeamsProvider {
            webhook_url: webhook_url(name, config)?,
            client: client(timeout),
        })
    }
}

/// The Adaptive Card for one delivery.
pub(crate) fn card(delivery: &Delivery) -> Value {
    let mut body = Vec::new();
    if let Some(subject) = delivery.rendered.subject.as_deref().filter(|s| !s.trim().is_empty()) {
        body.push(json!({"type": "TextBlock", "text": subject, "weight": "Bolder", "size": "Medium", "wrap": true}));
    }
    body.push(json!({"type": "TextBlock", "text": delivery.rendered.text, "wrap": true}));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            }
        }]
    })
}

#[async_trait]
impl Provider for TeamsProvider {
    fn check_recipient(&self, _recipient: &Recipient) -> Result<(), String> {
        Ok(())
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<String, ProviderError> {
        post_json(&self.client, &self.webhook_url, &card(delivery), None, &[]).await
    }
}
