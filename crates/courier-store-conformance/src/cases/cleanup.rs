//! Cleanup of old executions and dead letters.

use courier_core::{
    Effect, EffectWrite, EventFilter, ExecutionState, Progress, TaskFilter, TaskId, TaskKind, TaskSpec,
};
use serde_json::json;

use crate::support::*;

/// Cleanup deletes terminal executions finished before the cutoff, with every
/// row they own, and keeps unfinished executions however old.
pub async fn cleanup_removes_only_old_terminal_executions_with_all_their_rows(store: DynStore) {
    // An old finished execution with rows of every kind.
    let (old, orch) = running_orchestrator(&store, "old").await;
    store
        .create_children(
            Some(orch.lease.key()),
            vec![
                child(&orch, 1, activity("kid")),
                child(&orch, 2, TaskSpec::new(TaskKind::SignalWait, "sig", json!(null))),
            ],
        )
        .await
        .unwrap();
    store.send_signal(old, "extra", json!(1)).await.unwrap();
    store
        .append_progress(old, None, &Progress::percent(10.0, "x"), None)
        .await
        .unwrap();
    store.increment_execution_counter(old, "n", 1.0).await.unwrap();
    store.set_execution_state_value(old, "k", &json!("v")).await.unwrap();
    store
        .apply_effect(EffectWrite {
            fence: Some(orch.lease.key()),
            execution_id: old,
            parent_id: Some(orch.task.id),
            step: 3,
            effect: Effect::Increment {
                name: "m".into(),
                amount: 1.0,
            },
        })
        .await
        .unwrap();
    let kid = claim_one(&store, &claim_any("w", 1).functions(["kid"])).await;
    fail_for_good(&store, kid.lease.key(), "bug").await.unwrap();
    succeed(&store, orch.lease.key(), json!("done")).await.unwrap();

    // An old unfinished execution.
    let (running, _) = running_orchestrator(&store, "still-running").await;

    sleep_ms(50).await;
    let cutoff = store.now().await.unwrap();
    sleep_ms(50).await;

    // A finished execution, but after the cutoff.
    let recent = dispatch(&store, activity("recent")).await;
    let c = claim_one(&store, &claim_any("w", 1).functions(["recent"])).await;
    succeed(&store, c.lease.key(), json!(1)).await.unwrap();

    assert_eq!(store.cleanup_executions(cutoff).await.unwrap(), 1);

    assert!(store.get_execution(old).await.unwrap().is_none());
    let tasks = store
        .list_tasks(&TaskFilter {
            execution_id: Some(old),
            limit: 100,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert!(
        tasks.is_empty(),
        "tasks of the cleaned execution remain: {}",
        tasks.len()
    );
    assert!(store.get_signal(old, "extra").await.unwrap().is_none());
    assert!(store.list_progress(old, 10).await.unwrap().is_empty());
    assert!(store.get_execution_counters(old).await.unwrap().is_empty());
    assert!(store.get_execution_state_values(old).await.unwrap().is_empty());
    assert!(store.get_dead_letter(kid.task.id).await.unwrap().is_none());
    assert!(
        store
            .read_events(&EventFilter::after(0).execution(old))
            .await
            .unwrap()
            .events
            .is_empty()
    );

    for kept in [running, recent] {
        assert!(store.get_execution(kept).await.unwrap().is_some());
        assert!(store.get_task(TaskId::root_of(kept)).await.unwrap().is_some());
        assert!(!events_of(&store, kept).await.is_empty());
    }
    assert_eq!(execution(&store, running).await.state, ExecutionState::Running);
    // A cutoff in the future still keeps the running one.
    let later = store.now().await.unwrap() + chrono::Duration::days(1);
    assert_eq!(store.cleanup_executions(later).await.unwrap(), 1);
    assert!(store.get_execution(running).await.unwrap().is_some());
}

/// Dead letters older than the cutoff are deleted; newer ones are kept.
pub async fn old_dead_letters_are_cleaned_up(store: DynStore) {
    dispatch(&store, activity("a")).await;
    let first = claim_one(&store, &claim_any("w", 1)).await;
    fail_for_good(&store, first.lease.key(), "x").await.unwrap();
    sleep_ms(50).await;
    let cutoff = store.now().await.unwrap();
    sleep_ms(50).await;
    dispatch(&store, activity("b")).await;
    let second = claim_one(&store, &claim_any("w", 1)).await;
    fail_for_good(&store, second.lease.key(), "x").await.unwrap();

    assert_eq!(store.cleanup_dead_letters(cutoff).await.unwrap(), 1);
    assert!(store.get_dead_letter(first.task.id).await.unwrap().is_none());
    assert!(store.get_dead_letter(second.task.id).await.unwrap().is_some());
}

/// Trimming the log never deletes events the webhook dispatcher has not read
/// while a webhook is enabled (they still owe deliveries); without one it trims
/// everything old. A backlog longer than one chunk is trimmed whole.
pub async fn trimming_keeps_events_the_webhook_dispatcher_has_not_read(store: DynStore) {
    let exec = dispatch(&store, activity("logged")).await;
    let now = store.now().await.unwrap();
    let hook = courier_core::WebhookRecord {
        id: uuid::Uuid::new_v4(),
        url: "https://example.com/hook".into(),
        event_types: Vec::new(),
        execution_id: None,
        task_id: None,
        headers: Default::default(),
        secret: "whsec_c2VjcmV0".into(),
        previous_secret: None,
        previous_secret_until: None,
        description: None,
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    store.create_webhook(&hook).await.unwrap();
    let future = now + chrono::Duration::seconds(5);
    assert_eq!(
        store.trim_events(future).await.unwrap(),
        0,
        "the dispatcher read nothing yet"
    );
    assert!(store.enqueue_deliveries(0, 1, Vec::new()).await.unwrap().value);
    assert_eq!(
        store.trim_events(future).await.unwrap(),
        1,
        "only what the dispatcher read"
    );
    assert_eq!(
        store
            .read_events(&courier_core::EventFilter::after(0))
            .await
            .unwrap()
            .events
            .len(),
        1
    );

    // Without an enabled webhook nothing owes a delivery: a backlog of more than
    // one chunk goes, all of it.
    assert!(store.set_webhook_enabled(hook.id, false, Some("test")).await.unwrap());
    let effects = (0..10_050)
        .map(|n| courier_core::EffectWrite {
            fence: None,
            execution_id: exec,
            parent_id: None,
            step: 1000 + n,
            effect: courier_core::Effect::Progress(courier_core::Progress::default()),
        })
        .collect();
    store
        .commit(std::sync::Arc::new(courier_core::WriteBatch {
            effects,
            ..courier_core::WriteBatch::default()
        }))
        .await
        .unwrap();
    let future = store.now().await.unwrap() + chrono::Duration::seconds(5);
    assert_eq!(store.trim_events(future).await.unwrap(), 10_051);
    assert!(
        store
            .read_events(&courier_core::EventFilter::after(0))
            .await
            .unwrap()
            .events
            .is_empty()
    );
}

/// Idempotency keys whose work finished before the cutoff are deleted; a
/// reservation of work still running is kept, however old.
pub async fn old_finished_idempotency_keys_are_trimmed(store: DynStore) {
    store.set_idempotency_result("done", &json!(1)).await.unwrap();
    let exec = dispatch(&store, activity("holder")).await;
    let holder = TaskId::root_of(exec);
    assert_eq!(
        store.reserve_idempotency_key("running", holder).await.unwrap(),
        courier_core::Reservation::Acquired
    );
    let past = store.now().await.unwrap() - chrono::Duration::seconds(60);
    assert_eq!(store.trim_idempotency_keys(past).await.unwrap(), 0, "nothing that old");
    let future = store.now().await.unwrap() + chrono::Duration::seconds(5);
    assert_eq!(store.trim_idempotency_keys(future).await.unwrap(), 1);
    assert_eq!(store.get_idempotency_result("done").await.unwrap(), None);
    assert_eq!(
        store.reserve_idempotency_key("running", holder).await.unwrap(),
        courier_core::Reservation::Acquired,
        "the holder's reservation is still there (re-entrant)"
    );
    assert_eq!(store.trim_idempotency_keys(future).await.unwrap(), 0);
}
