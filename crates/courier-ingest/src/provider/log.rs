//! The `log` provider: writes each delivery to the node's log (target
//! `courier::ingest::log`). Useful to try ingestion without any account, and as
//! the provider of last resort in tests.

use async_trait::async_trait;

use super::{Delivery, Provider, ProviderError};
use crate::message::Recipient;

/// Logs deliveries instead of sending them.
pub struct LogProvider {
    name: String,
}

impl LogProvider {
    /// A log provider named `name`.
    pub fn new(name: &str) -> Self {
        LogProvider { name: name.to_string() }
    }
}

#[async_trait]
impl Provider for LogProvider {
    fn check_recipient(&self, _recipient: &Recipient) -> Result<(), String> {
        Ok(())
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<String, ProviderError> {
        tracing::info!(
            target: "courier::ingest::log",
            provider = %self.name,
            delivery = %delivery.id,
            recipient = %delivery.recipient.label(),
            subject = delivery.rendered.subject.as_deref().unwrap_or(""),
            text = %delivery.rendered.text,
            "delivered to the log"
        );
        Ok("logged".into())
    }
}
