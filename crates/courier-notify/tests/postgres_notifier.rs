//! What only the Postgres notifier does: the 63-byte channel-name limit on the
//! prefix, the 8000-byte payload limit, and payloads from elsewhere that are not
//! ours. The shared cluster cases are in `cluster_notifiers.rs`.

mod common;

use std::time::Duration;

use common::{Backend, Postgres, eventually, fresh_prefix, postgres_admin, postgres_url, test_options};
use courier_core::{ExecutionId, Notice, Notifier, NotifyError, TaskId, TaskState, Topic};
use courier_notify::{MAX_POSTGRES_PREFIX, OpenError, PostgresNotifier};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

#[actix_rt::test]
async fn a_prefix_too_long_for_postgres_channel_names_is_a_clear_error() {
    let prefix = "p".repeat(MAX_POSTGRES_PREFIX + 1);
    let err = PostgresNotifier::connect(&postgres_url(), &prefix).await.unwrap_err();
    assert!(
        matches!(&err, OpenError::PrefixTooLong { max, .. } if *max == MAX_POSTGRES_PREFIX),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("63 bytes") && text.contains("at most 16"), "{text}");
}

#[actix_rt::test]
async fn the_longest_allowed_prefix_works() {
    if !Postgres::available().await {
        return;
    }
    let prefix = format!("{}{}", fresh_prefix(), "x".repeat(MAX_POSTGRES_PREFIX - 9));
    assert_eq!(prefix.len(), MAX_POSTGRES_PREFIX);
    let a = Postgres::node(test_options(&prefix)).await;
    let b = Postgres::node(test_options(&prefix)).await;
    let exec = ExecutionId::new();
    let mut sub = b.subscribe_to_execution(exec, None).await.unwrap();
    a.notify_execution_updated(exec, courier_core::ExecutionState::Cancelled)
        .await
        .unwrap();
    assert!(sub.next_within(WAIT).await.is_some());
}

#[actix_rt::test]
async fn a_malformed_payload_on_a_channel_is_counted_and_ignored() {
    let Some(admin) = postgres_admin().await else { return };
    let prefix = fresh_prefix();
    let node = Postgres::node(test_options(&prefix)).await;
    let task = TaskId::for_step(ExecutionId::new(), 1);
    let mut sub = node.subscribe_to_task(task, None).await.unwrap();
    let channel = format!("{prefix}:task:{task}");
    for payload in [
        "not json",
        r#"{"state": "exploded"}"#,
        r#"{"task_id": "someone else", "state": "completed"}"#,
    ] {
        admin
            .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
            .await
            .unwrap();
    }
    assert!(
        eventually(WAIT, || async { node.stats().malformed == 3 }).await,
        "{:?}",
        node.stats()
    );
    assert_eq!(sub.next_within(QUIET).await, None);

    // A well-formed one from another publisher (no origin) still gets through.
    admin
        .execute("SELECT pg_notify($1, $2)", &[&channel, &r#"{"state": "completed"}"#])
        .await
        .unwrap();
    assert_eq!(
        sub.next_within(WAIT).await,
        Some(Notice::Task {
            task_id: task,
            state: TaskState::Completed
        })
    );
    assert_eq!(node.stats().received, 4);
}

#[actix_rt::test]
async fn a_payload_over_the_8000_byte_limit_is_reported_not_sent_and_the_rest_are() {
    if !Postgres::available().await {
        return;
    }
    let prefix = fresh_prefix();
    let a = Postgres::node(test_options(&prefix)).await;
    let b = Postgres::node(test_options(&prefix)).await;
    let mut on_a = a.subscribe(vec![Topic::Work]).await.unwrap();
    let mut on_b = b.subscribe(vec![Topic::Work]).await.unwrap();
    let huge = Notice::Work {
        queue: "q".repeat(9000),
    };
    let fine = Notice::Work { queue: "fine".into() };

    let err = a.publish(vec![huge.clone(), fine.clone()]).await.unwrap_err();
    assert!(
        matches!(&err, NotifyError::Unavailable(m) if m.contains("8000-byte")),
        "{err:?}"
    );
    // Local subscribers got both; the other node got the one that fits.
    assert_eq!(on_a.next_within(WAIT).await, Some(huge));
    assert_eq!(on_a.next_within(WAIT).await, Some(fine.clone()));
    assert_eq!(on_b.next_within(WAIT).await, Some(fine));
    assert_eq!(on_b.next_within(QUIET).await, None);
    assert_eq!(a.stats().publish_failures, 1);
}

#[actix_rt::test]
async fn the_listen_connection_is_named_and_separate_from_the_notify_pool() {
    let Some(admin) = postgres_admin().await else { return };
    let prefix = fresh_prefix();
    let node = Postgres::node(test_options(&prefix)).await;
    let _sub = node.subscribe(vec![Topic::Events]).await.unwrap();
    let names: Vec<String> = admin
        .query(
            "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE $1 ORDER BY 1",
            &[&format!("courier-%-{}", node.origin())],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        names,
        vec![
            format!("courier-listen-{}", node.origin()),
            format!("courier-notify-{}", node.origin())
        ]
    );
}
