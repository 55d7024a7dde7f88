//! Every write wakes whoever it concerns, whichever part of the node made it:
//! the runtime publishes each write's notices in one place (`wake.rs`), so no
//! writer can forget to. Each test here failed when a writer published its own
//! notices and some forgot.

use std::time::Duration;

use crate::support::http::*;
use crate::support::*;
use courier::core::{Notice, Progress, TaskError, TaskId, TaskState, Topic};
use courier::http::HttpOptions;
use courier::{ActivityContext, Courier, DispatchOptions, FunctionOptions};
use serde_json::json;

#[actix_rt::test]
async fn progress_reported_by_a_running_activity_reaches_a_stream_at_once() {
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let builder = Courier::builder()
        .store(sqlite().await)
        .activity("reporting", move |ctx: ActivityContext, _: ()| {
            let mut release = release_rx.clone();
            async move {
                ctx.progress(Progress::percent(50.0, "half way")).await?;
                // Still running: the progress can only reach the stream by a notice.
                let _ = release.wait_for(|go| *go).await;
                Ok::<_, TaskError>(())
            }
        })
        .worker(fast_worker());
    // The log tail would otherwise find the event by polling.
    let options = HttpOptions {
        tail_poll: Duration::from_secs(600),
        ..HttpOptions::default()
    };
    let s = Server::start(builder, options).await;
    let response = client()
        .get(s.at("/v1/events/stream?type=task.progress"))
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(response);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = s.http.courier().dispatch("reporting", ()).await.unwrap();
    let frame = reader
        .next(Duration::from_secs(10))
        .await
        .expect("the progress event arrives while the activity still runs");
    assert_eq!(frame.event.as_deref(), Some("task.progress"));
    assert_eq!(frame.data["execution_id"], json!(id));
    assert_eq!(frame.data["message"], json!("half way"));
    release_tx.send(true).unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    s.stop().await;
}

#[actix_rt::test]
async fn an_execution_timing_out_wakes_the_waiters_of_its_tasks() {
    let courier = Courier::builder()
        .store(sqlite().await)
        .external("never_served", FunctionOptions::default())
        .maintenance(fast_maintenance())
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let id = courier
        .dispatch_with(
            "never_served",
            (),
            DispatchOptions::default().expiry(Duration::from_millis(300)),
        )
        .await
        .unwrap()
        .id();
    let mut task = courier
        .notifier()
        .subscribe(vec![Topic::Task(TaskId::root_of(id))])
        .await
        .unwrap();
    let notice = task
        .next_within(Duration::from_secs(10))
        .await
        .expect("the time-out tells the task's waiters");
    assert_eq!(
        notice,
        Notice::Task {
            task_id: TaskId::root_of(id),
            state: TaskState::Cancelled
        }
    );
    courier.shutdown().await.unwrap();
}

/// A group commit that panics must not leave the node green and silent: its
/// callers are answered with an error (not left hanging), `/readyz` turns 503,
/// the store actor restarts, later writes land, and readiness comes back (after
/// a caller's commit, or the restarted actor's own probe when none comes).
/// Before, the panic unwound through the actor's task: the callers' futures were
/// dropped, the supervisor never saw a stop, `/readyz` stayed 200, and every
/// later write failed with a closed mailbox.
#[actix_rt::test]
async fn a_panicking_group_commit_fails_its_callers_turns_readyz_503_and_the_node_recovers() {
    let builder = Courier::builder()
        .store(sqlite().await)
        .activity(
            "echo",
            |_ctx: ActivityContext, n: i64| async move { Ok::<_, TaskError>(n) },
        )
        .worker(fast_worker());
    let s = Server::start(builder, HttpOptions::default()).await;
    let courier = s.http.courier().clone();
    let (status, body) = get(&s.at("/readyz")).await;
    assert_eq!(status, 200, "{body}");

    courier.panic_on_next_group_commit();
    let refused = tokio::time::timeout(Duration::from_secs(10), courier.dispatch("echo", 1))
        .await
        .expect("the callers of a panicked commit are answered, not left waiting")
        .expect_err("a panicked commit is an error to its callers");
    assert!(refused.to_string().contains("panicked"), "{refused}");
    let (status, body) = get(&s.at("/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["detail"].as_str().unwrap_or("").contains("panicked"), "{body}");

    // The restarted actor takes writes again, and its first commit makes the node ready.
    let id = courier
        .dispatch("echo", 2)
        .await
        .expect("the restarted store actor commits");
    let out: i64 = courier.result_when_done(id, WAIT).await.unwrap();
    assert_eq!(out, 2);
    let (status, body) = get(&s.at("/readyz")).await;
    assert_eq!(status, 200, "{body}");

    // An idle node recovers too: with no caller to commit, the restarted actor
    // probes the store itself.
    courier.panic_on_next_group_commit();
    courier
        .dispatch("echo", 3)
        .await
        .expect_err("the second panic fails its caller too");
    assert_eq!(get(&s.at("/readyz")).await.0, 503);
    ready_again(&s).await;
    s.stop().await;
}

/// Waits (at most 20 s) for `/readyz` to answer 200 again.
async fn ready_again(s: &Server) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(&s.at("/readyz")).await;
        if status == 200 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready again: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A panic in the store's own code, on SQLite's writer thread, is caught there
/// and answered as a panic: the node turns not ready and the store actor
/// restarts, as for a panic in the runtime's code. Before, the writer thread
/// answered it as an ordinary backend error: the caller got a 500-style error,
/// and `/readyz` stayed 200 however often the store panicked.
#[actix_rt::test]
async fn a_panic_on_the_sqlite_writer_thread_turns_readyz_503_until_a_commit_lands() {
    let dir = crate::support::leftovers::scratch_dir();
    let store = std::sync::Arc::new(
        courier::store::SqliteStore::open(courier::store::SqliteOptions::file(dir.join("courier.db")))
            .await
            .unwrap(),
    );
    courier::core::Store::init(&*store).await.unwrap();
    let builder = Courier::builder()
        .store(store.clone())
        .activity(
            "echo",
            |_ctx: ActivityContext, n: i64| async move { Ok::<_, TaskError>(n) },
        )
        .worker(fast_worker());
    let s = Server::start(builder, HttpOptions::default()).await;
    let courier = s.http.courier().clone();
    assert_eq!(get(&s.at("/readyz")).await.0, 200);

    store.panic_on_next_commit();
    let (status, body) = post(&s.at("/v1/executions"), &json!({"function": "echo", "args": 1})).await;
    assert_eq!(
        status, 503,
        "a panicked store call is an outage to the caller, not a 500: {body}"
    );
    assert!(
        !body["detail"].as_str().unwrap_or("").contains("writer thread"),
        "no internals in the answer: {body}"
    );
    let (status, body) = get(&s.at("/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["detail"].as_str().unwrap_or("").contains("panicked"), "{body}");

    // The restarted actor's next commit works and makes the node ready again.
    let id = courier.dispatch("echo", 2).await.expect("the store still commits");
    let out: i64 = courier.result_when_done(id, WAIT).await.unwrap();
    assert_eq!(out, 2);
    ready_again(&s).await;
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A claim or a lease renewal that panics is answered with an error and turns
/// the node not ready until a call of the same kind succeeds (the worker's next
/// claim, or the actor's own probe). Before, a panicking claim unwound through
/// its future (the worker got a closed mailbox and the node stayed 200), and a
/// panicking renewal ended the store actor where its supervisor could not see.
#[actix_rt::test]
async fn a_panicking_claim_or_lease_renewal_turns_readyz_503_and_the_node_recovers() {
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let builder = Courier::builder()
        .store(sqlite().await)
        .activity_with(
            "slow",
            FunctionOptions::default().timeout(Duration::from_secs(30)),
            move |_ctx: ActivityContext, n: i64| {
                let mut release = release_rx.clone();
                async move {
                    let _ = release.wait_for(|go| *go).await;
                    Ok::<_, TaskError>(n)
                }
            },
        )
        .worker(fast_worker());
    let s = Server::start(builder, HttpOptions::default()).await;
    let courier = s.http.courier().clone();

    // A claim: the worker polls, so its next claim after the panic recovers the lane.
    courier.panic_on_next_claim();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(reason) = courier.unready_reason() {
            assert!(reason.contains("claim panicked"), "{reason}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a claim panicked and the node stayed ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ready_again(&s).await;

    // A renewal: a running task's lease is renewed on a timer.
    let id = courier.dispatch("slow", 7).await.unwrap();
    courier.panic_on_next_lease_renewal();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(&s.at("/readyz")).await;
        if status == 503 {
            assert!(
                body["detail"].as_str().unwrap_or("").contains("renewal panicked"),
                "{body}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a renewal panicked and the node stayed ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The actor lives on: the next renewal (or the probe) recovers the lane, and
    // the task finishes.
    ready_again(&s).await;
    release_tx.send(true).unwrap();
    let out: i64 = courier.result_when_done(id, WAIT).await.unwrap();
    assert_eq!(out, 7);
    s.stop().await;
}
