//! [`SeedRecords`] for [`PostgresStore`]: seed 003's raw record operations, each
//! handed to the module of its table. They write rows as given: no fencing, no
//! changes, no events. (`create_task`, `claim_next_task` and `renew_task_lease`
//! are the trait's own, built on `create_tasks`, `claim_tasks` and `renew_leases`.)

use std::time::Duration;

use async_trait::async_trait;
use courier_core::{ExecutionId, ExecutionRecord, SeedRecords, SignalRecord, StoreResult, TaskRecord, TaskState};
use serde_json::Value;

use crate::PostgresStore;
use crate::{cache, context, dead_letters, executions, signals, tasks};

#[async_trait]
impl SeedRecords for PostgresStore {
    async fn create_execution(&self, record: &ExecutionRecord) -> StoreResult<()> {
        executions::create(self, record).await
    }

    async fn create_execution_with_root_task(&self, record: &ExecutionRecord, task: &TaskRecord) -> StoreResult<()> {
        executions::create_with_root(self, record, task).await
    }

    async fn update_execution(&self, record: &ExecutionRecord) -> StoreResult<()> {
        executions::update(self, record).await
    }

    async fn create_tasks(&self, records: &[TaskRecord]) -> StoreResult<()> {
        tasks::create_records(self, records).await
    }

    async fn update_task(&self, task: &TaskRecord) -> StoreResult<()> {
        tasks::update_record(self, task).await
    }

    async fn count_tasks(&self, queue: Option<&str>, state: Option<TaskState>) -> StoreResult<u64> {
        tasks::count_tasks(self, queue, state).await
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

    async fn move_task_to_dead_letter(&self, task: &TaskRecord, reason: &str) -> StoreResult<()> {
        dead_letters::put(self, task, reason).await
    }

    async fn create_signal(&self, signal: &SignalRecord) -> StoreResult<()> {
        signals::create(self, signal).await
    }

    async fn get_signal(&self, execution_id: ExecutionId, name: &str) -> StoreResult<Option<SignalRecord>> {
        signals::get(self, execution_id, name).await
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

    async fn ensure_execution_state_values(
        &self,
        execution_id: ExecutionId,
        values: &[(String, Value)],
    ) -> StoreResult<()> {
        context::ensure_state_values(self, execution_id, values).await
    }

    async fn set_execution_state_value(&self, execution_id: ExecutionId, key: &str, value: &Value) -> StoreResult<()> {
        context::set_state(self, execution_id, key, value).await
    }
}
