//! The event log: gap-free sequences in commit order, cursors, filters, trimming.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use courier_core::{EventFilter, EventType, ExecutionId, NewEvent, TaskId};
use serde_json::json;

use crate::support::*;

fn free_event(execution: ExecutionId, n: usize) -> NewEvent {
    NewEvent::task(
        EventType::TaskProgress,
        execution,
        TaskId::for_step(execution, (n % 3) as i64 + 1),
        json!({"n": n}),
    )
}

/// Concurrent appends get contiguous, unique sequence numbers; reads page after a
/// cursor and filter by execution, task and type.
pub async fn event_sequences_are_gap_free_and_readable_after_a_cursor(store: DynStore) {
    let base = store.last_event_seq().await.unwrap();
    let execs: Vec<ExecutionId> = (0..8).map(|_| ExecutionId::new()).collect();
    let appenders = execs.iter().map(|exec| {
        let (store, exec) = (store.clone(), *exec);
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for batch in 0..5 {
                let events = (0..5).map(|i| free_event(exec, batch * 5 + i)).collect();
                let got = store.append_events(events).await.unwrap();
                assert_eq!(got.len(), 5);
                assert!(got.windows(2).all(|w| w[0] < w[1]), "a batch's seqs follow its order");
                seqs.extend(got);
            }
            seqs
        })
    });
    let mut all = Vec::new();
    for a in futures::future::join_all(appenders).await {
        all.extend(a.unwrap());
    }
    all.sort();
    assert_eq!(
        all,
        ((base + 1)..=(base + 200)).collect::<Vec<_>>(),
        "gap-free and unique"
    );
    assert_eq!(store.last_event_seq().await.unwrap(), base + 200);

    let read = store.read_events(&EventFilter::after(base).limit(1000)).await.unwrap();
    assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), all);
    let page = store
        .read_events(&EventFilter::after(base + 150).limit(20))
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        ((base + 151)..=(base + 170)).collect::<Vec<_>>()
    );

    let exec = execs[3];
    let mine = store.read_events(&EventFilter::after(0).execution(exec)).await.unwrap();
    assert_eq!(mine.len(), 25);
    let ns: Vec<i64> = mine.iter().map(|e| e.data["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, (0..25).collect::<Vec<_>>(), "one appender's events keep its order");
    assert!(mine.iter().all(|e| e.event_type == EventType::TaskProgress));
    let one_task = store
        .read_events(&EventFilter::after(0).task(TaskId::for_step(exec, 1)))
        .await
        .unwrap();
    assert_eq!(one_task.len(), 9);
    assert!(
        store
            .read_events(&EventFilter::after(0).execution(exec).types([EventType::TaskCompleted]))
            .await
            .unwrap()
            .is_empty()
    );
    let typed = store
        .read_events(
            &EventFilter::after(0)
                .execution(exec)
                .types([EventType::TaskCompleted, EventType::TaskProgress])
                .limit(4),
        )
        .await
        .unwrap();
    assert_eq!(typed.len(), 4);
    let now = store.now().await.unwrap();
    assert_close(typed[0].timestamp, now, std::time::Duration::from_secs(10), "timestamp");
}

/// A reader following the log with a cursor, while writers append concurrently,
/// ends up with every event: what commits later never gets a lower sequence
/// number than what a reader has already passed.
pub async fn a_tailing_reader_never_skips_a_committed_event(store: DynStore) {
    let base = store.last_event_seq().await.unwrap();
    let writing = Arc::new(AtomicBool::new(true));
    let reader = {
        let (store, writing) = (store.clone(), writing.clone());
        tokio::spawn(async move {
            let mut cursor = base;
            let mut seen = Vec::new();
            loop {
                let finished = !writing.load(Ordering::SeqCst);
                let batch = store.read_events(&EventFilter::after(cursor).limit(500)).await.unwrap();
                if let Some(last) = batch.last() {
                    cursor = last.seq;
                }
                let empty = batch.is_empty();
                seen.extend(batch.into_iter().map(|e| e.seq));
                if finished && empty {
                    return seen;
                }
            }
        })
    };
    let writers = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let exec = ExecutionId::new();
            for n in 0..60 {
                let size = 1 + n % 4;
                store
                    .append_events((0..size).map(|i| free_event(exec, i)).collect())
                    .await
                    .unwrap();
            }
        })
    });
    for w in futures::future::join_all(writers).await {
        w.unwrap();
    }
    writing.store(false, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let last = store.last_event_seq().await.unwrap();
    let expected: Vec<i64> = ((base + 1)..=last).collect();
    let distinct: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), distinct.len(), "no event read twice");
    assert_eq!(
        distinct.into_iter().collect::<Vec<_>>(),
        expected,
        "the tailing reader missed events"
    );
}

/// Trimming deletes old events but their sequence numbers are never handed out again.
pub async fn trimmed_sequence_numbers_are_never_reused(store: DynStore) {
    let exec = ExecutionId::new();
    let seqs = store
        .append_events((0..3).map(|n| free_event(exec, n)).collect())
        .await
        .unwrap();
    let future = store.now().await.unwrap() + chrono::Duration::seconds(5);
    assert_eq!(store.trim_events(future).await.unwrap(), 3);
    assert!(store.read_events(&EventFilter::after(0)).await.unwrap().is_empty());
    assert_eq!(store.last_event_seq().await.unwrap(), seqs[2]);
    let next = store.append_events(vec![free_event(exec, 9)]).await.unwrap();
    assert_eq!(next, vec![seqs[2] + 1]);

    let past = store.now().await.unwrap() - chrono::Duration::seconds(60);
    assert_eq!(store.trim_events(past).await.unwrap(), 0);
}
