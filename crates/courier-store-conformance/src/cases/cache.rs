//! The result cache and idempotency keys.

use std::time::Duration;

use courier_core::{Reservation, TaskId};
use serde_json::json;

use crate::support::*;

/// Cache entries live for their TTL; a cached null is a hit.
pub async fn cache_entries_expire(store: DynStore) {
    store
        .set_cached_result("short", &json!(42), Some(Duration::from_millis(300)))
        .await
        .unwrap();
    store.set_cached_result("forever", &json!(null), None).await.unwrap();
    assert_eq!(store.get_cached_result("short").await.unwrap(), Some(json!(42)));
    assert_eq!(store.get_cached_result("forever").await.unwrap(), Some(json!(null)));
    assert_eq!(store.get_cached_result("absent").await.unwrap(), None);

    sleep_ms(500).await;
    assert_eq!(store.get_cached_result("short").await.unwrap(), None);
    assert_eq!(store.get_cached_result("forever").await.unwrap(), Some(json!(null)));
    assert_eq!(store.purge_expired_cache().await.unwrap(), 1);
    assert_eq!(store.purge_expired_cache().await.unwrap(), 0);

    store.set_cached_result("forever", &json!([1]), None).await.unwrap();
    assert_eq!(store.get_cached_result("forever").await.unwrap(), Some(json!([1])));
}

/// Idempotency results persist, falsy ones included.
pub async fn idempotency_results_persist(store: DynStore) {
    store.set_idempotency_result("k", &json!(false)).await.unwrap();
    assert_eq!(store.get_idempotency_result("k").await.unwrap(), Some(json!(false)));
    assert_eq!(store.get_idempotency_result("other").await.unwrap(), None);
    store.set_idempotency_result("k", &json!({"v": 2})).await.unwrap();
    assert_eq!(store.get_idempotency_result("k").await.unwrap(), Some(json!({"v": 2})));
}

/// Eight concurrent reservations of one key admit exactly one holder; the holder
/// re-enters, releases, and a finished holder's reservation is taken over.
pub async fn an_idempotency_key_admits_one_holder_at_a_time(store: DynStore) {
    let executions = dispatch_many(&store, "idem", 8).await;
    let owners: Vec<TaskId> = executions.iter().copied().map(TaskId::root_of).collect();
    let racers = owners.iter().map(|owner| {
        let (store, owner) = (store.clone(), *owner);
        tokio::spawn(async move { (owner, store.reserve_idempotency_key("key", owner).await.unwrap()) })
    });
    let results: Vec<(TaskId, Reservation)> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let winners: Vec<TaskId> = results
        .iter()
        .filter(|(_, r)| *r == Reservation::Acquired)
        .map(|(o, _)| *o)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = winners[0];
    for (owner, r) in &results {
        if *owner != winner {
            assert_eq!(*r, Reservation::HeldBy(winner), "the others are told who holds it");
        }
    }

    assert_eq!(
        store.reserve_idempotency_key("key", winner).await.unwrap(),
        Reservation::Acquired,
        "re-entrant"
    );
    let loser = *owners.iter().find(|o| **o != winner).unwrap();
    assert!(!store.release_idempotency_key("key", loser).await.unwrap());
    assert!(store.release_idempotency_key("key", winner).await.unwrap());
    assert_eq!(
        store.reserve_idempotency_key("key", loser).await.unwrap(),
        Reservation::Acquired
    );

    // The holder's execution is cancelled without a result: the key is taken over.
    let loser_execution = executions[owners.iter().position(|o| *o == loser).unwrap()];
    store.cancel_execution(loser_execution, "gone").await.unwrap();
    let third = *owners.iter().find(|o| **o != winner && **o != loser).unwrap();
    assert_eq!(
        store.reserve_idempotency_key("key", third).await.unwrap(),
        Reservation::Acquired
    );

    store.set_idempotency_result("key", &json!(null)).await.unwrap();
    assert_eq!(
        store.reserve_idempotency_key("key", winner).await.unwrap(),
        Reservation::Completed(json!(null))
    );
}
