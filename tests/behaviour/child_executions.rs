//! Child orchestrations as executions of their own, `ctx.select` and
//! `continue_as_new`, end to end through `Courier`, with orchestrators suspended
//! between steps so every wait is crossed by a replay. On SQLite and Postgres.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use courier::core::{ExecutionFilter, ExecutionState, ParentClose, ParentLink, Store, TaskError, TaskKind};
use courier::{ChildOptions, Courier, OrchestratorContext};
use futures::FutureExt;
use serde_json::{Value, json};

use crate::support::*;

fn builder(store: Arc<dyn Store>) -> courier::CourierBuilder {
    Courier::builder()
        .store(store)
        .worker(fast_worker().suspend_after(Duration::from_millis(100)))
}

/// A parent awaits a child orchestration's result durably; the child is an
/// execution of its own (listed, linked, with its own history), runs its
/// activity once, and a failed child's error reaches the parent as an error.
async fn a_parent_awaits_its_children(store: Arc<dyn Store>) {
    let doubled = Arc::new(AtomicU32::new(0));
    let counter = doubled.clone();
    let courier = builder(store)
        .activity("double", move |_ctx, n: u64| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<_, TaskError>(n * 2)
            }
        })
        .orchestrator("child", |ctx: OrchestratorContext, n: u64| async move {
            let doubled: u64 = ctx.call("double", n).await?;
            ctx.sleep(Duration::from_millis(300)).await?;
            Ok::<_, TaskError>(doubled + 1)
        })
        .orchestrator("failing_child", |_: OrchestratorContext, _: ()| async move {
            Err::<(), _>(TaskError::non_retryable("out_of_stock", "nothing left"))
        })
        .orchestrator("parent", |ctx: OrchestratorContext, n: u64| async move {
            let first: u64 = ctx.call_orchestrator("child", n).await?;
            let second = ctx.start_child("child", first).await?;
            let failed = ctx.call_orchestrator::<_, ()>("failing_child", ()).await;
            let second: u64 = second.result().await?;
            let kind = failed.map(|_| "none".to_string()).unwrap_or_else(|e| e.kind);
            Ok::<_, TaskError>(json!({"first": first, "second": second, "failed": kind}))
        })
        .start()
        .await
        .unwrap();
    let id = courier.dispatch("parent", 5u64).await.unwrap();
    let result: Value = courier.result_when_done(id, WAIT).await.unwrap();
    assert_eq!(result, json!({"first": 11, "second": 23, "failed": "out_of_stock"}));
    assert_eq!(doubled.load(Ordering::SeqCst), 2, "each child's activity ran once");

    let children = courier
        .list_executions(&ExecutionFilter {
            function: Some("child".into()),
            limit: 10,
            ..ExecutionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 2);
    for child in &children {
        assert_eq!(child.state, ExecutionState::Completed);
        let link = child.parent.expect("a child knows its parent");
        assert_eq!((link.execution_id, link.close), (id, ParentClose::Cancel));
    }
    // The parent's history: start, wait, start, start, wait, wait.
    let steps = courier.steps(id, None, 20).await.unwrap();
    let kinds: Vec<(TaskKind, String)> = steps[1..].iter().map(|t| (t.kind, t.function.clone())).collect();
    assert_eq!(
        kinds,
        [
            (TaskKind::Effect, "courier.child:child".to_string()),
            (TaskKind::SignalWait, "courier.child:1".to_string()),
            (TaskKind::Effect, "courier.child:child".to_string()),
            (TaskKind::Effect, "courier.child:failing_child".to_string()),
            (TaskKind::SignalWait, "courier.child:4".to_string()),
            (TaskKind::SignalWait, "courier.child:3".to_string()),
        ]
    );
    // Nobody outside can forge a child's end.
    let forged = courier.send_signal(id, "courier.child:1", json!({})).await;
    assert!(forged.is_err(), "{forged:?}");
    courier.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_parent_awaits_its_children_on_sqlite() {
    a_parent_awaits_its_children(sqlite().await).await;
}

#[actix_rt::test]
async fn a_parent_awaits_its_children_on_postgres() {
    a_parent_awaits_its_children(postgres().await).await;
}

/// Cancelling a parent cancels the children started with the default policy
/// (and their children), while an abandoned child runs on to its end.
async fn cancellation_flows_down(store: Arc<dyn Store>) {
    let courier = builder(store)
        .orchestrator("waits", |ctx: OrchestratorContext, depth: u32| async move {
            if depth > 0 {
                ctx.start_child("waits", depth - 1).await?;
            }
            let go: Value = ctx.wait_signal("go").await?;
            Ok::<_, TaskError>(go)
        })
        .orchestrator("top", |ctx: OrchestratorContext, _: ()| async move {
            let kept = ctx.start_child("waits", 1u32).await?;
            let loose = ctx
                .start_child_with("waits", 0u32, ChildOptions::default().close(ParentClose::Abandon))
                .await?;
            let _: Value = ctx.wait_signal("never").await?;
            Ok::<_, TaskError>(json!([kept.id(), loose.id()]))
        })
        .start()
        .await
        .unwrap();
    let top = courier.dispatch("top", ()).await.unwrap();
    let all_waits = || async {
        courier
            .list_executions(&ExecutionFilter {
                function: Some("waits".into()),
                limit: 10,
                ..ExecutionFilter::default()
            })
            .await
            .unwrap()
    };
    eventually(Duration::from_secs(15), "three children started", || async {
        all_waits().await.len() == 3
    })
    .await;
    courier.cancel(top, "the order was withdrawn").await.unwrap();
    let waits = all_waits().await;
    let by_parent = |parent| {
        waits
            .iter()
            .filter(|e| e.parent.map(|l| l.execution_id) == Some(parent))
            .collect::<Vec<_>>()
    };
    let top_children = by_parent(top);
    assert_eq!(top_children.len(), 2);
    let kept = top_children
        .iter()
        .find(|e| e.parent.unwrap().close == ParentClose::Cancel)
        .unwrap();
    let loose = top_children
        .iter()
        .find(|e| e.parent.unwrap().close == ParentClose::Abandon)
        .unwrap();
    let grandchild = by_parent(kept.id)[0];
    for id in [top, kept.id, grandchild.id] {
        let record = courier.wait_for(id, WAIT).await.unwrap();
        assert_eq!(record.state, ExecutionState::Cancelled, "{id}");
    }
    assert!(
        !courier
            .wait_for(loose.id, Some(Duration::from_millis(300)))
            .await
            .is_ok_and(|r| r.state.is_terminal())
    );
    courier.send_signal(loose.id, "go", json!("on my own")).await.unwrap();
    let alone: Value = courier.result_when_done(loose.id, WAIT).await.unwrap();
    assert_eq!(alone, json!("on my own"));
    courier.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn cancellation_flows_down_on_sqlite() {
    cancellation_flows_down(sqlite().await).await;
}

#[actix_rt::test]
async fn cancellation_flows_down_on_postgres() {
    cancellation_flows_down(postgres().await).await;
}

/// `select` takes the first branch to settle, and every replay (the
/// orchestrator suspends after each wait) takes the same branch again.
async fn select_is_first_to_settle_and_replays_the_same(store: Arc<dyn Store>) {
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    #[derive(Debug)]
    enum Got {
        Signal(Value),
        Timer,
    }
    let courier = builder(store)
        .orchestrator("approval", move |ctx: OrchestratorContext, _: ()| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                // Nobody approves in time: the timer wins.
                let first = ctx
                    .select(vec![
                        ctx.wait_signal::<Value>("approve")
                            .map(|r| r.map(Got::Signal))
                            .boxed_local(),
                        ctx.sleep(Duration::from_millis(400))
                            .map(|r| r.map(|()| Got::Timer))
                            .boxed_local(),
                    ])
                    .await?;
                // Now a signal comes long before the hour is up.
                let second = ctx
                    .select(vec![
                        ctx.sleep(Duration::from_secs(3600))
                            .map(|r| r.map(|()| Got::Timer))
                            .boxed_local(),
                        ctx.wait_signal::<Value>("escalate")
                            .map(|r| r.map(Got::Signal))
                            .boxed_local(),
                    ])
                    .await?;
                let describe = |g: Got| match g {
                    Got::Signal(v) => json!({"signal": v}),
                    Got::Timer => json!("timer"),
                };
                Ok::<_, TaskError>(json!([
                    [first.index, describe(first.outcome?)],
                    [second.index, describe(second.outcome?)]
                ]))
            }
        })
        .start()
        .await
        .unwrap();
    let id = courier.dispatch("approval", ()).await.unwrap();
    eventually(Duration::from_secs(15), "the first choice is recorded", || async {
        let steps = courier.steps(id, None, 20).await.unwrap();
        steps.iter().any(|t| t.function == "courier.record:select")
    })
    .await;
    // A late approval does not change a choice already made.
    courier.send_signal(id, "approve", json!("too late")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    courier.send_signal(id, "escalate", json!("boss")).await.unwrap();
    let result: Value = courier.result_when_done(id, WAIT).await.unwrap();
    assert_eq!(result, json!([[1, "timer"], [1, {"signal": "boss"}]]));
    assert!(runs.load(Ordering::SeqCst) >= 2, "the orchestrator was replayed");
    let choices: Vec<Value> = courier
        .steps(id, None, 20)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.function == "courier.record:select")
        .map(|t| t.result.unwrap())
        .collect();
    assert_eq!(choices, [json!(1), json!(1)]);
    courier.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn select_is_first_to_settle_and_replays_the_same_on_sqlite() {
    select_is_first_to_settle_and_replays_the_same(sqlite().await).await;
}

#[actix_rt::test]
async fn select_is_first_to_settle_and_replays_the_same_on_postgres() {
    select_is_first_to_settle_and_replays_the_same(postgres().await).await;
}

/// A loop that continues as new runs each round as a fresh execution with a
/// short history, and a parent awaiting the first round gets the last one's
/// result.
async fn continue_as_new_keeps_history_bounded(store: Arc<dyn Store>) {
    let courier = builder(store)
        .activity("tick", |_ctx, n: u32| async move { Ok::<_, TaskError>(n) })
        .orchestrator("rounds", |ctx: OrchestratorContext, round: u32| async move {
            for _ in 0..3 {
                ctx.call::<_, u32>("tick", round).await?;
            }
            if round < 4 {
                return ctx.continue_as_new(round + 1).await;
            }
            Ok::<_, TaskError>(round)
        })
        .orchestrator("owner", |ctx: OrchestratorContext, _: ()| async move {
            let last: u32 = ctx.call_orchestrator("rounds", 0u32).await?;
            Ok::<_, TaskError>(last)
        })
        .start()
        .await
        .unwrap();
    let owner = courier.dispatch("owner", ()).await.unwrap();
    let last: u32 = courier.result_when_done(owner, WAIT).await.unwrap();
    assert_eq!(last, 4);

    let rounds = courier
        .list_executions(&ExecutionFilter {
            function: Some("rounds".into()),
            limit: 10,
            ..ExecutionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(rounds.len(), 5, "one execution per round");
    for round in &rounds {
        assert_eq!(round.state, ExecutionState::Completed);
        let steps = courier.steps(round.id, None, 50).await.unwrap();
        assert!(steps.len() <= 5, "a round's history stays short: {}", steps.len());
    }
    let continued = rounds
        .iter()
        .filter(|r| r.result.as_ref().is_some_and(|v| v.get("continued_as_new").is_some()));
    assert_eq!(continued.count(), 4);
    // Only the last round still carries the link to the owner's wait.
    let linked: Vec<ParentLink> = rounds.iter().filter_map(|r| r.parent).collect();
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].execution_id, owner);
    courier.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn continue_as_new_keeps_history_bounded_on_sqlite() {
    continue_as_new_keeps_history_bounded(sqlite().await).await;
}

#[actix_rt::test]
async fn continue_as_new_keeps_history_bounded_on_postgres() {
    continue_as_new_keeps_history_bounded(postgres().await).await;
}

/// A parent gives up on a slow child: the timer wins the `select`, the parent
/// cancels the child (once, though it is replayed), and ends.
async fn a_parent_cancels_a_slow_child(store: Arc<dyn Store>) {
    let courier = builder(store)
        .orchestrator("slow_quote", |ctx: OrchestratorContext, _: ()| async move {
            let quote: f64 = ctx.wait_signal("quote").await?;
            Ok::<_, TaskError>(quote)
        })
        .orchestrator("buyer", |ctx: OrchestratorContext, _: ()| async move {
            let quote = ctx.start_child("slow_quote", ()).await?;
            let first = ctx
                .select(vec![
                    quote.result::<f64>().map(|r| r.map(Some)).boxed_local(),
                    ctx.sleep(Duration::from_millis(300))
                        .map(|r| r.map(|()| None))
                        .boxed_local(),
                ])
                .await?;
            if first.index == 1 {
                quote.cancel("no quote in time").await?;
            }
            Ok::<_, TaskError>(json!({"child": quote.id(), "winner": first.index}))
        })
        .start()
        .await
        .unwrap();
    let buyer = courier.dispatch("buyer", ()).await.unwrap();
    let result: Value = courier.result_when_done(buyer, WAIT).await.unwrap();
    assert_eq!(result["winner"], 1, "{result}");
    let child: courier::core::ExecutionId = serde_json::from_value(result["child"].clone()).unwrap();
    let record = courier.wait_for(child, WAIT).await.unwrap();
    assert_eq!(record.state, ExecutionState::Cancelled);
    assert_eq!(record.error.unwrap().message, "no quote in time");
    let cancels = courier
        .steps(buyer, None, 20)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.function == "courier.cancel_child")
        .count();
    assert_eq!(cancels, 1);
    courier.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_parent_cancels_a_slow_child_on_sqlite() {
    a_parent_cancels_a_slow_child(sqlite().await).await;
}

#[actix_rt::test]
async fn a_parent_cancels_a_slow_child_on_postgres() {
    a_parent_cancels_a_slow_child(postgres().await).await;
}
