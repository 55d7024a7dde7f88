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
