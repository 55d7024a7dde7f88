//! Courier's cluster store: [`courier_core::Store`] on PostgreSQL.
//!
//! Every node of a cluster points at one database; this crate makes them agree.
//! Claims lock rows with `FOR UPDATE SKIP LOCKED` so racing workers never take
//! one task twice; per-function concurrency limits are counted under an advisory
//! lock so they hold across processes; every time the store writes or compares
//! is the database's `now()`, so nodes with skewed clocks still agree; and the
//! event log is numbered in commit order (see [`event_log`](self#event-log)).
//! Group commit ([`Store::commit`](courier_core::Store::commit)) applies a whole
//! batch of dispatches, children, effects and completions in one transaction with
//! set-based statements, which is where throughput comes from.
//!
//! The crate is cut as the contract is, by concern: each of core's traits is
//! implemented in the module that holds its tables' SQL.
//!
//! | trait | module |
//! |---|---|
//! | [`Store`](courier_core::Store): lifecycle, group commit, singleton roles | `store` (the commit itself in `commit`, with `dispatch`, `children`, `complete`, `wake`) |
//! | [`ExecutionStore`](courier_core::ExecutionStore) | `executions` |
//! | [`TaskStore`](courier_core::TaskStore) | `tasks` (claims in `claim`, lease writes and stuck detection in `leases`) |
//! | [`EventStore`](courier_core::EventStore) | `event_log` |
//! | [`DeadLetterStore`](courier_core::DeadLetterStore) | `dead_letters` |
//! | [`WebhookStore`](courier_core::WebhookStore) | `webhooks` |
//! | [`CacheStore`](courier_core::CacheStore) | `cache` |
//! | [`ContextStore`](courier_core::ContextStore) | `context` (signals in `signals`) |
//! | [`NotificationStore`](courier_core::NotificationStore) | `notifications` (also [`Store::cluster_value`](courier_core::Store::cluster_value)) |
//! | [`SeedRecords`](courier_core::SeedRecords) | `seed`, handing each raw record write to its table's module |
//!
//! Every write reports the [`Change`](courier_core::Change)s it made, in order,
//! and appends their events to the log in its own transaction, as its last
//! statement.
//!
//! It is not the place for policy (retry decisions, replay) — the runtime makes
//! those and hands the store their outcome — nor for delivering anything: the
//! notifier (LISTEN/NOTIFY), the live notification streams and webhook calls live
//! in other crates, which may share this store's [`pool`](PostgresStore::pool);
//! notifications for people are only *kept* here. It speaks plain TCP only; put a
//! TLS-terminating proxy in front of a server that requires TLS.
//!
//! ```no_run
//! # async fn demo() -> Result<(), courier_core::StoreError> {
//! use courier_core::{NewExecution, Store, TaskKind, TaskSpec};
//! use courier_store_postgres::{PostgresOptions, PostgresStore};
//!
//! let store = PostgresStore::connect(
//!     PostgresOptions::new("postgres://courier@127.0.0.1:5432/courier").schema("courier"),
//! )
//! .await?;
//! store.init().await?;
//! let spec = TaskSpec::new(TaskKind::Activity, "send_email", serde_json::json!({"to": "a@b.c"}));
//! // The dispatched executions, with what the write changed (whom to wake).
//! let dispatched = store.dispatch(vec![NewExecution::new(spec)]).await?;
//! assert_eq!(dispatched.value.len(), 1);
//! assert_eq!(dispatched.changes.len(), 2, "execution created, root task created");
//! # Ok(()) }
//! ```
//!
//! # Claim order
//!
//! Claims take due work by the `claim_at` column: due time minus priority ×
//! [`PriorityAgeing`](courier_core::PriorityAgeing) (which states the bound this
//! gives), generated from `scheduled_for` and `priority`, so no write path can
//! forget it, and the key of every claim index. The ageing is the store's
//! ([`PostgresOptions::priority_ageing`]), applied by `init`: a different one
//! rebuilds the column, rewriting `tasks`.
//!
//! # Event log
//!
//! Sequence numbers are gap-free in commit order and never reused: each
//! transaction that appends events bumps the one-row `courier_event_head` as its
//! last statement, holding that row's lock through its commit.
#![deny(missing_docs)]

mod cache;
mod children;
mod claim;
mod codec;
mod commit;
mod complete;
mod context;
mod dead_letters;
mod dispatch;
mod error;
mod event_log;
mod executions;
mod family;
mod functions;
mod leases;
mod maintenance;
mod migrations;
mod nodes;
mod notifications;
mod options;
mod passes;
mod pauses;
mod pool;
mod priority_ageing;
mod rate_limits;
mod rows;
mod schedules;
#[cfg(test)]
mod scratch;
mod seed;
mod signals;
mod statements;
mod store;
mod tasks;
pub mod tls;
mod transaction;
mod wake;
mod webhooks;

pub use error::with_causes;
pub use options::{DEFAULT_POOL_SIZE, DEFAULT_STATEMENT_TIMEOUT, PostgresOptions};
pub use tls::{PostgresSslMode, PostgresTls, PostgresUrlError, parse_postgres_url};

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use courier_core::{StoreError, StoreResult};
use deadpool_postgres::Pool;

/// Cumulative write counters of a Postgres store (see
/// [`PostgresStore::write_volume`]); the difference of two readings is what
/// happened between them.
///
/// ```
/// use courier_store_postgres::WriteVolume;
/// let before = WriteVolume { wal_bytes: 1_000, inserted: 10, updated: 4, transactions: 5, statements: Some(40), ..WriteVolume::default() };
/// let after = WriteVolume { wal_bytes: 9_000, inserted: 30, updated: 12, deleted: 2, transactions: 7, statements: Some(52), ..WriteVolume::default() };
/// let d = after.since(&before);
/// assert_eq!(d.rows(), 20 + 8 + 2);
/// assert_eq!((d.transactions, d.statements), (2, Some(12)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteVolume {
    /// Bytes of write-ahead log (the server's whole WAL, not only this store's).
    pub wal_bytes: u64,
    /// Rows inserted into this store's tables.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Of the updated rows, those updated in place (no index entry written).
    pub hot_updated: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Transactions committed or rolled back in the store's database (by any
    /// client of that database, not only this store).
    pub transactions: u64,
    /// Statements run in the store's database, from `pg_stat_statements`;
    /// `None` when that extension is not installed in the database and loaded
    /// (`shared_preload_libraries`). Counts `BEGIN` and `COMMIT` too.
    pub statements: Option<u64>,
    /// Statements this process's Postgres stores sent, `BEGIN`, `COMMIT` and
    /// `ROLLBACK` included, counted as they go out: the same figure as
    /// [`statements`](Self::statements) for a process with one store, on a
    /// server without `pg_stat_statements`.
    pub sent: u64,
}

impl WriteVolume {
    /// What changed from `earlier` to this reading.
    pub fn since(&self, earlier: &WriteVolume) -> WriteVolume {
        WriteVolume {
            wal_bytes: self.wal_bytes.saturating_sub(earlier.wal_bytes),
            inserted: self.inserted.saturating_sub(earlier.inserted),
            updated: self.updated.saturating_sub(earlier.updated),
            hot_updated: self.hot_updated.saturating_sub(earlier.hot_updated),
            deleted: self.deleted.saturating_sub(earlier.deleted),
            transactions: self.transactions.saturating_sub(earlier.transactions),
            statements: self
                .statements
                .zip(earlier.statements)
                .map(|(now, then)| now.saturating_sub(then)),
            sent: self.sent.saturating_sub(earlier.sent),
        }
    }

    /// Rows written: inserted, updated and deleted.
    pub fn rows(&self) -> u64 {
        self.inserted + self.updated + self.deleted
    }
}

/// A handle on a Postgres store: cheap to clone, all clones share one pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    schema: Option<Arc<str>>,
    /// What a priority level is worth in waiting; fixed at `init`.
    ageing: courier_core::PriorityAgeing,
    /// Whether the last claim found anything paused (see `claim.rs`).
    pauses_seen: Arc<AtomicBool>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresStore {
    /// Builds the pool and checks that the database answers. Does not create or
    /// migrate the schema: call [`Store::init`](courier_core::Store::init) for that.
    pub async fn connect(options: PostgresOptions) -> Result<Self, StoreError> {
        let (config, tls) = options.driver_config()?;
        let pool = pool::build(config, tls, options.max_connections())?;
        let store = PostgresStore {
            pool,
            schema: options.schema_name().map(Arc::from),
            ageing: options.priority_ageing_setting(),
            pauses_seen: Arc::new(AtomicBool::new(false)),
        };
        let client = store.client().await?;
        client.simple_query("SELECT 1").await.map_err(|e| error::from_db(&e))?;
        Ok(store)
    }

    /// Drops the configured schema and everything in it (tests use a schema each).
    /// [`StoreError::Invalid`] if the store has no schema of its own.
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let Some(schema) = &self.schema else {
            return Err(StoreError::Invalid(
                "drop_schema needs a store opened with PostgresOptions::schema".into(),
            ));
        };
        let client = self.client().await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .map_err(|e| error::from_db(&e))?;
        Ok(())
    }

    /// Cumulative write counters, for `courier bench`'s cost per execution: the
    /// WAL position and the rows inserted, updated (and of those, updated in
    /// place, "HOT") and deleted in this store's tables. The row counts are the
    /// statistics collector's, which a backend reports within about a second of
    /// going idle, so a reading right after a burst may still lag.
    pub async fn write_volume(&self) -> Result<WriteVolume, StoreError> {
        // The queries below go straight to the connection, so reading the
        // counters adds nothing to this one.
        let sent = statements::sent();
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8,
                        coalesce(sum(n_tup_ins), 0)::int8, coalesce(sum(n_tup_upd), 0)::int8,
                        coalesce(sum(n_tup_hot_upd), 0)::int8, coalesce(sum(n_tup_del), 0)::int8,
                        (SELECT (xact_commit + xact_rollback)::int8 FROM pg_stat_database
                          WHERE datname = current_database()),
                        (SELECT quote_ident(n.nspname) FROM pg_extension e
                          JOIN pg_namespace n ON n.oid = e.extnamespace
                          WHERE e.extname = 'pg_stat_statements')
                 FROM pg_stat_user_tables WHERE schemaname = current_schema()",
                &[],
            )
            .await
            .map_err(|e| error::from_db(&e))?;
        let get = |i: usize| -> Result<u64, StoreError> {
            let v: i64 = row.try_get(i).map_err(|e| error::from_db(&e))?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        let statements = match row.try_get::<_, Option<String>>(6).map_err(|e| error::from_db(&e))? {
            // Installed but not preloaded, the view refuses to be read: no figure.
            Some(schema) => client
                .query_one(
                    &format!(
                        "SELECT coalesce(sum(calls), 0)::int8 FROM {schema}.pg_stat_statements
                         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    ),
                    &[],
                )
                .await
                .ok()
                .and_then(|r| r.try_get::<_, i64>(0).ok())
                .map(|v| u64::try_from(v).unwrap_or(0)),
            None => None,
        };
        Ok(WriteVolume {
            wal_bytes: get(0)?,
            inserted: get(1)?,
            updated: get(2)?,
            hot_updated: get(3)?,
            deleted: get(4)?,
            transactions: get(5)?,
            statements,
            sent,
        })
    }

    /// The connection pool, for crates that keep their own tables beside the
    /// store's (webhooks, notifications). Its connections have `search_path` set
    /// to the store's schema (if it has one) and JIT compilation off.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The configured schema, if any.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        self.pool.get().await.map_err(error::from_pool)
    }

    /// A name for cluster-wide advisory locks that is distinct per schema, so
    /// deployments sharing a database do not contend.
    pub(crate) fn lock_name(&self, what: &str) -> String {
        format!("courier.{what}:{}", self.schema.as_deref().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn url() -> String {
        std::env::var("COURIER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    #[tokio::test]
    async fn every_pooled_connection_cancels_a_slow_statement_with_a_typed_error() {
        let options = PostgresOptions::new(url())
            .pool_size(2)
            .statement_timeout(Some(Duration::from_millis(200)));
        let store = PostgresStore::connect(options).await.expect("Postgres reachable");
        let client = store.client().await.unwrap();
        let shown: String = client.query_one("SHOW statement_timeout", &[]).await.unwrap().get(0);
        assert_eq!(shown, "200ms");
        let started = std::time::Instant::now();
        let e = client.query_one("SELECT pg_sleep(10)", &[]).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "cancelled, not waited out");
        assert!(
            matches!(error::from_db(&e), StoreError::Unavailable(m) if m.contains("statement_timeout")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_default_statement_timeout_is_thirty_seconds() {
        let store = PostgresStore::connect(PostgresOptions::new(url()).pool_size(1))
            .await
            .expect("Postgres reachable");
        let client = store.client().await.unwrap();
        let shown: String = client.query_one("SHOW statement_timeout", &[]).await.unwrap().get(0);
        assert_eq!(shown, "30s");
    }
}
