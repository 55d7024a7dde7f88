//! Fan-out cost per child stays constant: an orchestrator maps an activity over
//! 100,000 items and finishes, doing a bounded number of store writes per child.

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
        .orchestrator("fan", |ctx: OrchestratorContext, n: u64| async move {
            let out: Vec<u64> = ctx.map("square", 0..n).await?;
            Ok::<_, TaskError>(out.iter().sum::<u64>())
        })
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
