//! Cancel sticks, also while the orchestrator runs; expiry times an execution out.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use courier::core::{ExecutionState, TaskError, TaskId, TaskState};
use courier::{Courier, DispatchOptions, OrchestratorContext};
use tokio::sync::Notify;

#[actix_rt::test]
async fn cancel_sticks_while_the_orchestrator_runs() {
    let counters = Counters::default();
    let gate = Arc::new(Notify::new());
    let (c1, c2, g) = (counters.clone(), counters.clone(), gate.clone());
    let courier = Courier::builder()
        .store(sqlite().await)
        .orchestrator("two_steps", |ctx: OrchestratorContext, _: ()| async move {
            let _: () = ctx.call("blocking", ()).await?;
            let _: () = ctx.call("after", ()).await?;
            Ok::<_, TaskError>("finished")
        })
        .activity("blocking", move |_ctx, _: ()| {
            let (c, g) = (c1.clone(), g.clone());
            async move {
                c.bump("blocking");
                g.notified().await;
                Ok::<_, TaskError>(())
            }
        })
        .activity("after", move |_ctx, _: ()| {
            let c = c2.clone();
            async move {
                c.bump("after");
                Ok::<_, TaskError>(())
            }
        })
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let id = courier.dispatch("two_steps", ()).await.unwrap();
    eventually(Duration::from_secs(10), "the blocking step runs", || async {
        counters.get("blocking") == 1
    })
    .await;

    let cancelled = courier.cancel(id, "changed my mind").await.unwrap();
    assert_eq!(cancelled.previous, ExecutionState::Running);
    assert_eq!(
        courier.wait_for(id, WAIT).await.unwrap().state,
        ExecutionState::Cancelled
    );

    // The running step finishes anyway; nothing it or the orchestrator writes lands.
    gate.notify_one();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(counters.get("after"), 0, "the orchestrator did not continue");
    let execution = courier.wait_for(id, WAIT).await.unwrap();
    assert_eq!(execution.state, ExecutionState::Cancelled, "cancel sticks");
    assert_eq!(execution.result, None);
    let blocking = courier.task(TaskId::for_step(id, 1)).await.unwrap().unwrap();
    assert_eq!(blocking.state, TaskState::Cancelled);
    assert_eq!(
        courier.live_executions().await.unwrap(),
        0,
        "the orchestrator's actor stopped"
    );
}

#[actix_rt::test]
async fn an_execution_past_its_expiry_times_out() {
    let courier = Courier::builder()
        .store(sqlite().await)
        .orchestrator("napper", |ctx: OrchestratorContext, _: ()| async move {
            ctx.sleep(Duration::from_secs(30)).await?;
            Ok::<_, TaskError>(())
        })
        .worker(fast_worker())
        .maintenance(fast_maintenance())
        .start()
        .await
        .unwrap();
    let id = courier
        .dispatch_with(
            "napper",
            (),
            DispatchOptions::default().expiry(Duration::from_millis(400)),
        )
        .await
        .unwrap()
        .id();
    let execution = courier.wait_for(id, WAIT).await.unwrap();
    assert_eq!(execution.state, ExecutionState::TimedOut);
    assert_eq!(execution.error.unwrap().kind, TaskError::TIMEOUT);
    eventually(Duration::from_secs(5), "the orchestrator's actor stops", || async {
        courier.live_executions().await.unwrap() == 0
    })
    .await;
}
