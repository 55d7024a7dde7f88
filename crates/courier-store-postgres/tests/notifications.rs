//! Notifications on Postgres beyond the shared suite: the seq a notification
//! sent by a group commit is given (and stored), group replacement racing
//! between direct sends and orchestrator effects, and dismissals racing the
//! replacement that deletes their notification.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use courier_core::{
    Change, EffectWrite, EventFilter, EventStore, EventType, ExecutionId, NewExecution, NewNotification,
    NotificationFilter, NotificationMode, NotificationStore, NotificationTtl, Store, Subscriber, Target, TaskId,
    TaskKind, TaskSpec, Viewer, WriteBatch,
};
use courier_store_postgres::PostgresStore;
use serde_json::json;
use uuid::Uuid;

/// An execution to record effects in (unfenced).
async fn execution(store: &PostgresStore) -> ExecutionId {
    let new = NewExecution::new(TaskSpec::new(TaskKind::Orchestrator, "notifying", json!(null)));
    let id = new.id;
    store.dispatch(vec![new]).await.unwrap();
    id
}

fn notify(execution: ExecutionId, step: i64, notification: &NewNotification) -> EffectWrite {
    EffectWrite {
        fence: None,
        execution_id: execution,
        parent_id: Some(TaskId::root_of(execution)),
        step,
        effect: courier_core::Effect::Notify {
            notification: notification.clone(),
            ttl: NotificationTtl::default(),
        },
    }
}

/// The seq of each `notification.sent` event, by notification id.
async fn sent_seqs(store: &PostgresStore) -> HashMap<Uuid, i64> {
    store
        .read_events(&EventFilter::after(0).types([EventType::NotificationSent]).limit(10_000))
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| (serde_json::from_value(e.data["id"].clone()).unwrap(), e.seq))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_sent_by_a_group_commit_carry_and_store_their_events_seq() {
    let store = common::fresh("notify_commit").await;
    let id = execution(&store).await;
    let target = Target::User("u1".into());
    let first = NewNotification::new(target.clone(), "generic", json!({"n": 1})).with_group("deploy");
    let second = NewNotification::new(target.clone(), "generic", json!({"n": 2})).with_group("deploy");
    let ping =
        NewNotification::new(Target::Session("s1".into()), "ping", json!({})).with_mode(NotificationMode::Ephemeral);
    let series =
        NewNotification::new(target.clone(), "metric", json!({"cpu": 3})).with_mode(NotificationMode::Timeseries);
    let results = store
        .commit(Arc::new(WriteBatch {
            effects: vec![
                notify(id, 1, &first),
                notify(id, 2, &second),
                notify(id, 3, &ping),
                notify(id, 4, &series),
            ],
            ..WriteBatch::default()
        }))
        .await
        .unwrap();
    for (result, sent) in results.effects.iter().zip([&first, &second, &ping, &series]) {
        assert_eq!(result.as_ref().unwrap().result, json!(sent.id));
    }

    // Each change carries its event's seq; the second replaced the first, in the same batch.
    let logged = sent_seqs(&store).await;
    assert_eq!(logged.len(), 4);
    let mut reported = HashMap::new();
    for change in &results.changes {
        if let Change::NotificationSent { notification, replaced } = change {
            assert_eq!(Some(&notification.seq), logged.get(&notification.id), "{change:?}");
            if notification.id == second.id {
                assert_eq!(replaced, &vec![first.id]);
            }
            reported.insert(notification.id, notification.seq);
        }
    }
    assert_eq!(reported, logged);

    // And the stored rows have it too.
    let stored = store
        .get_notifications(&[first.id, second.id, ping.id, series.id])
        .await
        .unwrap();
    let mut stored_ids: Vec<Uuid> = stored.iter().map(|r| r.id).collect();
    stored_ids.sort();
    let mut expected = vec![second.id, series.id];
    expected.sort();
    assert_eq!(
        stored_ids, expected,
        "the replaced and the ephemeral one are not stored"
    );
    for record in &stored {
        assert_eq!(record.seq, logged[&record.id]);
    }
    let replay = store
        .replay_notifications(
            &Viewer {
                user: Some("u1".into()),
                ..Viewer::session("s")
            },
            Some(courier_core::Cursor::Seq(0)),
            10,
        )
        .await
        .unwrap();
    assert_eq!(replay.queued.iter().map(|r| r.id).collect::<Vec<_>>(), vec![second.id]);
    assert_eq!(
        replay.timeseries.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![series.id]
    );
    assert!(!replay.reset);
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_and_effects_racing_on_one_group_leave_one_live_notification() {
    let store = common::fresh("notify_race").await;
    let target = Target::Session("racy".into());
    let mut executions = Vec::new();
    for _ in 0..8 {
        executions.push(execution(&store).await);
    }
    let mut racers = Vec::new();
    for (i, execution) in executions.into_iter().enumerate() {
        let (effect_store, effect_target) = (store.clone(), target.clone());
        racers.push(tokio::spawn(async move {
            let new = NewNotification::new(effect_target, "generic", json!({"effect": i})).with_group("g");
            let results = effect_store
                .commit(Arc::new(WriteBatch {
                    effects: vec![notify(execution, 1, &new)],
                    ..WriteBatch::default()
                }))
                .await
                .unwrap();
            results.effects[0].as_ref().unwrap();
            results
                .changes
                .iter()
                .map(|c| match c {
                    Change::NotificationSent { replaced, .. } => replaced.len(),
                    _ => 0,
                })
                .sum::<usize>()
        }));
        let (store, target) = (store.clone(), target.clone());
        racers.push(tokio::spawn(async move {
            let new = NewNotification::new(target, "generic", json!({"send": i})).with_group("g");
            let sent = store.send_notification(new, &NotificationTtl::default()).await.unwrap();
            sent.value.replaced.len()
        }));
    }
    let mut replaced = 0;
    for racer in futures::future::join_all(racers).await {
        replaced += racer.unwrap();
    }
    let live = store
        .list_notifications(&NotificationFilter {
            target: Some(target),
            limit: 100,
            ..NotificationFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(live.len(), 1, "exactly one live notification: {live:?}");
    assert_eq!(replaced, 15, "every other one was replaced once");
    let logged = sent_seqs(&store).await;
    assert_eq!(logged.len(), 16);
    assert_eq!(live[0].seq, logged[&live[0].id]);
    assert_eq!(
        live[0].seq,
        *logged.values().max().unwrap(),
        "the live one is the last committed"
    );
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dismissals_racing_a_replacement_leave_no_dismissal_behind() {
    let store = common::fresh("dismiss_race").await;
    let target = Target::User("u1".into());
    let viewers: Vec<Viewer> = (0..4)
        .map(|i| Viewer {
            user: Some("u1".into()),
            ..Viewer::session(format!("s{i}"))
        })
        .chain((0..4).map(|i| Viewer {
            sources: vec!["news".into()],
            ..Viewer::session(format!("anon{i}"))
        }))
        .collect();
    let mut current = store
        .send_notification(
            NewNotification::new(target.clone(), "generic", json!({"round": 0})).with_group("g"),
            &NotificationTtl::default(),
        )
        .await
        .unwrap()
        .value
        .notification
        .id;
    for round in 1..=30 {
        let mut tasks = Vec::new();
        for viewer in &viewers {
            let (store, viewer) = (store.clone(), viewer.clone());
            tasks.push(tokio::spawn(async move {
                store.dismiss_notification(&viewer, current).await.unwrap();
            }));
        }
        let replacer = {
            let (store, target) = (store.clone(), target.clone());
            tokio::spawn(async move {
                let new = NewNotification::new(target, "generic", json!({"round": round})).with_group("g");
                store.send_notification(new, &NotificationTtl::default()).await.unwrap()
            })
        };
        futures::future::join_all(tasks).await;
        let sent = replacer.await.unwrap().value;
        assert_eq!(sent.replaced, vec![current]);
        current = sent.notification.id;
    }
    let client = store.pool().get().await.unwrap();
    let orphans: i64 = client
        .query_one(
            "SELECT count(*) FROM notification_dismissals d
             WHERE NOT EXISTS (SELECT 1 FROM notifications n WHERE n.id = d.notification_id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0, "a dismissal outlived its notification");
    // Only the live notification may be dismissed, by the one user (anonymous
    // sessions cannot see a user's notification).
    let left: Vec<(Uuid, String)> = client
        .query("SELECT notification_id, subscriber FROM notification_dismissals", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(left.len() <= 1, "{left:?}");
    for (id, subscriber) in left {
        assert_eq!(id, current);
        assert_eq!(subscriber, Subscriber::User("u1".into()).storage_key());
    }
    store.drop_schema().await.unwrap();
}
