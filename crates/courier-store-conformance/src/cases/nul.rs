//! NUL characters (`\u0000`): Postgres cannot store one, so both stores refuse
//! any value holding one, item by item, with `Invalid` naming what held it, and
//! never with the database's own words.

use std::sync::Arc;

use courier_core::{
    Completion, NewExecution, Outcome, StoreError, TaskError, TaskKind, TaskSpec, TaskState, WriteBatch,
};
use serde_json::{Value, json};

use crate::support::*;

fn assert_refused<T: std::fmt::Debug>(result: Result<T, StoreError>, field: &str) {
    match result {
        Err(StoreError::Invalid(detail)) => {
            assert!(detail.contains("NUL"), "the refusal says why: {detail}");
            assert!(
                detail.starts_with(field) || detail.contains("value"),
                "names {field}: {detail}"
            );
            assert!(!detail.to_lowercase().contains("postgres"), "no backend text: {detail}");
        }
        other => panic!("expected {field} refused for its NUL, got {other:?}"),
    }
}

/// A name or a value holding a NUL refuses the dispatch, and nothing is stored.
pub async fn a_dispatch_holding_a_nul_is_refused(store: DynStore) {
    let plain = || TaskSpec::new(TaskKind::Activity, "f", json!({"a": 1}));
    let cases: Vec<(&str, NewExecution)> = vec![
        (
            "function",
            NewExecution::new(TaskSpec::new(TaskKind::Activity, "f\u{0}", Value::Null)),
        ),
        ("queue", NewExecution::new(plain().on_queue("q\u{0}"))),
        (
            "tags",
            NewExecution::new(TaskSpec {
                tags: vec!["t\u{0}".into()],
                ..plain()
            }),
        ),
        (
            "args",
            NewExecution::new(TaskSpec::new(TaskKind::Activity, "f", json!({"a": ["x\u{0}y"]}))),
        ),
        (
            "args",
            NewExecution::new(TaskSpec::new(TaskKind::Activity, "f", json!({"k\u{0}": 1}))),
        ),
        (
            "idempotency_key",
            NewExecution::new(plain()).with_idempotency_key("k\u{0}"),
        ),
    ];
    for (field, new) in cases {
        assert_refused(store.dispatch(vec![new]).await, field);
    }
    assert!(
        claim(&store, &claim_any("w", 10)).await.is_empty(),
        "nothing was stored"
    );
    // The text `\u0000` spelled out (a backslash, not a NUL) is an ordinary string.
    let spelled = json!({"a": r"\u0000"});
    dispatch(&store, TaskSpec::new(TaskKind::Activity, "f", spelled.clone())).await;
    assert_eq!(claim_one(&store, &claim_any("w", 1)).await.task.args, spelled);
}

/// In a group commit only the items holding a NUL are refused; their
/// neighbours land, in their places.
pub async fn a_batch_refuses_only_its_items_holding_a_nul(store: DynStore) {
    let new = |args: Value| NewExecution::new(TaskSpec::new(TaskKind::Activity, "f", args));
    let (a, b) = (new(json!(1)), new(json!(3)));
    let batch = WriteBatch {
        dispatches: vec![a.clone(), new(json!("\u{0}")), b.clone()],
        ..WriteBatch::default()
    };
    let out = store.commit(Arc::new(batch)).await.expect("the batch commits");
    assert_eq!(out.dispatches.len(), 3);
    assert_eq!(out.dispatches[0].as_ref().map(|d| d.id()).ok(), Some(a.id));
    assert_refused(out.dispatches[1].clone(), "args");
    assert_eq!(out.dispatches[2].as_ref().map(|d| d.id()).ok(), Some(b.id));
    assert_eq!(claim(&store, &claim_any("w", 10)).await.len(), 2);
}

/// A worker whose result or error holds a NUL is refused without losing its
/// claim, so it can still fail the task with a clean error (before, on Postgres,
/// it could do neither and the task re-ran at every lease expiry).
pub async fn a_result_holding_a_nul_is_refused_and_the_task_can_still_settle(store: DynStore) {
    dispatch(&store, activity("f")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    assert_refused(
        succeed(&store, c.lease.key(), json!({"out": "a\u{0}b"})).await,
        "result",
    );
    let failure = |message: &str| Completion {
        lease: c.lease.key(),
        outcome: Outcome::Failed {
            error: TaskError::new("broken", message),
            reason: "gave up".into(),
            dead_letter: false,
        },
    };
    assert_refused(
        one(store.complete_tasks(vec![failure("nul \u{0} here")]).await),
        "error.message",
    );
    assert_eq!(task(&store, c.task.id).await.state, TaskState::Running, "still claimed");
    assert_refused(store.checkpoint(c.lease.key(), json!(["\u{0}"])).await, "value");

    let done = one(store
        .complete_tasks(vec![failure("the result could not be stored")])
        .await)
    .unwrap();
    assert_eq!(done.state, TaskState::Failed);
}

/// A signal's payload holding a NUL is refused and nothing is delivered.
pub async fn a_signal_holding_a_nul_is_refused(store: DynStore) {
    let id = dispatch(&store, activity("f")).await;
    assert_refused(store.send_signal(id, "go", json!({"x": "\u{0}"})).await, "value");
    store
        .send_signal(id, "go", json!({"x": "clean"}))
        .await
        .expect("a clean signal");
}
