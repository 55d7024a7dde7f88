//! `max_concurrent` holds cluster-wide: two runtimes on one Postgres never run
//! more than the limit at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;
use courier::core::TaskError;
use courier::{Courier, FunctionOptions};

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

/// Regression: a worker that claimed up to a function's limit used to wait out its
/// poll backoff before taking the next task, although finishing one freed a slot.
/// With polling slowed to 20 s, five one-at-a-time tasks now finish in far less
/// than one poll interval, woken by the freed slot alone.
#[actix_rt::test]
async fn a_freed_slot_of_a_limited_function_is_claimed_at_once() {
    let courier = Courier::builder()
        .store(sqlite().await)
        .activity_with(
            "one_at_a_time",
            FunctionOptions::default().max_concurrent(1),
            |_ctx, _: u32| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, TaskError>(())
            },
        )
        .worker(fast_worker().poll(courier::PollBackoff {
            min: Duration::from_secs(20),
            max: Duration::from_secs(20),
            factor: 1.0,
        }))
        .start()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5u32 {
        ids.push(courier.dispatch("one_at_a_time", i).await.unwrap());
    }
    for id in ids {
        let done = courier.wait_for(id, Some(Duration::from_secs(10))).await;
        assert!(done.is_ok(), "{id} waited for the poll interval: {done:?}");
    }
    courier.shutdown().await.unwrap();
}
