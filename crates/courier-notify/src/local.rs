//! The in-process notifier: the default when one node runs alone.

use async_trait::async_trait;
use courier_core::{Notice, Notifier, NotifyError, Subscription, Topic};

use crate::hub::Hub;

/// Delivers notices to subscribers in this process only.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use courier_core::{ExecutionId, ExecutionState, Notifier};
/// use courier_notify::LocalNotifier;
/// let notifier = LocalNotifier::new();
/// let id = ExecutionId::new();
/// let mut sub = notifier.subscribe_to_execution(id, None).await.unwrap();
/// notifier.notify_execution_updated(id, ExecutionState::Completed).await.unwrap();
/// assert!(sub.next().await.is_some());
/// # }
/// ```
#[derive(Clone, Default)]
pub struct LocalNotifier {
    hub: Hub,
}

impl LocalNotifier {
    /// A notifier with its own hub.
    pub fn new() -> Self {
        LocalNotifier { hub: Hub::new() }
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
        self.hub.deliver(&notices);
        Ok(())
    }

    async fn subscribe(&self, topics: Vec<Topic>) -> Result<Subscription, NotifyError> {
        Ok(self.hub.subscribe(topics))
    }
}
