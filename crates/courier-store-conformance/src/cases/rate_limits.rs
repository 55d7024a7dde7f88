//! Rate-limit buckets: a new bucket starts full, refills by the store's clock
//! up to its burst, never grants more than it holds however many take at once,
//! and buckets are independent.

use std::time::Duration;

use courier_core::StoreError;

use crate::support::*;

/// A bucket starts full, grants at most what it holds, says when its next
/// token is due, and refills at its rate.
pub async fn a_bucket_starts_full_and_refills_at_its_rate(store: DynStore) {
    let first = store.take_tokens("send", 10.0, 5.0, 8).await.unwrap();
    assert_eq!(first.granted, 5, "a new bucket holds its burst");
    assert!(
        first.next_token_in > Duration::from_millis(50) && first.next_token_in <= Duration::from_millis(100),
        "{first:?}"
    );
    sleep_ms(260).await;
    let later = store.take_tokens("send", 10.0, 5.0, 10).await.unwrap();
    assert!(
        (2..=4).contains(&later.granted),
        "about 2.6 tokens flowed in: {later:?}"
    );
    sleep_ms(1_000).await;
    let capped = store.take_tokens("send", 10.0, 5.0, 100).await.unwrap();
    assert_eq!(capped.granted, 5, "the bucket never holds more than its burst");
    let other = store.take_tokens("send\u{1f}\"acme\"", 10.0, 5.0, 1).await.unwrap();
    assert_eq!(other.granted, 1, "another bucket is full of its own");
    let empty = store.take_tokens("send", 10.0, 5.0, 0).await.unwrap();
    assert_eq!(empty.granted, 0);
}

/// Eight concurrent takers of a bucket that barely refills are granted its
/// burst between them, no more.
pub async fn concurrent_takes_never_grant_more_than_the_bucket_holds(store: DynStore) {
    let takers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = 0;
            for _ in 0..4 {
                got += store.take_tokens("scarce", 0.001, 10.0, 3).await.unwrap().granted;
            }
            got
        })
    });
    let total: u32 = futures::future::join_all(takers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(total, 10);
}

/// A bucket name holding a NUL is refused.
pub async fn a_bucket_holding_a_nul_is_refused(store: DynStore) {
    match store.take_tokens("a\0b", 1.0, 1.0, 1).await {
        Err(StoreError::Invalid(_)) => {}
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn holder(c: &courier_core::Claimed) -> (courier_core::TaskId, courier_core::LeaseToken) {
    (c.task.id, c.lease.token)
}

/// Slots go to holders in order while fewer than `max` are live; a task that
/// finished frees its slot, as does one whose lease ran out; buckets are apart.
pub async fn key_slots_are_given_while_fewer_than_max_run(store: DynStore) {
    dispatch_many(&store, "sync", 4).await;
    let claimed = claim(&store, &claim_any("w", 4)).await;
    assert_eq!(claimed.len(), 4);
    let holders: Vec<_> = claimed.iter().map(holder).collect();
    assert_eq!(store.take_slots("sync\u{1f}\"a\"", 2, &holders[..3]).await.unwrap(), 2);
    assert_eq!(
        store.take_slots("sync\u{1f}\"a\"", 2, &holders[2..3]).await.unwrap(),
        0,
        "two run"
    );
    assert_eq!(
        store.take_slots("sync\u{1f}\"b\"", 2, &holders[2..4]).await.unwrap(),
        2,
        "another key"
    );
    succeed(&store, claimed[0].lease.key(), serde_json::json!(null))
        .await
        .unwrap();
    assert_eq!(
        store.take_slots("sync\u{1f}\"a\"", 2, &holders[2..3]).await.unwrap(),
        1,
        "a finished task frees its slot"
    );

    dispatch_many(&store, "brief", 2).await;
    let short = courier_core::ClaimRequest::new("w", 2, Duration::from_millis(300)).functions(["brief"]);
    let brief = claim(&store, &short).await;
    assert_eq!(brief.len(), 2);
    assert_eq!(store.take_slots("brief", 1, &[holder(&brief[0])]).await.unwrap(), 1);
    assert_eq!(store.take_slots("brief", 1, &[holder(&brief[1])]).await.unwrap(), 0);
    sleep_ms(500).await;
    assert_eq!(
        store.take_slots("brief", 1, &[holder(&brief[1])]).await.unwrap(),
        1,
        "a slot whose lease ran out is free"
    );
}

/// Six concurrent takers of one key with a cap of two get two slots between them.
pub async fn concurrent_slot_takers_never_exceed_max(store: DynStore) {
    dispatch_many(&store, "sync", 6).await;
    let claimed = claim(&store, &claim_any("w", 6)).await;
    let takers = claimed.iter().map(|c| {
        let (store, holder) = (store.clone(), holder(c));
        tokio::spawn(async move { store.take_slots("sync\u{1f}1", 2, &[holder]).await.unwrap() })
    });
    let total: u32 = futures::future::join_all(takers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(total, 2);
}
