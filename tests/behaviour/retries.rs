//! Retries follow the policy persisted with the task, across restarts;
//! exhausted or non-retryable failures become dead letters; replaying one
//! resumes the execution.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::*;
use courier::core::{ExecutionState, RetryPolicy, TaskError, TaskId};
use courier::{Courier, FunctionOptions, OrchestratorContext};

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_delay: Duration::from_millis(800),
        backoff_factor: 1.0,
        jitter: 0.0,
        retry_on: Some(vec!["io".into()]),
        ..RetryPolicy::default()
    }
}

/// Fails with kind `io` until its third attempt.
fn flaky(
    counters: &Counters,
) -> impl Fn(courier::ActivityContext, ()) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, TaskError>>>>
+ Send
+ Sync
+ 'static {
    let counters = counters.clone();
    move |ctx, _| {
        let counters = counters.clone();
        Box::pin(async move {
            counters.bump("flaky");
            if ctx.attempt() < 3 {
                Err(TaskError::new("io", "connection reset"))
            } else {
                Ok(ctx.attempt())
            }
        })
    }
}

#[actix_rt::test]
async fn the_persisted_retry_policy_governs_after_a_restart() {
    let store = sqlite().await;
    let counters = Counters::default();
    let a = Courier::builder()
        .store(store.clone())
        .activity_with("flaky", FunctionOptions::default().retry(policy()), flaky(&counters))
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let id = a.dispatch("flaky", ()).await.unwrap();
    eventually(Duration::from_secs(10), "first attempt", || async {
        counters.get("flaky") == 1
    })
    .await;
    a.shutdown().await.unwrap();

    // The restarted node registers the function without retries; the task keeps its own policy.
    let b = Courier::builder()
        .store(store)
        .activity_with(
            "flaky",
            FunctionOptions::default().retry(RetryPolicy::no_retry()),
            flaky(&counters),
        )
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let attempt: u32 = b.result_when_done(id, WAIT).await.unwrap();
    assert_eq!(attempt, 3);
    assert_eq!(counters.get("flaky"), 3);
    let task = b.task(TaskId::root_of(id)).await.unwrap().unwrap();
    assert_eq!(task.retry, policy());
}

#[actix_rt::test]
async fn an_error_the_policy_does_not_retry_dead_letters_and_replay_resumes_the_execution() {
    let store = sqlite().await;
    let counters = Counters::default();
    let fixed = Arc::new(AtomicBool::new(false));
    let (c, f) = (counters.clone(), fixed.clone());
    let courier = Courier::builder()
        .store(store)
        .activity_with(
            "charge",
            FunctionOptions::default().retry(policy()),
            move |_ctx, cents: u64| {
                let (c, f) = (c.clone(), f.clone());
                async move {
                    c.bump("charge");
                    if f.load(Ordering::SeqCst) {
                        Ok(cents)
                    } else {
                        Err(TaskError::new("card_declined", "not an io error: not retried"))
                    }
                }
            },
        )
        .orchestrator("checkout", |ctx: OrchestratorContext, cents: u64| async move {
            let charged: u64 = ctx.call("charge", cents).await?;
            Ok::<_, TaskError>(charged + 1)
        })
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let id = courier.dispatch("checkout", 500u64).await.unwrap();
    let failed = courier.wait_for(id, WAIT).await.unwrap();
    assert_eq!(failed.state, ExecutionState::Failed);
    assert_eq!(counters.get("charge"), 1, "card_declined is not in retry_on");
    let charge_task = TaskId::for_step(id, 1);
    let dead = courier.dead_letter(charge_task).await.unwrap().expect("dead letter");
    assert!(dead.reason.contains("not retryable"), "{}", dead.reason);

    fixed.store(true, Ordering::SeqCst);
    let replayed = courier.replay_dead_letter(charge_task).await.unwrap();
    assert!(replayed.execution_resumed);
    let result: u64 = courier.result_when_done(id, WAIT).await.unwrap();
    assert_eq!(result, 501);
    assert_eq!(counters.get("charge"), 2);
}

#[actix_rt::test]
async fn exhausted_attempts_dead_letter_the_task() {
    let counters = Counters::default();
    let c = counters.clone();
    let courier = Courier::builder()
        .store(sqlite().await)
        .activity_with(
            "always_io",
            FunctionOptions::default().retry(RetryPolicy {
                max_attempts: 3,
                initial_delay: Duration::from_millis(10),
                jitter: 0.0,
                ..RetryPolicy::default()
            }),
            move |_ctx, _: ()| {
                let c = c.clone();
                async move {
                    c.bump("io");
                    Err::<(), _>(TaskError::new("io", "down"))
                }
            },
        )
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let id = courier.dispatch("always_io", ()).await.unwrap();
    let done = courier.wait_for(id, WAIT).await.unwrap();
    assert_eq!(done.state, ExecutionState::Failed);
    assert_eq!(counters.get("io"), 3);
    let dead = courier.dead_letter(TaskId::root_of(id)).await.unwrap().unwrap();
    assert!(dead.reason.contains("exhausted"), "{}", dead.reason);
}
