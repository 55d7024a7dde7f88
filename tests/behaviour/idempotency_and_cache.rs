//! Idempotent and cached calls run once, also when their result is falsy, and
//! also when two calls with one key race.

use std::time::Duration;

use crate::support::*;
use courier::core::TaskError;
use courier::{Courier, FunctionOptions, OrchestratorContext};
use serde_json::{Value, json};

async fn node(counters: &Counters) -> Courier {
    let (c1, c2) = (counters.clone(), counters.clone());
    Courier::builder()
        .store(sqlite().await)
        .activity_with(
            "charge",
            FunctionOptions::default().idempotent(|args| args["order"].to_string()),
            move |_ctx, _args: Value| {
                let c = c1.clone();
                async move {
                    c.bump("charge");
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    Ok::<_, TaskError>(Value::Null)
                }
            },
        )
        .activity_with(
            "lookup",
            FunctionOptions::default().cached(None),
            move |_ctx, _key: String| {
                let c = c2.clone();
                async move {
                    c.bump("lookup");
                    Ok::<_, TaskError>(false)
                }
            },
        )
        .orchestrator("twice", |ctx: OrchestratorContext, order: u32| async move {
            let a: Value = ctx.call("charge", json!({"order": order})).await?;
            let b: Value = ctx.call("charge", json!({"order": order})).await?;
            Ok::<_, TaskError>(vec![a, b])
        })
        .worker(fast_worker())
        .start()
        .await
        .unwrap()
}

#[actix_rt::test]
async fn an_idempotent_call_with_a_null_result_runs_once() {
    let counters = Counters::default();
    let courier = node(&counters).await;
    let id = courier.dispatch("twice", 1).await.unwrap();
    let results: Vec<Value> = courier.result_when_done(id, WAIT).await.unwrap();
    assert_eq!(results, vec![Value::Null, Value::Null]);
    let again = courier.dispatch("charge", json!({"order": 1})).await.unwrap();
    assert_eq!(
        courier.result_when_done::<Value>(again, WAIT).await.unwrap(),
        Value::Null
    );
    assert_eq!(counters.get("charge"), 1);
}

/// The idempotency table was never trimmed: `trim_idempotency_keys` existed
/// in both stores but nothing called it. A cleanup now trims finished keys past
/// their age (the maintenance loop by `maintenance.idempotency_retention`), and
/// a call repeated after that runs again.
#[actix_rt::test]
async fn cleanup_trims_finished_idempotency_keys() {
    let counters = Counters::default();
    let courier = node(&counters).await;
    let first = courier.dispatch("charge", json!({"order": 9})).await.unwrap();
    courier.result_when_done::<Value>(first, WAIT).await.unwrap();
    let report = courier.cleanup(Duration::ZERO).await.unwrap();
    assert_eq!(report.idempotency_keys, 1, "{report:?}");
    let again = courier.dispatch("charge", json!({"order": 9})).await.unwrap();
    courier.result_when_done::<Value>(again, WAIT).await.unwrap();
    assert_eq!(
        counters.get("charge"),
        2,
        "the key was forgotten, so the call ran again"
    );
}

#[actix_rt::test]
async fn two_concurrent_calls_with_one_key_run_once() {
    let counters = Counters::default();
    let courier = node(&counters).await;
    let a = courier.dispatch("charge", json!({"order": 7})).await.unwrap();
    let b = courier.dispatch("charge", json!({"order": 7})).await.unwrap();
    let (ra, rb) = futures::join!(
        courier.result_when_done::<Value>(a, WAIT),
        courier.result_when_done::<Value>(b, WAIT)
    );
    assert_eq!((ra.unwrap(), rb.unwrap()), (Value::Null, Value::Null));
    assert_eq!(counters.get("charge"), 1);
}

#[actix_rt::test]
async fn a_cached_false_is_a_cache_hit() {
    let counters = Counters::default();
    let courier = node(&counters).await;
    for _ in 0..3 {
        let id = courier.dispatch("lookup", "k").await.unwrap();
        assert!(!courier.result_when_done::<bool>(id, WAIT).await.unwrap());
    }
    assert_eq!(counters.get("lookup"), 1);
    let other = courier.dispatch("lookup", "other").await.unwrap();
    courier.result_when_done::<bool>(other, WAIT).await.unwrap();
    assert_eq!(counters.get("lookup"), 2, "other arguments are another entry");
}
