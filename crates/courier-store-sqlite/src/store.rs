//! [`SqliteStore`]: the [`Store`] contract on SQLite. Each method sends its work to
//! the writer thread (writes, claims, anything that reads to decide a write) or to
//! a reader thread (plain reads of a file database).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{
    Cancelled, ClaimRequest, Claimed, Clock, DeadLetterRecord, DeliveryAttempt, DeliveryRecord, DeliveryState, Event,
    EventFilter, ExecutionFilter, ExecutionId, ExecutionRecord, ExecutionState, LeaseKey, NewDelivery, Progress,
    ProgressEntry, QueueDepth, Renewed, Replayed, Reservation, SignalRecord, SignalSent, Store, StoreError,
    StoreResult, TaskFilter, TaskId, TaskRecord, TaskState, WebhookRecord, WriteBatch, WriteResults,
};
use rusqlite::Connection;
use serde_json::Value;
use uuid::Uuid;

use crate::codec::{json, micros, time};
use crate::error::{Result, sqlite_to_store};
use crate::options::SqliteOptions;
use crate::readers::Readers;
use crate::writer::{Writer, closed};
use crate::{
    cache, claim, commit, context, dead_letters, event_log, executions, lease, maintenance, schema, signals, tasks,
    webhooks,
};

/// How long a connection waits for another process's write lock before giving up
/// with [`StoreError::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A Courier store in one SQLite database (a file, or private memory).
///
/// Cloning is cheap and every clone shares the same connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    /// `None` for an in-memory database, which only the writer's connection can see.
    readers: Option<Readers>,
    clock: Clock,
    closed: AtomicBool,
    path: Option<PathBuf>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("clock", &self.inner.clock)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database and starts its threads. Call
    /// [`Store::init`] before use to create or migrate the schema.
    pub async fn open(options: SqliteOptions) -> std::result::Result<Self, StoreError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(options))
            .await
            .map_err(|e| StoreError::Backend(format!("opening the SQLite store failed: {e}")))?
    }

    fn open_blocking(options: SqliteOptions) -> StoreResult<Self> {
        let path = options.path.as_deref();
        // The writer connects first so that the file exists, in WAL mode, before readers open it.
        let writer = Writer::start(connect(path, options.synchronous_full, false)?).map_err(thread_error)?;
        let readers = match path {
            Some(path) => {
                let count = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4);
                let connections = (0..count)
                    .map(|_| connect(Some(path), options.synchronous_full, true))
                    .collect::<StoreResult<Vec<_>>>()?;
                Some(Readers::start(connections).map_err(thread_error)?)
            }
            None => None,
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer,
                readers,
                clock: options.clock,
                closed: AtomicBool::new(false),
                path: options.path,
            }),
        })
    }

    fn check_open(&self) -> StoreResult<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(closed())
        } else {
            Ok(())
        }
    }

    /// Runs `f` on the writer, in a transaction, with the store clock's now (read
    /// when the job runs, not when it was queued).
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection, i64) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.check_open()?;
        let clock = self.inner.clock;
        self.inner.writer.run(move |conn| f(conn, micros(clock.now()))).await
    }

    /// [`write`](Self::write) for an operation that may refuse after writing
    /// (a raw multi-row insert meeting a conflict): its writes are undone if it does.
    async fn write_isolated<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection, i64) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.check_open()?;
        let clock = self.inner.clock;
        self.inner
            .writer
            .run_isolated(move |conn| f(conn, micros(clock.now())))
            .await
    }

    /// Runs `f` on a reader (the writer, for an in-memory database).
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection, i64) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.check_open()?;
        let clock = self.inner.clock;
        match &self.inner.readers {
            Some(readers) => readers.run(move |conn| f(conn, micros(clock.now()))).await,
            None => self.inner.writer.run(move |conn| f(conn, micros(clock.now()))).await,
        }
    }
}

fn thread_error(e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("could not start a SQLite thread: {e}"))
}

fn connect(path: Option<&Path>, synchronous_full: bool, reader: bool) -> StoreResult<Connection> {
    let conn = match path {
        Some(path) => Connection::open(path),
        None => Connection::open_in_memory(),
    }
    .map_err(sqlite_to_store)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_to_store)?;
    conn.set_prepared_statement_cache_capacity(256);
    let mut pragmas = String::new();
    if !reader {
        // Takes effect only on a new database (before WAL is on). Big pages mean
        // shallower trees and fewer splits: measurably faster claims and completions.
        pragmas.push_str("PRAGMA page_size = 16384;");
    }
    if path.is_some() && !reader {
        pragmas.push_str("PRAGMA journal_mode = WAL;");
    }
    pragmas.push_str(if synchronous_full {
        "PRAGMA synchronous = FULL;"
    } else {
        "PRAGMA synchronous = NORMAL;"
    });
    pragmas.push_str("PRAGMA temp_store = MEMORY; PRAGMA foreign_keys = OFF;");
    // Page cache in KiB: the writer touches every hot index; readers mostly the newest rows.
    pragmas.push_str(if reader {
        "PRAGMA cache_size = -16384;"
    } else {
        "PRAGMA cache_size = -65536;"
    });
    if reader {
        pragmas.push_str("PRAGMA query_only = ON;");
    }
    conn.execute_batch(&pragmas).map_err(sqlite_to_store)?;
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn init(&self) -> StoreResult<()> {
        self.check_open()?;
        let clock = self.inner.clock;
        self.inner
            .writer
            .run_alone(move |conn| schema::migrate(conn, micros(clock.now())))
            .await
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.writer.shutdown().await;
        if let Some(readers) = &self.inner.readers {
            readers.shutdown();
        }
    }

    async fn now(&self) -> StoreResult<DateTime<Utc>> {
        self.check_open()?;
        Ok(time(micros(self.inner.clock.now())))
    }

    async fn analyze(&self) -> StoreResult<()> {
        self.check_open()?;
        self.inner
            .writer
            .run_alone(|conn| Ok(conn.execute_batch("ANALYZE")?))
            .await
    }

    async fn commit(&self, batch: Arc<WriteBatch>) -> StoreResult<WriteResults> {
        if batch.is_empty() {
            self.check_open()?;
            return Ok(WriteResults::default());
        }
        self.write(move |conn, now| commit::commit(conn, now, &batch)).await
    }

    async fn create_execution(&self, record: &ExecutionRecord) -> StoreResult<()> {
        let record = record.clone();
        self.write(move |conn, _| executions::create(conn, &record)).await
    }

    async fn create_execution_with_root_task(&self, record: &ExecutionRecord, task: &TaskRecord) -> StoreResult<()> {
        let (record, task) = (record.clone(), task.clone());
        self.write_isolated(move |conn, _| executions::create_with_root(conn, &record, &task))
            .await
    }

    async fn get_execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        self.read(move |conn, _| executions::get(conn, id)).await
    }

    async fn update_execution(&self, record: &ExecutionRecord) -> StoreResult<()> {
        let record = record.clone();
        self.write(move |conn, _| executions::update(conn, &record)).await
    }

    async fn list_executions(&self, filter: &ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>> {
        let filter = filter.clone();
        self.read(move |conn, _| executions::list(conn, &filter)).await
    }

    async fn count_executions(&self, state: Option<ExecutionState>) -> StoreResult<u64> {
        self.read(move |conn, _| executions::count(conn, state)).await
    }

    async fn cancel_execution(&self, id: ExecutionId, reason: &str) -> StoreResult<Cancelled> {
        let reason = reason.to_string();
        self.write(move |conn, now| executions::cancel(conn, now, id, &reason))
            .await
    }

    async fn time_out_executions(&self, limit: u32) -> StoreResult<Vec<Cancelled>> {
        self.write(move |conn, now| executions::time_out(conn, now, limit))
            .await
    }

    async fn create_tasks(&self, tasks: &[TaskRecord]) -> StoreResult<()> {
        let tasks = tasks.to_vec();
        self.write_isolated(move |conn, _| tasks::create(conn, &tasks)).await
    }

    async fn get_task(&self, id: TaskId) -> StoreResult<Option<TaskRecord>> {
        self.read(move |conn, _| tasks::get(conn, id)).await
    }

    async fn get_tasks(&self, ids: &[TaskId]) -> StoreResult<Vec<TaskRecord>> {
        let ids = ids.to_vec();
        self.read(move |conn, _| tasks::get_many(conn, &ids)).await
    }

    async fn get_task_at_step(&self, execution: ExecutionId, step: i64) -> StoreResult<Option<TaskRecord>> {
        self.read(move |conn, _| tasks::at_step(conn, execution, step)).await
    }

    async fn update_task(&self, task: &TaskRecord) -> StoreResult<()> {
        let task = task.clone();
        self.write(move |conn, _| tasks::update(conn, &task)).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        let filter = filter.clone();
        self.read(move |conn, _| tasks::list(conn, &filter)).await
    }

    async fn count_tasks(&self, queue: Option<&str>, state: Option<TaskState>) -> StoreResult<u64> {
        let queue = queue.map(str::to_string);
        self.read(move |conn, _| tasks::count(conn, queue.as_deref(), state))
            .await
    }

    async fn queue_depths(&self) -> StoreResult<Vec<QueueDepth>> {
        self.read(tasks::queue_depths).await
    }

    async fn claim_tasks(&self, req: &ClaimRequest) -> StoreResult<Vec<Claimed>> {
        let req = req.clone();
        self.write(move |conn, now| claim::claim(conn, now, &req)).await
    }

    async fn renew_leases(&self, leases: &[LeaseKey], extend: Duration) -> StoreResult<Vec<StoreResult<Renewed>>> {
        let leases = leases.to_vec();
        self.write(move |conn, now| lease::renew(conn, now, &leases, extend))
            .await
    }

    async fn heartbeat(&self, lease: LeaseKey, extend: Duration, details: Option<Value>) -> StoreResult<Renewed> {
        self.write(move |conn, now| lease::heartbeat(conn, now, &lease, extend, details.as_ref()))
            .await
    }

    async fn checkpoint(&self, lease: LeaseKey, data: Value) -> StoreResult<()> {
        self.write(move |conn, now| lease::checkpoint(conn, now, &lease, &data))
            .await
    }

    async fn release_task(&self, lease: LeaseKey, delay: Duration) -> StoreResult<()> {
        self.write(move |conn, now| lease::release(conn, now, &lease, delay))
            .await
    }

    async fn suspend_task(&self, lease: LeaseKey, seen_wake_gen: i64) -> StoreResult<bool> {
        self.write(move |conn, _| lease::suspend(conn, &lease, seen_wake_gen))
            .await
    }

    async fn move_task_to_dead_letter(&self, task: &TaskRecord, reason: &str) -> StoreResult<()> {
        let (task, reason) = (task.clone(), reason.to_string());
        self.write(move |conn, now| dead_letters::put(conn, now, &task, &reason))
            .await
    }

    async fn list_dead_letters(&self, limit: u32, offset: u32) -> StoreResult<Vec<DeadLetterRecord>> {
        self.read(move |conn, _| dead_letters::list(conn, limit, offset)).await
    }

    async fn count_dead_letters(&self) -> StoreResult<u64> {
        self.read(|conn, _| dead_letters::count(conn)).await
    }

    async fn get_dead_letter(&self, task_id: TaskId) -> StoreResult<Option<DeadLetterRecord>> {
        self.read(move |conn, _| dead_letters::get(conn, task_id)).await
    }

    async fn delete_dead_letter(&self, task_id: TaskId) -> StoreResult<bool> {
        self.write(move |conn, _| dead_letters::delete(conn, task_id)).await
    }

    async fn replay_dead_letter(&self, task_id: TaskId) -> StoreResult<Replayed> {
        self.write(move |conn, now| dead_letters::replay(conn, now, task_id))
            .await
    }

    async fn cleanup_executions(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |conn, _| maintenance::cleanup_executions(conn, micros(older_than)))
            .await
    }

    async fn cleanup_dead_letters(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |conn, _| dead_letters::cleanup(conn, micros(older_than)))
            .await
    }

    async fn trim_events(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |conn, _| maintenance::trim_events(conn, micros(older_than)))
            .await
    }

    async fn purge_expired_cache(&self) -> StoreResult<u64> {
        self.write(cache::purge_expired).await
    }

    async fn send_signal(&self, execution_id: ExecutionId, name: &str, payload: Value) -> StoreResult<SignalSent> {
        let name = name.to_string();
        self.write(move |conn, now| signals::send(conn, now, execution_id, &name, &payload))
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

    async fn append_progress(
        &self,
        execution_id: ExecutionId,
        task_id: Option<TaskId>,
        progress: &Progress,
    ) -> StoreResult<()> {
        let progress = progress.clone();
        self.write(move |conn, now| {
            executions::require(conn, execution_id)?;
            context::append_progress(conn, now, execution_id, task_id, &progress)
        })
        .await
    }

    async fn list_progress(&self, execution_id: ExecutionId, limit: u32) -> StoreResult<Vec<ProgressEntry>> {
        self.read(move |conn, _| context::list_progress(conn, execution_id, limit))
            .await
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

    async fn get_execution_counters(&self, execution_id: ExecutionId) -> StoreResult<BTreeMap<String, f64>> {
        self.read(move |conn, _| context::counters(conn, execution_id)).await
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

    async fn get_execution_state_values(&self, execution_id: ExecutionId) -> StoreResult<BTreeMap<String, Value>> {
        self.read(move |conn, _| context::state_values(conn, execution_id))
            .await
    }

    async fn get_cached_result(&self, key: &str) -> StoreResult<Option<Value>> {
        let key = key.to_string();
        self.read(move |conn, now| cache::get(conn, now, &key)).await
    }

    async fn set_cached_result(&self, key: &str, value: &Value, ttl: Option<Duration>) -> StoreResult<()> {
        let key = key.to_string();
        let value = json(value).map_err(|e| StoreError::from(crate::error::Error::from(e)))?;
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

    async fn reserve_idempotency_key(&self, key: &str, owner: TaskId) -> StoreResult<Reservation> {
        let key = key.to_string();
        self.write(move |conn, now| cache::reserve(conn, now, &key, owner))
            .await
    }

    async fn release_idempotency_key(&self, key: &str, owner: TaskId) -> StoreResult<bool> {
        let key = key.to_string();
        self.write(move |conn, _| cache::release(conn, &key, owner)).await
    }

    async fn read_events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>> {
        let filter = filter.clone();
        self.read(move |conn, _| event_log::read(conn, &filter)).await
    }

    async fn last_event_seq(&self) -> StoreResult<i64> {
        self.read(|conn, _| event_log::last_seq(conn)).await
    }

    async fn detect_stuck_tasks(&self, heartbeat_timeout: Duration, limit: u32) -> StoreResult<Vec<TaskId>> {
        self.write(move |conn, now| maintenance::detect_stuck(conn, now, heartbeat_timeout, limit))
            .await
    }

    async fn try_acquire_singleton(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.write(move |conn, now| maintenance::try_acquire_singleton(conn, now, &name, &owner, ttl))
            .await
    }

    async fn create_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()> {
        let webhook = webhook.clone();
        self.write(move |conn, _| webhooks::create(conn, &webhook)).await
    }

    async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>> {
        self.read(move |conn, _| webhooks::get(conn, id)).await
    }

    async fn list_webhooks(&self, limit: u32, offset: u32) -> StoreResult<Vec<WebhookRecord>> {
        self.read(move |conn, _| webhooks::list(conn, limit, offset)).await
    }

    async fn delete_webhook(&self, id: Uuid) -> StoreResult<bool> {
        self.write(move |conn, _| webhooks::delete(conn, id)).await
    }

    async fn set_webhook_enabled(&self, id: Uuid, enabled: bool, reason: Option<&str>) -> StoreResult<bool> {
        let reason = reason.map(str::to_string);
        self.write(move |conn, now| webhooks::set_enabled(conn, now, id, enabled, reason.as_deref()))
            .await
    }

    async fn webhook_cursor(&self) -> StoreResult<i64> {
        self.read(|conn, _| webhooks::cursor(conn)).await
    }

    async fn enqueue_deliveries(&self, from: i64, to: i64, deliveries: Vec<NewDelivery>) -> StoreResult<bool> {
        // Isolated: a refused dispatch or a taken delivery id must undo the cursor
        // move and every delivery written before it.
        self.write_isolated(move |conn, now| webhooks::enqueue(conn, now, from, to, &deliveries))
            .await
    }

    async fn record_delivery_attempt(&self, attempt: &DeliveryAttempt, state: DeliveryState) -> StoreResult<()> {
        let attempt = attempt.clone();
        self.write(move |conn, now| webhooks::record_attempt(conn, now, &attempt, state))
            .await
    }

    async fn get_delivery(&self, id: Uuid) -> StoreResult<Option<DeliveryRecord>> {
        self.read(move |conn, _| webhooks::get_delivery(conn, id)).await
    }

    async fn list_deliveries(&self, webhook_id: Uuid, limit: u32, offset: u32) -> StoreResult<Vec<DeliveryRecord>> {
        self.read(move |conn, _| webhooks::list_deliveries(conn, webhook_id, limit, offset))
            .await
    }

    async fn list_delivery_attempts(&self, delivery_id: Uuid) -> StoreResult<Vec<DeliveryAttempt>> {
        self.read(move |conn, _| webhooks::list_attempts(conn, delivery_id))
            .await
    }
}
