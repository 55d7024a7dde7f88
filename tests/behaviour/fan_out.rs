//! Fan-out cost per child stays constant: an orchestrator maps an activity over
//! 100,000 items and finishes, doing a bounded number of store writes per child,
//! and does not read its children back when it was told they settled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::support::*;
use courier::core::{TaskError, TaskFilter};
use courier::{Courier, OrchestratorContext};

#[actix_rt::test]
async fn a_fan_out_over_100_000_children_finishes() {
    const N: u64 = 100_000;
    let store = sqlite().await;
    let courier = Courier::builder()
        .store(store.clone())
        .activity("square", |_ctx, n: u64| async move { Ok::<_, TaskError>(n * n % 1000) })
        .orchestrator("fan", |ctx, n| sum_of_all("square", ctx, n))
        .worker(fast_worker().max_concurrency(2000))
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let id = courier.dispatch("fan", N).await.unwrap();
    let sum: u64 = courier
        .result_when_done(id, Some(std::time::Duration::from_secs(600)))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(sum, (0..N).map(|n| n * n % 1000).sum::<u64>());
    let children = store.count_tasks(None, None).await.unwrap();
    assert_eq!(
        children,
        N + 1,
        "one task per child and the orchestrator: nothing ran twice"
    );
    let steps = store
        .list_tasks(&TaskFilter {
            execution_id: Some(id),
            after_step: Some(N as i64 - 1),
            limit: 10,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(steps.len(), 1);
    assert!(steps.iter().all(|t| t.attempt == 1));
    eprintln!(
        "fan-out of {N} children took {elapsed:?} ({:.0} children/s, test profile)",
        N as f64 / elapsed.as_secs_f64()
    );
}

/// An orchestrator whose children settle on its own node is told of each by
/// the commit that settles it; its polls read only its own row, and read the
/// children back only when that row counts settles it was not told of. (It
/// used to read back every awaited child whenever the row had moved: about
/// six times each child over a 30,000-child fan-out.)
#[actix_rt::test]
async fn a_fan_out_does_not_read_back_children_it_was_told_of() {
    const N: u64 = 5_000;
    // The orchestrator runs on this thread, so a recorder of this thread's
    // metrics sees its reads and no other test's.
    let reads = ChildrenRead::default();
    let _recording = metrics::set_default_local_recorder(&reads);
    let courier = Courier::builder()
        .store(sqlite().await)
        .activity("square", |_ctx, n: u64| async move {
            // Children settle in waves with pauses between, when the orchestrator polls.
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
            Ok::<_, TaskError>(n * n % 1000)
        })
        .orchestrator("fan", |ctx, n| sum_of_all("square", ctx, n))
        .worker(fast_worker().max_concurrency(500))
        .start()
        .await
        .unwrap();
    let id = courier.dispatch("fan", N).await.unwrap();
    let sum: u64 = courier
        .result_when_done(id, Some(std::time::Duration::from_secs(300)))
        .await
        .unwrap();
    assert_eq!(sum, (0..N).map(|n| n * n % 1000).sum::<u64>());
    let read = reads.0.load(Ordering::Relaxed);
    eprintln!("children read back: {read} for {N} children");
    assert!(
        read < N / 10,
        "{read} children read back for {N}: the polls read children they had been told of"
    );
}

/// The orchestrator of these tests: `activity` mapped over `0..n`, summed.
async fn sum_of_all(activity: &'static str, ctx: OrchestratorContext, n: u64) -> Result<u64, TaskError> {
    let out: Vec<u64> = ctx.map(activity, 0..n).await?;
    Ok(out.iter().sum())
}

/// Counts `courier_orchestrator_children_read_total`; every other metric is dropped.
#[derive(Default)]
struct ChildrenRead(Arc<AtomicU64>);

impl metrics::Recorder for ChildrenRead {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() == courier::core::metric::CHILDREN_READ {
            metrics::Counter::from_arc(self.0.clone())
        } else {
            metrics::Counter::noop()
        }
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// Children settled on another node (here with a notifier of its own, so no
/// notice crosses) are not told to the orchestrator: its polls see its row
/// count settles it does not know of and read its children back.
#[actix_rt::test]
async fn children_settled_where_no_notice_reaches_are_found_by_polling() {
    const N: u64 = 300;
    let store = sqlite().await;
    let a = Courier::builder()
        .store(store.clone())
        .node_id("a")
        .orchestrator("fan", |ctx, n| sum_of_all("elsewhere", ctx, n))
        .external("elsewhere", courier::FunctionOptions::default())
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let _b = Courier::builder()
        .store(store)
        .node_id("b")
        .activity("elsewhere", |_ctx, n: u64| async move { Ok::<_, TaskError>(n + 1) })
        .worker(fast_worker())
        .start()
        .await
        .unwrap();
    let id = a.dispatch("fan", N).await.unwrap();
    let sum: u64 = a
        .result_when_done(id, Some(std::time::Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(sum, (1..=N).sum::<u64>());
}
