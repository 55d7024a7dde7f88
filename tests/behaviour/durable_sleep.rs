//! Durable sleep and delayed dispatch survive a restart; a sleeping execution
//! holds no worker slot, and an idle one gives its memory back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use courier::core::{ExecutionState, Store, TaskError, TaskId};
use courier::{Courier, DispatchOptions, OrchestratorContext, WorkerOptions};

async fn node(store: Arc<dyn Store>, counters: &Counters, worker: Option<WorkerOptions>) -> Courier {
    let c = counters.clone();
    let mut builder = Courier::builder()
        .store(store)
        .orchestrator("nap", |ctx: OrchestratorContext, ms: u64| async move {
            ctx.sleep(Duration::from_millis(ms)).await?;
            let n: u32 = ctx.call("after", ()).await?;
            Ok::<_, TaskError>(n)
        })
        .activity("after", move |_ctx, _: ()| {
            let c = c.clone();
            async move { Ok::<_, TaskError>(c.bump("after") as u32) }
        })
        .activity("quick", |_ctx, _: ()| async move { Ok::<_, TaskError>("quick") });
    if let Some(worker) = worker {
        builder = builder.worker(worker);
    }
    builder.start().await.unwrap()
}

#[actix_rt::test]
async fn a_durable_sleep_survives_a_restart() {
    let store = sqlite().await;
    let counters = Counters::default();
    let a = node(store.clone(), &counters, Some(fast_worker())).await;
    let started = Instant::now();
    let id = a.dispatch("nap", 1200u64).await.unwrap();
    eventually(Duration::from_secs(10), "the sleep is recorded", || async {
        store.get_task(TaskId::for_step(id, 1)).await.unwrap().is_some()
    })
    .await;
    a.shutdown().await.unwrap();
    assert_eq!(a.live_executions().await.unwrap(), 0);

    let b = node(store.clone(), &counters, Some(fast_worker())).await;
    let n: u32 = b.result_when_done(id, WAIT).await.unwrap();
    assert_eq!(n, 1);
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "woke early: {:?}",
        started.elapsed()
    );
}

#[actix_rt::test]
async fn a_delayed_dispatch_survives_a_restart() {
    let store = sqlite().await;
    let counters = Counters::default();
    let client = node(store.clone(), &counters, None).await;
    let started = Instant::now();
    let id = client
        .dispatch_with(
            "after",
            (),
            DispatchOptions::default().delay(Duration::from_millis(800)),
        )
        .await
        .unwrap()
        .id();
    client.shutdown().await.unwrap();
    let worker = node(store, &counters, Some(fast_worker())).await;
    worker.wait_for(id, WAIT).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert_eq!(counters.get("after"), 1);
}

#[actix_rt::test]
async fn a_sleeping_execution_holds_no_worker_slot_and_is_suspended_when_idle() {
    let counters = Counters::default();
    let worker = fast_worker()
        .max_concurrency(1)
        .suspend_after(Duration::from_millis(300));
    let courier = node(sqlite().await, &counters, Some(worker)).await;
    let nap = courier.dispatch("nap", 2500u64).await.unwrap();
    eventually(Duration::from_secs(5), "the orchestrator starts sleeping", || async {
        courier.steps(nap, None, 10).await.unwrap().len() == 2
    })
    .await;
    eventually(
        Duration::from_secs(5),
        "the orchestrator is suspended while it sleeps",
        || async { courier.live_executions().await.unwrap() == 0 },
    )
    .await;
    let sleeping = courier.state_of(nap).await.unwrap().execution;
    assert_eq!(sleeping.state, ExecutionState::Running);
    let orchestrator = courier.task(sleeping.root_task_id()).await.unwrap().unwrap();
    assert_eq!(
        orchestrator.state,
        courier::core::TaskState::Waiting,
        "parked, holding no lease"
    );

    // The one activity slot is free for other work during the sleep.
    let quick = courier.dispatch("quick", ()).await.unwrap();
    courier.wait_for(quick, Some(Duration::from_secs(2))).await.unwrap();
    assert_eq!(
        courier.state_of(nap).await.unwrap().execution.state,
        ExecutionState::Running
    );

    // The sleep's end wakes the suspended orchestrator, which replays and finishes.
    let n: u32 = courier.result_when_done(nap, WAIT).await.unwrap();
    assert_eq!(n, 1);
}
