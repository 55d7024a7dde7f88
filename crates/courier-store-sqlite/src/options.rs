//! How to open a SQLite store.

use std::path::PathBuf;

use courier_core::{Clock, PriorityAgeing};

/// Where the database lives and how it is tuned.
///
/// ```
/// use courier_store_sqlite::SqliteOptions;
/// let options = SqliteOptions::file("/var/lib/courier/courier.db").synchronous_full(true);
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub(crate) path: Option<PathBuf>,
    pub(crate) clock: Clock,
    pub(crate) synchronous_full: bool,
    pub(crate) priority_ageing: PriorityAgeing,
}

impl SqliteOptions {
    /// A private in-memory database: gone when the store is dropped, invisible to
    /// any other store.
    pub fn memory() -> Self {
        SqliteOptions {
            path: None,
            clock: Clock::system(),
            synchronous_full: false,
            priority_ageing: PriorityAgeing::DEFAULT,
        }
    }

    /// A database file, created if missing. The path `:memory:` means [`memory`](Self::memory).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        SqliteOptions {
            path: (path.as_os_str() != ":memory:").then_some(path),
            ..Self::memory()
        }
    }

    /// The clock the store stamps and compares every time with (tests shift it).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// What one priority level is worth in waiting (`store.priority_aging`): the
    /// store's claim order, applied by `init` (which rebuilds the order of every
    /// task if the file had another; see [`PriorityAgeing`] for the bound).
    pub fn priority_ageing(mut self, ageing: PriorityAgeing) -> Self {
        self.priority_ageing = ageing;
        self
    }

    /// `true`: `synchronous=FULL`, every commit reaches the disk before it is
    /// acknowledged. `false` (the default): `synchronous=NORMAL`, which in WAL mode
    /// cannot corrupt the database but may lose the last commits on power loss.
    pub fn synchronous_full(mut self, yes: bool) -> Self {
        self.synchronous_full = yes;
        self
    }
}
