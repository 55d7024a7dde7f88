//! Deterministic replay: after a lost lease another node replays the
//! orchestrator from history, never re-running a completed step; a replay that
//! diverges from history fails loudly; a stale worker cannot overwrite the new
//! owner's result.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use courier::core::{ExecutionState, Store, TaskError, TaskId};
use courier::{Courier, OrchestratorContext, WorkerOptions};
use serde_json::{Value, json};

/// Node A's leases run out after 600 ms and are never renewed, and it has no
/// slot free to claim anything else: it stalls as a frozen node would, while its
/// code keeps running.
fn stalling_worker() -> WorkerOptions {
    let mut options = fast_worker()
        .lease(Duration::from_millis(600))
        .heartbeat(Duration::from_secs(3600))
        .max_concurrency(1);
    options.max_executions = 1;
    options
}

async fn flow(ctx: OrchestratorContext, _: ()) -> Result<Vec<Value>, TaskError> {
    let a: Value = ctx.call("step", 1).await?;
    let b: Value = ctx.call("step", 2).await?;
    let c: Value = ctx.call("slow", 3).await?;
    let d: Value = ctx.call("step", 4).await?;
    Ok(vec![a, b, c, d])
}

async fn start(
    store: Arc<dyn Store>,
    counters: &Counters,
    name: &'static str,
    worker: WorkerOptions,
    slow: Duration,
) -> Courier {
    let (c1, c2) = (counters.clone(), counters.clone());
    Courier::builder()
        .store(store)
        .node_id(name)
        .orchestrator("flow", flow)
        .activity("step", move |_ctx, n: i64| {
            let c = c1.clone();
            async move {
                c.bump("step");
                c.bump(&format!("step{n}"));
                Ok::<_, TaskError>(json!(n * 10))
            }
        })
        .activity("slow", move |_ctx, n: i64| {
            let c = c2.clone();
            async move {
                c.bump(&format!("slow_{name}"));
                tokio::time::sleep(slow).await;
                Ok::<_, TaskError>(json!(format!("{n} by {name}")))
            }
        })
        .worker(worker)
        .start()
        .await
        .unwrap()
}

async fn replay_after_a_lost_lease(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    let counters = Counters::default();
    let a = start(
        store.clone(),
        &counters,
        "a",
        stalling_worker(),
        Duration::from_millis(2500),
    )
    .await;
    let id = a.dispatch("flow", ()).await.unwrap();
    eventually(Duration::from_secs(20), "node A reaches the slow step", || async {
        counters.get("slow_a") == 1
    })
    .await;
    assert_eq!(counters.get("step"), 2);

    // A's leases (orchestrator and slow activity) lapse; B takes over.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let b = start(other, &counters, "b", fast_worker(), Duration::from_millis(10)).await;
    let done = b.wait_for(id, WAIT).await.unwrap();
    assert_eq!(done.state, ExecutionState::Completed);
    assert_eq!(
        done.result,
        Some(json!([10, 20, "3 by b", 40])),
        "B's replay used the history for steps 1 and 2 and its own slow result"
    );
    assert_eq!(counters.get("step1"), 1, "a completed step never runs again");
    assert_eq!(counters.get("step2"), 1, "a completed step never runs again");
    assert_eq!(counters.get("step4"), 1);
    assert_eq!(counters.get("slow_b"), 1);

    // A's slow attempt finishes late; its write is fenced off.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = a.wait_for(id, WAIT).await.unwrap();
    assert_eq!(
        after.result, done.result,
        "the stale worker did not overwrite the new owner's result"
    );
    let slow = store
        .get_task(TaskId::for_step(id, 3))
        .await
        .unwrap()
        .expect("slow step");
    assert_eq!(slow.result, Some(json!("3 by b")));
    assert_eq!(slow.attempt, 2);
    assert_eq!(counters.get("step4"), 1, "the stale orchestrator created nothing");
}

#[actix_rt::test]
async fn replay_after_a_lost_lease_never_reruns_completed_steps_on_sqlite() {
    let store = sqlite().await;
    replay_after_a_lost_lease(store.clone(), store).await;
}

#[actix_rt::test]
async fn replay_after_a_lost_lease_never_reruns_completed_steps_on_postgres() {
    let (a, b) = postgres_pair().await;
    replay_after_a_lost_lease(a, b).await;
}

#[actix_rt::test]
async fn a_replay_that_diverges_from_history_fails_with_non_determinism() {
    let store = sqlite().await;
    let counters = Counters::default();
    let a = start(store.clone(), &counters, "a", stalling_worker(), Duration::from_secs(3)).await;
    let id = a.dispatch("flow", ()).await.unwrap();
    eventually(Duration::from_secs(20), "node A reaches the slow step", || async {
        counters.get("slow_a") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Node B runs a changed "flow": step 3 now calls another function.
    let b = Courier::builder()
        .store(store.clone())
        .node_id("b")
        .orchestrator("flow", |ctx: OrchestratorContext, _: ()| async move {
            let _: Value = ctx.call("step", 1).await?;
            let _: Value = ctx.call("step", 2).await?;
            let _: Value = ctx.call("changed", 3).await?;
            Ok::<_, TaskError>(())
        })
        .activity("step", |_ctx, n: i64| async move { Ok::<_, TaskError>(n) })
        .activity("changed", |_ctx, n: i64| async move { Ok::<_, TaskError>(n) })
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let done = b.wait_for(id, WAIT).await.unwrap();
    assert_eq!(done.state, ExecutionState::Failed);
    let error = done.error.unwrap();
    assert_eq!(error.kind, TaskError::NON_DETERMINISM);
    assert!(error.message.contains("step 3"), "{}", error.message);
    assert!(
        b.dead_letter(courier::core::TaskId::root_of(id))
            .await
            .unwrap()
            .is_some(),
        "kept for replay once the code is fixed"
    );
}

#[actix_rt::test]
async fn an_execution_started_under_one_version_is_replayed_only_by_that_version() {
    let store = sqlite().await;
    let node = |version: &'static str| {
        let mut worker = fast_worker();
        worker.version_backoff = Duration::from_millis(200);
        Courier::builder()
            .store(store.clone())
            .node_id(version)
            .orchestrator_with(
                "versioned",
                courier::FunctionOptions::default().version(version),
                move |_ctx: OrchestratorContext, _: ()| async move { Ok::<_, TaskError>(version) },
            )
            .worker(worker)
            .start()
    };
    let v2 = node("v2").await.unwrap();
    // Dispatched as if by a v1 deployment.
    let mut new = v2.new_execution("versioned", json!(null), &courier::DispatchOptions::default());
    new.spec.version = Some("v1".into());
    let id = v2.dispatch_many(vec![new]).await.unwrap()[0].id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !v2.state_of(id).await.unwrap().execution.state.is_terminal(),
        "v2 does not run v1's history"
    );

    let v1 = node("v1").await.unwrap();
    let ran_on: String = v1.result_when_done(id, WAIT).await.unwrap();
    assert_eq!(ran_on, "v1");
}

/// A child whose creation the database acknowledged and then lost (a crash with
/// asynchronous commit, a failover to a lagging standby) is created again by a
/// replay, instead of leaving its orchestrator parked forever.
#[actix_rt::test]
async fn an_orchestrator_whose_child_the_database_lost_replays_and_creates_it_again() {
    let (store, schema) = postgres_in_schema().await;
    let flow = |ctx: OrchestratorContext, _: ()| async move {
        let made: Value = ctx.call("elsewhere", 7).await?;
        Ok::<_, TaskError>(made)
    };
    // This node runs the orchestrator; "elsewhere" runs on another node only.
    let a = Courier::builder()
        .store(store.clone())
        .node_id("a")
        .orchestrator("lossy", flow)
        .external("elsewhere", courier::FunctionOptions::default())
        // Long enough for the test to lose the child before the orchestrator parks.
        .worker(fast_worker().suspend_after(Duration::from_millis(1500)))
        .start()
        .await
        .unwrap();
    let id = a.dispatch("lossy", ()).await.unwrap();
    let child = || async {
        store
            .get_task(TaskId::for_step(id, 1))
            .await
            .unwrap()
            .map(|t| t.created_at)
    };
    eventually(Duration::from_secs(10), "the child is created", || async {
        child().await.is_some()
    })
    .await;
    let first = child().await.unwrap();

    crate::support::cluster::psql(
        &postgres_url(),
        &format!(
            "DELETE FROM {schema}.tasks WHERE execution_id = '{}' AND step = 1",
            id.0
        ),
    );
    eventually(Duration::from_secs(10), "a replay creates the child again", || async {
        child().await.is_some_and(|created| created > first)
    })
    .await;

    let b = Courier::builder()
        .store(store.clone())
        .node_id("b")
        .activity(
            "elsewhere",
            |_ctx, n: i64| async move { Ok::<_, TaskError>(json!(n * 6)) },
        )
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let done = a.wait_for(id, WAIT).await.unwrap();
    assert_eq!(done.state, ExecutionState::Completed, "{done:?}");
    assert_eq!(done.result, Some(json!(42)));
    drop(b);
}
