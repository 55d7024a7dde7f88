//! The behaviour both cluster notifiers (Redis pub/sub, Postgres LISTEN/NOTIFY)
//! must show, run against each: delivery across nodes without local duplicates,
//! one subscription connection per node, subscriptions active on return, lazy
//! unsubscription, reconnection with resync, and big publish batches.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Postgres, Redis, eventually, fresh_prefix, show, test_options};
use courier_core::{ExecutionId, ExecutionState, Notice, Notifier, TaskId, TaskState, Topic};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

fn sample(exec: ExecutionId) -> Vec<Notice> {
    let task = TaskId::for_step(exec, 1);
    vec![
        Notice::Task {
            task_id: task,
            state: TaskState::Completed,
        },
        Notice::Execution {
            execution_id: exec,
            state: ExecutionState::Running,
            child: None,
        },
        Notice::Execution {
            execution_id: exec,
            state: ExecutionState::Running,
            child: Some((task, TaskState::Failed)),
        },
        Notice::Work { queue: "emails".into() },
        Notice::Events,
    ]
}

fn topics_of(exec: ExecutionId) -> Vec<Topic> {
    vec![
        Topic::Task(TaskId::for_step(exec, 1)),
        Topic::Execution(exec),
        Topic::Work,
        Topic::Events,
    ]
}

async fn notices_published_on_one_node_reach_another_and_are_not_delivered_twice_locally<B: Backend>() {
    if !B::available().await {
        return;
    }
    let prefix = fresh_prefix();
    let a = B::node(test_options(&prefix)).await;
    let b = B::node(test_options(&prefix)).await;
    let exec = ExecutionId::new();
    let mut on_b = b.subscribe(topics_of(exec)).await.unwrap();
    let mut on_a = a.subscribe(topics_of(exec)).await.unwrap();

    a.publish(sample(exec)).await.unwrap();

    for expected in sample(exec) {
        assert_eq!(
            on_b.next_within(WAIT).await,
            Some(expected.clone()),
            "{} node B",
            B::NAME
        );
        assert_eq!(on_a.next_within(WAIT).await, Some(expected), "{} node A", B::NAME);
    }
    // A's own messages came back from the server too, and were ignored.
    assert_eq!(
        on_a.next_within(QUIET).await,
        None,
        "{}: an echo was delivered",
        B::NAME
    );
    assert_eq!(on_b.next_within(QUIET).await, None);
    assert!(
        eventually(WAIT, || async { a.stats().received >= 5 }).await,
        "{}: A received its echoes: {}",
        B::NAME,
        show(a.stats())
    );
    let stats = b.stats();
    assert_eq!(
        (stats.received, stats.malformed, stats.reconnects),
        (5, 0, 0),
        "{}",
        show(stats)
    );
    assert_eq!(a.stats().published, 5);
    assert!(stats.connected);
    assert_eq!(stats.subscribed_channels, 4);
}

async fn a_node_holds_one_subscription_connection_however_many_subscribers<B: Backend>() {
    if !B::available().await {
        return;
    }
    let prefix = fresh_prefix();
    let node = B::node(test_options(&prefix)).await;
    let mut subscriptions = Vec::new();
    for i in 0..300 {
        let exec = ExecutionId::new();
        let topics = if i % 3 == 0 {
            vec![Topic::Execution(exec), Topic::Work]
        } else {
            vec![Topic::Task(TaskId::for_step(exec, 1))]
        };
        subscriptions.push(node.subscribe(topics).await.unwrap());
    }
    assert_eq!(B::subscription_connections(&node).await, 1, "{}", B::NAME);
    assert_eq!(B::subscribed(&node).await.len(), 301, "{}", B::NAME);
    assert_eq!(node.stats().subscribed_channels, 301);
}

async fn subscribe_returns_only_once_the_subscription_is_active<B: Backend>() {
    if !B::available().await {
        return;
    }
    let prefix = fresh_prefix();
    let a = B::node(test_options(&prefix)).await;
    let b = B::node(test_options(&prefix)).await;
    for _ in 0..25 {
        let task = TaskId::for_step(ExecutionId::new(), 1);
        let mut sub = b.subscribe_to_task(task, None).await.unwrap();
        a.notify_task_completed(task).await.unwrap();
        assert_eq!(
            sub.next_within(WAIT).await,
            Some(Notice::Task {
                task_id: task,
                state: TaskState::Completed
            }),
            "{}: a notice published right after subscribe returned was missed",
            B::NAME
        );
    }
}

async fn the_last_subscriber_leaving_unsubscribes_the_channel<B: Backend>() {
    if !B::available().await {
        return;
    }
    let prefix = fresh_prefix();
    let node = B::node(test_options(&prefix)).await;
    let exec = ExecutionId::new();
    let channel = format!("{prefix}:execution:{exec}");
    let first = node.subscribe(vec![Topic::Execution(exec)]).await.unwrap();
    let second = node
        .subscribe(vec![Topic::Execution(exec), Topic::Events])
        .await
        .unwrap();
    assert!(B::subscribed(&node).await.contains(&channel));

    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        B::subscribed(&node).await.contains(&channel),
        "{}: one subscriber is left",
        B::NAME
    );

    drop(second);
    assert!(
        eventually(WAIT, || async { B::subscribed(&node).await.is_empty() }).await,
        "{}: still subscribed: {:?}",
        B::NAME,
        B::subscribed(&node).await
    );
    assert_eq!(node.stats().subscribed_channels, 0);

    // And coming back subscribes again.
    let _again = node.subscribe(vec![Topic::Execution(exec)]).await.unwrap();
    assert_eq!(B::subscribed(&node).await, vec![channel]);
}

async fn a_lost_subscription_connection_is_replaced_and_subscribers_resync<B: Backend>() {
    if !B::available().await {
        return;
    }
    let prefix = fresh_prefix();
    let a = B::node(test_options(&prefix)).await;
    let b = B::node(test_options(&prefix)).await;
    let exec = ExecutionId::new();
    let mut sub = b.subscribe(vec![Topic::Execution(exec)]).await.unwrap();
    let mut events = b.subscribe(vec![Topic::Events]).await.unwrap();

    B::kill_subscription_connection(&b).await;

    assert_eq!(sub.next_within(WAIT).await, Some(Notice::Resync), "{}", B::NAME);
    assert_eq!(events.next_within(WAIT).await, Some(Notice::Resync), "{}", B::NAME);
    let stats = b.stats();
    assert_eq!(stats.reconnects, 1, "{}", show(stats));
    assert!(stats.connected);
    assert_eq!(B::subscription_connections(&b).await, 1, "{}", B::NAME);
    // Re-subscribed before the resync: what is published now arrives.
    let notice = Notice::Execution {
        execution_id: exec,
        state: ExecutionState::Completed,
        child: None,
    };
    a.publish(vec![notice.clone(), Notice::Events]).await.unwrap();
    assert_eq!(sub.next_within(WAIT).await, Some(notice), "{}", B::NAME);
    assert_eq!(events.next_within(WAIT).await, Some(Notice::Events), "{}", B::NAME);
    // New subscriptions work on the new connection too.
    let task = TaskId::for_step(exec, 3);
    let mut late = b.subscribe_to_task(task, None).await.unwrap();
    a.notify_task_completed(task).await.unwrap();
    assert!(late.next_within(WAIT).await.is_some(), "{}", B::NAME);
}

async fn a_burst_of_5000_notices_in_one_publish_arrives_intact<B: Backend>() {
    if !B::available().await {
        return;
    }
    let prefix = fresh_prefix();
    let a = B::node(test_options(&prefix)).await;
    let b = B::node(courier_notify::ClusterOptions {
        mailbox: 10_000,
        ..test_options(&prefix)
    })
    .await;
    let mut work = b.subscribe(vec![Topic::Work]).await.unwrap();
    let burst: Vec<Notice> = (0..5000).map(|i| Notice::Work { queue: format!("q{i}") }).collect();

    let started = Instant::now();
    a.publish(burst.clone()).await.unwrap();
    let published_in = started.elapsed();
    for (i, expected) in burst.into_iter().enumerate() {
        assert_eq!(work.next_within(WAIT).await, Some(expected), "{}: notice {i}", B::NAME);
    }
    eprintln!(
        "{}: 5000 notices published in {published_in:?}, all received in {:?}",
        B::NAME,
        started.elapsed()
    );
    assert_eq!(work.next_within(QUIET).await, None);
    assert_eq!(a.stats().published, 5000);
    assert_eq!(a.stats().publish_failures, 0);
    assert_eq!(b.stats().received, 5000);
}

async fn churn_on_one_topic_never_leaves_a_listener_unsubscribed<B: Backend>() {
    if !B::available().await {
        return;
    }
    let prefix = fresh_prefix();
    let a = B::node(test_options(&prefix)).await;
    let b = B::node(test_options(&prefix)).await;
    let exec = ExecutionId::new();
    let topic = Topic::Execution(exec);
    // Subscribers come and go around the unsubscribe delay, so that unsubscribe
    // rounds and new subscriptions of the same channel interleave.
    for round in 0..30u64 {
        let mut subs = Vec::new();
        for _ in 0..3 {
            subs.push(b.subscribe(vec![topic.clone()]).await.unwrap());
        }
        drop(subs);
        tokio::time::sleep(Duration::from_millis(10 + (round * 7) % 60)).await;
    }
    let mut last = b.subscribe(vec![topic.clone()]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // past any pending sweep
    let notice = Notice::Execution {
        execution_id: exec,
        state: ExecutionState::Failed,
        child: None,
    };
    a.publish(vec![notice.clone()]).await.unwrap();
    assert_eq!(last.next_within(WAIT).await, Some(notice), "{}", B::NAME);
    assert_eq!(B::subscribed(&b).await, vec![format!("{prefix}:execution:{exec}")]);
}

macro_rules! cluster_cases {
    ($($module:ident => $backend:ident),*) => {$(
        mod $module {
            use super::*;

            #[actix_rt::test]
            async fn notices_published_on_one_node_reach_another_and_are_not_delivered_twice_locally() {
                super::notices_published_on_one_node_reach_another_and_are_not_delivered_twice_locally::<$backend>().await;
            }

            #[actix_rt::test]
            async fn a_node_holds_one_subscription_connection_however_many_subscribers() {
                super::a_node_holds_one_subscription_connection_however_many_subscribers::<$backend>().await;
            }

            #[actix_rt::test]
            async fn subscribe_returns_only_once_the_subscription_is_active() {
                super::subscribe_returns_only_once_the_subscription_is_active::<$backend>().await;
            }

            #[actix_rt::test]
            async fn the_last_subscriber_leaving_unsubscribes_the_channel() {
                super::the_last_subscriber_leaving_unsubscribes_the_channel::<$backend>().await;
            }

            #[actix_rt::test]
            async fn a_lost_subscription_connection_is_replaced_and_subscribers_resync() {
                super::a_lost_subscription_connection_is_replaced_and_subscribers_resync::<$backend>().await;
            }

            #[actix_rt::test]
            async fn churn_on_one_topic_never_leaves_a_listener_unsubscribed() {
                super::churn_on_one_topic_never_leaves_a_listener_unsubscribed::<$backend>().await;
            }

            #[actix_rt::test]
            async fn a_burst_of_5000_notices_in_one_publish_arrives_intact() {
                super::a_burst_of_5000_notices_in_one_publish_arrives_intact::<$backend>().await;
            }
        }
    )*};
}

cluster_cases!(redis => Redis, postgres => Postgres);

/// Outside an actix system the actor gets a thread (and system) of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_notifier_works_outside_an_actix_system() {
    if !Redis::available().await {
        return;
    }
    let prefix = fresh_prefix();
    let a = Redis::node(test_options(&prefix)).await;
    let b = Redis::node(test_options(&prefix)).await;
    let mut events = b.subscribe(vec![Topic::Events]).await.unwrap();
    a.publish(vec![Notice::Events]).await.unwrap();
    let got = events.next_within(WAIT).await;
    assert_eq!(got, Some(Notice::Events), "{:?} {:?}", a.stats(), b.stats());
}

#[actix_rt::test]
async fn open_picks_the_backend_from_the_url() {
    let memory = courier_notify::open("memory", "ignored").await.unwrap();
    assert_eq!(memory.backend(), "memory");
    if Redis::available().await {
        let redis = courier_notify::open(&common::redis_url(), &fresh_prefix())
            .await
            .unwrap();
        assert_eq!(redis.backend(), "redis");
        assert!(redis.stats().connected);
    }
    if Postgres::available().await {
        let postgres = courier_notify::open(&common::postgres_url(), &fresh_prefix())
            .await
            .unwrap();
        assert_eq!(postgres.backend(), "postgres");
        assert!(postgres.stats().connected);
    }
}

#[actix_rt::test]
async fn open_explains_what_it_refuses() {
    use courier_notify::{OpenError, RedisUrlError};
    type Expect = fn(&OpenError) -> bool;
    let cases: Vec<(&str, Expect)> = vec![
        ("kafka://broker", |e| matches!(e, OpenError::Unsupported(_))),
        ("", |e| matches!(e, OpenError::Unsupported(_))),
        // Sentinel without the master's name, and a Sentinel option without Sentinel.
        ("redis+sentinel://h:26379", |e| {
            matches!(e, OpenError::RedisUrl(RedisUrlError::Invalid { .. }))
        }),
        ("redis://h:6379?sentinel_password=pw", |e| {
            matches!(e, OpenError::RedisUrl(RedisUrlError::Invalid { .. }))
        }),
        ("redis://host:port", |e| {
            matches!(e, OpenError::RedisUrl(RedisUrlError::Invalid { .. }))
        }),
        ("postgres://u@h/db?sslmode=sometimes", |e| {
            matches!(e, OpenError::PostgresUrl(_))
        }),
    ];
    for (url, expected) in cases {
        let err = courier_notify::open(url, "courier").await.err().expect(url);
        assert!(expected(&err), "{url}: {err:?}");
    }
    let err = courier_notify::open("redis://127.0.0.1:6379", "has space")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, OpenError::Prefix(_)), "{err:?}");
    let err = courier_notify::open("mysql://u:hunter2@h/db", "c").await.err().unwrap();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
