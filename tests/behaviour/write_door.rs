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
