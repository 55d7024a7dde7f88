//! Functions' settings: set (replacing, one revision per write), read, listed by
//! name, deleted; concurrent writes each get their own revision; a NUL is refused.

use std::collections::BTreeSet;
use std::time::Duration;

use courier_core::{FunctionSettings, RetryPolicy, StoreError};

use crate::support::*;

fn settings() -> FunctionSettings {
    FunctionSettings {
        retry: Some(RetryPolicy {
            max_attempts: 7,
            non_retryable: vec!["bad_input".into()],
            ..RetryPolicy::default()
        }),
        timeout: Some(Duration::from_secs(30)),
        queue: Some("payments".into()),
        tags: Some(vec!["eu".into(), "gpu".into()]),
        priority: Some(-3),
        max_concurrent: Some(4),
        paused: Some(true),
        rate_limit: Some(courier_core::RateLimit {
            per_second: 2.5,
            burst: Some(4),
            key: Some("/customer".into()),
        }),
        concurrency_key: Some(courier_core::ConcurrencyKey {
            key: "/customer".into(),
            max: 2,
        }),
    }
}

/// A write stores every field as given, stamped with the store's clock and
/// revision 1; a second write replaces the settings (fields left out are gone)
/// and takes revision 2; reading gives back what the write answered.
pub async fn function_settings_are_set_replaced_and_read_back(store: DynStore) {
    assert_eq!(store.get_function_settings("charge").await.unwrap(), None);
    let first = store.put_function_settings("charge", &settings()).await.unwrap();
    assert_eq!(first.name, "charge");
    assert_eq!(first.settings, settings());
    assert_eq!(first.revision, 1);
    assert_close(
        first.updated_at,
        store.now().await.unwrap(),
        Duration::from_secs(5),
        "updated_at",
    );
    assert_eq!(
        store.get_function_settings("charge").await.unwrap(),
        Some(first.clone())
    );

    let fewer = FunctionSettings {
        priority: Some(9),
        ..FunctionSettings::default()
    };
    let second = store.put_function_settings("charge", &fewer).await.unwrap();
    assert_eq!(second.settings, fewer, "a write replaces, it does not merge");
    assert_eq!(second.revision, 2);
    assert!(second.updated_at >= first.updated_at);
    assert_eq!(store.get_function_settings("charge").await.unwrap(), Some(second));

    let empty = store
        .put_function_settings("empty", &FunctionSettings::default())
        .await
        .unwrap();
    assert_eq!(empty.settings, FunctionSettings::default());
}

/// The list holds every function's settings in byte order of the names.
pub async fn function_settings_list_by_name(store: DynStore) {
    assert!(store.list_function_settings().await.unwrap().is_empty());
    for name in ["zeta", "Alpha", "alpha", "émile", "beta.v2"] {
        store.put_function_settings(name, &settings()).await.unwrap();
    }
    let names: Vec<String> = store
        .list_function_settings()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["Alpha", "alpha", "beta.v2", "zeta", "émile"]);
}

/// Deleting says whether there was anything; a deleted function's next write
/// starts again at revision 1.
pub async fn function_settings_are_deleted(store: DynStore) {
    store.put_function_settings("f", &settings()).await.unwrap();
    store.put_function_settings("g", &settings()).await.unwrap();
    assert!(store.delete_function_settings("f").await.unwrap());
    assert!(!store.delete_function_settings("f").await.unwrap());
    assert!(!store.delete_function_settings("never").await.unwrap());
    assert_eq!(store.get_function_settings("f").await.unwrap(), None);
    let names: Vec<String> = store
        .list_function_settings()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["g"]);
    assert_eq!(store.put_function_settings("f", &settings()).await.unwrap().revision, 1);
}

/// Eight writers at once on one name: each gets its own revision, 1 to 8, and
/// what is stored is the last one's.
pub async fn concurrent_function_settings_writes_each_take_a_revision(store: DynStore) {
    let writers = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let settings = FunctionSettings {
                priority: Some(i),
                ..FunctionSettings::default()
            };
            store.put_function_settings("raced", &settings).await.unwrap()
        })
    });
    let mut written = Vec::new();
    for writer in writers {
        written.push(writer.await.unwrap());
    }
    let revisions: BTreeSet<i64> = written.iter().map(|r| r.revision).collect();
    assert_eq!(revisions, (1..=8).collect::<BTreeSet<_>>());
    let last = written.iter().max_by_key(|r| r.revision).unwrap();
    assert_eq!(store.get_function_settings("raced").await.unwrap().as_ref(), Some(last));
}

/// A NUL in the name or in any text of the settings is refused as `Invalid`,
/// naming the field, and nothing is stored.
pub async fn function_settings_holding_a_nul_are_refused(store: DynStore) {
    let refused = |result: Result<_, StoreError>, field: &str| match result {
        Err(StoreError::Invalid(detail)) => {
            assert!(detail.contains("NUL") && detail.starts_with(field), "{detail}");
        }
        other => panic!("expected {field} refused, got {other:?}"),
    };
    refused(store.put_function_settings("f\u{0}", &settings()).await, "name");
    let queue = FunctionSettings {
        queue: Some("q\u{0}".into()),
        ..settings()
    };
    refused(store.put_function_settings("f", &queue).await, "queue");
    let tags = FunctionSettings {
        tags: Some(vec!["t\u{0}".into()]),
        ..settings()
    };
    refused(store.put_function_settings("f", &tags).await, "tags");
    assert!(store.list_function_settings().await.unwrap().is_empty());
}
