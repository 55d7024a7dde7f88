//! Fenced writes and wake-ups under races.

mod common;

use std::sync::Arc;
use std::time::Duration;

use courier_core::{
    ChildGroup, ClaimRequest, Completion, ExecutionStore, LeaseLost, NewExecution, NewTask, Outcome, Store, StoreError,
    TaskFilter, TaskKind, TaskSpec, TaskState, TaskStore, WriteBatch,
};
use serde_json::json;

fn success(lease: courier_core::LeaseKey) -> Completion {
    Completion {
        lease,
        outcome: Outcome::Succeeded {
            result: json!("done"),
            remember: Vec::new(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_completion_in_a_batch_changes_nothing_and_spoils_nothing() {
    let store = common::fresh("fencing_batch").await;
    let batch = (0..3)
        .map(|_| NewExecution::new(TaskSpec::new(TaskKind::Activity, "work", json!(null))))
        .collect();
    store.dispatch(batch).await.unwrap();
    let stale = store
        .claim_tasks(&ClaimRequest::new("old", 1, Duration::from_millis(150)))
        .await
        .unwrap()
        .value
        .pop()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let claims = store
        .claim_tasks(&ClaimRequest::new("new", 3, Duration::from_secs(30)))
        .await
        .unwrap()
        .value;
    assert_eq!(claims.len(), 3, "the expired one comes back with the other two");
    let current = claims.iter().find(|c| c.task.id == stale.task.id).unwrap();
    let other = claims.iter().find(|c| c.task.id != stale.task.id).unwrap();

    // The stale completion sits between two good ones, and the same task twice.
    let results = store
        .commit(Arc::new(WriteBatch {
            completions: vec![
                success(other.lease.key()),
                success(stale.lease.key()),
                success(current.lease.key()),
                success(current.lease.key()),
            ],
            ..WriteBatch::default()
        }))
        .await
        .unwrap()
        .completions;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(
            &results[1],
            Err(StoreError::LeaseLost {
                reason: LeaseLost::Reclaimed,
                ..
            })
        ),
        "{results:?}"
    );
    assert!(results[2].is_ok());
    assert!(
        matches!(
            &results[3],
            Err(StoreError::LeaseLost {
                reason: LeaseLost::NotRunning(TaskState::Completed),
                ..
            })
        ),
        "the second completion of one claim sees the first: {:?}",
        results[3]
    );
    let t = store.get_task(current.task.id).await.unwrap().unwrap();
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.attempt, 2);
    store.drop_schema().await.unwrap();
}

/// An orchestrator suspends while its child completes, over and over: it is
/// either refused (and still running) or parked and then woken; never parked
/// with a settled child and nobody to wake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_wake_up_is_lost_between_a_suspend_and_a_completion() {
    let store = common::fresh("fencing_wake").await;
    for round in 0..40 {
        let new = NewExecution::new(TaskSpec::new(
            TaskKind::Orchestrator,
            format!("orch{round}"),
            json!(null),
        ));
        let exec = new.id;
        store.dispatch(vec![new]).await.unwrap();
        let orch = store
            .claim_tasks(&ClaimRequest::new("o", 1, Duration::from_secs(30)).functions([format!("orch{round}")]))
            .await
            .unwrap()
            .value
            .pop()
            .unwrap();
        let child = NewTask {
            execution_id: exec,
            parent_id: Some(orch.task.id),
            step: 1,
            spec: TaskSpec::new(TaskKind::Activity, format!("kid{round}"), json!(null)),
            result: None,
        };
        let results = store
            .commit(Arc::new(WriteBatch {
                children: vec![ChildGroup {
                    fence: Some(orch.lease.key()),
                    tasks: vec![child],
                }],
                ..WriteBatch::default()
            }))
            .await
            .unwrap();
        results.children[0].as_ref().unwrap();
        let seen = store.get_task(orch.task.id).await.unwrap().unwrap().wake_gen;
        let kid = store
            .claim_tasks(&ClaimRequest::new("k", 1, Duration::from_secs(30)).functions([format!("kid{round}")]))
            .await
            .unwrap()
            .value
            .pop()
            .unwrap();

        let suspend = tokio::spawn({
            let store = store.clone();
            async move { store.suspend_task(orch.lease.key(), seen).await.unwrap() }
        });
        let complete = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .commit(Arc::new(WriteBatch {
                        completions: vec![success(kid.lease.key())],
                        ..WriteBatch::default()
                    }))
                    .await
                    .unwrap()
                    .completions
            }
        });
        let parked = suspend.await.unwrap();
        complete.await.unwrap()[0].as_ref().unwrap();
        let parent = store.get_task(orch.task.id).await.unwrap().unwrap();
        if parked {
            assert_eq!(parent.state, TaskState::Pending, "round {round}: parked, then woken");
        } else {
            assert_eq!(
                parent.state,
                TaskState::Running,
                "round {round}: refused, still running"
            );
        }
        assert_eq!(parent.wake_gen, seen + 1);
    }
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_child_group_does_not_spoil_its_batch() {
    let store = common::fresh("fencing_children").await;
    let a = NewExecution::new(TaskSpec::new(TaskKind::Orchestrator, "a", json!(null)));
    let b = NewExecution::new(TaskSpec::new(TaskKind::Orchestrator, "b", json!(null)));
    let (a_id, b_id) = (a.id, b.id);
    store.dispatch(vec![a, b]).await.unwrap();
    let claims = store
        .claim_tasks(&ClaimRequest::new("o", 2, Duration::from_secs(30)))
        .await
        .unwrap()
        .value;
    let orch_a = claims.iter().find(|c| c.task.execution_id == a_id).unwrap();
    let orch_b = claims.iter().find(|c| c.task.execution_id == b_id).unwrap();
    store.cancel_execution(b_id, "stop").await.unwrap();

    let kid = |c: &courier_core::Claimed, step| NewTask {
        execution_id: c.task.execution_id,
        parent_id: Some(c.task.id),
        step,
        spec: TaskSpec::new(TaskKind::Activity, "kid", json!(null)),
        result: None,
    };
    let results = store
        .commit(Arc::new(WriteBatch {
            children: vec![
                ChildGroup {
                    fence: Some(orch_b.lease.key()),
                    tasks: vec![kid(orch_b, 1)],
                },
                ChildGroup {
                    fence: Some(orch_a.lease.key()),
                    tasks: vec![kid(orch_a, 1), kid(orch_a, 1)],
                },
            ],
            ..WriteBatch::default()
        }))
        .await
        .unwrap();
    assert!(matches!(
        &results.children[0],
        Err(StoreError::LeaseLost {
            reason: LeaseLost::NotRunning(TaskState::Cancelled),
            ..
        })
    ));
    let created = results.children[1].as_ref().unwrap();
    assert!(matches!(created[0], courier_core::ChildCreated::Created { .. }));
    assert!(
        matches!(created[1], courier_core::ChildCreated::Existing { .. }),
        "the same step twice in one group: the second finds the first"
    );
    let b_tasks = store
        .list_tasks(&TaskFilter {
            execution_id: Some(b_id),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert!(b_tasks.iter().all(|t| t.step != 1), "{b_tasks:?}");
    store.drop_schema().await.unwrap();
}
