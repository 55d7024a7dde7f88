//! What a write reports it changed is exactly what it logged: every write that
//! changes something, one after another, compared with the events it appended.

use std::time::Duration;

use courier_core::{
    AttemptEnd, Change, Completion, DeliveryReplay, EventType, ExecutionState, LeaseLost, NewDelivery, NewExecution,
    Outcome, Progress, Requeue, TaskError, TaskId, TaskKind, TaskSpec, TaskState,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

/// Runs `write` and checks that the events appended while it ran are the events
/// of the changes it reported; returns its value.
macro_rules! logged {
    ($store:expr, $what:literal, $write:expr) => {{
        let before = $store.last_event_seq().await.unwrap();
        let committed = $write.await.expect($what);
        assert_logged(&$store, before, &committed.changes, $what).await;
        (committed.value, committed.changes)
    }};
}

/// Every kind of write, each reporting the changes it logged.
pub async fn every_write_reports_exactly_the_changes_it_logged(store: DynStore) {
    // Dispatch: the execution and its root task, claimable now unless delayed.
    let now_and_later = vec![
        NewExecution::new(activity("now")),
        NewExecution::new(activity("later").with_delay(Duration::from_secs(3600))),
    ];
    let (dispatched, changes) = logged!(store, "dispatch", store.dispatch(now_and_later));
    assert_eq!(dispatched.len(), 2);
    let claimable: Vec<bool> = changes
        .iter()
        .filter_map(|c| match c {
            Change::TaskCreated { claimable_now, .. } => Some(*claimable_now),
            _ => None,
        })
        .collect();
    assert_eq!(claimable, vec![true, false]);

    // A claim: the task starts, and so does its execution.
    let (claimed, changes) = logged!(store, "claim", store.claim_tasks(&claim_any("w", 5)));
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert!(matches!(changes[0], Change::TaskStarted { attempt: 1, .. }));
    assert!(matches!(changes[1], Change::ExecutionStarted { .. }));

    // A claim's own writes.
    logged!(
        store,
        "heartbeat",
        store.heartbeat(c.lease.key(), Duration::from_secs(30), Some(json!({"at": 1})))
    );
    logged!(store, "checkpoint", store.checkpoint(c.lease.key(), json!({"done": 3})));
    let progress = Progress::percent(50.0, "half");
    logged!(
        store,
        "progress",
        store.append_progress(c.task.execution_id, Some(c.task.id), &progress, Some(c.lease.key()))
    );
    let (_, changes) = logged!(store, "release", store.release_task(c.lease.key(), Duration::ZERO));
    assert!(matches!(
        changes[..],
        [Change::TaskQueued {
            reason: Requeue::Released,
            claimable_now: true,
            ..
        }]
    ));

    // A retry, then a failure for good.
    let c = claim_one(&store, &claim_any("w", 1)).await;
    let retry = Completion {
        lease: c.lease.key(),
        outcome: Outcome::Retry {
            error: TaskError::new("flaky", "try again"),
            delay: Duration::ZERO,
        },
    };
    let before = store.last_event_seq().await.unwrap();
    let results = store
        .commit(std::sync::Arc::new(courier_core::WriteBatch {
            completions: vec![retry],
            ..courier_core::WriteBatch::default()
        }))
        .await
        .unwrap();
    assert_logged(&store, before, &results.changes, "retry").await;
    assert!(matches!(
        &results.changes[..],
        [
            Change::AttemptEnded {
                end: AttemptEnd::Failed { retry_in: Some(_), .. },
                ..
            },
            Change::TaskQueued {
                reason: Requeue::Retry,
                claimable_now: true,
                ..
            }
        ]
    ));
    let c = claim_one(&store, &claim_any("w", 1)).await;
    let before = store.last_event_seq().await.unwrap();
    let results = store
        .commit(std::sync::Arc::new(courier_core::WriteBatch {
            completions: vec![Completion {
                lease: c.lease.key(),
                outcome: Outcome::Failed {
                    error: TaskError::new("broken", "for good"),
                    reason: "attempts exhausted".into(),
                    dead_letter: true,
                },
            }],
            ..courier_core::WriteBatch::default()
        }))
        .await
        .unwrap();
    assert_logged(&store, before, &results.changes, "failure").await;
    assert!(results.changes.iter().any(|ch| matches!(
        ch,
        Change::ExecutionEnded {
            state: ExecutionState::Failed,
            ..
        }
    )));

    // Replaying the dead letter reopens the execution.
    let (replayed, changes) = logged!(store, "replay", store.replay_dead_letter(c.task.id));
    assert!(replayed.execution_resumed);
    assert!(matches!(changes[0], Change::ExecutionResumed { .. }));

    // A cancel ends the execution and its tasks.
    let (cancelled, changes) = logged!(store, "cancel", store.cancel_execution(c.task.execution_id, "enough"));
    assert_eq!(cancelled.tasks, vec![c.task.id]);
    assert!(matches!(changes[0], Change::TaskCancelled { .. }));
    assert!(matches!(
        changes[1],
        Change::ExecutionEnded {
            state: ExecutionState::Cancelled,
            ..
        }
    ));
    let (_, changes) = logged!(
        store,
        "a second cancel",
        store.cancel_execution(c.task.execution_id, "again")
    );
    assert!(changes.is_empty(), "cancelling a finished execution changes nothing");

    // A signal delivered to a waiting child wakes its parked orchestrator.
    let (o, orch) = running_orchestrator(&store, "orch").await;
    store
        .create_children(
            Some(orch.lease.key()),
            vec![child(&orch, 1, TaskSpec::new(TaskKind::SignalWait, "go", json!(null)))],
        )
        .await
        .unwrap();
    assert!(store.suspend_task(orch.lease.key(), orch.task.wake_gen).await.unwrap());
    let (sent, changes) = logged!(store, "signal", store.send_signal(o, "go", json!("now")));
    assert_eq!(sent.delivered_to, Some(TaskId::for_step(o, 1)));
    assert!(matches!(
        changes[..],
        [
            Change::AttemptEnded {
                end: AttemptEnd::Completed,
                ..
            },
            Change::TaskQueued {
                reason: Requeue::Woken,
                claimable_now: true,
                ..
            }
        ]
    ));
    assert_eq!(task(&store, orch.task.id).await.state, TaskState::Pending);

    // Housekeeping sweeps.
    let expiring = NewExecution::new(activity("expiring")).with_expiry(Duration::from_millis(50));
    let expiring_id = expiring.id;
    store.dispatch(vec![expiring]).await.unwrap();
    sleep_ms(150).await;
    let (timed_out, changes) = logged!(store, "time-out", store.time_out_executions(10));
    assert_eq!(timed_out[0].execution_id, expiring_id);
    assert!(matches!(
        changes.last(),
        Some(Change::ExecutionEnded {
            state: ExecutionState::TimedOut,
            ..
        })
    ));
    dispatch(&store, activity("quiet")).await;
    let quiet = claim_one(&store, &claim_any("w", 1).functions(["quiet"])).await;
    sleep_ms(300).await;
    let (stuck, changes) = logged!(
        store,
        "stuck detection",
        store.detect_stuck_tasks(Duration::from_millis(200), 10)
    );
    assert!(stuck.contains(&quiet.task.id));
    assert!(matches!(changes[0], Change::TaskStuck { .. }));

    // Enqueueing webhook deliveries dispatches their executions.
    let delivery = NewDelivery {
        id: Uuid::new_v4(),
        webhook_id: Uuid::new_v4(),
        event_seq: 1,
        event_type: EventType::ExecutionCreated,
        execution: NewExecution::new(activity("deliver")),
        skipped: false,
    };
    // A skipped one dispatches nothing until it is replayed.
    let skipped = NewDelivery {
        id: Uuid::new_v4(),
        execution: NewExecution::new(activity("deliver")),
        skipped: true,
        ..delivery.clone()
    };
    let cursor = store.webhook_cursor().await.unwrap();
    let (moved, changes) = logged!(
        store,
        "enqueue deliveries",
        store.enqueue_deliveries(cursor, cursor + 1, vec![delivery, skipped.clone()])
    );
    assert!(moved);
    assert!(matches!(changes[0], Change::ExecutionCreated { .. }));
    assert_eq!(
        changes
            .iter()
            .filter(|c| matches!(c, Change::ExecutionCreated { .. }))
            .count(),
        1
    );

    let replay = DeliveryReplay {
        delivery_id: skipped.id,
        execution: NewExecution::new(activity("deliver")),
    };
    let (replayed, changes) = logged!(store, "replay deliveries", store.replay_deliveries(vec![replay]));
    assert_eq!(replayed, vec![skipped.id]);
    assert!(matches!(changes[0], Change::ExecutionCreated { .. }));
}

/// Progress reported under a claim is refused once the claim has lost its task,
/// and leaves nothing behind.
pub async fn fenced_progress_is_refused_after_the_lease_is_lost(store: DynStore) {
    let id = dispatch(&store, activity("reporting")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    let report = Progress::percent(10.0, "one");
    store
        .append_progress(id, Some(c.task.id), &report, Some(c.lease.key()))
        .await
        .unwrap();
    store.cancel_execution(id, "stop").await.unwrap();
    let refused = store
        .append_progress(
            id,
            Some(c.task.id),
            &Progress::percent(20.0, "two"),
            Some(c.lease.key()),
        )
        .await;
    assert_lease_lost(refused, c.task.id, LeaseLost::NotRunning(TaskState::Cancelled));
    let reports = store.list_progress(id, 10).await.unwrap();
    assert_eq!(reports.len(), 1, "the refused report was not kept");
    assert_eq!(events_of_type(&store, id, EventType::TaskProgress).await.len(), 1);
}
