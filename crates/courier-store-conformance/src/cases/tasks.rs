//! Raw task records and queue depths.

use std::time::Duration;

use courier_core::{ExecutionId, QueueDepth, StoreError, TaskFilter, TaskId, TaskKind, TaskState};
use serde_json::json;

use crate::support::*;

/// Seed-parity task records: create (all or none), get, update, list, count.
pub async fn raw_task_records_round_trip(store: DynStore) {
    let exec = ExecutionId::new();
    store.create_execution(&execution_record(exec, "raw")).await.unwrap();
    let t1 = task_record(exec, 1, TaskKind::Activity, "one");
    let mut t2 = task_record(exec, 2, TaskKind::Sleep, "courier.sleep");
    t2.queue = "other".into();
    t2.tags = vec!["x".into()];
    store.create_tasks(&[t1.clone(), t2.clone()]).await.unwrap();

    assert_eq!(task(&store, t1.id).await, t1);
    assert_eq!(
        store.get_task(TaskId::for_step(exec, 2)).await.unwrap(),
        Some(t2.clone())
    );
    assert_eq!(store.get_task(TaskId::for_step(exec, 9)).await.unwrap(), None);
    let mut both = store
        .get_tasks(&[t2.id, t1.id, TaskId::for_step(exec, 9)])
        .await
        .unwrap();
    both.sort_by_key(|t| t.step);
    assert_eq!(both, vec![t1.clone(), t2.clone()]);

    let t3 = task_record(exec, 3, TaskKind::Activity, "three");
    let err = store.create_tasks(&[t3.clone(), t1.clone()]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(
        store.get_task(t3.id).await.unwrap().is_none(),
        "create_tasks is all or none"
    );

    let mut changed = t1.clone();
    changed.state = TaskState::Running;
    changed.attempt = 2;
    changed.lease_owner = Some("w".into());
    changed.lease_expires_at = Some(now_micros() + chrono::Duration::seconds(30));
    changed.result = Some(json!(null));
    changed.checkpoint = Some(json!({"page": 2}));
    store.update_task(&changed).await.unwrap();
    assert_eq!(task(&store, t1.id).await, changed);
    let ghost = task_record(exec, 8, TaskKind::Activity, "ghost");
    assert!(matches!(
        store.update_task(&ghost).await,
        Err(StoreError::TaskNotFound(id)) if id == ghost.id
    ));

    let by_exec = |after_step, state, queue: Option<&str>, limit, offset| TaskFilter {
        execution_id: Some(exec),
        state,
        queue: queue.map(str::to_string),
        after_step,
        limit,
        offset,
    };
    let steps = |tasks: Vec<courier_core::TaskRecord>| tasks.iter().map(|t| t.step).collect::<Vec<_>>();
    assert_eq!(
        steps(store.list_tasks(&by_exec(None, None, None, 10, 0)).await.unwrap()),
        vec![1, 2]
    );
    assert_eq!(
        steps(store.list_tasks(&by_exec(Some(1), None, None, 10, 0)).await.unwrap()),
        vec![2]
    );
    assert_eq!(
        steps(
            store
                .list_tasks(&by_exec(None, Some(TaskState::Running), None, 10, 0))
                .await
                .unwrap()
        ),
        vec![1]
    );
    assert_eq!(
        steps(
            store
                .list_tasks(&by_exec(None, None, Some("other"), 10, 0))
                .await
                .unwrap()
        ),
        vec![2]
    );
    assert_eq!(
        steps(store.list_tasks(&by_exec(None, None, None, 1, 1)).await.unwrap()),
        vec![2]
    );

    assert_eq!(store.count_tasks(None, None).await.unwrap(), 2);
    assert_eq!(store.count_tasks(Some("other"), None).await.unwrap(), 1);
    assert_eq!(store.count_tasks(None, Some(TaskState::Running)).await.unwrap(), 1);
    assert_eq!(
        store
            .count_tasks(Some("default"), Some(TaskState::Pending))
            .await
            .unwrap(),
        0
    );
}

/// Depth per queue separates ready, scheduled and running work, of every
/// kind a worker claims (a store may index functions' work and timers apart).
pub async fn queue_depths_count_ready_scheduled_and_running_tasks(store: DynStore) {
    for _ in 0..3 {
        dispatch(&store, activity("f").on_queue("a")).await;
    }
    let timers = ExecutionId::new();
    store
        .create_execution(&execution_record(timers, "timers"))
        .await
        .unwrap();
    let mut timer = task_record(timers, 1, TaskKind::Sleep, "courier.sleep");
    timer.queue = "b".into();
    store.create_tasks(&[timer]).await.unwrap();
    dispatch(
        &store,
        activity("f").on_queue("a").with_delay(Duration::from_secs(3600)),
    )
    .await;
    dispatch(&store, activity("f").on_queue("b")).await;
    dispatch(&store, activity("f").on_queue("b")).await;
    claim_one(&store, &claim_any("w", 1).queues(["a"])).await;

    let mut depths = store.queue_depths().await.unwrap();
    depths.sort_by(|x, y| x.queue.cmp(&y.queue));
    assert_eq!(
        depths,
        vec![
            QueueDepth {
                queue: "a".into(),
                ready: 2,
                scheduled: 1,
                running: 1
            },
            QueueDepth {
                queue: "b".into(),
                ready: 3,
                scheduled: 0,
                running: 0
            },
        ]
    );
}
