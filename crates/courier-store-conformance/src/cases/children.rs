//! Children under a parent's lease, recorded effects, and group commit.

use std::time::Duration;

use courier_core::{
    ChildCreated, ChildGroup, ClaimRequest, Completion, Dispatched, Effect, EffectWrite, EventFilter, EventType,
    LeaseLost, NewExecution, Outcome, Progress, TaskId, TaskKind, TaskSpec, TaskState, WriteBatch,
};
use serde_json::json;

use crate::support::*;

/// Children are created at their steps with derived ids, fenced by the parent's
/// lease; an occupied step is reported, not overwritten.
pub async fn children_are_created_under_the_parents_lease(store: DynStore) {
    let (id, orch) = running_orchestrator(&store, "parent").await;
    let sleep = TaskSpec::new(TaskKind::Sleep, "courier.sleep", json!(null)).with_delay(Duration::from_secs(3600));
    let created = store
        .create_children(
            Some(orch.lease.key()),
            vec![
                child(&orch, 1, activity("fetch")),
                child(&orch, 2, sleep),
                child(&orch, 3, activity("store").with_delay(Duration::from_secs(3600))),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        created,
        (1..=3)
            .map(|s| ChildCreated::Created {
                id: TaskId::for_step(id, s),
                state: TaskState::Pending
            })
            .collect::<Vec<_>>()
    );
    let fetch = task(&store, TaskId::for_step(id, 1)).await;
    assert_eq!(fetch.parent_id, Some(orch.task.id));
    assert_eq!(
        (fetch.step, fetch.kind, fetch.function.as_str()),
        (1, TaskKind::Activity, "fetch")
    );
    assert_eq!(fetch.args, json!({"f": "fetch"}));
    let timer = task(&store, TaskId::for_step(id, 2)).await;
    let now = store.now().await.unwrap();
    assert!(timer.scheduled_for > now + chrono::Duration::minutes(59));

    let again = store
        .create_children(
            Some(orch.lease.key()),
            vec![
                child(&orch, 1, activity("fetch")),
                child(&orch, 3, activity("different")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![
            ChildCreated::Existing {
                id: TaskId::for_step(id, 1),
                kind: TaskKind::Activity,
                function: "fetch".into(),
                state: TaskState::Pending
            },
            ChildCreated::Existing {
                id: TaskId::for_step(id, 3),
                kind: TaskKind::Activity,
                function: "store".into(),
                state: TaskState::Pending
            },
        ]
    );
    assert_eq!(task(&store, TaskId::for_step(id, 3)).await.function, "store");
    let created_events = events_of_type(&store, id, EventType::TaskCreated).await;
    assert_eq!(created_events.len(), 4, "root and three children, none for the repeats");
    assert_eq!(
        created_events[2].data,
        json!({"function": "courier.sleep", "kind": "sleep", "step": 2, "queue": "default"})
    );

    // A stale parent creates nothing.
    let (id2, _) = {
        let id2 = dispatch(&store, orchestrator("parent2")).await;
        let first = claim_one(
            &store,
            &ClaimRequest::new("w1", 1, Duration::from_millis(200)).functions(["parent2"]),
        )
        .await;
        sleep_ms(400).await;
        claim_one(&store, &claim_any("w2", 1).functions(["parent2"])).await;
        let refused = store
            .create_children(Some(first.lease.key()), vec![child(&first, 1, activity("x"))])
            .await;
        assert_lease_lost(refused, first.task.id, LeaseLost::Reclaimed);
        (id2, first)
    };
    assert!(store.get_task(TaskId::for_step(id2, 1)).await.unwrap().is_none());

    // Unfenced creation works too.
    let free = store
        .create_children(None, vec![child(&orch, 4, activity("free"))])
        .await
        .unwrap();
    assert!(matches!(free[0], ChildCreated::Created { .. }));
}

/// An effect applies once per step however often it is recorded, and returns
/// its first result.
pub async fn effects_apply_once_per_step(store: DynStore) {
    let (id, orch) = running_orchestrator(&store, "counting").await;
    let write = |step, effect| EffectWrite {
        fence: Some(orch.lease.key()),
        execution_id: id,
        parent_id: Some(orch.task.id),
        step,
        effect,
    };
    let first = store
        .apply_effect(write(
            1,
            Effect::Increment {
                name: "items".into(),
                amount: 2.0,
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        first.task,
        ChildCreated::Created {
            id: TaskId::for_step(id, 1),
            state: TaskState::Completed
        }
    );
    assert_eq!(first.result, json!(2.0));
    let replay = store
        .apply_effect(write(
            1,
            Effect::Increment {
                name: "items".into(),
                amount: 5.0,
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        replay.task,
        ChildCreated::Existing {
            id: TaskId::for_step(id, 1),
            kind: TaskKind::Effect,
            function: "courier.counter:items".into(),
            state: TaskState::Completed
        }
    );
    assert_eq!(replay.result, json!(2.0), "the recorded result, not a new one");
    assert_eq!(store.get_execution_counters(id).await.unwrap().get("items"), Some(&2.0));

    for _ in 0..2 {
        store
            .apply_effect(write(
                2,
                Effect::SetState {
                    key: "phase".into(),
                    value: json!("b"),
                },
            ))
            .await
            .unwrap();
        store
            .apply_effect(write(3, Effect::Progress(Progress::percent(50.0, "half"))))
            .await
            .unwrap();
    }
    assert_eq!(
        store.get_execution_state_values(id).await.unwrap().get("phase"),
        Some(&json!("b"))
    );
    let progress = store.list_progress(id, 10).await.unwrap();
    assert_eq!(progress.len(), 1, "progress recorded once");
    assert_eq!(progress[0].progress.percent, Some(50.0));
    assert_eq!(events_of_type(&store, id, EventType::TaskProgress).await.len(), 1);
    assert_eq!(task(&store, TaskId::for_step(id, 2)).await.kind, TaskKind::Effect);

    store.cancel_execution(id, "stop").await.unwrap();
    assert_lease_lost(
        store
            .apply_effect(write(
                4,
                Effect::Increment {
                    name: "items".into(),
                    amount: 1.0,
                },
            ))
            .await,
        orch.task.id,
        LeaseLost::NotRunning(TaskState::Cancelled),
    );
}

/// One commit carries dispatches, children, effects and completions; a refused
/// item does not spoil the rest, and the changes reported are those logged.
pub async fn one_commit_carries_many_kinds_and_isolates_refusals(store: DynStore) {
    dispatch(&store, activity("a")).await;
    let claimed_a = claim_one(&store, &claim_any("w", 1).functions(["a"])).await;
    dispatch(&store, activity("b")).await;
    let stale_b = claim_one(
        &store,
        &ClaimRequest::new("w", 1, Duration::from_millis(200)).functions(["b"]),
    )
    .await;
    sleep_ms(400).await;
    claim_one(&store, &claim_any("w2", 1).functions(["b"])).await;
    let (o, orch) = running_orchestrator(&store, "orch").await;

    let x = NewExecution::new(activity("x"));
    let x_id = x.id;
    let before = store.last_event_seq().await.unwrap();
    let results = store
        .commit(std::sync::Arc::new(WriteBatch {
            dispatches: vec![x],
            children: vec![ChildGroup {
                fence: Some(orch.lease.key()),
                tasks: vec![child(&orch, 1, activity("kid"))],
            }],
            effects: vec![EffectWrite {
                fence: Some(orch.lease.key()),
                execution_id: o,
                parent_id: Some(orch.task.id),
                step: 2,
                effect: Effect::Increment {
                    name: "n".into(),
                    amount: 1.0,
                },
            }],
            delivery_attempts: Vec::new(),
            releases: Vec::new(),
            completions: vec![
                Completion {
                    lease: claimed_a.lease.key(),
                    outcome: Outcome::Succeeded {
                        result: json!("a"),
                        remember: vec![],
                    },
                },
                Completion {
                    lease: stale_b.lease.key(),
                    outcome: Outcome::Succeeded {
                        result: json!("b"),
                        remember: vec![],
                    },
                },
            ],
            // A claim riding a commit has a case of its own (claims).
            claim: None,
        }))
        .await
        .unwrap();
    assert_eq!(results.dispatches.len(), 1);
    assert_eq!(*results.dispatches[0].as_ref().unwrap(), Dispatched::Created(x_id));
    assert!(matches!(
        results.children[0].as_ref().unwrap()[0],
        ChildCreated::Created { .. }
    ));
    assert_eq!(results.effects[0].as_ref().unwrap().result, json!(1.0));
    assert!(results.completions[0].is_ok());
    assert!(matches!(&results.completions[1], Err(e) if is_lease_lost(e, stale_b.task.id)));
    let logged = store.read_events(&EventFilter::after(before)).await.unwrap().events;
    assert_eq!(
        logged.len(),
        results.changes.len(),
        "one event per change of the whole batch"
    );
    assert!(
        results
            .changes
            .iter()
            .any(|c| matches!(c, courier_core::Change::ExecutionCreated { execution, .. } if *execution == x_id))
    );

    assert!(store.get_execution(x_id).await.unwrap().is_some());
    assert!(store.get_task(TaskId::for_step(o, 1)).await.unwrap().is_some());
    assert_eq!(task(&store, claimed_a.task.id).await.state, TaskState::Completed);
    assert_eq!(task(&store, stale_b.task.id).await.state, TaskState::Running);
    assert_logged(&store, before, &results.changes, "a mixed commit").await;
}

/// A notification recorded as an orchestrator's effect is sent once, however
/// often its step is written again (a replay).
pub async fn a_notification_effect_is_sent_once_per_step(store: DynStore) {
    let (id, orch) = running_orchestrator(&store, "notifying").await;
    let new = courier_core::NewNotification::new(
        courier_core::Target::User("u1".into()),
        "generic",
        json!({"title": "done"}),
    );
    let write = || EffectWrite {
        fence: Some(orch.lease.key()),
        execution_id: id,
        parent_id: Some(orch.task.id),
        step: 1,
        effect: Effect::Notify {
            notification: new.clone(),
            ttl: courier_core::NotificationTtl::default(),
        },
    };
    let first = store.apply_effect(write()).await.unwrap();
    assert_eq!(first.result, json!(new.id));
    let second = store.apply_effect(write()).await.unwrap();
    assert!(matches!(second.task, ChildCreated::Existing { .. }));
    assert_eq!(second.result, json!(new.id));
    let sent = store
        .read_events(&EventFilter::after(0).types([EventType::NotificationSent]))
        .await
        .unwrap()
        .events;
    assert_eq!(sent.len(), 1, "sent once");
    assert_eq!(store.get_notifications(&[new.id]).await.unwrap().len(), 1);
}

/// A recorded value (`ctx.now()`, `random()`, `uuid()`, `record()`) is stored
/// at its step as given the first time; recording the step again returns the
/// first value, never the new one, and a value holding a NUL is refused.
pub async fn a_recorded_value_is_read_back_unchanged(store: DynStore) {
    let (id, orch) = running_orchestrator(&store, "recording").await;
    let write = |step, value| EffectWrite {
        fence: Some(orch.lease.key()),
        execution_id: id,
        parent_id: Some(orch.task.id),
        step,
        effect: Effect::Record {
            name: "now".into(),
            value,
        },
    };
    let first = store
        .apply_effect(write(1, json!("2026-12-05T16:00:00.123456Z")))
        .await
        .unwrap();
    assert!(matches!(first.task, ChildCreated::Created { .. }), "{first:?}");
    assert_eq!(first.result, json!("2026-12-05T16:00:00.123456Z"));
    let again = store
        .apply_effect(write(1, json!("2026-12-05T17:00:00Z")))
        .await
        .unwrap();
    assert!(
        matches!(&again.task, ChildCreated::Existing { function, .. } if function == "courier.record:now"),
        "{again:?}"
    );
    assert_eq!(again.result, first.result, "the first value, not the new one");
    let row = task(&store, TaskId::for_step(id, 1)).await;
    assert_eq!((row.kind, row.state), (TaskKind::Effect, TaskState::Completed));
    assert_eq!(row.result, Some(first.result.clone()));
    let structured = store
        .apply_effect(write(2, json!({"shard": 7, "ids": ["a", "b"]})))
        .await
        .unwrap();
    assert_eq!(structured.result, json!({"shard": 7, "ids": ["a", "b"]}));
    assert!(store.apply_effect(write(3, json!("a\u{0}b"))).await.is_err());
    // A float reads back as the very same f64 (a fast parser is one ulp off here).
    let float = 0.439_408_096_349_128_36_f64;
    store.apply_effect(write(4, json!(float))).await.unwrap();
    let replayed = store.apply_effect(write(4, json!(0.5))).await.unwrap();
    assert_eq!(replayed.result.as_f64().map(f64::to_bits), Some(float.to_bits()));
    let row = task(&store, TaskId::for_step(id, 4)).await;
    assert_eq!(
        row.result.and_then(|r| r.as_f64()).map(f64::to_bits),
        Some(float.to_bits())
    );
}
