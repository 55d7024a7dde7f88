//! Deterministic helpers: `ctx.now()`, `ctx.random()`, `ctx.uuid()` and
//! `ctx.record()` give an orchestrator the same values on every replay (after
//! it was suspended and woken), each made once and recorded as a step. On
//! SQLite and Postgres.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier::core::{Store, TaskError, TaskKind};
use courier::{Courier, OrchestratorContext};
use serde_json::{Value, json};

use crate::support::*;

async fn values_are_the_same_on_every_replay(store: Arc<dyn Store>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let made = Arc::new(AtomicU32::new(0));
    let (runs, calls) = (seen.clone(), made.clone());
    let courier = Courier::builder()
        .store(store)
        .orchestrator("stamped", move |ctx: OrchestratorContext, _: ()| {
            let (runs, calls) = (runs.clone(), calls.clone());
            async move {
                let at = ctx.now().await?;
                let random = ctx.random().await?;
                let id = ctx.uuid().await?;
                let made: u32 = ctx.record("made", || calls.fetch_add(1, Ordering::SeqCst) + 1).await?;
                let values = json!([at, random, id, made]);
                runs.lock().unwrap().push(values.clone());
                // Parked here (suspend_after), the signal wakes it into a replay.
                let _: Value = ctx.wait_signal("go").await?;
                Ok::<_, TaskError>(values)
            }
        })
        .worker(fast_worker().suspend_after(Duration::from_millis(200)))
        .start()
        .await
        .unwrap();
    let id = courier.dispatch("stamped", ()).await.unwrap();
    eventually(Duration::from_secs(10), "the orchestrator is suspended", || async {
        !seen.lock().unwrap().is_empty() && courier.live_executions().await.unwrap() == 0
    })
    .await;
    courier.send_signal(id, "go", json!(true)).await.unwrap();
    let result: Value = courier.result_when_done(id, WAIT).await.unwrap();

    let runs = seen.lock().unwrap().clone();
    assert!(runs.len() >= 2, "the orchestrator was not replayed: {runs:?}");
    assert!(
        runs.iter().all(|r| *r == result),
        "a replay saw other values: {runs:?} vs {result}"
    );
    assert_eq!(made.load(Ordering::SeqCst), 1, "record's closure ran on a replay");
    assert_eq!(result[3], 1);
    let random = result[1].as_f64().unwrap();
    assert!((0.0..1.0).contains(&random), "{result}");
    assert!(result[2].as_str().unwrap().parse::<uuid::Uuid>().is_ok(), "{result}");
    let at: chrono::DateTime<chrono::Utc> = serde_json::from_value(result[0].clone()).unwrap();
    assert!((chrono::Utc::now() - at).num_seconds().abs() < 60, "{at}");

    // Each value is one recorded step, in order.
    let steps = courier.steps(id, None, 10).await.unwrap();
    let recorded: Vec<(TaskKind, &str)> = steps[1..5].iter().map(|t| (t.kind, t.function.as_str())).collect();
    assert_eq!(
        recorded,
        [
            (TaskKind::Effect, "courier.record:now"),
            (TaskKind::Effect, "courier.record:random"),
            (TaskKind::Effect, "courier.record:uuid"),
            (TaskKind::Effect, "courier.record:made"),
        ]
    );
    courier.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn recorded_values_are_the_same_on_every_replay_on_sqlite() {
    values_are_the_same_on_every_replay(sqlite().await).await;
}

#[actix_rt::test]
async fn recorded_values_are_the_same_on_every_replay_on_postgres() {
    values_are_the_same_on_every_replay(postgres().await).await;
}
