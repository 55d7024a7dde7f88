//! Per-function concurrency limits hold across processes: claimers on separate
//! pools (as separate nodes would be) never run more than the limit at once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use courier_core::{ClaimRequest, Completion, NewExecution, Outcome, Store, TaskKind, TaskSpec, TaskStore, WriteBatch};
use serde_json::json;

async fn dispatch(store: &impl Store, function: &str, n: usize) {
    let batch = (0..n)
        .map(|_| NewExecution::new(TaskSpec::new(TaskKind::Activity, function, json!(null))))
        .collect();
    store.dispatch(batch).await.unwrap();
}

async fn succeed(store: &impl Store, lease: courier_core::LeaseKey) {
    let out = store
        .commit(Arc::new(WriteBatch {
            completions: vec![Completion {
                lease,
                outcome: Outcome::Succeeded {
                    result: json!(null),
                    remember: Vec::new(),
                },
            }],
            ..WriteBatch::default()
        }))
        .await
        .unwrap()
        .completions;
    out[0].as_ref().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_of_two_holds_for_eight_claimers_on_eight_pools() {
    let first = common::fresh("limits").await;
    let schema = first.schema().unwrap().to_string();
    dispatch(&first, "limited", 30).await;
    dispatch(&first, "free", 30).await;

    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut claimers = Vec::new();
    for w in 0..8 {
        // Each claimer has a pool of its own: nothing in-process can serialise them.
        let store = common::open(&schema, 2).await;
        let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
        claimers.push(tokio::spawn(async move {
            let req = ClaimRequest::new(format!("node-{w}"), 4, Duration::from_secs(30)).limit("limited", 2);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while done.load(Ordering::SeqCst) < 60 {
                assert!(tokio::time::Instant::now() < deadline, "the work did not finish");
                let got = store.claim_tasks(&req).await.unwrap().value;
                let limited = got.iter().filter(|c| c.task.function == "limited").count();
                let now = running.fetch_add(limited, Ordering::SeqCst) + limited;
                peak.fetch_max(now, Ordering::SeqCst);
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                for c in got {
                    if c.task.function == "limited" {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                    succeed(&store, c.lease.key()).await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for c in claimers {
        c.await.unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "limit of 2 exceeded: {peak} ran at once");
    assert_eq!(peak, 2, "the limit is reached, not just respected");
    first.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_limit_does_not_starve_other_functions() {
    let store = common::fresh("limits_starve").await;
    // The limited backlog is older and of higher priority, so it sorts first.
    let batch = (0..20)
        .map(|_| NewExecution::new(TaskSpec::new(TaskKind::Activity, "limited", json!(null)).with_priority(9)))
        .collect();
    store.dispatch(batch).await.unwrap();
    dispatch(&store, "free", 5).await;

    let req = ClaimRequest::new("w", 10, Duration::from_secs(30)).limit("limited", 1);
    let got = store.claim_tasks(&req).await.unwrap().value;
    let limited = got.iter().filter(|c| c.task.function == "limited").count();
    assert_eq!(limited, 1, "one limited task, the best one");
    assert_eq!(got.len(), 6, "and every free task behind it");
    assert_eq!(got[0].task.function, "limited", "claims come back in claim order");

    let again = store.claim_tasks(&req).await.unwrap().value;
    assert!(
        again.is_empty(),
        "the limit is used up and nothing else is due: {again:?}"
    );
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_does_not_count_against_the_limit_and_is_reclaimed_within_it() {
    let store = common::fresh("limits_expired").await;
    dispatch(&store, "limited", 3).await;
    let short = ClaimRequest::new("w1", 5, Duration::from_millis(200)).limit("limited", 2);
    let first = store.claim_tasks(&short).await.unwrap().value;
    assert_eq!(first.len(), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;

    let req = ClaimRequest::new("w2", 5, Duration::from_secs(30)).limit("limited", 2);
    let second = store.claim_tasks(&req).await.unwrap().value;
    assert_eq!(second.len(), 2, "two expired leases free two places");
    assert!(store.claim_tasks(&req).await.unwrap().value.is_empty());
    store.drop_schema().await.unwrap();
}
