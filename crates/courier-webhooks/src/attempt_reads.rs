//! The attempts' first read, shared: every attempt starts by reading its
//! delivery, webhook and event, and the attempts that start while a read is
//! out wait for the next one, which reads them all in one store call (on
//! Postgres, one statement).
//!
//! Up to `webhooks.concurrency` attempts run at once. Read one by one,
//! each attempt took a pooled connection and a round trip of its own, and on
//! two cores every statement sent wakes a server process that takes a core
//! from the node; the reads, queued for connections, were most of an
//! attempt's time. Shared, a busy node sends a few reads for dozens of
//! attempts, and an idle one one read per attempt, as before: nothing waits
//! for a batch to fill.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use courier_core::{DeliveryForAttempt, Store, StoreResult, TaskError};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Most deliveries one shared read asks for.
const MOST_PER_READ: usize = 500;

/// One attempt's wait for its read.
type Waiter = (Uuid, oneshot::Sender<Result<Option<DeliveryForAttempt>, TaskError>>);

/// A node's shared attempt reads: cheap to clone, one reading task behind.
#[derive(Clone)]
pub(crate) struct AttemptReads {
    waiters: mpsc::Sender<Waiter>,
}

impl AttemptReads {
    /// Starts the reading task on the current runtime. It ends when the last
    /// handle is dropped.
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        Self::start_reading(move |ids| {
            let store = store.clone();
            async move { store.get_deliveries_for_attempts(&ids).await }
        })
    }

    /// Starts the reading task with `read` as the store's read.
    fn start_reading<R, F>(read: R) -> Self
    where
        R: Fn(Vec<Uuid>) -> F + Send + 'static,
        F: Future<Output = StoreResult<Vec<DeliveryForAttempt>>> + Send + 'static,
    {
        let (waiters, queue) = mpsc::channel(MOST_PER_READ);
        tokio::spawn(read_for_waiters(read, queue));
        AttemptReads { waiters }
    }

    /// The delivery `id` with its webhook and its event; `None` if the
    /// delivery does not exist. A failed read fails every attempt that shared
    /// it, each to be retried on its own schedule.
    pub(crate) async fn read(&self, id: Uuid) -> Result<Option<DeliveryForAttempt>, TaskError> {
        let stopped = || TaskError::new("not_ready", "the node's attempt reads have stopped");
        let (answer, answered) = oneshot::channel();
        self.waiters.send((id, answer)).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// Reads for whoever waits, one read at a time: those who arrive while a read
/// is out are answered by the next.
async fn read_for_waiters<R, F>(read: R, mut queue: mpsc::Receiver<Waiter>)
where
    R: Fn(Vec<Uuid>) -> F,
    F: Future<Output = StoreResult<Vec<DeliveryForAttempt>>>,
{
    let mut waiting = Vec::with_capacity(MOST_PER_READ);
    while queue.recv_many(&mut waiting, MOST_PER_READ).await > 0 {
        let ids: Vec<Uuid> = waiting.iter().map(|(id, _)| *id).collect();
        let asked = ids.len();
        match read(ids).await {
            Ok(read) => {
                let read: HashMap<Uuid, DeliveryForAttempt> = read.into_iter().map(|r| (r.delivery.id, r)).collect();
                for (id, answer) in waiting.drain(..) {
                    // An attempt cancelled while waiting no longer listens.
                    let _ = answer.send(Ok(read.get(&id).cloned()));
                }
            }
            Err(e) => {
                tracing::warn!(deliveries = asked, error = %e, "reading deliveries for their attempts failed");
                for (_, answer) in waiting.drain(..) {
                    let _ = answer.send(Err(TaskError::new("store", e.to_string())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use courier_core::{EventType, NewDelivery, NewExecution, TaskKind, TaskSpec, WebhookRecord};
    use courier_store_sqlite::{SqliteOptions, SqliteStore};
    use serde_json::json;

    use super::*;

    /// A store holding one webhook and `n` deliveries of one event.
    async fn deliveries(n: usize) -> (Arc<dyn Store>, Vec<Uuid>) {
        let store = SqliteStore::open(SqliteOptions::memory()).await.unwrap();
        store.init().await.unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let now = chrono::Utc::now();
        let hook = WebhookRecord {
            id: Uuid::new_v4(),
            url: "https://example.com/hook".into(),
            event_types: Vec::new(),
            execution_id: None,
            task_id: None,
            headers: BTreeMap::new(),
            secret: "whsec_c2VjcmV0".into(),
            previous_secret: None,
            previous_secret_until: None,
            description: None,
            enabled: true,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        store.create_webhook(&hook).await.unwrap();
        let source = NewExecution::new(TaskSpec::new(TaskKind::Activity, "source", json!(null)));
        store.dispatch(vec![source]).await.unwrap();
        let head = store.last_event_seq().await.unwrap();
        let new: Vec<NewDelivery> = (0..n)
            .map(|_| NewDelivery {
                id: Uuid::new_v4(),
                webhook_id: hook.id,
                event_seq: head,
                event_type: EventType::TaskCreated,
                execution: NewExecution::new(TaskSpec::new(TaskKind::Activity, "deliver", json!(null))),
                skipped: false,
            })
            .collect();
        let ids = new.iter().map(|d| d.id).collect();
        let cursor = store.webhook_cursor().await.unwrap();
        assert!(store.enqueue_deliveries(cursor, head, new).await.unwrap().value);
        (store, ids)
    }

    /// Attempts that start together share a read, and each gets its own
    /// delivery (an unknown one `None`, one asked twice its read twice).
    #[actix_rt::test]
    async fn attempts_starting_together_share_one_read() {
        let (store, ids) = deliveries(40).await;
        let asked: Arc<Mutex<Vec<usize>>> = Arc::default();
        let reads = {
            let asked = asked.clone();
            AttemptReads::start_reading(move |ids| {
                asked.lock().unwrap().push(ids.len());
                let store = store.clone();
                async move { store.get_deliveries_for_attempts(&ids).await }
            })
        };
        let unknown = Uuid::new_v4();
        let wanted: Vec<Uuid> = ids.iter().copied().chain([unknown, ids[0]]).collect();
        let attempts: Vec<_> = wanted
            .iter()
            .map(|&id| {
                let reads = reads.clone();
                tokio::spawn(async move { (id, reads.read(id).await.unwrap()) })
            })
            .collect();
        for attempt in attempts {
            let (id, read) = attempt.await.unwrap();
            match read {
                Some(read) => {
                    assert_eq!(read.delivery.id, id);
                    assert!(read.webhook.is_some() && read.event.is_some(), "{read:?}");
                }
                None => assert_eq!(id, unknown),
            }
        }
        let sizes = asked.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), wanted.len());
        assert!(
            sizes.len() <= 2,
            "42 attempts started together took {} reads",
            sizes.len()
        );

        // One on its own is read at once, alone.
        assert_eq!(reads.read(ids[1]).await.unwrap().unwrap().delivery.id, ids[1]);
        assert_eq!(asked.lock().unwrap().last(), Some(&1));
    }

    /// A read that fails fails the attempts that shared it, and the next
    /// attempts read again.
    #[actix_rt::test]
    async fn a_failed_read_fails_its_attempts_and_the_next_ones_read_again() {
        let (store, ids) = deliveries(3).await;
        let calls = Arc::new(Mutex::new(0));
        let reads = {
            let calls = calls.clone();
            AttemptReads::start_reading(move |ids| {
                let first = {
                    let mut calls = calls.lock().unwrap();
                    *calls += 1;
                    *calls == 1
                };
                let store = store.clone();
                async move {
                    if first {
                        Err(courier_core::StoreError::Unavailable("the database went away".into()))
                    } else {
                        store.get_deliveries_for_attempts(&ids).await
                    }
                }
            })
        };
        let failed = reads.read(ids[0]).await.unwrap_err();
        assert_eq!(failed.kind, "store");
        assert!(failed.message.contains("the database went away"), "{failed:?}");
        assert_eq!(reads.read(ids[0]).await.unwrap().unwrap().delivery.id, ids[0]);
    }
}
