//! Completions: success, retry, failure, remembered results, waking parents, suspending.

use std::time::Duration;

use courier_core::{
    Completion, EventFilter, EventType, ExecutionState, LeaseLost, Outcome, Remember, Reservation, TaskError, TaskId,
    TaskKind, TaskState,
};
use serde_json::json;

use crate::support::*;

/// A successful root task completes its execution with the result.
pub async fn success_completes_the_task_and_its_execution(store: DynStore) {
    let id = dispatch(&store, activity("add")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    let done = succeed(&store, c.lease.key(), json!({"sum": 3})).await.unwrap();
    assert_eq!(done.task_id, c.task.id);
    assert_eq!(done.execution_id, id);
    assert_eq!(done.state, TaskState::Completed);
    assert_eq!(done.parent_id, None);
    assert_eq!(done.execution_state, Some(ExecutionState::Completed));

    let t = task(&store, c.task.id).await;
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.result, Some(json!({"sum": 3})));
    assert!(t.completed_at.is_some());
    let e = execution(&store, id).await;
    assert_eq!(e.state, ExecutionState::Completed);
    assert_eq!(e.result, Some(json!({"sum": 3})));
    assert!(e.completed_at.is_some());

    let events = events_of(&store, id).await;
    let tail = &events[events.len() - 2..];
    assert_eq!(
        types(tail),
        vec![EventType::TaskCompleted, EventType::ExecutionCompleted]
    );
    assert_eq!(
        tail[0].data,
        json!({"function": "add", "kind": "activity", "attempt": 1})
    );
    assert_eq!(tail[1].data, json!({"function": "add", "result": {"sum": 3}}));
}

/// A completion its fence refuses settles nothing, not even an open execution
/// whose root task has ended (seeded here: the execution reopened by hand after
/// its task completed). The settle must follow what the finish let through,
/// not what the task row says.
pub async fn a_refused_completion_settles_nothing(store: DynStore) {
    let id = dispatch(&store, activity("once")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    succeed(&store, c.lease.key(), json!(1)).await.unwrap();
    let mut reopened = execution(&store, id).await;
    reopened.state = ExecutionState::Running;
    reopened.result = None;
    reopened.completed_at = None;
    store.update_execution(&reopened).await.unwrap();
    let after = store.last_event_seq().await.unwrap();

    for late in [
        succeed(&store, c.lease.key(), json!(2)).await,
        fail_for_good(&store, c.lease.key(), "late").await,
    ] {
        assert!(late.is_err(), "a completion of an ended attempt is refused: {late:?}");
    }
    let e = execution(&store, id).await;
    assert_eq!(e.state, ExecutionState::Running);
    assert_eq!(e.result, None);
    assert_eq!(e.error, None);
    assert_eq!(task(&store, c.task.id).await.result, Some(json!(1)));
    let logged = store.read_events(&EventFilter::after(after)).await.unwrap().events;
    assert!(logged.is_empty(), "a refused completion logs nothing: {logged:?}");
}

/// `null` and `false` are results like any other (the seed confused them with "none").
pub async fn falsy_results_are_real_results(store: DynStore) {
    for value in [json!(null), json!(false), json!(0), json!("")] {
        let id = dispatch(&store, activity("falsy")).await;
        let c = claim_one(&store, &claim_any("w", 1)).await;
        succeed(&store, c.lease.key(), value.clone()).await.unwrap();
        assert_eq!(task(&store, c.task.id).await.result, Some(value.clone()));
        let e = execution(&store, id).await;
        assert_eq!(e.state, ExecutionState::Completed);
        assert_eq!(e.result, Some(value));
    }
}

/// A retry puts the task back, due after its delay, keeping the error; the execution runs on.
pub async fn a_retry_requeues_the_task_after_its_delay(store: DynStore) {
    let id = dispatch(&store, activity("flaky")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    let error = TaskError::new("io", "connection reset");
    let out = one(store
        .complete_tasks(vec![Completion {
            lease: c.lease.key(),
            outcome: Outcome::Retry {
                error: error.clone(),
                delay: Duration::from_millis(400),
            },
        }])
        .await)
    .unwrap();
    assert_eq!(out.state, TaskState::Pending);
    assert_eq!(out.execution_state, None);

    let t = task(&store, c.task.id).await;
    assert_eq!(t.state, TaskState::Pending);
    assert_eq!(t.error, Some(error.clone()));
    assert_eq!(t.attempt, 1);
    assert_eq!(t.lease_token, None);
    let now = store.now().await.unwrap();
    assert_close(
        t.scheduled_for,
        now + chrono::Duration::milliseconds(400),
        Duration::from_millis(300),
        "retry due",
    );
    assert_eq!(execution(&store, id).await.state, ExecutionState::Running);
    assert!(claim(&store, &claim_any("w", 1)).await.is_empty());

    let failed = events_of_type(&store, id, EventType::TaskFailed).await;
    assert_eq!(
        failed[0].data,
        json!({"function": "flaky", "kind": "activity", "attempt": 1, "error": error,
               "will_retry": true, "retry_in_ms": 400})
    );
    let queued = events_of_type(&store, id, EventType::TaskQueued).await;
    assert_eq!(queued[0].data["reason"], json!("retry"));

    sleep_ms(600).await;
    let again = claim_one(&store, &claim_any("w", 1)).await;
    assert_eq!(again.task.attempt, 2);
}

/// A final failure fails the task and the execution, and keeps a dead letter when asked.
pub async fn a_final_failure_dead_letters_the_task_and_fails_the_execution(store: DynStore) {
    let id = dispatch(&store, activity("doomed")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    let out = fail_for_good(&store, c.lease.key(), "fatal").await.unwrap();
    assert_eq!(out.state, TaskState::Failed);
    assert_eq!(out.execution_state, Some(ExecutionState::Failed));

    let t = task(&store, c.task.id).await;
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.error.as_ref().map(|e| e.kind.as_str()), Some("fatal"));
    let e = execution(&store, id).await;
    assert_eq!(e.state, ExecutionState::Failed);
    assert_eq!(e.error, t.error);
    let dl = store.get_dead_letter(c.task.id).await.unwrap().expect("dead letter");
    assert_eq!(dl.reason, "attempts exhausted");
    assert_eq!(dl.execution_id, id);
    assert_eq!(dl.task.id, c.task.id);
    assert_eq!(dl.task.error, t.error);

    let events = events_of(&store, id).await;
    let tail = &events[events.len() - 2..];
    assert_eq!(types(tail), vec![EventType::TaskFailed, EventType::ExecutionFailed]);
    assert_eq!(tail[0].data["will_retry"], json!(false));
    assert_eq!(tail[0].data["retry_in_ms"], json!(null));
    assert_eq!(tail[1].data["error"]["kind"], json!("fatal"));

    // An expected failure can skip the dead letter.
    let quiet = dispatch(&store, activity("quiet")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    one(store
        .complete_tasks(vec![Completion {
            lease: c.lease.key(),
            outcome: Outcome::Failed {
                error: TaskError::new(TaskError::TIMEOUT, "gave up"),
                reason: "timeout".into(),
                dead_letter: false,
            },
        }])
        .await)
    .unwrap();
    assert!(store.get_dead_letter(c.task.id).await.unwrap().is_none());
    assert_eq!(execution(&store, quiet).await.state, ExecutionState::Failed);
    assert_eq!(store.count_dead_letters().await.unwrap(), 1);
}

/// Results remembered in the cache and the idempotency table land in the same commit.
pub async fn remembered_results_land_with_the_completion(store: DynStore) {
    dispatch(&store, activity("expensive")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    assert_eq!(
        store.reserve_idempotency_key("idem", c.task.id).await.unwrap(),
        Reservation::Acquired
    );
    one(store
        .complete_tasks(vec![Completion {
            lease: c.lease.key(),
            outcome: Outcome::Succeeded {
                result: json!(0),
                remember: vec![
                    Remember::Cache {
                        key: "cache".into(),
                        ttl: None,
                    },
                    Remember::Idempotency { key: "idem".into() },
                ],
            },
        }])
        .await)
    .unwrap();
    assert_eq!(store.get_cached_result("cache").await.unwrap(), Some(json!(0)));
    assert_eq!(store.get_idempotency_result("idem").await.unwrap(), Some(json!(0)));
    let other = dispatch(&store, activity("expensive")).await;
    assert_eq!(
        store
            .reserve_idempotency_key("idem", TaskId::root_of(other))
            .await
            .unwrap(),
        Reservation::Completed(json!(0))
    );
}

/// A child reaching a terminal state bumps its parent's wake generation and
/// requeues a waiting parent.
pub async fn settled_children_wake_their_parent(store: DynStore) {
    let (id, orch) = running_orchestrator(&store, "parent").await;
    store
        .create_children(
            Some(orch.lease.key()),
            vec![child(&orch, 1, activity("c1")), child(&orch, 2, activity("c2"))],
        )
        .await
        .unwrap();
    let g0 = task(&store, orch.task.id).await.wake_gen;
    assert!(store.suspend_task(orch.lease.key(), g0).await.unwrap());
    let parked = task(&store, orch.task.id).await;
    assert_eq!(parked.state, TaskState::Waiting);
    assert_eq!((parked.lease_token, parked.lease_expires_at), (None, None));
    assert!(
        claim(&store, &claim_any("w", 5).kinds([TaskKind::Orchestrator]))
            .await
            .is_empty()
    );

    let c1 = claim_one(&store, &claim_any("w", 1).functions(["c1"])).await;
    let done = succeed(&store, c1.lease.key(), json!("one")).await.unwrap();
    assert_eq!(done.parent_id, Some(orch.task.id));
    assert_eq!(done.execution_state, None);
    let woken = task(&store, orch.task.id).await;
    assert_eq!(woken.state, TaskState::Pending);
    assert_eq!(woken.wake_gen, g0 + 1);
    assert!(woken.scheduled_for <= store.now().await.unwrap());
    let queued = events_of_type(&store, id, EventType::TaskQueued).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].task_id, Some(orch.task.id));
    assert_eq!(queued[0].data["reason"], json!("woken"));

    let replay = claim_one(&store, &claim_any("w", 1).kinds([TaskKind::Orchestrator])).await;
    assert_eq!(replay.task.attempt, 2);
    let c2 = claim_one(&store, &claim_any("w", 1).functions(["c2"])).await;
    fail_for_good(&store, c2.lease.key(), "boom").await.unwrap();
    let running = task(&store, orch.task.id).await;
    assert_eq!(running.wake_gen, g0 + 2, "a failed child settles too");
    assert_eq!(running.state, TaskState::Running, "a running parent is left running");
}

/// Children settling in one batch wake their waiting parent once: one
/// `task.queued` (woken), its wake generation bumped by every child that
/// settled, so a suspension racing any of them is still refused.
pub async fn children_settling_in_one_batch_wake_their_parent_once(store: DynStore) {
    let (id, orch) = running_orchestrator(&store, "parent").await;
    let children = (1..=3)
        .map(|step| child(&orch, step, activity(&format!("c{step}"))))
        .collect();
    store.create_children(Some(orch.lease.key()), children).await.unwrap();
    let g0 = task(&store, orch.task.id).await.wake_gen;
    assert!(store.suspend_task(orch.lease.key(), g0).await.unwrap());
    let claimed = claim(&store, &claim_any("w", 3).functions(["c1", "c2", "c3"])).await;
    assert_eq!(claimed.len(), 3);
    let completions = claimed
        .iter()
        .map(|c| Completion {
            lease: c.lease.key(),
            outcome: Outcome::Succeeded {
                result: json!(c.task.step),
                remember: Vec::new(),
            },
        })
        .collect();
    let done = store.complete_tasks(completions).await.unwrap();
    assert!(done.iter().all(|d| d.as_ref().unwrap().parent_id == Some(orch.task.id)));
    let woken = task(&store, orch.task.id).await;
    assert_eq!(woken.state, TaskState::Pending);
    assert_eq!(woken.wake_gen, g0 + 3, "every settled child counts");
    let queued = events_of_type(&store, id, EventType::TaskQueued).await;
    assert_eq!(queued.len(), 1, "woken once: {queued:?}");
    assert_eq!(queued[0].task_id, Some(orch.task.id));
    assert_eq!(queued[0].data["reason"], json!("woken"));
}

/// Suspension is refused if a child settled after the orchestrator last looked,
/// so no wake-up falls between its check and its sleep.
pub async fn suspending_is_refused_once_a_child_has_settled(store: DynStore) {
    let (_, orch) = running_orchestrator(&store, "parent").await;
    store
        .create_children(Some(orch.lease.key()), vec![child(&orch, 1, activity("c1"))])
        .await
        .unwrap();
    let seen = task(&store, orch.task.id).await.wake_gen;
    let c = claim_one(&store, &claim_any("w", 1).functions(["c1"])).await;
    succeed(&store, c.lease.key(), json!(1)).await.unwrap();
    assert!(!store.suspend_task(orch.lease.key(), seen).await.unwrap());
    let t = task(&store, orch.task.id).await;
    assert_eq!(t.state, TaskState::Running);
    assert_eq!(t.lease_token, Some(orch.lease.token), "it keeps its lease");
    assert!(store.suspend_task(orch.lease.key(), t.wake_gen).await.unwrap());
    assert_lease_lost(
        store.suspend_task(orch.lease.key(), t.wake_gen).await,
        orch.task.id,
        LeaseLost::NotRunning(TaskState::Waiting),
    );
}
