//! Steering work from outside: cancel, signals, dead letters, cleanup, cluster
//! roles, and the webhook records `courier-webhooks` keeps. Each is a named write
//! to the node's `StoreActor`, which publishes whom it wakes.

use std::time::Duration;

use chrono::{DateTime, Utc};

use courier_core::{
    Cancelled, DeliveryReplay, ExecutionId, FunctionRecord, FunctionSettings, NewDelivery, ParentLink, PauseState,
    PausedQueue, Replayed, SignalSent, TaskId, WebhookRecord,
};
use serde::Serialize;
use uuid::Uuid;

use crate::error::RuntimeError;
use crate::handle::Courier;
use crate::options::AppliedOptions;
use crate::store_actor::{
    AcquireRole, CancelExecution, Cleanup, CleanupReport, CreateWebhook, DeleteFunctionSettings, DeleteWebhook,
    DiscardDeadLetter, EnqueueDeliveries, PauseExecution, PauseQueue, PutFunctionSettings, ReplaceWebhookSecret,
    ReplayDeadLetter, ReplayDeliveries, RotateWebhookSecret, SendSignal, SetWebhookEnabled, SkipDelivery,
};

impl Courier {
    /// Cancels an execution: it and its unfinished tasks stop, and no later write
    /// of theirs lands (cancel sticks, also while the orchestrator runs).
    pub async fn cancel(&self, id: ExecutionId, reason: &str) -> Result<Cancelled, RuntimeError> {
        let write = CancelExecution {
            execution: id,
            reason: reason.to_string(),
        };
        Ok(self.node.writes().send(write).await??)
    }

    /// Pauses an execution for the whole cluster: no node and no outside worker
    /// claims its tasks until it is [resumed](Self::resume_execution). Tasks
    /// already running finish, and their results are kept (its next steps are
    /// written and wait). Logged as `execution.paused`; an execution that has
    /// ended cannot be paused.
    ///
    /// ```no_run
    /// # async fn run(courier: courier_runtime::Courier, id: courier_core::ExecutionId) -> Result<(), courier_runtime::RuntimeError> {
    /// let paused = courier.pause_execution(id).await?;
    /// assert!(paused.paused());
    /// courier.resume_execution(id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn pause_execution(&self, id: ExecutionId) -> Result<PauseState, RuntimeError> {
        let write = PauseExecution {
            execution: id,
            paused: true,
        };
        Ok(self.node.writes().send(write).await??)
    }

    /// Resumes a paused execution: its waiting tasks are claimed again (logged as
    /// `execution.unpaused`). Resuming one that is not paused changes nothing.
    pub async fn resume_execution(&self, id: ExecutionId) -> Result<PauseState, RuntimeError> {
        let write = PauseExecution {
            execution: id,
            paused: false,
        };
        Ok(self.node.writes().send(write).await??)
    }

    /// Since when an execution has been paused, if it is.
    pub async fn execution_paused_at(&self, id: ExecutionId) -> Result<Option<DateTime<Utc>>, RuntimeError> {
        Ok(self.node.store().execution_paused_at(id).await?)
    }

    /// Pauses a queue for the whole cluster: no claim takes its tasks until it
    /// is [resumed](Self::resume_queue); running ones finish and dispatches to it
    /// are still taken. Logged as `queue.paused`.
    pub async fn pause_queue(&self, queue: &str) -> Result<PauseState, RuntimeError> {
        let write = PauseQueue {
            queue: queue.to_string(),
            paused: true,
        };
        Ok(self.node.writes().send(write).await??)
    }

    /// Resumes a paused queue (logged as `queue.resumed`); its workers are woken.
    pub async fn resume_queue(&self, queue: &str) -> Result<PauseState, RuntimeError> {
        let write = PauseQueue {
            queue: queue.to_string(),
            paused: false,
        };
        Ok(self.node.writes().send(write).await??)
    }

    /// The paused queues, by name.
    pub async fn paused_queues(&self) -> Result<Vec<PausedQueue>, RuntimeError> {
        Ok(self.node.store().paused_queues().await?)
    }

    /// Sends a signal to an execution (kept until a wait consumes it).
    pub async fn send_signal<P: Serialize>(
        &self,
        id: ExecutionId,
        name: &str,
        payload: P,
    ) -> Result<SignalSent, RuntimeError> {
        if name.starts_with(ParentLink::SIGNAL_PREFIX) {
            return Err(RuntimeError::Invalid(format!(
                "signal names starting with {:?} carry child executions' ends and cannot be sent",
                ParentLink::SIGNAL_PREFIX
            )));
        }
        let write = SendSignal {
            execution: id,
            name: name.to_string(),
            payload: serde_json::to_value(payload)?,
        };
        Ok(self.node.writes().send(write).await??)
    }

    /// Replays a dead letter: the task runs again and its execution resumes.
    pub async fn replay_dead_letter(&self, task: TaskId) -> Result<Replayed, RuntimeError> {
        Ok(self.node.writes().send(ReplayDeadLetter(task)).await??)
    }

    /// Discards a dead letter; whether there was one.
    pub async fn discard_dead_letter(&self, task: TaskId) -> Result<bool, RuntimeError> {
        Ok(self.node.writes().send(DiscardDeadLetter(task)).await??)
    }

    /// Deletes finished executions, dead letters, events and finished
    /// idempotency keys older than `older_than` (events the webhook dispatcher
    /// has not read yet stay), and expired cache entries.
    pub async fn cleanup(&self, older_than: Duration) -> Result<CleanupReport, RuntimeError> {
        let age = chrono::Duration::from_std(older_than).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        let now = self.store().now().await?;
        let before = now
            .checked_sub_signed(age)
            .ok_or_else(|| RuntimeError::Invalid(format!("{older_than:?} reaches before the calendar starts")))?;
        let write = Cleanup {
            executions_before: Some(before),
            dead_letters_before: Some(before),
            events_before: Some(before),
            idempotency_before: Some(before),
            expired_cache: true,
        };
        Ok(self.node.writes().send(write).await??)
    }

    /// Takes or keeps the cluster-wide role `name` for `ttl` on behalf of this
    /// node: true while this node holds it. A service that must run on one node
    /// of the cluster at a time calls this every round and acts only when true.
    pub async fn hold_role(&self, name: &'static str, ttl: Duration) -> Result<bool, RuntimeError> {
        let write = AcquireRole {
            name,
            owner: self.node_id().to_string(),
            ttl,
        };
        Ok(self.node.writes().send(write).await??)
    }

    /// Stores `settings` for `function` (replacing what was set before), for
    /// every node: new tasks of the function take each field given instead of
    /// what its registration says. This node applies them at once, the others
    /// within [`function_settings::REFRESH`](crate::function_settings::REFRESH).
    ///
    /// ```no_run
    /// # async fn run(courier: courier_runtime::Courier) -> Result<(), courier_runtime::RuntimeError> {
    /// use courier_core::FunctionSettings;
    /// let settings = FunctionSettings { queue: Some("payments".into()), max_concurrent: Some(4), ..Default::default() };
    /// let record = courier.set_function_settings("charge_card", settings).await?;
    /// assert_eq!(courier.applied_options("charge_card").queue, "payments");
    /// # let _ = record; Ok(()) }
    /// ```
    pub async fn set_function_settings(
        &self,
        function: &str,
        settings: FunctionSettings,
    ) -> Result<FunctionRecord, RuntimeError> {
        let write = PutFunctionSettings {
            name: function.to_string(),
            settings,
        };
        let record = self.node.writes().send(write).await??;
        self.node.functions().wrote(function, Some(record.settings.clone()));
        Ok(record)
    }

    /// Forgets the settings stored for `function` (its tasks take their
    /// registration's options again); whether there were any.
    pub async fn delete_function_settings(&self, function: &str) -> Result<bool, RuntimeError> {
        let existed = self
            .node
            .writes()
            .send(DeleteFunctionSettings(function.to_string()))
            .await??;
        self.node.functions().wrote(function, None);
        Ok(existed)
    }

    /// The settings stored for `function`, read from the store.
    pub async fn function_settings(&self, function: &str) -> Result<Option<FunctionRecord>, RuntimeError> {
        Ok(self.node.store().get_function_settings(function).await?)
    }

    /// Every function's stored settings, by name, read from the store.
    pub async fn list_function_settings(&self) -> Result<Vec<FunctionRecord>, RuntimeError> {
        Ok(self.node.store().list_function_settings().await?)
    }

    /// What applies to new tasks of `function` dispatched through this node.
    pub fn applied_options(&self, function: &str) -> AppliedOptions {
        self.node.functions().applied(function)
    }

    /// The functions this node registered, by name.
    pub fn registered_functions(&self) -> Vec<String> {
        self.node.functions().registered()
    }

    /// Registers a webhook (see `courier-webhooks`, which builds the record).
    pub async fn create_webhook(&self, webhook: WebhookRecord) -> Result<(), RuntimeError> {
        Ok(self.node.writes().send(CreateWebhook(webhook)).await??)
    }

    /// Deletes a webhook with its deliveries; whether it existed.
    pub async fn delete_webhook(&self, id: Uuid) -> Result<bool, RuntimeError> {
        Ok(self.node.writes().send(DeleteWebhook(id)).await??)
    }

    /// Enables or disables a webhook; whether it exists.
    pub async fn set_webhook_enabled(
        &self,
        id: Uuid,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<bool, RuntimeError> {
        let write = SetWebhookEnabled {
            id,
            enabled,
            reason: reason.map(str::to_string),
        };
        Ok(self.node.writes().send(write).await??)
    }

    /// Rotates a webhook's signing secret to `secret` (as it is to be stored:
    /// `courier-webhooks` seals it first); the secret it replaces still signs
    /// for `grace` from now, by the store's clock. The webhook as the rotation
    /// left it; `None` if it does not exist.
    pub async fn rotate_webhook_secret(
        &self,
        id: Uuid,
        secret: String,
        grace: Duration,
    ) -> Result<Option<WebhookRecord>, RuntimeError> {
        let write = RotateWebhookSecret { id, secret, grace };
        Ok(self.node.writes().send(write).await??)
    }

    /// Replaces the stored secret value `from` of a webhook with `to` (sealing
    /// or re-sealing it), if the webhook still holds it; whether it did.
    pub async fn replace_webhook_secret(&self, id: Uuid, from: String, to: String) -> Result<bool, RuntimeError> {
        Ok(self.node.writes().send(ReplaceWebhookSecret { id, from, to }).await??)
    }

    /// Enqueues deliveries of the events `(from, to]` and dispatches their
    /// executions, if the webhook cursor is still at `from`; false (nothing
    /// written) if another node moved it first.
    pub async fn enqueue_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: Vec<NewDelivery>,
    ) -> Result<bool, RuntimeError> {
        let write = EnqueueDeliveries { from, to, deliveries };
        Ok(self.node.writes().send(write).await??)
    }

    /// Marks a pending delivery skipped (its webhook was disabled by the time its
    /// attempt came up); whether it was pending.
    pub async fn skip_delivery(&self, id: Uuid) -> Result<bool, RuntimeError> {
        Ok(self.node.writes().send(SkipDelivery(id)).await??)
    }

    /// Replays skipped deliveries, each by the execution given, dispatched with
    /// it; the ids replayed (a delivery no longer skipped is left alone).
    pub async fn replay_deliveries(&self, replays: Vec<DeliveryReplay>) -> Result<Vec<Uuid>, RuntimeError> {
        Ok(self.node.writes().send(ReplayDeliveries(replays)).await??)
    }
}
