//! Keeping the write-ahead log short without stalling the writer.
//!
//! A WAL must be checkpointed now and then (its pages copied back into the
//! database file, which is then synced), or it grows without end and every read
//! searches a longer log. SQLite does it, by default, on the connection whose
//! commit took the log past 1,000 pages: here that is the writer thread, and
//! every write queued behind it waited for the copy and the sync (one commit in
//! about thirty, when executions are dispatched one at a time: most of the
//! tail of their latency, and about a tenth of the writer's time).
//!
//! So the writer's commits only wake the `sqlite-wal` thread, which checkpoints
//! on a connection of its own: once the log is [`WAKE_AT`] pages long, and
//! again each [`WAKE_EVERY`] pages it grows, since a pass syncs twice however
//! little there is to copy. Its checkpoints are `PASSIVE`: they copy what no
//! reader still needs and never block the writer or a reader; the writer starts
//! the log over at its next commit once everything has been copied. When the
//! writer pauses now and then (one write at a time, or bursts) that is enough.
//! Under writes without a pause the copy can never catch up with the commits
//! made while it ran, so the log could not start over: from
//! [`WRITER_CHECKPOINTS_AT`] pages the writer checkpoints itself, which copies
//! only what the thread has not yet copied.

use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use courier_core::StoreResult;
use rusqlite::Connection;
use rusqlite::hooks::Wal;

use crate::error::{sqlite_to_store, thread_error};

/// WAL pages after a commit from which the `sqlite-wal` thread is woken:
/// SQLite's own default for checkpointing.
pub(crate) const WAKE_AT: c_int = 1000;

/// WAL pages after a commit from which the writer checkpoints itself: what
/// the `sqlite-wal` thread has not copied yet (see the module documentation).
pub(crate) const WRITER_CHECKPOINTS_AT: c_int = 2 * WAKE_AT;

/// Pages the log must grow by between two wakes of the thread, until it nears
/// [`WRITER_CHECKPOINTS_AT`]. A pass syncs the log and the database however
/// little it copies: woken at every commit past [`WAKE_AT`], the thread ran a
/// pass per commit of one-at-a-time dispatches, while the log could not start
/// over, at two syncs each (a tenth of such a node's CPU).
pub(crate) const WAKE_EVERY: c_int = WAKE_AT / 4;

#[derive(Default)]
struct State {
    wanted: bool,
    stopping: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Checkpoints run by the `sqlite-wal` thread.
    checkpoints: AtomicU64,
    /// Checkpoints the writer ran itself (see the module documentation).
    writer_checkpoints: AtomicU64,
    /// Times the writer woke the thread.
    wakes: AtomicU64,
    /// The log's length in pages at the last wake, and after the last commit
    /// (both written by the writer only).
    woken_at: AtomicI32,
    pages: AtomicI32,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Two flags: whatever a panic left behind is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a commit that left the log `pages` long wakes the thread: from
    /// [`WAKE_AT`], once per [`WAKE_EVERY`] pages, and at every commit once the
    /// writer's own checkpoint is near, so that it finds little left to copy.
    fn wake_for(&self, pages: c_int) -> bool {
        // Shorter than after the last commit: the log has started over.
        if pages < self.pages.swap(pages, Ordering::Relaxed) {
            self.woken_at.store(0, Ordering::Relaxed);
        }
        if pages < WAKE_AT {
            return false;
        }
        let last = self.woken_at.load(Ordering::Relaxed);
        if pages - last < WAKE_EVERY && pages < WRITER_CHECKPOINTS_AT - WAKE_EVERY {
            return false;
        }
        self.woken_at.store(pages, Ordering::Relaxed);
        self.wakes.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// The `sqlite-wal` thread. Dropping the handle stops it.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on `conn`, a connection of its own to the database, and
    /// hands the writer's connection `writer` the hook that wakes it.
    pub(crate) fn start(conn: Connection, writer: &mut Connection) -> StoreResult<Checkpointer> {
        let shared = Arc::new(Shared::default());
        let thread = thread::Builder::new()
            .name("sqlite-wal".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&conn, &shared)
            })
            .map_err(thread_error)?;
        // Built before the hook goes in, so that a failure below stops the thread.
        let checkpointer = Checkpointer {
            shared,
            thread: Some(thread),
        };
        let woken = Arc::clone(&checkpointer.shared);
        writer
            .wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
                // An error returned here would fail the statement whose commit
                // has happened: the hook returns none.
                if pages >= WRITER_CHECKPOINTS_AT {
                    match wal.checkpoint() {
                        Ok(()) => {
                            woken.writer_checkpoints.fetch_add(1, Ordering::Relaxed);
                        }
                        // The thread is checkpointing: the next commit tries again.
                        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {}
                        Err(e) => tracing::warn!(error = %e, pages, "the writer's WAL checkpoint failed"),
                    }
                    return Ok(());
                }
                if woken.wake_for(pages) {
                    woken.lock().wanted = true;
                    woken.wake.notify_one();
                }
                Ok(())
            }))
            .map_err(sqlite_to_store)?;
        Ok(checkpointer)
    }

    /// Checkpoints the thread has run, and the writer (see the module
    /// documentation).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn checkpoints(&self) -> (u64, u64) {
        (
            self.shared.checkpoints.load(Ordering::Relaxed),
            self.shared.writer_checkpoints.load(Ordering::Relaxed),
        )
    }

    /// Times the writer woke the thread.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn wakes(&self) -> u64 {
        self.shared.wakes.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, shared: &Shared) {
    loop {
        {
            let mut state = shared.lock();
            while !state.wanted && !state.stopping {
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.stopping {
                return;
            }
            state.wanted = false;
        }
        // A busy or partial checkpoint is finished by the next one.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(_) => {
                shared.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "SQLite WAL checkpoint failed; the next commit past the mark tries again")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::*;

    const PAGE: u64 = 4096;

    fn open(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).expect("opened");
        conn.execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .expect("WAL mode");
        conn
    }

    /// A database of its own, a writer connection and the checkpointer on it.
    struct Fixture {
        dir: PathBuf,
        writer: Option<Connection>,
        checkpointer: Option<Checkpointer>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = std::env::temp_dir().join(format!("courier-wal-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).expect("dir");
            let path = dir.join("wal.db");
            let mut writer = open(&path);
            writer
                .execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)")
                .expect("table");
            let checkpointer = Checkpointer::start(open(&path), &mut writer).expect("started");
            Fixture {
                dir,
                writer: Some(writer),
                checkpointer: Some(checkpointer),
            }
        }

        fn writer(&self) -> &Connection {
            self.writer.as_ref().expect("open until dropped")
        }

        /// (by the thread, by the writer)
        fn checkpoints(&self) -> (u64, u64) {
            self.checkpointer.as_ref().expect("running until dropped").checkpoints()
        }

        /// Commits a row that fills most of a page: a few pages per commit.
        fn insert(&self, n: c_int) {
            self.writer()
                .execute(
                    "INSERT INTO t (n, pad) VALUES (?1, ?2)",
                    rusqlite::params![n, [7u8; 3000]],
                )
                .unwrap_or_else(|e| panic!("insert {n}: {e}"));
        }

        fn wal_bytes(&self) -> u64 {
            std::fs::metadata(self.dir.join("wal.db-wal")).expect("a WAL").len()
        }

        /// Pages in the log (its header is 32 bytes, each frame's 24).
        fn wal_pages(&self) -> u64 {
            self.wal_bytes().saturating_sub(32) / (PAGE + 24)
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            drop(self.checkpointer.take());
            drop(self.writer.take());
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Commits without a pause, so that only the writer's own checkpoints let
    /// the log start over; and every statement succeeds, even when the
    /// writer's checkpoint finds the thread's under way.
    #[test]
    fn the_log_is_checkpointed_off_the_writer_and_stays_short_under_writes_without_a_pause() {
        let f = Fixture::new();
        let rows = WAKE_AT * 12;
        for n in 0..rows {
            f.insert(n);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while f.checkpoints().0 == 0 {
            assert!(Instant::now() < deadline, "the sqlite-wal thread checkpointed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(f.checkpoints().1 > 0, "the writer finished what the thread could not");
        // Every row wrote at least its own page (and a frame header) to the
        // log, so a log that never started over would be longer than all the
        // rows' pages together; the file is as long as the log ever grew
        // between two starts. How long that stretch was depends on how long
        // the thread's checkpoint (and its fsync) kept the writer's from
        // running, which other processes' writes to the same disk stretch:
        // with a second copy of these tests running beside, the longest
        // stretch reached 50-59% of the rows, so only the start-over itself
        // is asserted.
        let written = u64::try_from(rows).expect("positive") * PAGE;
        let wal_bytes = f.wal_bytes();
        assert!(
            wal_bytes < written,
            "the log grew instead of starting over: {wal_bytes} bytes for {written} bytes of rows' pages, checkpoints {:?}",
            f.checkpoints()
        );
        let count: i64 = f
            .writer()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(count, i64::from(rows));
    }

    /// The wakes' rule, commit by commit: from the mark, once per stretch; after
    /// the log starts over, at the mark again (however long it was at the last
    /// wake); at every commit near the writer's own checkpoint.
    #[test]
    fn the_thread_is_woken_at_the_mark_then_once_per_stretch_and_again_after_a_restart() {
        let shared = Shared::default();
        let woken = |pages: c_int| shared.wake_for(pages);
        assert!(!woken(10));
        assert!(!woken(WAKE_AT - 1));
        assert!(woken(WAKE_AT + 3), "at the mark");
        // The log starts over, and passes the mark again just beyond where
        // the last wake was.
        assert!(!woken(5));
        assert!(!woken(WAKE_AT - 1));
        assert!(
            woken(WAKE_AT + 4),
            "at the mark again, whatever the old log's last wake"
        );
        assert!(!woken(WAKE_AT + 4 + WAKE_EVERY - 1), "within the stretch");
        assert!(woken(WAKE_AT + 4 + WAKE_EVERY), "a stretch on");
        let near = WRITER_CHECKPOINTS_AT - WAKE_EVERY;
        assert!(woken(near));
        assert!(woken(near + 1), "every commit near the writer's checkpoint");
        assert!(woken(near + 2));
        assert_eq!(shared.wakes.load(Ordering::Relaxed), 6);
    }

    /// While the log cannot start over (a reader holds an old snapshot), commits
    /// one at a time wake the thread once per `WAKE_EVERY` pages, not at every
    /// commit past `WAKE_AT` as they did: each wake is a pass with two syncs.
    #[test]
    fn commits_one_at_a_time_wake_the_thread_once_per_stretch_of_the_log() {
        let f = Fixture::new();
        f.insert(-1);
        let reader = Connection::open(f.dir.join("wal.db")).expect("reader");
        reader.execute_batch("BEGIN").expect("begin");
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("a snapshot");
        let stop = u64::try_from(WRITER_CHECKPOINTS_AT - WAKE_EVERY).expect("positive") - 10;
        let mut n = 0;
        while f.wal_pages() < stop {
            f.insert(n);
            n += 1;
        }
        let wakes = f.checkpointer.as_ref().expect("running").wakes();
        let stretches =
            u64::try_from((WRITER_CHECKPOINTS_AT - 2 * WAKE_EVERY - WAKE_AT) / WAKE_EVERY + 1).expect("positive");
        assert!(
            wakes <= stretches,
            "{wakes} wakes for {} pages of the log past {WAKE_AT} ({n} commits); at most {stretches} expected",
            f.wal_pages() - u64::try_from(WAKE_AT).expect("positive")
        );
        assert!(wakes > 0, "the thread was woken");
        reader.execute_batch("COMMIT").expect("end the snapshot");
    }

    /// One commit at a time, with pauses: the thread alone keeps the log short.
    #[test]
    fn with_pauses_between_commits_the_writer_never_checkpoints() {
        let f = Fixture::new();
        for n in 0..WAKE_AT * 3 {
            f.insert(n);
            if n % 100 == 99 {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let (by_thread, by_writer) = f.checkpoints();
        assert!(by_thread > 0, "the thread checkpointed");
        assert_eq!(by_writer, 0, "the writer never had to");
    }
}
