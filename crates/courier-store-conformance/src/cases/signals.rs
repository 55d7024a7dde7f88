//! Signals: kept until waited for, delivered to the oldest wait, never lost.

use std::time::Duration;

use courier_core::{
    ChildCreated, EventType, ExecutionId, SignalRecord, StoreError, TaskId, TaskKind, TaskSpec, TaskState,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

fn wait_for(name: &str) -> TaskSpec {
    TaskSpec::new(TaskKind::SignalWait, name, json!(null))
}

/// An execution's signals list oldest first, the latest `limit` of them, each
/// with the wait that consumed it; another execution's are not among them.
pub async fn an_executions_signals_list_oldest_first_with_their_consumers(store: DynStore) {
    let (id, orch) = running_orchestrator(&store, "approval").await;
    let (other, _) = running_orchestrator(&store, "approval").await;
    let mut sent = Vec::new();
    for (name, by) in [("approve", "ann"), ("note", "bob"), ("approve", "cy")] {
        sent.push(
            store
                .send_signal(id, name, json!({"by": by}))
                .await
                .unwrap()
                .value
                .signal_id,
        );
    }
    store.send_signal(other, "approve", json!({"by": "x"})).await.unwrap();
    // A wait consumes the oldest `approve`.
    store
        .create_children(Some(orch.lease.key()), vec![child(&orch, 1, wait_for("approve"))])
        .await
        .unwrap();
    let listed = store.list_signals(id, 10).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), sent);
    assert_eq!(
        listed
            .iter()
            .map(|s| (s.name.as_str(), s.payload["by"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        vec![("approve", "ann"), ("note", "bob"), ("approve", "cy")]
    );
    assert_eq!(listed[0].consumed_by, Some(TaskId::for_step(id, 1)));
    assert!(listed[0].consumed_at.is_some());
    assert_eq!((listed[1].consumed_by, listed[2].consumed_by), (None, None));
    assert!(listed.iter().all(|s| s.execution_id == id));
    let latest = store.list_signals(id, 2).await.unwrap();
    assert_eq!(latest.iter().map(|s| s.id).collect::<Vec<_>>(), sent[1..].to_vec());
    assert!(store.list_signals(ExecutionId::new(), 10).await.unwrap().is_empty());
}

/// A signal sent before anyone waits is kept, and the first wait consumes it at once.
pub async fn a_signal_sent_before_anyone_waits_is_kept(store: DynStore) {
    let (id, orch) = running_orchestrator(&store, "approval").await;
    let sent = store
        .send_signal(id, "approve", json!({"by": "ann"}))
        .await
        .unwrap()
        .value;
    assert_eq!((sent.delivered_to, sent.parent_id), (None, None));
    let kept = store.get_signal(id, "approve").await.unwrap().expect("kept");
    assert_eq!(kept.id, sent.signal_id);
    assert_eq!(kept.payload, json!({"by": "ann"}));
    assert_eq!(kept.consumed_by, None);

    let created = store
        .create_children(
            Some(orch.lease.key()),
            vec![
                child(&orch, 1, wait_for("approve")),
                child(&orch, 2, wait_for("approve")),
            ],
        )
        .await
        .unwrap();
    let first = TaskId::for_step(id, 1);
    assert_eq!(
        created,
        vec![
            ChildCreated::Created {
                id: first,
                state: TaskState::Completed
            },
            ChildCreated::Created {
                id: TaskId::for_step(id, 2),
                state: TaskState::Waiting
            },
        ]
    );
    let t = task(&store, first).await;
    assert_eq!(t.result, Some(json!({"by": "ann"})));
    let consumed = store.get_signal(id, "approve").await.unwrap().unwrap();
    assert_eq!(consumed.consumed_by, Some(first));
    assert!(consumed.consumed_at.is_some());
    let completed = events_of_type(&store, id, EventType::TaskCompleted).await;
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].task_id, Some(first));
    assert_eq!(
        task(&store, orch.task.id).await.wake_gen,
        1,
        "the consumed wait woke its parent"
    );
}

/// A signal completes the oldest waiting task of its name and wakes its parent;
/// more signals queue; terminal or unknown executions refuse signals.
pub async fn a_signal_completes_the_oldest_wait_and_wakes_its_parent(store: DynStore) {
    let (id, orch) = running_orchestrator(&store, "approval").await;
    store
        .create_children(
            Some(orch.lease.key()),
            vec![child(&orch, 1, wait_for("go")), child(&orch, 2, wait_for("go"))],
        )
        .await
        .unwrap();
    let generation = task(&store, orch.task.id).await.wake_gen;
    assert!(store.suspend_task(orch.lease.key(), generation).await.unwrap());

    let sent = store.send_signal(id, "go", json!({"n": 1})).await.unwrap().value;
    assert_eq!(sent.delivered_to, Some(TaskId::for_step(id, 1)));
    assert_eq!(sent.parent_id, Some(orch.task.id));
    assert_eq!(
        task(&store, TaskId::for_step(id, 1)).await.result,
        Some(json!({"n": 1}))
    );
    assert_eq!(task(&store, TaskId::for_step(id, 2)).await.state, TaskState::Waiting);
    let parent = task(&store, orch.task.id).await;
    assert_eq!(parent.state, TaskState::Pending, "woken");

    let second = store.send_signal(id, "go", json!({"n": 2})).await.unwrap().value;
    assert_eq!(second.delivered_to, Some(TaskId::for_step(id, 2)));
    let third = store.send_signal(id, "go", json!({"n": 3})).await.unwrap().value;
    assert_eq!(third.delivered_to, None);
    assert_eq!(
        store.get_signal(id, "go").await.unwrap().unwrap().payload,
        json!({"n": 3}),
        "the oldest unconsumed"
    );
    let other = store.send_signal(id, "other", json!(1)).await.unwrap().value;
    assert_eq!(other.delivered_to, None, "names do not cross");

    let missing = ExecutionId::new();
    assert!(matches!(
        store.send_signal(missing, "go", json!(1)).await,
        Err(StoreError::ExecutionNotFound(m)) if m == missing
    ));
    store.cancel_execution(id, "done").await.unwrap();
    assert!(matches!(
        store.send_signal(id, "go", json!(1)).await,
        Err(StoreError::ExecutionState { id: e, .. }) if e == id
    ));
}

/// A wait with a timeout becomes claimable (by any worker, whatever its function
/// filter) when the timeout is due, unless the signal arrives first.
pub async fn a_signal_wait_with_a_timeout_is_claimable_when_due(store: DynStore) {
    let (id, orch) = running_orchestrator(&store, "patient").await;
    store
        .create_children(
            Some(orch.lease.key()),
            vec![
                child(&orch, 1, wait_for("soon").with_delay(Duration::from_millis(400))),
                child(&orch, 2, wait_for("later").with_delay(Duration::from_secs(3600))),
            ],
        )
        .await
        .unwrap();
    assert_eq!(task(&store, TaskId::for_step(id, 1)).await.state, TaskState::Pending);
    let timer_claim = claim_any("w", 5).functions(["nothing-else"]);
    assert!(claim(&store, &timer_claim).await.is_empty());
    let sent = store.send_signal(id, "later", json!("in time")).await.unwrap().value;
    assert_eq!(sent.delivered_to, Some(TaskId::for_step(id, 2)));
    assert_eq!(task(&store, TaskId::for_step(id, 2)).await.state, TaskState::Completed);

    sleep_ms(600).await;
    let due = claim_one(&store, &timer_claim).await;
    assert_eq!(due.task.id, TaskId::for_step(id, 1));
    assert_eq!(due.task.kind, TaskKind::SignalWait);
}

/// Seed-parity signal records.
pub async fn raw_signal_records_round_trip(store: DynStore) {
    let exec = ExecutionId::new();
    store.create_execution(&execution_record(exec, "raw")).await.unwrap();
    let record = SignalRecord {
        id: Uuid::new_v4(),
        execution_id: exec,
        name: "ping".into(),
        payload: json!([1, 2, 3]),
        created_at: now_micros(),
        consumed_by: None,
        consumed_at: None,
    };
    store.create_signal(&record).await.unwrap();
    assert_eq!(store.get_signal(exec, "ping").await.unwrap(), Some(record));
    assert_eq!(store.get_signal(exec, "pong").await.unwrap(), None);
}
