//! [`SqliteStore`]: opening the database, and the lifecycle part of the [`Store`]
//! contract (each concern's trait is implemented in that concern's file). Every
//! operation sends its work to the writer thread (writes, claims, anything that
//! reads to decide a write) or to a reader thread (plain reads of a file database).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{
    Change, Clock, Committed, PriorityAgeing, Store, StoreError, StoreResult, WriteBatch, WriteResults,
};
use rusqlite::Connection;
use rusqlite::config::DbConfig;

use crate::codec::{micros, time};
use crate::error::{Result, sqlite_to_store, thread_error};
use crate::options::SqliteOptions;
use crate::readers::Readers;
use crate::wal::Checkpointer;
use crate::writer::{Writer, closed};
use crate::{commit, maintenance, migrations, notifications};

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
    /// What a priority level is worth in waiting; fixed at `init`.
    ageing: PriorityAgeing,
    closed: AtomicBool,
    path: Option<PathBuf>,
    /// Set by a test to make the next group commit panic.
    commit_fault: AtomicBool,
    /// Checkpoints a file database's WAL off the writer's thread; stopped by
    /// `close`.
    checkpointer: std::sync::Mutex<Option<Checkpointer>>,
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
        let mut writer_conn = connect(path, options.synchronous_full, false)?;
        let checkpointer = match path {
            Some(path) => Some(Checkpointer::start(
                connect(Some(path), options.synchronous_full, false)?,
                &mut writer_conn,
            )?),
            None => None,
        };
        let writer = Writer::start(writer_conn).map_err(thread_error)?;
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
                ageing: options.priority_ageing,
                closed: AtomicBool::new(false),
                path: options.path,
                commit_fault: AtomicBool::new(false),
                checkpointer: std::sync::Mutex::new(checkpointer),
            }),
        })
    }

    /// What a priority level is worth in waiting in this store's claim order.
    pub(crate) fn ageing(&self) -> PriorityAgeing {
        self.inner.ageing
    }

    fn check_open(&self) -> StoreResult<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(closed())
        } else {
            Ok(())
        }
    }

    /// What the writer thread has done since the store opened (time busy,
    /// transactions, jobs): `courier bench` reports its cost per execution.
    pub fn writer_load(&self) -> crate::WriterLoad {
        self.inner.writer.load()
    }

    /// Makes the next group commit panic on the writer thread, once: the fault
    /// a test injects to see a panic in the store's own code caught where it
    /// happens, answered as [`StoreError::Panicked`], and the node turn not
    /// ready. Never call it in production.
    #[doc(hidden)]
    pub fn panic_on_next_commit(&self) {
        self.inner.commit_fault.store(true, Ordering::SeqCst);
    }

    /// The durability the writer's connection runs with: `"normal"` or `"full"`
    /// (`PRAGMA synchronous`), so an operator can see what `store.sqlite_synchronous` took.
    pub async fn synchronous(&self) -> StoreResult<&'static str> {
        self.write(|conn, _| {
            let level: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            Ok(match level {
                2 | 3 => "full",
                1 => "normal",
                _ => "off",
            })
        })
        .await
    }

    /// Runs `f` on the writer, in a transaction, with the store clock's now (read
    /// when the job runs, not when it was queued).
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
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
    pub(crate) async fn write_isolated<T, F>(&self, f: F) -> StoreResult<T>
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

    /// [`write`](Self::write) for a write that reports its changes: `f` records
    /// them (see `event_log::record`) as it makes them.
    pub(crate) async fn write_changes<T, F>(&self, f: F) -> StoreResult<Committed<T>>
    where
        F: FnOnce(&Connection, i64, &mut Vec<Change>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write(move |conn, now| {
            let mut changes = Vec::new();
            let value = f(conn, now, &mut changes)?;
            Ok(Committed::new(value, changes))
        })
        .await
    }

    /// [`write_isolated`](Self::write_isolated) for a write that reports its changes.
    pub(crate) async fn write_changes_isolated<T, F>(&self, f: F) -> StoreResult<Committed<T>>
    where
        F: FnOnce(&Connection, i64, &mut Vec<Change>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_isolated(move |conn, now| {
            let mut changes = Vec::new();
            let value = f(conn, now, &mut changes)?;
            Ok(Committed::new(value, changes))
        })
        .await
    }

    /// Runs `f` on a reader (the writer, for an in-memory database).
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
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

fn connect(path: Option<&Path>, synchronous_full: bool, reader: bool) -> StoreResult<Connection> {
    let conn = match path {
        Some(path) => Connection::open(path),
        None => Connection::open_in_memory(),
    }
    .map_err(sqlite_to_store)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_to_store)?;
    conn.set_prepared_statement_cache_capacity(256);
    // Plans never depend on the values bound to a statement. Without this,
    // SQLite plans some statements again each time a value is bound: a
    // `LIMIT ?` (every claim's candidate reads) marks its statement to be
    // re-prepared at every bind, which was a quarter of the writer's time in
    // one-at-a-time dispatches. The plans are the ones made at the first
    // prepare, which never sees bound values anyway.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(sqlite_to_store)?;
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
        let ageing = self.inner.ageing;
        self.inner
            .writer
            .run_alone(move |conn| migrations::migrate(conn, micros(clock.now()), ageing))
            .await
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.writer.shutdown().await;
        if let Some(readers) = &self.inner.readers {
            readers.shutdown().await;
        }
        let checkpointer = self.inner.checkpointer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(checkpointer) = checkpointer {
            // Dropping it waits for a checkpoint under way.
            let _ = tokio::task::spawn_blocking(move || drop(checkpointer)).await;
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
        let panics = self.inner.commit_fault.swap(false, Ordering::SeqCst);
        let ageing = self.ageing();
        self.write(move |conn, now| {
            if panics {
                panic!("panic_on_next_commit: a test made this commit panic on the writer thread");
            }
            commit::commit(conn, now, ageing, &batch)
        })
        .await
    }

    async fn cluster_value(&self, name: &str, candidate: &str) -> StoreResult<String> {
        let (name, candidate) = (name.to_string(), candidate.to_string());
        self.write(move |conn, _| notifications::cluster_value(conn, &name, &candidate))
            .await
    }

    async fn try_acquire_singleton(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.write(move |conn, now| maintenance::try_acquire_singleton(conn, now, &name, &owner, ttl))
            .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::connect;

    #[test]
    fn a_cached_statement_is_not_planned_again_when_other_values_are_bound() {
        let conn = connect(None, false, false).expect("an in-memory database");
        conn.execute_batch(
            "CREATE TABLE t (k TEXT, n INTEGER);
             CREATE INDEX t_k ON t (k, n);
             INSERT INTO t VALUES ('a', 1), ('a', 2), ('b', 3);",
        )
        .expect("schema");
        for limit in [1, 2, 3, 1] {
            let mut stmt = conn
                .prepare_cached("SELECT n FROM t WHERE k = ?1 ORDER BY n LIMIT ?2")
                .expect("prepared");
            let rows: Vec<i64> = stmt
                .query_map(rusqlite::params!["a", limit], |r| r.get(0))
                .expect("ran")
                .collect::<rusqlite::Result<_>>()
                .expect("rows");
            assert_eq!(rows.len(), (limit as usize).min(2));
            assert_eq!(
                stmt.get_status(StatementStatus::RePrepare),
                0,
                "planned again for LIMIT {limit}"
            );
        }
    }
}
