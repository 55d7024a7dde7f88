//! The durable-function API end to end on the embedded store: dispatch,
//! activities, orchestrators with calls, fan-out, sleeps, signals, effects.

use std::time::Duration;

use crate::support::*;
use courier::core::{ExecutionState, TaskError};
use courier::{Courier, DispatchOptions, OrchestratorContext};
use serde_json::json;

async fn node(store: std::sync::Arc<dyn courier::core::Store>) -> Courier {
    Courier::builder()
        .store(store)
        .activity("double", |_ctx, n: i64| async move { Ok::<_, TaskError>(n * 2) })
        .activity("fail", |_ctx, _: ()| async move {
            Err::<(), _>(TaskError::non_retryable("bad", "always fails"))
        })
        .orchestrator("pipeline", pipeline)
        .orchestrator("fan_out", |ctx: OrchestratorContext, n: i64| async move {
            let doubled: Vec<i64> = ctx.map("double", 0..n).await?;
            Ok::<_, TaskError>(doubled.iter().sum::<i64>())
        })
        .worker(fast_worker())
        .start()
        .await
        .unwrap()
}

async fn pipeline(ctx: OrchestratorContext, n: i64) -> Result<serde_json::Value, TaskError> {
    let a: i64 = ctx.call("double", n).await?;
    ctx.sleep(Duration::from_millis(50)).await?;
    let b: i64 = ctx.call("double", a).await?;
    let approved: String = ctx.wait_signal("approve").await?;
    let count = ctx.increment("steps", 3.0).await?;
    ctx.set_state("phase", "done").await?;
    Ok(json!({"b": b, "approved": approved, "count": count}))
}

#[actix_rt::test]
async fn an_activity_dispatched_alone_returns_its_result() {
    let courier = node(sqlite().await).await;
    let id = courier.dispatch("double", 21).await.unwrap();
    assert_eq!(courier.result_when_done::<i64>(id, WAIT).await.unwrap(), 42);
    let execution = courier.wait_for(id, WAIT).await.unwrap();
    assert_eq!(execution.state, ExecutionState::Completed);
}

#[actix_rt::test]
async fn an_orchestrator_calls_sleeps_waits_for_a_signal_and_records_effects() {
    let courier = node(sqlite().await).await;
    let id = courier.dispatch("pipeline", 5).await.unwrap();
    courier.send_signal(id, "approve", "yes").await.unwrap();
    let out: serde_json::Value = courier.result_when_done(id, WAIT).await.unwrap();
    assert_eq!(out, json!({"b": 20, "approved": "yes", "count": 3.0}));
    let view = courier.state_of(id).await.unwrap();
    assert_eq!(view.counters.get("steps"), Some(&3.0));
    assert_eq!(view.state.get("phase"), Some(&json!("done")));
}

#[actix_rt::test]
async fn fan_out_gathers_results_in_order() {
    let courier = node(sqlite().await).await;
    let id = courier.dispatch("fan_out", 500).await.unwrap();
    let sum: i64 = courier.result_when_done(id, WAIT).await.unwrap();
    assert_eq!(sum, (0..500).map(|i| i * 2).sum::<i64>());
}

#[actix_rt::test]
async fn a_failing_activity_fails_its_execution_with_the_error() {
    let courier = node(sqlite().await).await;
    let id = courier.dispatch("fail", ()).await.unwrap();
    let execution = courier.wait_for(id, WAIT).await.unwrap();
    assert_eq!(execution.state, ExecutionState::Failed);
    assert_eq!(execution.error.unwrap().kind, "bad");
    assert!(
        courier
            .dead_letter(courier::core::TaskId::root_of(id))
            .await
            .unwrap()
            .is_some()
    );
}

#[actix_rt::test]
async fn an_idempotency_key_returns_the_same_execution() {
    let courier = node(sqlite().await).await;
    let opts = DispatchOptions::default().idempotency_key("k1");
    let first = courier.dispatch_with("double", 1, opts.clone()).await.unwrap();
    let second = courier.dispatch_with("double", 1, opts).await.unwrap();
    assert_eq!(first.id(), second.id());
    assert!(matches!(second, courier::core::Dispatched::Existing(_)));
}
