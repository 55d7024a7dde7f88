//! The in-process notifier: the default when one node runs alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::hub::Hub;
use super::{Notice, Notifier, NotifierStats, NotifyError, Subscription, Topic};
use async_trait::async_trait;

/// Delivers notices to subscribers in this process only.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use courier_core::{ExecutionId, ExecutionState, LocalNotifier, Notifier};
/// let notifier = LocalNotifier::new();
/// let id = ExecutionId::new();
/// let mut sub = notifier.subscribe_to_execution(id, None).await.unwrap();
/// notifier.notify_execution_updated(id, ExecutionState::Completed).await.unwrap();
/// assert!(sub.next().await.is_some());
/// assert_eq!(notifier.stats().published, 1);
/// assert_eq!(notifier.stats().subscribed_channels, 1);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct LocalNotifier {
    hub: Hub,
    published: Arc<AtomicU64>,
}

impl LocalNotifier {
    /// A notifier with its own hub.
    pub fn new() -> Self {
        LocalNotifier::default()
    }

    /// The hub it delivers through (for metrics).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

#[async_trait]
impl Notifier for LocalNotifier {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, notices: Vec<Notice>) -> Result<(), NotifyError> {
        self.published.fetch_add(notices.len() as u64, Ordering::Relaxed);
        self.hub.deliver(&notices);
        Ok(())
    }

    async fn subscribe(&self, topics: Vec<Topic>) -> Result<Subscription, NotifyError> {
        Ok(self.hub.subscribe(topics))
    }

    /// `published` counts notices; `subscribed_channels` is the hub's topic count;
    /// always connected.
    fn stats(&self) -> NotifierStats {
        NotifierStats {
            published: self.published.load(Ordering::Relaxed),
            connected: true,
            subscribed_channels: self.hub.stats().topics,
            ..NotifierStats::default()
        }
    }
}
