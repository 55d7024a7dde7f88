//! Seed 003's record-level operations ([`SeedRecords`]), each a plain insert or
//! update of the concern module that owns the table.

use std::time::Duration;

use async_trait::async_trait;
use courier_core::{
    ExecutionId, ExecutionRecord, SeedRecords, SignalRecord, StoreError, StoreResult, TaskRecord, TaskState,
};
use serde_json::Value;

use crate::SqliteStore;
use crate::codec::json;
use crate::{cache, context, dead_letters, executions, signals, tasks};

#[async_trait]
impl SeedRecords for SqliteStore {
    async fn create_execution(&self, record: &ExecutionRecord) -> StoreResult<()> {
        let record = record.clone();
        self.write(move |conn, _| executions::create(conn, &record)).await
    }

    async fn create_execution_with_root_task(&self, record: &ExecutionRecord, task: &TaskRecord) -> StoreResult<()> {
        let (record, task) = (record.clone(), task.clone());
        self.write_isolated(move |conn, _| executions::create_with_root(conn, &record, &task))
            .await
    }

    async fn update_execution(&self, record: &ExecutionRecord) -> StoreResult<()> {
        let record = record.clone();
        self.write(move |conn, _| executions::update(conn, &record)).await
    }

    async fn create_tasks(&self, records: &[TaskRecord]) -> StoreResult<()> {
        let records = records.to_vec();
        self.write_isolated(move |conn, _| tasks::create(conn, &records)).await
    }

    async fn update_task(&self, task: &TaskRecord) -> StoreResult<()> {
        let task = task.clone();
        self.write(move |conn, _| tasks::update(conn, &task)).await
    }

    async fn count_tasks(&self, queue: Option<&str>, state: Option<TaskState>) -> StoreResult<u64> {
        let queue = queue.map(str::to_string);
        self.read(move |conn, _| tasks::count(conn, queue.as_deref(), state))
            .await
    }

    async fn set_cached_result(&self, key: &str, value: &Value, ttl: Option<Duration>) -> StoreResult<()> {
        let key = key.to_string();
        let value = json(value).map_err(StoreError::from)?;
        self.write(move |conn, now| cache::set(conn, now, &key, &value, ttl))
            .await
    }

    async fn get_idempotency_result(&self, key: &str) -> StoreResult<Option<Value>> {
        let key = key.to_string();
        self.read(move |conn, _| cache::idempotency_result(conn, &key)).await
    }

    async fn set_idempotency_result(&self, key: &str, value: &Value) -> StoreResult<()> {
        let (key, value) = (key.to_string(), value.clone());
        self.write(move |conn, now| cache::set_idempotency_result(conn, now, &key, &json(&value)?))
            .await
    }

    async fn move_task_to_dead_letter(&self, task: &TaskRecord, reason: &str) -> StoreResult<()> {
        let (task, reason) = (task.clone(), reason.to_string());
        self.write(move |conn, now| dead_letters::put(conn, now, &task, &reason))
            .await
    }

    async fn create_signal(&self, signal: &SignalRecord) -> StoreResult<()> {
        let signal = signal.clone();
        self.write(move |conn, _| signals::create(conn, &signal)).await
    }

    async fn get_signal(&self, execution_id: ExecutionId, name: &str) -> StoreResult<Option<SignalRecord>> {
        let name = name.to_string();
        self.read(move |conn, _| signals::get(conn, execution_id, &name)).await
    }

    async fn ensure_execution_counters(
        &self,
        execution_id: ExecutionId,
        counters: &[(String, f64)],
    ) -> StoreResult<()> {
        let counters = counters.to_vec();
        self.write(move |conn, _| context::ensure_counters(conn, execution_id, &counters))
            .await
    }

    async fn increment_execution_counter(
        &self,
        execution_id: ExecutionId,
        name: &str,
        amount: f64,
    ) -> StoreResult<f64> {
        let name = name.to_string();
        self.write(move |conn, _| context::increment_counter(conn, execution_id, &name, amount))
            .await
    }

    async fn ensure_execution_state_values(
        &self,
        execution_id: ExecutionId,
        values: &[(String, Value)],
    ) -> StoreResult<()> {
        let values = values.to_vec();
        self.write(move |conn, _| context::ensure_state_values(conn, execution_id, &values))
            .await
    }

    async fn set_execution_state_value(&self, execution_id: ExecutionId, key: &str, value: &Value) -> StoreResult<()> {
        let (key, value) = (key.to_string(), value.clone());
        self.write(move |conn, _| context::set_state_value(conn, execution_id, &key, &value))
            .await
    }
}
