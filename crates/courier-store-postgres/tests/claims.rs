//! Claim routing that the shared suite does not pin down: several queues at
//! once, every queue, and reclaimed work competing with pending work.

mod common;

use std::time::Duration;

use courier_core::{ClaimRequest, ExecutionStore, NewExecution, Store, TaskKind, TaskSpec, TaskStore};
use courier_store_postgres::{PostgresOptions, PostgresStore};
use serde_json::json;

async fn dispatch(store: &impl Store, function: &str, queue: &str, priority: i32) {
    let spec = TaskSpec::new(TaskKind::Activity, function, json!(null))
        .on_queue(queue)
        .with_priority(priority);
    store.dispatch(vec![NewExecution::new(spec)]).await.unwrap();
}

fn functions(claimed: &[courier_core::Claimed]) -> Vec<&str> {
    claimed.iter().map(|c| c.task.function.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_queues_are_merged_in_priority_order() {
    let store = common::fresh("claims_queues").await;
    dispatch(&store, "a1", "a", 1).await;
    dispatch(&store, "b5", "b", 5).await;
    dispatch(&store, "a7", "a", 7).await;
    dispatch(&store, "c9", "c", 9).await;
    dispatch(&store, "b3", "b", 3).await;

    let req = ClaimRequest::new("w", 3, Duration::from_secs(30)).queues(["a", "b"]);
    let got = store.claim_tasks(&req).await.unwrap().value;
    assert_eq!(functions(&got), vec!["a7", "b5", "b3"]);
    let rest = store.claim_tasks(&req).await.unwrap().value;
    assert_eq!(functions(&rest), vec!["a1"]);

    // Without a queue filter every queue is read.
    let any = store
        .claim_tasks(&ClaimRequest::new("w", 10, Duration::from_secs(30)))
        .await
        .unwrap()
        .value;
    assert_eq!(functions(&any), vec!["c9"]);
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queue_is_found_without_a_queue_filter() {
    let store = common::fresh("claims_all_queues").await;
    for (i, queue) in ["q1", "q2", "q3", "q4", "q5"].iter().enumerate() {
        dispatch(&store, &format!("f{i}"), queue, i as i32).await;
    }
    let got = store
        .claim_tasks(&ClaimRequest::new("w", 10, Duration::from_secs(30)))
        .await
        .unwrap()
        .value;
    assert_eq!(functions(&got), vec!["f4", "f3", "f2", "f1", "f0"]);
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_competes_by_priority_with_pending_work() {
    let store = common::fresh("claims_expired").await;
    dispatch(&store, "urgent", "default", 9).await;
    let first = store
        .claim_tasks(&ClaimRequest::new("w", 1, Duration::from_millis(150)))
        .await
        .unwrap()
        .value;
    assert_eq!(functions(&first), vec!["urgent"]);
    dispatch(&store, "routine", "default", 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = store
        .claim_tasks(&ClaimRequest::new("w", 1, Duration::from_secs(30)))
        .await
        .unwrap()
        .value;
    assert_eq!(functions(&got), vec!["urgent"], "the expired, more urgent task first");
    assert_eq!(got[0].task.attempt, 2);
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_is_idempotent_and_safe_when_nodes_race() {
    let store = common::fresh("claims_init").await;
    let schema = store.schema().unwrap().to_string();
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let schema = schema.clone();
            tokio::spawn(async move { common::open(&schema, 1).await })
        })
        .collect();
    for r in racers {
        r.await.unwrap();
    }
    store.init().await.unwrap();
    dispatch(&store, "after", "default", 0).await;
    assert_eq!(store.count_executions(None).await.unwrap(), 1);
    store.drop_schema().await.unwrap();
}

/// The store's priority ageing is applied at `init`: reopening with another
/// rebuilds the claim order of the tasks already written, and of new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_with_another_priority_ageing_rebuilds_the_claim_order() {
    let store = common::fresh("claims_ageing").await;
    let schema = store.schema().unwrap().to_string();
    // A priority-0 task, then 200 ms later a priority-1 one: with the default
    // (a level is worth 60 s) the later, higher one goes first.
    dispatch(&store, "low", "default", 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    dispatch(&store, "high", "default", 1).await;
    let reopen = |ageing_ms: u64| {
        let schema = schema.clone();
        async move {
            let ageing = courier_core::PriorityAgeing::new(Duration::from_millis(ageing_ms)).unwrap();
            let options = PostgresOptions::new(common::url())
                .schema(schema)
                .priority_ageing(ageing);
            let store = PostgresStore::connect(options).await.unwrap();
            store.init().await.unwrap();
            store
        }
    };
    // With 10 ms a level, 200 ms of waiting outweighs one level.
    let aged = reopen(10).await;
    let claim_all = |store: PostgresStore| async move {
        let got = store
            .claim_tasks(&ClaimRequest::new("w", 1, Duration::from_secs(30)))
            .await
            .unwrap()
            .value;
        got.into_iter().map(|c| c.task.function).collect::<Vec<_>>()
    };
    assert_eq!(claim_all(aged.clone()).await, vec!["low"]);
    assert_eq!(claim_all(aged.clone()).await, vec!["high"]);
    // Back to the default: priority wins again within the minute.
    let default = reopen(60_000).await;
    dispatch(&default, "low", "default", 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    dispatch(&default, "high", "default", 1).await;
    assert_eq!(claim_all(default.clone()).await, vec!["high"]);
    assert_eq!(claim_all(default.clone()).await, vec!["low"]);
    default.drop_schema().await.unwrap();
}
