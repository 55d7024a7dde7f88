//! The seed engine's own behaviours: routing by queue and tags, heartbeats that
//! keep a long activity alive across workers, cleanup that keeps unfinished work.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use courier::core::{ExecutionState, TaskError};
use courier::{Courier, DispatchOptions, WorkerOptions};
use tokio::sync::Notify;

async fn job_node(
    store: Arc<dyn courier::core::Store>,
    counters: &Counters,
    name: &'static str,
    worker: WorkerOptions,
) -> Courier {
    let c = counters.clone();
    Courier::builder()
        .store(store)
        .node_id(name)
        .activity("job", move |_ctx, _: ()| {
            let c = c.clone();
            async move {
                c.bump(name);
                Ok::<_, TaskError>(name)
            }
        })
        .worker(worker)
        .start()
        .await
        .unwrap()
}

#[actix_rt::test]
async fn work_is_routed_by_queue_and_tags() {
    let store = sqlite().await;
    let counters = Counters::default();
    let gpu = job_node(
        store.clone(),
        &counters,
        "gpu",
        fast_worker().queues(["q1"]).tags(["gpu"]),
    )
    .await;
    let on_q1_gpu = gpu
        .dispatch_with("job", (), DispatchOptions::default().queue("q1").tags(["gpu"]))
        .await
        .unwrap()
        .id();
    let on_q1_untagged = gpu
        .dispatch_with("job", (), DispatchOptions::default().queue("q1"))
        .await
        .unwrap()
        .id();
    let on_q1_tpu = gpu
        .dispatch_with("job", (), DispatchOptions::default().queue("q1").tags(["tpu"]))
        .await
        .unwrap()
        .id();
    let on_q2 = gpu
        .dispatch_with("job", (), DispatchOptions::default().queue("q2"))
        .await
        .unwrap()
        .id();
    for id in [on_q1_gpu, on_q1_untagged] {
        assert_eq!(gpu.result_when_done::<String>(id, WAIT).await.unwrap(), "gpu");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in [on_q1_tpu, on_q2] {
        assert_eq!(
            gpu.state_of(id).await.unwrap().execution.state,
            ExecutionState::Pending,
            "not routed here"
        );
    }
    let other = job_node(
        store,
        &counters,
        "other",
        fast_worker().queues(["q1", "q2"]).tags(["tpu"]),
    )
    .await;
    for id in [on_q1_tpu, on_q2] {
        assert_eq!(other.result_when_done::<String>(id, WAIT).await.unwrap(), "other");
    }
}

#[actix_rt::test]
async fn heartbeats_keep_a_long_activity_alive_across_two_workers_exactly_once() {
    let store = sqlite().await;
    let counters = Counters::default();
    let short_lease = || {
        fast_worker()
            .lease(Duration::from_millis(300))
            .heartbeat(Duration::from_millis(80))
    };
    let node = |name: &'static str| {
        let c = counters.clone();
        Courier::builder()
            .store(store.clone())
            .node_id(name)
            .activity("long", move |_ctx, _: ()| {
                let c = c.clone();
                async move {
                    c.bump("long");
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    Ok::<_, TaskError>(())
                }
            })
            .worker(short_lease())
            .start()
    };
    let a = node("a").await.unwrap();
    let _b = node("b").await.unwrap();
    let id = a.dispatch("long", ()).await.unwrap();
    a.wait_for(id, WAIT).await.unwrap();
    assert_eq!(counters.get("long"), 1, "five lease lengths long, run once");
    let task = a.task(courier::core::TaskId::root_of(id)).await.unwrap().unwrap();
    assert_eq!(task.attempt, 1);
}

#[actix_rt::test]
async fn cleanup_keeps_unfinished_executions() {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let courier = Courier::builder()
        .store(sqlite().await)
        .activity("quick", |_ctx, _: ()| async move { Ok::<_, TaskError>(()) })
        .activity("blocked", move |_ctx, _: ()| {
            let g = g.clone();
            async move {
                g.notified().await;
                Ok::<_, TaskError>(())
            }
        })
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let done = courier.dispatch("quick", ()).await.unwrap();
    courier.wait_for(done, WAIT).await.unwrap();
    let running = courier.dispatch("blocked", ()).await.unwrap();
    let pending = courier
        .dispatch_with("quick", (), DispatchOptions::default().delay(Duration::from_secs(3600)))
        .await
        .unwrap()
        .id();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let report = courier.cleanup(Duration::ZERO).await.unwrap();
    assert_eq!(report.executions, 1);
    assert!(courier.state_of(done).await.is_err(), "the finished one is gone");
    assert_eq!(
        courier.state_of(running).await.unwrap().execution.state,
        ExecutionState::Running
    );
    assert_eq!(
        courier.state_of(pending).await.unwrap().execution.state,
        ExecutionState::Pending
    );
    gate.notify_one();
    courier.wait_for(running, WAIT).await.unwrap();
}
