//! Notifications for people through the runtime: sends reach every node's
//! subscribers with their envelope, dismissals are per subscriber, hooks can
//! rewrite or suppress, and an orchestrator's notification is sent once however
//! often it replays.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;
use courier::core::{
    Dismissal, EventFilter, EventType, Notice, NotificationMode, NotificationNotice, TaskError, Topic, Viewer,
};
use courier::{Courier, NotificationError, OrchestratorContext};
use serde_json::json;

#[actix_rt::test]
async fn a_send_is_announced_with_its_envelope_and_replayed_until_dismissed() {
    let courier = Courier::builder().store(sqlite().await).start().await.unwrap();
    let mut live = courier.notifier().subscribe(vec![Topic::Notifications]).await.unwrap();
    let notifications = courier.notifications();
    let sent = notifications
        .user("u1")
        .group("deploy")
        .send("generic", json!({"title": "Deploying", "message": "1/3"}))
        .await
        .unwrap()
        .expect("sent");
    let notice = live.next_within(Duration::from_secs(5)).await.expect("announced");
    let Notice::Notification(notice) = notice else {
        panic!("{notice:?}")
    };
    match *notice {
        NotificationNotice::Sent { id, seq, envelope, .. } => {
            assert_eq!(id, sent.notification.id);
            assert_eq!(seq, sent.notification.seq);
            let envelope = envelope.expect("the envelope travels with it");
            assert_eq!(envelope["payload"]["title"], "Deploying");
            assert_eq!(envelope["group"], "deploy");
            assert_eq!(envelope["mode"], "queued");
        }
        other => panic!("{other:?}"),
    }
    let viewer = Viewer {
        user: Some("u1".into()),
        ..Viewer::session("s1")
    };
    let replay = notifications.replay(&viewer, None, 100).await.unwrap();
    assert_eq!(replay.queued.len(), 1);
    assert_eq!(
        notifications.dismiss(&viewer, sent.notification.id).await.unwrap(),
        Dismissal::Dismissed
    );
    assert!(matches!(
        live.next_within(Duration::from_secs(5)).await,
        Some(Notice::Notification(n)) if matches!(*n, NotificationNotice::Dismissed { .. })
    ));
    assert!(
        notifications
            .replay(&viewer, None, 100)
            .await
            .unwrap()
            .queued
            .is_empty()
    );
    courier.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn hooks_rewrite_suppress_and_observe() {
    let sent = Arc::new(AtomicUsize::new(0));
    let dismissed = Arc::new(AtomicUsize::new(0));
    let (s, d) = (sent.clone(), dismissed.clone());
    let courier = Courier::builder()
        .store(sqlite().await)
        .before_notification_sent(|n| {
            n.payload["branded"] = json!(true);
            n.kind != "spam"
        })
        .on_notification_sent(move |_| {
            s.fetch_add(1, Ordering::SeqCst);
        })
        .on_notification_dismissed(move |_, ids| {
            d.fetch_add(ids.len(), Ordering::SeqCst);
        })
        .start()
        .await
        .unwrap();
    let notifications = courier.notifications();
    let kept = notifications
        .session("s")
        .send("generic", json!({}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.notification.payload["branded"], json!(true));
    assert!(
        notifications
            .session("s")
            .send("spam", json!({}))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(sent.load(Ordering::SeqCst), 1);
    notifications
        .dismiss(&Viewer::session("s"), kept.notification.id)
        .await
        .unwrap();
    assert_eq!(dismissed.load(Ordering::SeqCst), 1);
    let broadcast = notifications
        .broadcast()
        .mode(NotificationMode::Queued)
        .send("news", json!({}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(broadcast.notification.mode, NotificationMode::Ephemeral);
    assert!(matches!(
        notifications.user("u").send("generic", json!("not an object")).await,
        Err(NotificationError::Invalid { field: "payload", .. })
    ));
    courier.shutdown().await.unwrap();
}

async fn notify_once(ctx: OrchestratorContext, user: String) -> Result<String, TaskError> {
    let id = ctx.notify_user(&user, "generic", json!({"title": "Done"})).await?;
    // Wait so that the test can kill the node and another replays this code.
    ctx.sleep(Duration::from_millis(300)).await?;
    Ok(id.to_string())
}

#[actix_rt::test]
async fn an_orchestrators_notification_is_sent_once_across_a_replay() {
    let store = sqlite().await;
    let build = || {
        Courier::builder()
            .store(store.clone())
            .orchestrator("notify_once", notify_once)
            .worker(fast_worker())
    };
    let a = build().start().await.unwrap();
    let id = a.dispatch("notify_once", "u7").await.unwrap();
    eventually(Duration::from_secs(10), "the notification is recorded", || async {
        !store
            .read_events(&EventFilter::after(0).types([EventType::NotificationSent]))
            .await
            .unwrap()
            .events
            .is_empty()
    })
    .await;
    // Hand the execution back mid-run: another node replays it from history.
    a.shutdown().await.unwrap();
    let b = build().start().await.unwrap();
    let result: String = b.result_when_done(id, WAIT).await.unwrap();
    let sent = store
        .read_events(&EventFilter::after(0).types([EventType::NotificationSent]))
        .await
        .unwrap()
        .events;
    assert_eq!(sent.len(), 1, "sent once: {sent:?}");
    assert_eq!(sent[0].data["id"], json!(result));
    b.shutdown().await.unwrap();
}
