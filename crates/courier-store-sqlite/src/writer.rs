//! The writer thread: the one connection every write goes through.
//!
//! SQLite admits one writer at a time, so instead of letting async tasks contend
//! for the lock, one thread owns the write connection and runs jobs sent to it.
//! Jobs that queue up while a transaction runs are committed together (group
//! commit), and every answer is delivered only after the shared COMMIT, so nobody
//! is told "done" about something that is not durable yet.
//!
//! A job that *refuses* (a [`StoreError`]) has written nothing: every operation
//! checks before it writes. The exceptions (raw multi-row inserts, which learn of
//! a conflict half-way) run as *isolated* jobs inside their own SAVEPOINT. Other
//! jobs get no savepoint on purpose: a savepoint open across many statements makes
//! SQLite re-walk its statement journal at every statement, which costs more than
//! the work. A job that fails outright (SQLite error, panic) rolls the whole group
//! back; the jobs after it are retried in a fresh transaction.
//!
//! The queue to the thread is bounded ([`WRITE_QUEUE_BOUND`]): when it is full a
//! caller's `send` waits for room, so a flood of writes slows its callers down
//! instead of piling up in memory. Nothing is dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use courier_core::StoreError;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, sqlite_to_store};
use crate::event_log;

/// At most this many jobs share one transaction, so one group's latency stays bounded.
const MAX_GROUP: usize = 256;

/// Jobs queued for the writer thread at most: four full groups, enough to keep
/// the thread busy between commits on a small box while bounding what a burst
/// holds in memory. Past it, callers wait.
pub(crate) const WRITE_QUEUE_BOUND: usize = 4 * MAX_GROUP;

/// How a grouped job went.
enum Outcome {
    /// It succeeded.
    Done,
    /// It refused, having written nothing (or, if isolated, had its writes undone).
    Refused,
    /// The database failed under it: the transaction cannot be trusted.
    Failed(StoreError),
}

/// What a grouped job hands back: how it went, and how to deliver its answer once
/// the group's fate is known (`Some(error)` if the group was rolled back).
struct Ran {
    outcome: Outcome,
    deliver: Box<dyn FnOnce(Option<StoreError>) + Send>,
}

/// The work of a grouped job; given `Err` when the transaction could not even
/// start, so that it answers without running.
type JobFn = Box<dyn FnOnce(Result<&Connection, StoreError>) -> Ran + Send>;

/// A job sharing the group transaction.
struct GroupedJob {
    isolated: bool,
    run: JobFn,
}

/// A job that needs the connection to itself, outside any transaction (migrations,
/// ANALYZE).
type AloneJob = Box<dyn FnOnce(&mut Connection) + Send>;

enum Msg {
    Grouped(GroupedJob),
    Alone(AloneJob),
    Shutdown(oneshot::Sender<()>),
}

/// What the writer thread has done since it started: time spent running jobs
/// (not waiting for them) and the transactions and jobs it ran. `courier bench`
/// divides the difference of two readings by the executions between them.
///
/// ```
/// use courier_store_sqlite::WriterLoad;
/// let load = WriterLoad { busy: std::time::Duration::from_millis(3), transactions: 2, jobs: 10 };
/// assert_eq!(load.jobs, 10);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterLoad {
    /// Time spent running jobs, commits included.
    pub busy: Duration,
    /// Transactions committed or rolled back (a group of jobs is one).
    pub transactions: u64,
    /// Jobs run.
    pub jobs: u64,
}

/// The writer thread's counters behind [`WriterLoad`].
#[derive(Default)]
struct Load {
    busy_nanos: AtomicU64,
    transactions: AtomicU64,
    jobs: AtomicU64,
}

/// The handle async code uses to send work to the writer thread.
pub(crate) struct Writer {
    sender: mpsc::Sender<Msg>,
    load: Arc<Load>,
    /// The most jobs seen waiting behind the one the thread just took (a test
    /// reads it to see the bound hold).
    #[cfg_attr(not(test), allow(dead_code))]
    peak_depth: Arc<AtomicUsize>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn start(conn: Connection) -> std::io::Result<Writer> {
        let (sender, receiver) = mpsc::channel(WRITE_QUEUE_BOUND);
        let peak_depth = Arc::new(AtomicUsize::new(0));
        let peak = Arc::clone(&peak_depth);
        let load = Arc::new(Load::default());
        let counted = Arc::clone(&load);
        thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, receiver, &peak, &counted))?;
        Ok(Writer {
            sender,
            load,
            peak_depth,
        })
    }

    /// What the thread has done so far.
    pub(crate) fn load(&self) -> WriterLoad {
        WriterLoad {
            busy: Duration::from_nanos(self.load.busy_nanos.load(Ordering::Relaxed)),
            transactions: self.load.transactions.load(Ordering::Relaxed),
            jobs: self.load.jobs.load(Ordering::Relaxed),
        }
    }

    /// The most jobs ever seen waiting for the thread: never more than
    /// [`WRITE_QUEUE_BOUND`].
    #[cfg(test)]
    pub(crate) fn peak_depth(&self) -> usize {
        self.peak_depth.load(Ordering::Relaxed)
    }

    /// Queues `msg`, waiting while the queue is full.
    async fn send(&self, msg: Msg) -> Result<(), StoreError> {
        self.sender.send(msg).await.map_err(|_| closed())
    }

    /// Runs `f` inside a write transaction (shared with whatever else is queued)
    /// and returns its answer once committed. `f` must refuse (return a
    /// [`StoreError`]) only before it has written anything; see [`run_isolated`](Self::run_isolated).
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        self.submit(false, f).await
    }

    /// Like [`run`](Self::run), for a job that may refuse after writing: it gets
    /// its own savepoint, rolled back if it refuses.
    pub(crate) async fn run_isolated<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        self.submit(true, f).await
    }

    async fn submit<T, F>(&self, isolated: bool, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let run: JobFn = Box::new(move |conn: Result<&Connection, StoreError>| {
            let (outcome, result) = match conn {
                Ok(conn) => match catch_unwind(AssertUnwindSafe(|| f(conn))) {
                    Ok(Ok(value)) => (Outcome::Done, Ok(value)),
                    Ok(Err(Error::Store(refusal))) => (Outcome::Refused, Err(refusal)),
                    Ok(Err(failure)) => {
                        let e = StoreError::from(failure);
                        (Outcome::Failed(e.clone()), Err(e))
                    }
                    Err(panic) => {
                        let e = StoreError::from_panic(panic.as_ref());
                        (Outcome::Failed(e.clone()), Err(e))
                    }
                },
                Err(e) => (Outcome::Refused, Err(e)),
            };
            Ran {
                outcome,
                deliver: Box::new(move |group_error: Option<StoreError>| {
                    let _ = tx.send(match group_error {
                        Some(e) => Err(e),
                        None => result,
                    });
                }),
            }
        });
        let job = GroupedJob { isolated, run };
        self.send(Msg::Grouped(job)).await?;
        rx.await.map_err(|_| closed())?
    }

    /// Runs `f` alone on the connection, outside any transaction `f` does not open itself.
    pub(crate) async fn run_alone<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: AloneJob = Box::new(move |conn| {
            let result = match catch_unwind(AssertUnwindSafe(|| f(conn))) {
                Ok(r) => r.map_err(StoreError::from),
                Err(panic) => Err(StoreError::from_panic(panic.as_ref())),
            };
            let _ = tx.send(result);
        });
        self.send(Msg::Alone(job)).await?;
        rx.await.map_err(|_| closed())?
    }

    /// Lets queued jobs finish, then closes the connection and ends the thread.
    pub(crate) async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Msg::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

pub(crate) fn closed() -> StoreError {
    StoreError::Unavailable("the SQLite store is closed".into())
}

fn run(mut conn: Connection, mut receiver: mpsc::Receiver<Msg>, peak: &AtomicUsize, load: &Load) {
    let mut next: Option<Msg> = None;
    loop {
        let msg = match next.take() {
            Some(msg) => msg,
            None => match receiver.blocking_recv() {
                Some(msg) => msg,
                // Every handle is gone.
                None => return,
            },
        };
        peak.fetch_max(receiver.len(), Ordering::Relaxed);
        match msg {
            Msg::Shutdown(ack) => {
                drop(conn);
                let _ = ack.send(());
                return;
            }
            Msg::Alone(job) => {
                let started = Instant::now();
                job(&mut conn);
                load.add(started, 1, 1);
            }
            Msg::Grouped(first) => {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match receiver.try_recv() {
                        Ok(Msg::Grouped(job)) => {
                            peak.fetch_max(receiver.len(), Ordering::Relaxed);
                            group.push(job)
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let (started, jobs) = (Instant::now(), group.len() as u64);
                let transactions = run_group(&conn, group);
                load.add(started, transactions, jobs);
            }
        }
    }
}

impl Load {
    fn add(&self, started: Instant, transactions: u64, jobs: u64) {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.transactions.fetch_add(transactions, Ordering::Relaxed);
        self.jobs.fetch_add(jobs, Ordering::Relaxed);
    }
}

/// Runs a group of jobs; how many transactions that took.
fn run_group(conn: &Connection, group: Vec<GroupedJob>) -> u64 {
    let mut jobs = group.into_iter();
    let mut rest: Vec<GroupedJob> = Vec::new();
    let mut transactions = 0;
    loop {
        run_transaction(conn, &mut jobs, &mut rest);
        transactions += 1;
        if rest.is_empty() {
            return transactions;
        }
        // A failure cut the transaction short: the jobs it did not reach get a fresh one.
        jobs = std::mem::take(&mut rest).into_iter();
    }
}

/// Runs `jobs` in one transaction; on a failure, stops there, rolls back, and
/// leaves the jobs not yet run in `rest`.
fn run_transaction(conn: &Connection, jobs: &mut std::vec::IntoIter<GroupedJob>, rest: &mut Vec<GroupedJob>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = sqlite_to_store(e);
        for job in jobs {
            ((job.run)(Err(e.clone())).deliver)(None);
        }
        return;
    }
    let numbering = event_log::Numbering::begin();
    let mut deliveries = Vec::with_capacity(jobs.len());
    let mut failure: Option<StoreError> = None;
    for job in jobs.by_ref() {
        if job.isolated
            && let Err(e) = savepoint(conn, "SAVEPOINT job")
        {
            deliveries.push((job.run)(Err(e.clone())).deliver);
            failure = Some(e);
            break;
        }
        let ran = (job.run)(Ok(conn));
        let undo = match (&ran.outcome, job.isolated) {
            (Outcome::Done, true) => savepoint(conn, "RELEASE job"),
            (Outcome::Refused, true) => {
                numbering.rewind();
                savepoint(conn, "ROLLBACK TO job").and_then(|()| savepoint(conn, "RELEASE job"))
            }
            (Outcome::Failed(e), _) => Err(e.clone()),
            (_, false) => Ok(()),
        };
        deliveries.push(ran.deliver);
        if let Err(e) = undo {
            failure = Some(e);
            break;
        }
    }
    if let Some(e) = failure {
        rollback(conn);
        rest.extend(jobs);
        for deliver in deliveries {
            deliver(Some(e.clone()));
        }
        return;
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => deliveries.into_iter().for_each(|deliver| deliver(None)),
        Err(e) => {
            rollback(conn);
            let e = sqlite_to_store(e);
            for deliver in deliveries {
                deliver(Some(e.clone()));
            }
        }
    }
}

fn savepoint(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute([]))
        .map(|_| ())
        .map_err(sqlite_to_store)
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten queues' worth of writes at once: before the queue was bounded they all
    /// piled up in it (the writer saw thousands waiting); now each caller waits
    /// for room, the queue never holds more than its bound, and every write lands.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_writes_waits_for_room_and_every_write_lands() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER NOT NULL)").unwrap();
        let writer = Arc::new(Writer::start(conn).unwrap());
        let total = 10 * WRITE_QUEUE_BOUND;
        let writes = (0..total).map(|n| {
            let writer = Arc::clone(&writer);
            async move {
                writer
                    .run(move |conn| Ok(conn.execute("INSERT INTO t (n) VALUES (?1)", [n as i64])?))
                    .await
            }
        });
        let results = futures::future::join_all(writes).await;
        assert!(results.iter().all(|r| matches!(r, Ok(1))), "every write landed");
        let count: i64 = writer
            .run(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(count as usize, total);
        let peak = writer.peak_depth();
        assert!(peak <= WRITE_QUEUE_BOUND, "{peak} jobs waited, over the bound");
        assert!(peak > 0, "the flood queued up at all");
        writer.shutdown().await;
    }

    /// A job that panics on the thread is answered as `Panicked` (with what the
    /// panic said), not as a backend error the runtime cannot tell apart from a
    /// database's refusal; the thread lives on and the next write lands.
    #[tokio::test]
    async fn a_job_that_panics_is_answered_as_panicked_and_the_thread_carries_on() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER NOT NULL)").unwrap();
        let writer = Writer::start(conn).unwrap();
        let panicked = writer
            .run::<(), _>(|conn| {
                conn.execute("INSERT INTO t (n) VALUES (1)", [])?;
                panic!("index {} out of range", 3);
            })
            .await
            .unwrap_err();
        match &panicked {
            StoreError::Panicked(said) => assert_eq!(said, "index 3 out of range"),
            other => panic!("expected Panicked, got {other:?}"),
        }
        let written = writer
            .run(|conn| Ok(conn.execute("INSERT INTO t (n) VALUES (2)", [])?))
            .await
            .unwrap();
        assert_eq!(written, 1);
        let rows: Vec<i64> = writer
            .run(|conn| {
                let mut stmt = conn.prepare("SELECT n FROM t")?;
                let rows = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()?;
                Ok(rows)
            })
            .await
            .unwrap();
        assert_eq!(rows, vec![2], "the panicked job's write was rolled back");
        writer.shutdown().await;
    }
}
