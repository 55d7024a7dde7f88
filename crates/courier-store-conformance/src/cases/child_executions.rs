//! Child executions: started once at a parent's step, their ends reported to
//! the parent as its link's signal, the parent's end applied by close policy,
//! and a link handed on by continue-as-new.

use courier_core::{
    Change, ChildCreated, ChildOutcome, Claimed, Effect, EffectApplied, EffectWrite, ExecutionFilter, ExecutionId,
    ExecutionState, NewExecution, ParentClose, ParentLink, TaskId, TaskKind, TaskSpec, TaskState, WriteBatch,
};
use serde_json::{Value, json};

use crate::support::*;

/// The effect that starts `spec` as a child of `parent` at `step`.
fn start(parent: &Claimed, step: i64, spec: TaskSpec, close: ParentClose) -> EffectWrite {
    let execution_id = parent.task.execution_id;
    let mut child = NewExecution::new(spec);
    child.id = ExecutionId::started_at(execution_id, step);
    child.parent = Some(ParentLink {
        execution_id,
        step,
        close,
    });
    EffectWrite {
        fence: Some(parent.lease.key()),
        execution_id,
        parent_id: Some(parent.task.id),
        step,
        effect: Effect::StartChild { execution: child },
    }
}

/// A wait at `step` of `parent` for the child started at `child_step`.
fn wait_for_child(store: &DynStore, parent: &Claimed, step: i64, child_step: i64) -> impl Future<Output = ()> {
    let link = ParentLink {
        execution_id: parent.task.execution_id,
        step: child_step,
        close: ParentClose::Cancel,
    };
    let spec = TaskSpec::new(TaskKind::SignalWait, link.signal_name(), Value::Null);
    let store = store.clone();
    let fence = parent.lease.key();
    let wait = child(parent, step, spec);
    async move {
        store.create_children(Some(fence), vec![wait]).await.unwrap();
    }
}

/// Claims the root task of execution `id`.
async fn claim_root(store: &DynStore, id: ExecutionId, function: &str) -> Claimed {
    let claimed = claim_one(store, &claim_any("child-worker", 1).functions([function])).await;
    assert_eq!(claimed.task.execution_id, id, "the root of {id}");
    claimed
}

/// A child is started once however often its step is written, carries its
/// link, and its end (a result, or a failure) completes the parent's wait.
pub async fn a_child_execution_starts_once_and_reports_its_end(store: DynStore) {
    let (parent, orch) = running_orchestrator(&store, "family-parent").await;
    let first: EffectApplied = store
        .apply_effect(start(&orch, 1, activity("family-child"), ParentClose::Cancel))
        .await
        .unwrap();
    let child_id = ExecutionId::started_at(parent, 1);
    assert!(matches!(first.task, ChildCreated::Created { .. }), "{first:?}");
    assert_eq!(first.result, json!(child_id));
    let again = store
        .apply_effect(start(&orch, 1, activity("family-child"), ParentClose::Cancel))
        .await
        .unwrap();
    assert!(matches!(again.task, ChildCreated::Existing { .. }), "{again:?}");
    assert_eq!(again.result, json!(child_id));
    let record = execution(&store, child_id).await;
    assert_eq!(record.state, ExecutionState::Pending);
    assert_eq!(
        record.parent,
        Some(ParentLink {
            execution_id: parent,
            step: 1,
            close: ParentClose::Cancel
        })
    );
    assert_eq!(execution(&store, parent).await.parent, None);

    wait_for_child(&store, &orch, 2, 1).await;
    assert_eq!(
        task(&store, TaskId::for_step(parent, 2)).await.state,
        TaskState::Waiting
    );
    let wake_gen = task(&store, orch.task.id).await.wake_gen;
    let root = claim_root(&store, child_id, "family-child").await;
    succeed(&store, root.lease.key(), json!(42)).await.unwrap();
    let wait = task(&store, TaskId::for_step(parent, 2)).await;
    assert_eq!(wait.state, TaskState::Completed);
    let outcome: ChildOutcome = serde_json::from_value(wait.result.unwrap()).unwrap();
    assert_eq!(outcome.into_result().unwrap(), json!(42));
    assert!(
        task(&store, orch.task.id).await.wake_gen > wake_gen,
        "the parent is woken"
    );

    // A failure arrives the same way, with the child's error; a child that ends
    // before its parent waits leaves the signal for the wait to find.
    store
        .apply_effect(start(&orch, 3, activity("family-failing"), ParentClose::Cancel))
        .await
        .unwrap();
    let failing = ExecutionId::started_at(parent, 3);
    let root = claim_root(&store, failing, "family-failing").await;
    fail_for_good(&store, root.lease.key(), "card_declined").await.unwrap();
    wait_for_child(&store, &orch, 4, 3).await;
    let wait = task(&store, TaskId::for_step(parent, 4)).await;
    assert_eq!(wait.state, TaskState::Completed, "the kept signal completes the wait");
    let outcome: ChildOutcome = serde_json::from_value(wait.result.unwrap()).unwrap();
    assert_eq!(outcome.state, ExecutionState::Failed);
    assert_eq!(outcome.into_result().unwrap_err().kind, "card_declined");

    // A child that outlives its expiry reports a time-out.
    let mut late = start(&orch, 5, activity("family-slow"), ParentClose::Cancel);
    if let Effect::StartChild { execution } = &mut late.effect {
        execution.expiry = Some(std::time::Duration::from_millis(1));
    }
    store.apply_effect(late).await.unwrap();
    let slow = ExecutionId::started_at(parent, 5);
    wait_for_child(&store, &orch, 6, 5).await;
    sleep_ms(30).await;
    let timed_out = store.time_out_executions(10).await.unwrap();
    assert!(timed_out.value.iter().any(|c| c.execution_id == slow), "{timed_out:?}");
    let wait = task(&store, TaskId::for_step(parent, 6)).await;
    assert_eq!(wait.state, TaskState::Completed);
    let outcome: ChildOutcome = serde_json::from_value(wait.result.unwrap()).unwrap();
    assert_eq!(outcome.state, ExecutionState::TimedOut);
    assert_eq!(
        outcome.into_result().unwrap_err().kind,
        courier_core::TaskError::TIMEOUT
    );

    // A parent's children are listed by their link.
    let listed = store
        .list_executions(&ExecutionFilter {
            parent: Some(parent),
            limit: 10,
            ..ExecutionFilter::default()
        })
        .await
        .unwrap();
    let mut ids: Vec<ExecutionId> = listed.iter().map(|e| e.id).collect();
    ids.sort();
    let mut expected = vec![child_id, failing, slow];
    expected.sort();
    assert_eq!(ids, expected);
}

/// Cancelling a parent cancels its `cancel` children and theirs in turn, in the
/// same write; `abandon` children run on, and their later end troubles no one.
pub async fn a_parents_end_cancels_its_children_by_policy(store: DynStore) {
    let (parent, orch) = running_orchestrator(&store, "family-root").await;
    store
        .apply_effect(start(&orch, 1, orchestrator("family-middle"), ParentClose::Cancel))
        .await
        .unwrap();
    store
        .apply_effect(start(&orch, 2, activity("family-abandoned"), ParentClose::Abandon))
        .await
        .unwrap();
    store
        .apply_effect(start(&orch, 3, activity("family-outliving"), ParentClose::Abandon))
        .await
        .unwrap();
    let middle = ExecutionId::started_at(parent, 1);
    let abandoned = ExecutionId::started_at(parent, 2);
    let middle_root = claim_root(&store, middle, "family-middle").await;
    store
        .apply_effect(start(&middle_root, 1, activity("family-leaf"), ParentClose::Cancel))
        .await
        .unwrap();
    let leaf = ExecutionId::started_at(middle, 1);

    let cancelled = store.cancel_execution(parent, "operator said stop").await.unwrap();
    let ended: Vec<ExecutionId> = cancelled
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::ExecutionEnded { execution, .. } => Some(*execution),
            _ => None,
        })
        .collect();
    assert_eq!(ended, vec![parent, middle, leaf], "ended in one write, top down");
    for id in [parent, middle, leaf] {
        assert_eq!(execution(&store, id).await.state, ExecutionState::Cancelled, "{id}");
    }
    let error = execution(&store, middle).await.error.unwrap();
    assert!(error.message.contains(&parent.to_string()), "{error:?}");
    assert_eq!(task(&store, middle_root.task.id).await.state, TaskState::Cancelled);
    assert_eq!(execution(&store, abandoned).await.state, ExecutionState::Pending);

    let root = claim_root(&store, abandoned, "family-abandoned").await;
    succeed(&store, root.lease.key(), json!("still done")).await.unwrap();
    assert_eq!(execution(&store, abandoned).await.state, ExecutionState::Completed);
    assert!(
        store.list_signals(parent, 10).await.unwrap().is_empty(),
        "a finished parent gets nothing"
    );

    // An abandoned child may outlive its parent's very row (cleaned up): its
    // end still settles, with no one left to tell.
    store
        .cleanup_executions(chrono::Utc::now() + chrono::Duration::days(1))
        .await
        .unwrap();
    assert!(
        store.get_execution(parent).await.unwrap().is_none(),
        "the parent was cleaned up"
    );
    let outliving = ExecutionId::started_at(parent, 3);
    let root = claim_root(&store, outliving, "family-outliving").await;
    succeed(&store, root.lease.key(), json!("alone")).await.unwrap();
    assert_eq!(execution(&store, outliving).await.state, ExecutionState::Completed);
}

/// A child that continues as new hands its link on: the parent hears of the
/// successor's end, not of the one that continued.
pub async fn continuing_as_new_hands_the_link_to_the_successor(store: DynStore) {
    let (parent, orch) = running_orchestrator(&store, "family-loop-parent").await;
    store
        .apply_effect(start(&orch, 1, orchestrator("family-loop"), ParentClose::Cancel))
        .await
        .unwrap();
    let first = ExecutionId::started_at(parent, 1);
    let round = claim_root(&store, first, "family-loop").await;
    let mut successor = NewExecution::new(orchestrator("family-loop"));
    successor.id = ExecutionId::started_at(first, 1);
    let applied = store
        .apply_effect(EffectWrite {
            fence: Some(round.lease.key()),
            execution_id: first,
            parent_id: Some(round.task.id),
            step: 1,
            effect: Effect::ContinueAsNew {
                execution: successor.clone(),
            },
        })
        .await
        .unwrap();
    assert_eq!(applied.result, json!(successor.id));
    assert_eq!(execution(&store, first).await.parent, None);
    assert_eq!(
        execution(&store, successor.id).await.parent,
        Some(ParentLink {
            execution_id: parent,
            step: 1,
            close: ParentClose::Cancel
        })
    );
    succeed(&store, round.lease.key(), json!({"continued_as_new": successor.id}))
        .await
        .unwrap();
    assert!(
        store.list_signals(parent, 10).await.unwrap().is_empty(),
        "no end reported yet"
    );

    wait_for_child(&store, &orch, 2, 1).await;
    let next = claim_root(&store, successor.id, "family-loop").await;
    succeed(&store, next.lease.key(), json!("last round")).await.unwrap();
    let wait = task(&store, TaskId::for_step(parent, 2)).await;
    let outcome: ChildOutcome = serde_json::from_value(wait.result.unwrap()).unwrap();
    assert_eq!(outcome.into_result().unwrap(), json!("last round"));
}

/// A parent cancels its own child once, however often the step is written;
/// the child's end reaches the parent's wait; an execution that is not its
/// child is refused.
pub async fn a_parent_cancels_its_child_once(store: DynStore) {
    let (parent, orch) = running_orchestrator(&store, "family-canceller").await;
    store
        .apply_effect(start(&orch, 1, activity("family-slow-child"), ParentClose::Cancel))
        .await
        .unwrap();
    let child = ExecutionId::started_at(parent, 1);
    wait_for_child(&store, &orch, 2, 1).await;
    let cancel = |step: i64, execution_id: ExecutionId| EffectWrite {
        fence: Some(orch.lease.key()),
        execution_id: parent,
        parent_id: Some(orch.task.id),
        step,
        effect: Effect::CancelChild {
            execution_id,
            reason: "too slow".into(),
        },
    };
    let first = store.apply_effect(cancel(3, child)).await.unwrap();
    assert_eq!(first.result, json!("pending"));
    let record = execution(&store, child).await;
    assert_eq!(record.state, ExecutionState::Cancelled);
    assert_eq!(record.error.unwrap().message, "too slow");
    let wait = task(&store, TaskId::for_step(parent, 2)).await;
    assert_eq!(wait.state, TaskState::Completed, "the parent hears of it");
    let outcome: ChildOutcome = serde_json::from_value(wait.result.unwrap()).unwrap();
    assert_eq!(
        outcome.into_result().unwrap_err().kind,
        courier_core::TaskError::CANCELLED
    );
    let again = store.apply_effect(cancel(3, child)).await.unwrap();
    assert!(matches!(again.task, ChildCreated::Existing { .. }), "{again:?}");
    assert_eq!(
        again.result,
        json!("pending"),
        "the recorded result, nothing cancelled again"
    );

    let stranger = dispatch(&store, activity("family-stranger")).await;
    assert!(store.apply_effect(cancel(4, stranger)).await.is_err(), "not its child");
    assert_eq!(execution(&store, stranger).await.state, ExecutionState::Pending);
    assert!(
        store.apply_effect(cancel(5, ExecutionId::new())).await.is_err(),
        "no such execution"
    );

    // In a group commit the refused one fails alone.
    let record = EffectWrite {
        fence: Some(orch.lease.key()),
        execution_id: parent,
        parent_id: Some(orch.task.id),
        step: 7,
        effect: Effect::Record {
            name: "after".into(),
            value: json!(1),
        },
    };
    let results = store
        .commit(std::sync::Arc::new(WriteBatch {
            effects: vec![cancel(6, stranger), record],
            ..WriteBatch::default()
        }))
        .await
        .unwrap();
    assert!(results.effects[0].is_err(), "{:?}", results.effects[0]);
    assert_eq!(results.effects[1].as_ref().unwrap().result, json!(1));
    assert_eq!(execution(&store, stranger).await.state, ExecutionState::Pending);
}
