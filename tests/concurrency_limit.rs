//! `max_concurrent` holds cluster-wide: two runtimes on one Postgres never run
//! more than the limit at once.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use courier::core::TaskError;
use courier::{Courier, FunctionOptions};
use support::*;

#[actix_rt::test]
async fn max_concurrent_holds_across_two_runtimes_on_postgres() {
    let (store_a, store_b) = postgres_pair().await;
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let node = |store, name: &str| {
        let (running, peak) = (running.clone(), peak.clone());
        Courier::builder()
            .store(store)
            .node_id(name)
            .activity_with(
                "limited",
                FunctionOptions::default().max_concurrent(2),
                move |_ctx, _: u32| {
                    let (running, peak) = (running.clone(), peak.clone());
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(60)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, TaskError>(())
                    }
                },
            )
            .worker(fast_worker().max_concurrency(10))
            .start()
    };
    let a = node(store_a, "a").await.unwrap();
    let b = node(store_b, "b").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..24u32 {
        let via = if i % 2 == 0 { &a } else { &b };
        ids.push(via.dispatch("limited", i).await.unwrap());
    }
    for id in ids {
        a.wait_for(id, WAIT).await.unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "{peak} ran at once across the two runtimes");
    assert_eq!(peak, 2, "the limit is reached, not just respected");
}
