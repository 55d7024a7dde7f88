//! Reader threads for file databases: WAL lets readers run beside the writer, so
//! reads (listings, event polling, dashboards) never queue behind writes.
//!
//! The queue to the threads is bounded ([`READ_QUEUE_BOUND`]): when it is full a
//! reader's `send` waits for room, so a burst of reads (a dashboard of many
//! tabs, thousands of pollers) slows its callers rather than growing in memory.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::thread;

use courier_core::StoreError;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::writer::closed;

/// Reads queued for the reader threads at most. A read is short; a few hundred
/// queued is already seconds of work for the two to four threads.
pub(crate) const READ_QUEUE_BOUND: usize = 256;

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

enum Msg {
    Job(ReadJob),
    Shutdown,
}

/// A pool of threads, each owning one read connection, taking jobs from one queue.
pub(crate) struct Readers {
    sender: mpsc::Sender<Msg>,
    threads: usize,
}

impl Readers {
    /// Starts one thread per connection.
    pub(crate) fn start(connections: Vec<Connection>) -> std::io::Result<Readers> {
        let (sender, receiver) = mpsc::channel::<Msg>(READ_QUEUE_BOUND);
        let receiver = Arc::new(Mutex::new(receiver));
        let threads = connections.len();
        for (i, conn) in connections.into_iter().enumerate() {
            let receiver = Arc::clone(&receiver);
            thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                .spawn(move || run(conn, receiver))?;
        }
        Ok(Readers { sender, threads })
    }

    /// Runs `f` on some reader connection.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let result = match catch_unwind(AssertUnwindSafe(|| f(conn))) {
                Ok(r) => r.map_err(StoreError::from),
                Err(panic) => Err(StoreError::from_panic(panic.as_ref())),
            };
            let _ = tx.send(result);
        });
        // Waits while the queue is full.
        self.sender.send(Msg::Job(job)).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Ends every reader thread once the jobs queued before have run.
    pub(crate) async fn shutdown(&self) {
        for _ in 0..self.threads {
            let _ = self.sender.send(Msg::Shutdown).await;
        }
    }
}

fn run(conn: Connection, receiver: Arc<Mutex<mpsc::Receiver<Msg>>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let msg = match receiver.lock() {
            Ok(mut guard) => guard.blocking_recv(),
            Err(_) => return,
        };
        match msg {
            Some(Msg::Job(job)) => job(&conn),
            Some(Msg::Shutdown) | None => return,
        }
    }
}
