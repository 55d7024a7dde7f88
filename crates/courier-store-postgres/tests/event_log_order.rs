//! The event log's sequence follows commit order: an appender that is still
//! committing holds the head, so nobody can commit a higher number first, and an
//! appender that rolls back gives its numbers back.

mod common;

use std::time::Duration;

use courier_core::{EventFilter, EventType, ExecutionId, NewEvent, Store};
use serde_json::json;

fn event(n: i64) -> NewEvent {
    NewEvent::execution(EventType::TaskProgress, ExecutionId::new(), json!({ "n": n }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waits_for_an_earlier_appender_to_commit() {
    let store = common::fresh("seq_order").await;
    store.append_events(vec![event(0)]).await.unwrap();

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
        async move { store.append_events(vec![event(1)]).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !fast.is_finished(),
        "a later append must not commit before the earlier one"
    );
    let visible = store.read_events(&EventFilter::after(0)).await.unwrap();
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
    assert_eq!(
        fast.await.unwrap(),
        vec![4],
        "the later append comes after, with no gap"
    );
    let seqs: Vec<i64> = store
        .read_events(&EventFilter::after(0))
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_append_leaves_no_gap() {
    let store = common::fresh("seq_rollback").await;
    store.append_events(vec![event(0), event(1)]).await.unwrap();
    {
        let mut client = store.pool().get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.execute("UPDATE courier_event_head SET last = last + 5", &[])
            .await
            .unwrap();
        tx.rollback().await.unwrap();
    }
    assert_eq!(store.last_event_seq().await.unwrap(), 2);
    assert_eq!(store.append_events(vec![event(2)]).await.unwrap(), vec![3]);
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_from_many_writers_interleave_without_gaps() {
    let store = common::fresh("seq_many").await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..25 {
                    let events = (0..(1 + (w + i) % 5)).map(|n| event(n as i64)).collect();
                    let seqs = store.append_events(events).await.unwrap();
                    assert!(seqs.windows(2).all(|p| p[1] == p[0] + 1), "a batch is contiguous");
                    got.extend(seqs);
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }
    all.sort();
    let last = store.last_event_seq().await.unwrap();
    assert_eq!(all, (1..=last).collect::<Vec<_>>());
    store.drop_schema().await.unwrap();
}
