//! Pauses: a paused execution's tasks and a paused queue's tasks are left by
//! every claim (pending and lease-expired alike, with or without a function or
//! queue filter) until resumed; running leases are untouched; each change is
//! logged once; what has ended or does not exist cannot be paused.

use std::time::Duration;

use courier_core::{Change, ClaimRequest, EventType, ExecutionId, ExecutionState, StoreError};
use serde_json::json;

use crate::support::*;

fn ids(claimed: &[courier_core::Claimed]) -> Vec<ExecutionId> {
    let mut ids: Vec<ExecutionId> = claimed.iter().map(|c| c.task.execution_id).collect();
    ids.sort();
    ids
}

/// An execution paused before its task is claimed is passed over by every kind
/// of claim; pausing again changes nothing; resuming logs once, names the queue
/// to wake, and its task is claimed next.
pub async fn a_paused_execution_is_not_claimed_until_it_is_resumed(store: DynStore) {
    let paused = dispatch(&store, activity("job").on_queue("mail")).await;

    let head = store.last_event_seq().await.unwrap();
    let first = store.pause_execution(paused).await.unwrap();
    assert!(first.value.changed && first.value.paused());
    assert!(matches!(
        first.changes.as_slice(),
        [Change::ExecutionPaused { execution, paused: true, .. }] if *execution == paused
    ));
    assert_logged(&store, head, &first.changes, "pause").await;
    let again = store.pause_execution(paused).await.unwrap();
    assert!(!again.value.changed, "pausing a paused execution changes nothing");
    assert_eq!(again.value.paused_at, first.value.paused_at);
    assert!(again.changes.is_empty());
    assert_eq!(store.execution_paused_at(paused).await.unwrap(), first.value.paused_at);

    // Every shape of claim leaves it (any work, by function, by queue) and takes
    // an execution beside it that is not paused.
    for req in [
        claim_any("w", 10),
        claim_any("w", 10).functions(["job"]),
        claim_any("w", 10).queues(["mail"]),
        claim_any("w", 10).functions(["job"]).queues(["mail"]),
    ] {
        let other = dispatch(&store, activity("job").on_queue("mail")).await;
        assert_eq!(store.execution_paused_at(other).await.unwrap(), None);
        let got = claim(&store, &req).await;
        assert_eq!(ids(&got), vec![other], "{req:?}");
        for c in got {
            succeed(&store, c.lease.key(), json!(null)).await.unwrap();
        }
    }
    assert!(claim(&store, &claim_any("w", 10)).await.is_empty());

    let head = store.last_event_seq().await.unwrap();
    let resumed = store.resume_execution(paused).await.unwrap();
    assert!(resumed.value.changed && !resumed.value.paused());
    match resumed.changes.as_slice() {
        [
            Change::ExecutionPaused {
                paused: false, queues, ..
            },
        ] => assert_eq!(queues, &["mail".to_string()]),
        other => panic!("expected one unpause, got {other:?}"),
    }
    assert_logged(&store, head, &resumed.changes, "resume").await;
    let again = store.resume_execution(paused).await.unwrap();
    assert!(!again.value.changed && again.changes.is_empty());
    assert_eq!(ids(&claim(&store, &claim_any("w", 10)).await), vec![paused]);
    assert_eq!(
        types(&events_of(&store, paused).await)
            .into_iter()
            .filter(|t| matches!(t, EventType::ExecutionPaused | EventType::ExecutionUnpaused))
            .collect::<Vec<_>>(),
        vec![EventType::ExecutionPaused, EventType::ExecutionUnpaused]
    );
}

/// A task already running when its execution is paused finishes under its
/// lease; when that lease expires instead, the task is not claimed again until
/// the execution is resumed.
pub async fn a_paused_execution_keeps_its_running_task_but_does_not_reclaim_it(store: DynStore) {
    let finishing = dispatch(&store, activity("job")).await;
    let expiring = dispatch(&store, activity("job")).await;
    let short = ClaimRequest::new("w", 10, Duration::from_millis(300));
    let got = claim(&store, &short).await;
    assert_eq!(got.len(), 2);
    store.pause_execution(finishing).await.unwrap();
    store.pause_execution(expiring).await.unwrap();
    let lease = got
        .iter()
        .find(|c| c.task.execution_id == finishing)
        .unwrap()
        .lease
        .key();
    succeed(&store, lease, json!("done")).await.unwrap();
    assert_eq!(execution(&store, finishing).await.state, ExecutionState::Completed);

    sleep_ms(500).await;
    assert!(
        claim(&store, &claim_any("w2", 10)).await.is_empty(),
        "an expired lease of a paused execution was reclaimed"
    );
    store.resume_execution(expiring).await.unwrap();
    let again = claim(&store, &claim_any("w2", 10)).await;
    assert_eq!(ids(&again), vec![expiring]);
    assert_eq!(again[0].task.attempt, 2);
}

/// A paused queue is left by claims that name it and by those that walk every
/// queue, other queues are not; it is listed while paused; pausing and resuming
/// are logged once each, and resuming wakes the queue.
pub async fn a_paused_queue_is_not_claimed_until_it_is_resumed(store: DynStore) {
    let mail = dispatch(&store, activity("send").on_queue("mail")).await;
    let default = dispatch(&store, activity("send")).await;
    let head = store.last_event_seq().await.unwrap();
    let paused = store.pause_queue("mail").await.unwrap();
    assert!(paused.value.changed);
    assert_eq!(
        paused.changes,
        vec![Change::QueuePaused {
            queue: "mail".into(),
            paused: true
        }]
    );
    assert_logged(&store, head, &paused.changes, "pause queue").await;
    let again = store.pause_queue("mail").await.unwrap();
    assert!(!again.value.changed && again.changes.is_empty());
    assert_eq!(again.value.paused_at, paused.value.paused_at);
    let listed = store.paused_queues().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].queue, "mail");
    assert_eq!(Some(listed[0].paused_at), paused.value.paused_at);

    assert!(claim(&store, &claim_any("w", 10).queues(["mail"])).await.is_empty());
    assert!(
        claim(&store, &claim_any("w", 10).functions(["send"]).queues(["mail"]))
            .await
            .is_empty()
    );
    let got = claim(&store, &claim_any("w", 10).functions(["send"])).await;
    assert_eq!(ids(&got), vec![default], "only the running queue's task");
    assert!(claim(&store, &claim_any("w", 10)).await.is_empty());

    let head = store.last_event_seq().await.unwrap();
    let resumed = store.resume_queue("mail").await.unwrap();
    assert!(resumed.value.changed && !resumed.value.paused());
    assert_eq!(
        resumed.changes,
        vec![Change::QueuePaused {
            queue: "mail".into(),
            paused: false
        }]
    );
    assert_logged(&store, head, &resumed.changes, "resume queue").await;
    assert!(
        resumed.changes[0]
            .notices()
            .iter()
            .any(|n| matches!(n, courier_core::Notice::Work { queue } if queue == "mail"))
    );
    assert!(store.paused_queues().await.unwrap().is_empty());
    assert!(!store.resume_queue("mail").await.unwrap().value.changed);
    assert_eq!(ids(&claim(&store, &claim_any("w", 10)).await), vec![mail]);
}

/// A missing execution is `ExecutionNotFound` for both; an ended one cannot be
/// paused; a queue name must be given and hold no NUL.
pub async fn pausing_what_has_ended_or_does_not_exist_is_refused(store: DynStore) {
    let missing = ExecutionId::new();
    assert!(matches!(store.pause_execution(missing).await, Err(StoreError::ExecutionNotFound(id)) if id == missing));
    assert!(matches!(store.resume_execution(missing).await, Err(StoreError::ExecutionNotFound(id)) if id == missing));
    let done = dispatch(&store, activity("job")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    succeed(&store, c.lease.key(), json!(1)).await.unwrap();
    match store.pause_execution(done).await {
        Err(StoreError::ExecutionState { id, state, .. }) => {
            assert_eq!((id, state), (done, ExecutionState::Completed));
        }
        other => panic!("expected an ExecutionState error, got {other:?}"),
    }
    assert_eq!(store.execution_paused_at(done).await.unwrap(), None);
    assert!(matches!(store.pause_queue("").await, Err(StoreError::Invalid(_))));
    assert!(store.pause_queue("a\0b").await.is_err());
    assert!(store.paused_queues().await.unwrap().is_empty());
}
