//! Stuck-task detection, cluster-wide roles, the clock.

use std::time::Duration;

use courier_core::{EventType, TaskId};
use serde_json::json;

use crate::support::*;

/// A running task whose heartbeat is late is reported stuck once per attempt.
pub async fn stuck_tasks_are_reported_once_per_attempt(store: DynStore) {
    let [quiet, chatty] = dispatch_many(&store, "long", 2).await[..] else {
        unreachable!()
    };
    let claims = claim(&store, &claim_any("w", 2)).await;
    assert_eq!(claims.len(), 2);
    sleep_ms(500).await;
    let chatty_claim = claims.iter().find(|c| c.task.execution_id == chatty).unwrap();
    store
        .heartbeat(chatty_claim.lease.key(), Duration::from_secs(30), None)
        .await
        .unwrap();

    let stuck = store
        .detect_stuck_tasks(Duration::from_millis(300), 10)
        .await
        .unwrap()
        .value;
    assert_eq!(stuck, vec![TaskId::root_of(quiet)]);
    assert!(task(&store, TaskId::root_of(quiet)).await.stuck_at.is_some());
    let events = events_of_type(&store, quiet, EventType::TaskStuck).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["function"], json!("long"));
    assert_eq!(events[0].data["attempt"], json!(1));
    assert_eq!(events[0].data["worker"], json!("w"));
    assert!(events[0].data["heartbeat_at"].is_string());

    assert!(
        store
            .detect_stuck_tasks(Duration::from_millis(300), 10)
            .await
            .unwrap()
            .value
            .is_empty(),
        "reported once"
    );
}

/// A named role has one holder at a time, renewable by it, free again after its TTL.
pub async fn a_singleton_role_has_one_holder_until_it_expires(store: DynStore) {
    assert!(
        store
            .try_acquire_singleton("cleanup", "a", Duration::from_millis(400))
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_acquire_singleton("cleanup", "b", Duration::from_millis(400))
            .await
            .unwrap()
    );
    assert!(
        store
            .try_acquire_singleton("cleanup", "a", Duration::from_millis(400))
            .await
            .unwrap()
    );
    assert!(
        store
            .try_acquire_singleton("stuck", "b", Duration::from_secs(5))
            .await
            .unwrap(),
        "roles are independent"
    );

    let racers = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .try_acquire_singleton("race", &format!("node-{i}"), Duration::from_secs(5))
                .await
                .unwrap()
        })
    });
    let winners = futures::future::join_all(racers)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(winners, 1);

    sleep_ms(600).await;
    assert!(
        store
            .try_acquire_singleton("cleanup", "b", Duration::from_millis(400))
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_acquire_singleton("cleanup", "a", Duration::from_millis(400))
            .await
            .unwrap()
    );
}

/// The store's clock is UTC now (within a few seconds of this machine's), and
/// planner statistics can be refreshed.
pub async fn the_store_clock_is_utc_now(store: DynStore) {
    let now = store.now().await.unwrap();
    assert_close(now, chrono::Utc::now(), Duration::from_secs(5), "store clock");
    store.analyze().await.unwrap();
}

/// Initialising an initialised store again changes nothing (every node of a
/// cluster calls `init` at start), and the store names its backend.
pub async fn initialising_again_is_harmless(store: DynStore) {
    let id = dispatch(&store, activity("before")).await;
    store.init().await.expect("a second init");
    assert_eq!(execution(&store, id).await.state, courier_core::ExecutionState::Pending);
    dispatch(&store, activity("after")).await;
    assert!(["sqlite", "postgres"].contains(&store.backend()));
}
