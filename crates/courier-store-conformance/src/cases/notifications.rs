//! Notifications for people: storage by mode, group replacement, dismissal per
//! subscriber, replay to a viewer, subscriptions to sources, expiry, and the
//! values nodes share.

use std::time::Duration;

use courier_core::{
    Change, Cursor, Dismissal, EventFilter, EventType, NewNotification, NotificationFilter, NotificationMode,
    NotificationTtl, Target, Viewer,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

fn ttl() -> NotificationTtl {
    NotificationTtl::default()
}

async fn send(store: &DynStore, new: NewNotification) -> courier_core::NotificationSent {
    let committed = store.send_notification(new, &ttl()).await.expect("send");
    assert_eq!(committed.changes.len(), 1, "one change per send");
    committed.value
}

fn user_viewer(session: &str, user: &str) -> Viewer {
    Viewer {
        user: Some(user.into()),
        ..Viewer::session(session)
    }
}

fn ids(records: &[courier_core::NotificationRecord]) -> Vec<Uuid> {
    records.iter().map(|r| r.id).collect()
}

/// Each mode is kept as the model says: queued and timeseries stored with their
/// TTLs, ephemeral (and every broadcast) not stored but logged; every
/// notification gets the seq of its event, in send order.
pub async fn notifications_are_stored_by_mode_and_numbered_by_their_events(store: DynStore) {
    let queued = send(
        &store,
        NewNotification::new(Target::Session("s1".into()), "generic", json!({"t": 1})),
    )
    .await;
    let series = send(
        &store,
        NewNotification::new(Target::Session("s1".into()), "metric", json!({"cpu": 82}))
            .with_mode(NotificationMode::Timeseries),
    )
    .await;
    let ephemeral = send(
        &store,
        NewNotification::new(Target::Session("s1".into()), "ping", json!({})).with_mode(NotificationMode::Ephemeral),
    )
    .await;
    let broadcast = send(
        &store,
        NewNotification::new(Target::Broadcast, "news", json!({"n": 1})).with_mode(NotificationMode::Queued),
    )
    .await;
    assert_eq!(
        broadcast.notification.mode,
        NotificationMode::Ephemeral,
        "broadcasts are ephemeral"
    );
    assert!(broadcast.notification.expires_at.is_none());

    let seqs = [&queued, &series, &ephemeral, &broadcast].map(|s| s.notification.seq);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let events = store
        .read_events(&EventFilter::after(0).types([EventType::NotificationSent]))
        .await
        .unwrap()
        .events;
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs.to_vec());
    assert_eq!(events[0].data["id"], json!(queued.notification.id));
    assert_eq!(events[0].data["target"], json!({"kind": "session", "key": "s1"}));
    assert!(
        events[0].data.get("payload").is_none(),
        "the log carries ids, not payloads"
    );

    let now = store.now().await.unwrap();
    let stored = store
        .get_notifications(&[
            queued.notification.id,
            series.notification.id,
            ephemeral.notification.id,
        ])
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "ephemeral notifications are not stored");
    let q = stored.iter().find(|r| r.id == queued.notification.id).unwrap();
    assert_eq!(q.payload, json!({"t": 1}));
    assert_eq!(q.seq, queued.notification.seq);
    assert_close(
        q.expires_at.unwrap(),
        now + chrono::Duration::hours(24),
        Duration::from_secs(30),
        "queued TTL",
    );
    let t = stored.iter().find(|r| r.id == series.notification.id).unwrap();
    assert_close(
        t.expires_at.unwrap(),
        now + chrono::Duration::days(7),
        Duration::from_secs(30),
        "timeseries TTL",
    );
    let listed = store
        .list_notifications(&NotificationFilter {
            target: Some(Target::Session("s1".into())),
            limit: 10,
            ..NotificationFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ids(&listed),
        vec![series.notification.id, queued.notification.id],
        "newest first"
    );
}

/// A notification with a group replaces the live one of its target and group;
/// the replaced one is no longer replayed, and other targets' groups are theirs.
pub async fn a_group_replaces_its_live_notification(store: DynStore) {
    let target = Target::User("u1".into());
    let first = send(
        &store,
        NewNotification::new(target.clone(), "generic", json!({"step": 1})).with_group("deploy"),
    )
    .await;
    let elsewhere = send(
        &store,
        NewNotification::new(Target::User("u2".into()), "generic", json!({"step": 1})).with_group("deploy"),
    )
    .await;
    let second = send(
        &store,
        NewNotification::new(target.clone(), "generic", json!({"step": 2})).with_group("deploy"),
    )
    .await;
    assert_eq!(second.replaced, vec![first.notification.id]);
    assert!(elsewhere.replaced.is_empty());
    let replay = store
        .replay_notifications(&user_viewer("s", "u1"), None, 100)
        .await
        .unwrap();
    assert_eq!(ids(&replay.queued), vec![second.notification.id]);
    assert!(
        store
            .get_notifications(&[first.notification.id])
            .await
            .unwrap()
            .is_empty()
    );
    let events = store
        .read_events(&EventFilter::after(0).types([EventType::NotificationSent]))
        .await
        .unwrap()
        .events;
    assert_eq!(events.last().unwrap().data["replaced"], json!([first.notification.id]));
}

/// Many senders racing on one target and group leave exactly one live notification.
pub async fn concurrent_group_replacement_leaves_exactly_one(store: DynStore) {
    let racers = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let new =
                NewNotification::new(Target::Session("racy".into()), "generic", json!({"i": i})).with_group("progress");
            store.send_notification(new, &NotificationTtl::default()).await.unwrap()
        })
    });
    let mut replaced = 0;
    for racer in futures::future::join_all(racers).await {
        replaced += racer.unwrap().value.replaced.len();
    }
    let live = store
        .list_notifications(&NotificationFilter {
            target: Some(Target::Session("racy".into())),
            limit: 100,
            ..NotificationFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(live.len(), 1, "exactly one live notification: {live:?}");
    assert_eq!(replaced, 15, "every other one was replaced once");
}

/// A viewer sees its session's, its user's and its sources' notifications; a
/// dismissal hides one for its subscriber only; timeseries ones come after a
/// cursor and cannot be dismissed; someone else's cannot be dismissed.
pub async fn replay_and_dismissal_follow_the_viewer(store: DynStore) {
    let mine = send(
        &store,
        NewNotification::new(Target::Session("s1".into()), "generic", json!({})),
    )
    .await;
    let users = send(
        &store,
        NewNotification::new(Target::User("u1".into()), "generic", json!({})),
    )
    .await;
    let tech = send(
        &store,
        NewNotification::new(Target::Source("blog:tech".into()), "generic", json!({})),
    )
    .await;
    let news = send(
        &store,
        NewNotification::new(Target::Source("news".into()), "generic", json!({})),
    )
    .await;
    let other = send(
        &store,
        NewNotification::new(Target::Session("s2".into()), "generic", json!({})),
    )
    .await;
    let series = send(
        &store,
        NewNotification::new(Target::User("u1".into()), "metric", json!({})).with_mode(NotificationMode::Timeseries),
    )
    .await;

    // u1 on two devices, reading blog:tech through a subscription and news through its token.
    assert!(store.subscribe_source("u1", "blog:tech").await.unwrap().value);
    let laptop = Viewer {
        sources: vec!["news".into()],
        ..user_viewer("s1", "u1")
    };
    let phone = user_viewer("s3", "u1");
    let replay = store.replay_notifications(&laptop, None, 100).await.unwrap();
    assert_eq!(
        ids(&replay.queued),
        vec![
            mine.notification.id,
            users.notification.id,
            tech.notification.id,
            news.notification.id
        ]
    );
    assert!(replay.timeseries.is_empty(), "no cursor, no timeseries");
    assert!(!replay.reset);
    let phone_replay = store.replay_notifications(&phone, None, 100).await.unwrap();
    assert_eq!(
        ids(&phone_replay.queued),
        vec![users.notification.id, tech.notification.id]
    );

    // Dismissed on the laptop: gone on both devices of the user, not for anyone else.
    let dismissed = store
        .dismiss_notification(&laptop, users.notification.id)
        .await
        .unwrap();
    assert_eq!(dismissed.value, Dismissal::Dismissed);
    assert!(matches!(
        &dismissed.changes[..],
        [Change::NotificationsDismissed { ids, subscriber: courier_core::Subscriber::User(u), .. }]
            if ids == &vec![users.notification.id] && u == "u1"
    ));
    let again = store.dismiss_notification(&phone, users.notification.id).await.unwrap();
    assert_eq!(again.value, Dismissal::Dismissed);
    assert!(again.changes.is_empty(), "dismissing twice changes nothing");
    let phone_replay = store.replay_notifications(&phone, None, 100).await.unwrap();
    assert_eq!(ids(&phone_replay.queued), vec![tech.notification.id]);
    // Another user subscribed to the same source still sees it after u1 dismisses it.
    store.subscribe_source("u2", "blog:tech").await.unwrap();
    store.dismiss_notification(&phone, tech.notification.id).await.unwrap();
    let u2 = store
        .replay_notifications(&user_viewer("s9", "u2"), None, 100)
        .await
        .unwrap();
    assert_eq!(ids(&u2.queued), vec![tech.notification.id]);

    // What the viewer cannot see is not found; timeseries is not dismissible.
    let outcome = |id| {
        let store = store.clone();
        let laptop = laptop.clone();
        async move { store.dismiss_notification(&laptop, id).await.unwrap().value }
    };
    assert_eq!(outcome(other.notification.id).await, Dismissal::NotFound);
    assert_eq!(outcome(Uuid::now_v7()).await, Dismissal::NotFound);
    assert_eq!(outcome(series.notification.id).await, Dismissal::NotDismissible);

    // Timeseries after a cursor, by sequence or by time.
    let by_seq = store
        .replay_notifications(&laptop, Some(Cursor::Seq(news.notification.seq)), 100)
        .await
        .unwrap();
    assert_eq!(ids(&by_seq.timeseries), vec![series.notification.id]);
    let after_it = store
        .replay_notifications(&laptop, Some(Cursor::Seq(series.notification.seq)), 100)
        .await
        .unwrap();
    assert!(after_it.timeseries.is_empty());
    let by_time = store
        .replay_notifications(
            &laptop,
            Some(Cursor::Time(
                series.notification.created_at - chrono::Duration::seconds(1),
            )),
            100,
        )
        .await
        .unwrap();
    assert_eq!(ids(&by_time.timeseries), vec![series.notification.id]);
}

/// Dismissing a group dismisses, for the subscriber, every live queued
/// notification of that group the viewer can see.
pub async fn a_group_is_dismissed_for_one_subscriber(store: DynStore) {
    let a = send(
        &store,
        NewNotification::new(Target::Session("s1".into()), "generic", json!({})).with_group("upload"),
    )
    .await;
    let b = send(
        &store,
        NewNotification::new(Target::User("u1".into()), "generic", json!({})).with_group("upload"),
    )
    .await;
    let kept = send(
        &store,
        NewNotification::new(Target::User("u1".into()), "generic", json!({})).with_group("other"),
    )
    .await;
    let viewer = user_viewer("s1", "u1");
    let dismissed = store.dismiss_group(&viewer, "upload").await.unwrap();
    assert_eq!(dismissed.value, vec![a.notification.id, b.notification.id]);
    assert_eq!(dismissed.changes.len(), 1);
    let replay = store.replay_notifications(&viewer, None, 100).await.unwrap();
    assert_eq!(ids(&replay.queued), vec![kept.notification.id]);
    let none = store.dismiss_group(&viewer, "upload").await.unwrap();
    assert!(none.value.is_empty() && none.changes.is_empty());
}

/// Subscriptions to sources are per user, listed sorted, and changes are reported.
pub async fn users_subscribe_to_sources(store: DynStore) {
    let added = store.subscribe_source("u1", "news").await.unwrap();
    assert!(added.value);
    assert!(matches!(
        &added.changes[..],
        [Change::SourceSubscription { subscribed: true, .. }]
    ));
    assert!(
        !store.subscribe_source("u1", "news").await.unwrap().value,
        "already subscribed"
    );
    store.subscribe_source("u1", "blog:tech").await.unwrap();
    assert_eq!(store.user_sources("u1").await.unwrap(), vec!["blog:tech", "news"]);
    assert!(store.user_sources("u2").await.unwrap().is_empty());
    let removed = store.unsubscribe_source("u1", "news").await.unwrap();
    assert!(removed.value);
    assert!(matches!(
        &removed.changes[..],
        [Change::SourceSubscription { subscribed: false, .. }]
    ));
    assert!(!store.unsubscribe_source("u1", "news").await.unwrap().value);
    assert_eq!(store.user_sources("u1").await.unwrap(), vec!["blog:tech"]);
}

/// Expired notifications are swept with their dismissals; a cursor from before
/// a swept timeseries notification learns its replay may be incomplete.
pub async fn expired_notifications_are_swept_and_a_stale_cursor_is_told(store: DynStore) {
    let short = NotificationTtl {
        queued: Duration::from_millis(300),
        timeseries: Duration::from_millis(300),
    };
    let viewer = Viewer::session("s1");
    let before = store.last_event_seq().await.unwrap();
    let q = store
        .send_notification(
            NewNotification::new(Target::Session("s1".into()), "generic", json!({})),
            &short,
        )
        .await
        .unwrap()
        .value;
    store.dismiss_notification(&viewer, q.notification.id).await.unwrap();
    store
        .send_notification(
            NewNotification::new(Target::Session("s1".into()), "metric", json!({}))
                .with_mode(NotificationMode::Timeseries),
            &short,
        )
        .await
        .unwrap();
    let lasting = send(
        &store,
        NewNotification::new(Target::Session("s1".into()), "generic", json!({})),
    )
    .await;
    let fresh = store
        .replay_notifications(&viewer, Some(Cursor::Seq(before)), 100)
        .await
        .unwrap();
    assert_eq!(fresh.timeseries.len(), 1);
    assert!(!fresh.reset);

    sleep_ms(500).await;
    let expired = store
        .replay_notifications(&viewer, Some(Cursor::Seq(before)), 100)
        .await
        .unwrap();
    assert!(
        expired.timeseries.is_empty(),
        "expired ones are not replayed even before the sweep"
    );
    assert_eq!(store.sweep_notifications(100).await.unwrap(), 2);
    assert_eq!(store.sweep_notifications(100).await.unwrap(), 0);
    let after = store
        .replay_notifications(&viewer, Some(Cursor::Seq(before)), 100)
        .await
        .unwrap();
    assert!(after.reset, "a timeseries notification after the cursor was swept");
    assert_eq!(ids(&after.queued), vec![lasting.notification.id]);
    let current = store
        .replay_notifications(&viewer, Some(Cursor::Seq(lasting.notification.seq)), 100)
        .await
        .unwrap();
    assert!(!current.reset, "nothing swept after this cursor");
}

/// A value stored under a name is the one every later caller gets.
pub async fn the_first_cluster_value_stored_wins(store: DynStore) {
    assert_eq!(store.cluster_value("cookie-key", "first").await.unwrap(), "first");
    assert_eq!(store.cluster_value("cookie-key", "second").await.unwrap(), "first");
    assert_eq!(store.cluster_value("other", "x").await.unwrap(), "x");
}
