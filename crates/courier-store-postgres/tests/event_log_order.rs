//! The event log's sequence follows commit order: an appender that is still
//! committing holds the head, so nobody can commit a higher number first, and an
//! appender that rolls back gives its numbers back.
//!
//! Nothing appends events on its own any more: the writes here are progress
//! reports (one event each) and group commits of dispatches (two events per
//! execution: `execution.created`, `task.created`).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use courier_core::{
    ContextStore, Event, EventFilter, EventStore, ExecutionId, NewExecution, Progress, Store, TaskKind, TaskSpec,
    WriteBatch,
};
use courier_store_postgres::PostgresStore;
use serde_json::json;

/// Reports progress of a new execution: a write that appends exactly one event.
/// Returns the execution, which names the event.
async fn report(store: &PostgresStore, n: i64) -> ExecutionId {
    let execution = ExecutionId::new();
    let committed = store
        .append_progress(execution, None, &Progress::percent(n as f64, format!("n={n}")), None)
        .await
        .unwrap();
    assert_eq!(committed.changes.len(), 1);
    execution
}

/// Every event in the log, oldest first (read in pages).
async fn all_events(store: &PostgresStore) -> Vec<Event> {
    let mut all: Vec<Event> = Vec::new();
    loop {
        let after = all.last().map_or(0, |e| e.seq);
        let page = store.read_events(&EventFilter::after(after)).await.unwrap().events;
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// The sequence numbers of the events of `execution`.
async fn seqs_of(store: &PostgresStore, execution: ExecutionId) -> Vec<i64> {
    store
        .read_events(&EventFilter::after(0).execution(execution))
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.seq)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waits_for_an_earlier_appender_to_commit() {
    let store = common::fresh("seq_order").await;
    report(&store, 0).await;

    // Play an appender in the middle of its commit: it has taken its numbers.
    let mut slow = store.pool().get().await.unwrap();
    let tx = slow.transaction().await.unwrap();
    let row = tx
        .query_one("UPDATE courier_event_head SET last = last + 2 RETURNING last", &[])
        .await
        .unwrap();
    let slow_last: i64 = row.get(0);
    assert_eq!(slow_last, 3);

    let fast = tokio::spawn({
        let store = store.clone();
        async move { report(&store, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !fast.is_finished(),
        "a later append must not commit before the earlier one"
    );
    let visible = store.read_events(&EventFilter::after(0)).await.unwrap().events;
    assert_eq!(visible.len(), 1, "nothing past the slow appender is visible");

    for seq in [2_i64, 3] {
        tx.execute(
            "INSERT INTO events (seq, type, ts, data) VALUES ($1, 'task.progress', now(), '{}')",
            &[&seq],
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let fast_execution = fast.await.unwrap();
    assert_eq!(
        seqs_of(&store, fast_execution).await,
        vec![4],
        "the later append comes after, with no gap"
    );
    let seqs: Vec<i64> = all_events(&store).await.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_append_leaves_no_gap() {
    let store = common::fresh("seq_rollback").await;
    report(&store, 0).await;
    report(&store, 1).await;
    {
        let mut client = store.pool().get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.execute("UPDATE courier_event_head SET last = last + 5", &[])
            .await
            .unwrap();
        tx.rollback().await.unwrap();
    }
    assert_eq!(store.last_event_seq().await.unwrap(), 2);
    let next = report(&store, 2).await;
    assert_eq!(seqs_of(&store, next).await, vec![3]);
    assert_eq!(store.last_event_seq().await.unwrap(), 3);
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_from_many_writers_interleave_without_gaps() {
    let store = common::fresh("seq_many").await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                // Each commit's executions, with how many events it reported.
                let mut commits: Vec<(Vec<ExecutionId>, usize)> = Vec::new();
                for i in 0..25 {
                    let dispatches: Vec<NewExecution> = (0..(1 + (w + i) % 5))
                        .map(|n| NewExecution::new(TaskSpec::new(TaskKind::Activity, "f", json!({ "n": n }))))
                        .collect();
                    let ids = dispatches.iter().map(|d| d.id).collect();
                    let results = store
                        .commit(Arc::new(WriteBatch {
                            dispatches,
                            ..WriteBatch::default()
                        }))
                        .await
                        .unwrap();
                    commits.push((ids, results.changes.len()));
                }
                commits
            })
        })
        .collect();
    let mut commits = Vec::new();
    for w in writers {
        commits.extend(w.await.unwrap());
    }

    let events = all_events(&store).await;
    let mut by_execution: HashMap<ExecutionId, Vec<i64>> = HashMap::new();
    for e in &events {
        by_execution.entry(e.execution_id.unwrap()).or_default().push(e.seq);
    }
    let mut all = Vec::new();
    for (ids, reported) in commits {
        let mut seqs: Vec<i64> = ids.iter().flat_map(|id| by_execution[id].clone()).collect();
        seqs.sort();
        assert_eq!(seqs.len(), reported, "a commit appends one event per change it reports");
        assert!(seqs.windows(2).all(|p| p[1] == p[0] + 1), "a batch is contiguous");
        all.extend(seqs);
    }
    all.sort();
    let last = store.last_event_seq().await.unwrap();
    assert_eq!(all, (1..=last).collect::<Vec<_>>());
    store.drop_schema().await.unwrap();
}
