//! [`Store`] for [`PostgresStore`]: each method hands off to the module that
//! holds its SQL. The batch defaults of the trait (dispatch, create_children,
//! apply_effect, complete_tasks, append_events) go through [`Store::commit`].

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{
    Cancelled, ClaimRequest, Claimed, DeadLetterRecord, DeliveryAttempt, DeliveryRecord, DeliveryState, Event,
    EventFilter, ExecutionFilter, ExecutionId, ExecutionRecord, ExecutionState, LeaseKey, NewDelivery, Progress,
    ProgressEntry, QueueDepth, Renewed, Replayed, Reservation, SignalRecord, SignalSent, Store, StoreResult,
    TaskFilter, TaskId, TaskRecord, TaskState, WebhookRecord, WriteBatch, WriteResults,
};
use serde_json::Value;
use uuid::Uuid;

use crate::transaction::in_transaction;
use crate::{
    PostgresStore, batch, cache, claim, context, dead_letters, event_log, executions, leases, maintenance, migrations,
    signals, tasks, webhooks,
};

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn init(&self) -> StoreResult<()> {
        let schema = self.schema.clone();
        in_transaction!(self, |tx| migrations::migrate(tx, schema.as_deref()))
    }

    async fn close(&self) {
        self.pool.close();
    }

    async fn now(&self) -> StoreResult<DateTime<Utc>> {
        maintenance::now(self).await
    }

    async fn analyze(&self) -> StoreResult<()> {
        maintenance::analyze(self).await
    }

    async fn commit(&self, batch: std::sync::Arc<WriteBatch>) -> StoreResult<WriteResults> {
        batch::commit(self, &batch).await
    }

    async fn create_execution(&self, record: &ExecutionRecord) -> StoreResult<()> {
        executions::create(self, record).await
    }

    async fn create_execution_with_root_task(&self, record: &ExecutionRecord, task: &TaskRecord) -> StoreResult<()> {
        executions::create_with_root(self, record, task).await
    }

    async fn get_execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        executions::get(self, id).await
    }

    async fn update_execution(&self, record: &ExecutionRecord) -> StoreResult<()> {
        executions::update(self, record).await
    }

    async fn list_executions(&self, filter: &ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>> {
        executions::list(self, filter).await
    }

    async fn count_executions(&self, state: Option<ExecutionState>) -> StoreResult<u64> {
        executions::count_executions(self, state).await
    }

    async fn cancel_execution(&self, id: ExecutionId, reason: &str) -> StoreResult<Cancelled> {
        executions::cancel(self, id, reason).await
    }

    async fn time_out_executions(&self, limit: u32) -> StoreResult<Vec<Cancelled>> {
        executions::time_out(self, limit).await
    }

    async fn create_tasks(&self, records: &[TaskRecord]) -> StoreResult<()> {
        tasks::create_records(self, records).await
    }

    async fn get_task(&self, id: TaskId) -> StoreResult<Option<TaskRecord>> {
        tasks::get(self, id).await
    }

    async fn get_tasks(&self, ids: &[TaskId]) -> StoreResult<Vec<TaskRecord>> {
        tasks::get_many(self, ids).await
    }

    async fn get_task_at_step(&self, execution: ExecutionId, step: i64) -> StoreResult<Option<TaskRecord>> {
        tasks::at_step(self, execution, step).await
    }

    async fn update_task(&self, task: &TaskRecord) -> StoreResult<()> {
        tasks::update_record(self, task).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        tasks::list(self, filter).await
    }

    async fn count_tasks(&self, queue: Option<&str>, state: Option<TaskState>) -> StoreResult<u64> {
        tasks::count_tasks(self, queue, state).await
    }

    async fn queue_depths(&self) -> StoreResult<Vec<QueueDepth>> {
        tasks::queue_depths(self).await
    }

    async fn claim_tasks(&self, req: &ClaimRequest) -> StoreResult<Vec<Claimed>> {
        claim::claim(self, req).await
    }

    async fn renew_leases(&self, leases: &[LeaseKey], extend: Duration) -> StoreResult<Vec<StoreResult<Renewed>>> {
        leases::renew(self, leases, extend).await
    }

    async fn heartbeat(&self, lease: LeaseKey, extend: Duration, details: Option<Value>) -> StoreResult<Renewed> {
        leases::heartbeat(self, lease, extend, details.as_ref()).await
    }

    async fn checkpoint(&self, lease: LeaseKey, data: Value) -> StoreResult<()> {
        leases::checkpoint(self, lease, &data).await
    }

    async fn release_task(&self, lease: LeaseKey, delay: Duration) -> StoreResult<()> {
        leases::release(self, lease, delay).await
    }

    async fn suspend_task(&self, lease: LeaseKey, seen_wake_gen: i64) -> StoreResult<bool> {
        leases::suspend(self, lease, seen_wake_gen).await
    }

    async fn move_task_to_dead_letter(&self, task: &TaskRecord, reason: &str) -> StoreResult<()> {
        dead_letters::put(self, task, reason).await
    }

    async fn list_dead_letters(&self, limit: u32, offset: u32) -> StoreResult<Vec<DeadLetterRecord>> {
        dead_letters::list(self, limit, offset).await
    }

    async fn count_dead_letters(&self) -> StoreResult<u64> {
        dead_letters::count_all(self).await
    }

    async fn get_dead_letter(&self, task_id: TaskId) -> StoreResult<Option<DeadLetterRecord>> {
        dead_letters::get(self, task_id).await
    }

    async fn delete_dead_letter(&self, task_id: TaskId) -> StoreResult<bool> {
        dead_letters::delete(self, task_id).await
    }

    async fn replay_dead_letter(&self, task_id: TaskId) -> StoreResult<Replayed> {
        dead_letters::replay(self, task_id).await
    }

    async fn cleanup_executions(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        maintenance::clean_up_executions(self, older_than).await
    }

    async fn cleanup_dead_letters(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        dead_letters::clean_up(self, older_than).await
    }

    async fn trim_events(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        maintenance::trim_events(self, older_than).await
    }

    async fn purge_expired_cache(&self) -> StoreResult<u64> {
        cache::purge_expired(self).await
    }

    async fn send_signal(&self, execution_id: ExecutionId, name: &str, payload: Value) -> StoreResult<SignalSent> {
        signals::send(self, execution_id, name, &payload).await
    }

    async fn create_signal(&self, signal: &SignalRecord) -> StoreResult<()> {
        signals::create(self, signal).await
    }

    async fn get_signal(&self, execution_id: ExecutionId, name: &str) -> StoreResult<Option<SignalRecord>> {
        signals::get(self, execution_id, name).await
    }

    async fn append_progress(
        &self,
        execution_id: ExecutionId,
        task_id: Option<TaskId>,
        progress: &Progress,
    ) -> StoreResult<()> {
        context::append_progress(self, execution_id, task_id, progress).await
    }

    async fn list_progress(&self, execution_id: ExecutionId, limit: u32) -> StoreResult<Vec<ProgressEntry>> {
        context::list_progress(self, execution_id, limit).await
    }

    async fn ensure_execution_counters(
        &self,
        execution_id: ExecutionId,
        counters: &[(String, f64)],
    ) -> StoreResult<()> {
        context::ensure_counters(self, execution_id, counters).await
    }

    async fn increment_execution_counter(
        &self,
        execution_id: ExecutionId,
        name: &str,
        amount: f64,
    ) -> StoreResult<f64> {
        context::increment(self, execution_id, name, amount).await
    }

    async fn get_execution_counters(&self, execution_id: ExecutionId) -> StoreResult<BTreeMap<String, f64>> {
        context::counters(self, execution_id).await
    }

    async fn ensure_execution_state_values(
        &self,
        execution_id: ExecutionId,
        values: &[(String, Value)],
    ) -> StoreResult<()> {
        context::ensure_state_values(self, execution_id, values).await
    }

    async fn set_execution_state_value(&self, execution_id: ExecutionId, key: &str, value: &Value) -> StoreResult<()> {
        let client = self.client().await?;
        Ok(context::set_state_value(&client, execution_id, key, value).await?)
    }

    async fn get_execution_state_values(&self, execution_id: ExecutionId) -> StoreResult<BTreeMap<String, Value>> {
        context::state_values(self, execution_id).await
    }

    async fn get_cached_result(&self, key: &str) -> StoreResult<Option<Value>> {
        cache::get(self, key).await
    }

    async fn set_cached_result(&self, key: &str, value: &Value, ttl: Option<Duration>) -> StoreResult<()> {
        cache::set(self, key, value, ttl).await
    }

    async fn get_idempotency_result(&self, key: &str) -> StoreResult<Option<Value>> {
        cache::idempotency_result(self, key).await
    }

    async fn set_idempotency_result(&self, key: &str, value: &Value) -> StoreResult<()> {
        cache::set_idempotency_result(self, key, value).await
    }

    async fn reserve_idempotency_key(&self, key: &str, owner: TaskId) -> StoreResult<Reservation> {
        cache::reserve(self, key, owner).await
    }

    async fn release_idempotency_key(&self, key: &str, owner: TaskId) -> StoreResult<bool> {
        cache::release(self, key, owner).await
    }

    async fn read_events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>> {
        event_log::read(self, filter).await
    }

    async fn last_event_seq(&self) -> StoreResult<i64> {
        event_log::last_seq(self).await
    }

    async fn detect_stuck_tasks(&self, heartbeat_timeout: Duration, limit: u32) -> StoreResult<Vec<TaskId>> {
        maintenance::detect_stuck(self, heartbeat_timeout, limit).await
    }

    async fn try_acquire_singleton(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool> {
        maintenance::try_acquire_singleton(self, name, owner, ttl).await
    }

    async fn create_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()> {
        webhooks::create(self, webhook).await
    }

    async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>> {
        webhooks::get(self, id).await
    }

    async fn list_webhooks(&self, limit: u32, offset: u32) -> StoreResult<Vec<WebhookRecord>> {
        webhooks::list(self, limit, offset).await
    }

    async fn delete_webhook(&self, id: Uuid) -> StoreResult<bool> {
        webhooks::delete(self, id).await
    }

    async fn set_webhook_enabled(&self, id: Uuid, enabled: bool, reason: Option<&str>) -> StoreResult<bool> {
        webhooks::set_enabled(self, id, enabled, reason).await
    }

    async fn webhook_cursor(&self) -> StoreResult<i64> {
        webhooks::cursor(self).await
    }

    async fn enqueue_deliveries(&self, from: i64, to: i64, deliveries: Vec<NewDelivery>) -> StoreResult<bool> {
        webhooks::enqueue(self, from, to, &deliveries).await
    }

    async fn record_delivery_attempt(&self, attempt: &DeliveryAttempt, state: DeliveryState) -> StoreResult<()> {
        webhooks::record_attempt(self, attempt, state).await
    }

    async fn get_delivery(&self, id: Uuid) -> StoreResult<Option<DeliveryRecord>> {
        webhooks::get_delivery(self, id).await
    }

    async fn list_deliveries(&self, webhook_id: Uuid, limit: u32, offset: u32) -> StoreResult<Vec<DeliveryRecord>> {
        webhooks::list_deliveries(self, webhook_id, limit, offset).await
    }

    async fn list_delivery_attempts(&self, delivery_id: Uuid) -> StoreResult<Vec<DeliveryAttempt>> {
        webhooks::list_attempts(self, delivery_id).await
    }
}
