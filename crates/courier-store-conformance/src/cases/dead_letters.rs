//! Dead letters: move, list, count, get, delete, replay.

use courier_core::{EventType, ExecutionState, Outcome, StoreError, TaskError, TaskId, TaskKind, TaskState};
use serde_json::json;

use crate::support::*;

/// Dead letters can be listed (newest first), counted, read and deleted.
pub async fn dead_letters_are_listed_counted_read_and_deleted(store: DynStore) {
    let mut failed = Vec::new();
    for kind in ["a", "b", "c"] {
        dispatch(&store, activity(kind)).await;
        let c = claim_one(&store, &claim_any("w", 1)).await;
        fail_for_good(&store, c.lease.key(), kind).await.unwrap();
        failed.push(c.task.id);
        sleep_ms(2).await;
    }
    assert_eq!(store.count_dead_letters().await.unwrap(), 3);
    let page1 = store.list_dead_letters(2, 0).await.unwrap();
    let page2 = store.list_dead_letters(2, 2).await.unwrap();
    let listed: Vec<TaskId> = page1.iter().chain(&page2).map(|d| d.task_id).collect();
    assert_eq!(listed, vec![failed[2], failed[1], failed[0]]);

    let dl = store.get_dead_letter(failed[1]).await.unwrap().unwrap();
    assert_eq!(dl.task.function, "b");
    assert_eq!(dl.task.state, TaskState::Failed);
    assert_eq!(dl.task.error.as_ref().unwrap().kind, "b");
    assert!(store.delete_dead_letter(failed[1]).await.unwrap());
    assert!(!store.delete_dead_letter(failed[1]).await.unwrap());
    assert!(store.get_dead_letter(failed[1]).await.unwrap().is_none());
    assert_eq!(store.count_dead_letters().await.unwrap(), 2);

    // The seed's raw move: stored as given, the task row untouched.
    let id = dispatch(&store, activity("manual")).await;
    let t = task(&store, TaskId::root_of(id)).await;
    store.move_task_to_dead_letter(&t, "operator").await.unwrap();
    let dl = store.get_dead_letter(t.id).await.unwrap().unwrap();
    assert_eq!((dl.reason.as_str(), dl.execution_id), ("operator", id));
    assert_eq!(dl.task, t);
    assert_eq!(task(&store, t.id).await.state, TaskState::Pending);
    assert_eq!(store.count_dead_letters().await.unwrap(), 3);
}

/// Replaying a failed root task's dead letter reopens its execution, which can then complete.
pub async fn replaying_a_dead_letter_resumes_a_failed_execution(store: DynStore) {
    let id = dispatch(&store, activity("fragile")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    fail_for_good(&store, c.lease.key(), "bug").await.unwrap();
    assert_eq!(execution(&store, id).await.state, ExecutionState::Failed);

    let replayed = store.replay_dead_letter(c.task.id).await.unwrap().value;
    assert_eq!((replayed.task_id, replayed.execution_id), (c.task.id, id));
    assert!(replayed.execution_resumed);
    let e = execution(&store, id).await;
    assert_eq!(e.state, ExecutionState::Running);
    assert_eq!((e.error, e.result), (None, None));
    let t = task(&store, c.task.id).await;
    assert_eq!((t.state, t.attempt, t.error), (TaskState::Pending, 0, None));
    assert!(store.get_dead_letter(c.task.id).await.unwrap().is_none());
    let events = events_of(&store, id).await;
    let tail = &events[events.len() - 2..];
    assert_eq!(types(tail), vec![EventType::ExecutionResumed, EventType::TaskQueued]);
    assert_eq!(tail[0].data, json!({"function": "fragile", "task_id": c.task.id}));
    assert_eq!(tail[1].data["reason"], json!("replayed"));

    let again = claim_one(&store, &claim_any("w", 1)).await;
    assert_eq!(again.task.attempt, 1);
    succeed(&store, again.lease.key(), json!("fixed")).await.unwrap();
    assert_eq!(execution(&store, id).await.state, ExecutionState::Completed);

    // A completed execution cannot be reopened, and unknown dead letters are reported.
    let done_id = dispatch(&store, activity("twice")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    let t = task(&store, c.task.id).await;
    store.move_task_to_dead_letter(&t, "manual").await.unwrap();
    succeed(&store, c.lease.key(), json!(1)).await.unwrap();
    assert!(matches!(
        store.replay_dead_letter(c.task.id).await,
        Err(StoreError::ExecutionState { id, state: ExecutionState::Completed, .. }) if id == done_id
    ));
    let ghost = TaskId::root_of(courier_core::ExecutionId::new());
    assert!(matches!(
        store.replay_dead_letter(ghost).await,
        Err(StoreError::DeadLetterNotFound(g)) if g == ghost
    ));
}

/// Replaying a child's dead letter reopens the execution its failure failed, and
/// parks the orchestrator so the child's completion wakes it.
pub async fn replaying_a_child_dead_letter_reopens_its_orchestrator(store: DynStore) {
    let (id, orch) = running_orchestrator(&store, "flow").await;
    store
        .create_children(Some(orch.lease.key()), vec![child(&orch, 1, activity("step"))])
        .await
        .unwrap();
    let kid = claim_one(&store, &claim_any("w", 1).functions(["step"])).await;
    fail_for_good(&store, kid.lease.key(), "bug").await.unwrap();
    one(store
        .complete_tasks(vec![courier_core::Completion {
            lease: orch.lease.key(),
            outcome: Outcome::Failed {
                error: TaskError::new("bug", "child failed"),
                reason: "unhandled child failure".into(),
                dead_letter: true,
            },
        }])
        .await)
    .unwrap();
    assert_eq!(execution(&store, id).await.state, ExecutionState::Failed);
    assert_eq!(store.count_dead_letters().await.unwrap(), 2);

    let replayed = store.replay_dead_letter(kid.task.id).await.unwrap().value;
    assert!(replayed.execution_resumed);
    assert_eq!(execution(&store, id).await.state, ExecutionState::Running);
    assert_eq!(task(&store, orch.task.id).await.state, TaskState::Waiting);
    assert!(
        store.get_dead_letter(orch.task.id).await.unwrap().is_none(),
        "the orchestrator's own dead letter goes with it"
    );
    assert!(
        claim(&store, &claim_any("w", 5).kinds([TaskKind::Orchestrator]))
            .await
            .is_empty()
    );

    let kid = claim_one(&store, &claim_any("w", 1).functions(["step"])).await;
    succeed(&store, kid.lease.key(), json!("ok")).await.unwrap();
    assert_eq!(
        task(&store, orch.task.id).await.state,
        TaskState::Pending,
        "woken to replay"
    );
    let resumed = claim_one(&store, &claim_any("w", 1).kinds([TaskKind::Orchestrator])).await;
    succeed(&store, resumed.lease.key(), json!("all done")).await.unwrap();
    assert_eq!(execution(&store, id).await.state, ExecutionState::Completed);
}
