//! Webhooks: registrations, the dispatcher's cursor, enqueueing deliveries with
//! their executions, delivery attempts, and cleanup of finished deliveries.

use std::collections::BTreeMap;
use std::time::Duration;

use courier_core::{
    AttemptWrite, DeliveryAttempt, DeliveryRecord, DeliveryReplay, DeliveryState, EventType, ExecutionId,
    ExecutionState, NewDelivery, NewExecution, StoreError, TaskId, TaskState, WebhookRecord, WriteBatch,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

/// A webhook registered at `created_at`, with every optional field set.
fn webhook(created_at: chrono::DateTime<chrono::Utc>) -> WebhookRecord {
    WebhookRecord {
        id: Uuid::new_v4(),
        url: "https://example.com/hook".into(),
        event_types: vec![EventType::ExecutionCompleted, EventType::TaskFailed],
        execution_id: Some(ExecutionId::new()),
        task_id: Some(TaskId(Uuid::new_v4())),
        headers: BTreeMap::from([("x-team".to_string(), "billing".to_string())]),
        secret: "whsec_c2VjcmV0".into(),
        previous_secret: Some("whsec_b2xk".into()),
        previous_secret_until: Some(created_at + chrono::Duration::hours(1)),
        description: Some("billing events".into()),
        enabled: true,
        disabled_reason: None,
        created_at,
        updated_at: created_at,
    }
}

/// A webhook with only the required fields.
fn plain_webhook(created_at: chrono::DateTime<chrono::Utc>) -> WebhookRecord {
    WebhookRecord {
        event_types: Vec::new(),
        execution_id: None,
        task_id: None,
        headers: BTreeMap::new(),
        previous_secret: None,
        previous_secret_until: None,
        description: None,
        ..webhook(created_at)
    }
}

/// Registers a plain webhook and returns its id.
async fn registered(store: &DynStore) -> Uuid {
    let hook = plain_webhook(now_micros());
    store.create_webhook(&hook).await.expect("create webhook");
    hook.id
}

/// A delivery of event `seq` to `webhook`, made by an execution of `function`.
fn delivery(webhook: Uuid, seq: i64, function: &str) -> NewDelivery {
    NewDelivery {
        id: Uuid::new_v4(),
        webhook_id: webhook,
        event_seq: seq,
        event_type: EventType::ExecutionCompleted,
        execution: NewExecution::new(activity(function)),
        skipped: false,
    }
}

/// The replay of `delivery` by a new execution of `function`.
fn replay(delivery: Uuid, function: &str) -> DeliveryReplay {
    DeliveryReplay {
        delivery_id: delivery,
        execution: NewExecution::new(activity(function)),
    }
}

/// A delivery, which must exist.
async fn delivery_record(store: &DynStore, id: Uuid) -> DeliveryRecord {
    store
        .get_delivery(id)
        .await
        .expect("get delivery")
        .expect("delivery exists")
}

/// An attempt as the delivering activity would report it (`at` is the store's to stamp).
fn attempt(delivery: Uuid, attempt: u32, status: Option<u16>, error: Option<&str>) -> DeliveryAttempt {
    DeliveryAttempt {
        delivery_id: delivery,
        attempt,
        status,
        latency_ms: 100 + u64::from(attempt),
        response: status.map(|s| format!("answered {s}")),
        error: error.map(str::to_string),
        at: chrono::DateTime::UNIX_EPOCH,
    }
}

/// Webhooks are stored as given, read back, listed oldest first with paging
/// (limit 0: no limit), and a taken id is a conflict.
pub async fn webhooks_are_created_read_listed_and_conflict_on_a_taken_id(store: DynStore) {
    let base = now_micros();
    let first = webhook(base);
    let second = plain_webhook(base + chrono::Duration::seconds(1));
    let mut third = webhook(base + chrono::Duration::seconds(2));
    third.enabled = false;
    third.disabled_reason = Some("410 Gone".into());
    // Registered out of order: listings follow created_at, not insertion.
    for hook in [&third, &first, &second] {
        store.create_webhook(hook).await.unwrap();
    }

    assert_eq!(store.get_webhook(first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.get_webhook(second.id).await.unwrap(), Some(second.clone()));
    assert_eq!(store.get_webhook(third.id).await.unwrap(), Some(third.clone()));
    assert_eq!(store.get_webhook(Uuid::new_v4()).await.unwrap(), None);

    let ids = |hooks: Vec<WebhookRecord>| hooks.into_iter().map(|h| h.id).collect::<Vec<_>>();
    assert_eq!(
        store.list_webhooks(0, 0).await.unwrap(),
        vec![first.clone(), second.clone(), third.clone()]
    );
    assert_eq!(ids(store.list_webhooks(2, 0).await.unwrap()), vec![first.id, second.id]);
    assert_eq!(ids(store.list_webhooks(2, 2).await.unwrap()), vec![third.id]);
    assert_eq!(ids(store.list_webhooks(0, 1).await.unwrap()), vec![second.id, third.id]);
    assert!(store.list_webhooks(5, 3).await.unwrap().is_empty());

    let mut again = plain_webhook(now_micros());
    again.id = first.id;
    match store.create_webhook(&again).await {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("expected a conflict on a taken webhook id, got {other:?}"),
    }
    assert_eq!(store.get_webhook(first.id).await.unwrap(), Some(first));
    assert_eq!(store.list_webhooks(0, 0).await.unwrap().len(), 3);
}

/// Disabling records the reason, enabling clears it, both stamp `updated_at`
/// with the store clock; a missing webhook is reported, not created.
pub async fn webhooks_are_disabled_and_enabled(store: DynStore) {
    let created = now_micros() - chrono::Duration::hours(1);
    let hook = plain_webhook(created);
    store.create_webhook(&hook).await.unwrap();

    assert!(
        store
            .set_webhook_enabled(hook.id, false, Some("410 Gone"))
            .await
            .unwrap()
    );
    let got = store.get_webhook(hook.id).await.unwrap().unwrap();
    assert!(!got.enabled);
    assert_eq!(got.disabled_reason.as_deref(), Some("410 Gone"));
    assert_eq!(got.created_at, created);
    assert_close(
        got.updated_at,
        store.now().await.unwrap(),
        Duration::from_secs(5),
        "updated_at on disabling",
    );

    // Enabling clears the reason, even if one is passed.
    assert!(store.set_webhook_enabled(hook.id, true, Some("ignored")).await.unwrap());
    let got = store.get_webhook(hook.id).await.unwrap().unwrap();
    assert!(got.enabled);
    assert_eq!(got.disabled_reason, None);

    assert!(store.set_webhook_enabled(hook.id, false, None).await.unwrap());
    let got = store.get_webhook(hook.id).await.unwrap().unwrap();
    assert_eq!((got.enabled, got.disabled_reason), (false, None));
    assert_eq!((got.url, got.secret), (hook.url, hook.secret));

    let missing = Uuid::new_v4();
    assert!(!store.set_webhook_enabled(missing, false, Some("x")).await.unwrap());
    assert!(!store.set_webhook_enabled(missing, true, None).await.unwrap());
    assert_eq!(store.get_webhook(missing).await.unwrap(), None);
}

/// Rotating moves the current secret to previous, signing until `grace` from
/// the store's now, and stamps `updated_at`; the other fields stay. A second
/// rotation replaces the previous secret with the one it displaced; a grace of
/// zero ends at once. A missing webhook is reported, not created.
pub async fn rotating_a_secret_keeps_the_replaced_one_for_the_grace_period(store: DynStore) {
    let created = now_micros() - chrono::Duration::hours(1);
    let hook = webhook(created);
    store.create_webhook(&hook).await.unwrap();

    let rotated = store
        .rotate_webhook_secret(hook.id, "sealed:one", Duration::from_secs(3600))
        .await
        .unwrap()
        .expect("the webhook exists");
    let now = store.now().await.unwrap();
    assert_eq!(rotated.secret, "sealed:one");
    assert_eq!(rotated.previous_secret.as_deref(), Some(hook.secret.as_str()));
    let until = rotated.previous_secret_until.expect("a grace period");
    assert_close(
        until,
        now + chrono::Duration::hours(1),
        Duration::from_secs(5),
        "previous_secret_until is the store's now + grace",
    );
    assert_close(
        rotated.updated_at,
        now,
        Duration::from_secs(5),
        "updated_at on rotation",
    );
    assert_eq!(
        WebhookRecord {
            secret: hook.secret.clone(),
            previous_secret: hook.previous_secret.clone(),
            previous_secret_until: hook.previous_secret_until,
            updated_at: hook.updated_at,
            ..rotated.clone()
        },
        hook,
        "nothing else changes"
    );
    assert_eq!(store.get_webhook(hook.id).await.unwrap(), Some(rotated.clone()));

    let again = store
        .rotate_webhook_secret(hook.id, "sealed:two", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.secret.as_str(), again.previous_secret.as_deref()),
        ("sealed:two", Some("sealed:one"))
    );
    let now = store.now().await.unwrap();
    let until = again.previous_secret_until.unwrap();
    assert!(until <= now, "a grace of zero has ended: {until} > {now}");
    assert_close(until, now, Duration::from_secs(5), "a grace of zero ends now");

    let missing = Uuid::new_v4();
    assert_eq!(
        store
            .rotate_webhook_secret(missing, "sealed:x", Duration::from_secs(60))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.get_webhook(missing).await.unwrap(), None);
}

/// Eight rotations at once each keep, as previous, the secret that was
/// current when it landed: the answers chain from the registered secret
/// through every new one, so no secret is displaced twice (nor lost).
pub async fn concurrent_rotations_chain_without_losing_a_secret(store: DynStore) {
    let hook = plain_webhook(now_micros());
    store.create_webhook(&hook).await.unwrap();
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .rotate_webhook_secret(hook.id, &format!("sealed:{i}"), Duration::from_secs(60))
                    .await
                    .unwrap()
                    .unwrap()
            })
        })
        .collect();
    let answers: Vec<WebhookRecord> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    // Follow the chain: each secret was displaced by exactly one rotation.
    let mut next: BTreeMap<String, String> = BTreeMap::new();
    for answer in &answers {
        let previous = answer.previous_secret.clone().expect("a previous secret");
        assert!(
            next.insert(previous.clone(), answer.secret.clone()).is_none(),
            "{previous} was displaced twice: {answers:#?}"
        );
    }
    let mut at = hook.secret.clone();
    let mut seen = 0;
    while let Some(secret) = next.get(&at) {
        at = secret.clone();
        seen += 1;
    }
    assert_eq!(seen, 8, "one chain through all eight: {next:?}");
    let last = store.get_webhook(hook.id).await.unwrap().unwrap();
    assert_eq!(last.secret, at, "the last rotation in the chain is current");
}

/// Replacing a secret value is a compare-and-set over both secret columns:
/// it changes the column that still holds `from` (current, previous or both),
/// leaves `updated_at`, and answers false when no column holds it.
pub async fn replacing_a_secret_value_is_a_compare_and_set(store: DynStore) {
    let created = now_micros() - chrono::Duration::hours(1);
    let hook = plain_webhook(created);
    store.create_webhook(&hook).await.unwrap();
    assert!(
        store
            .replace_webhook_secret(hook.id, &hook.secret, "sealed:a")
            .await
            .unwrap()
    );
    let got = store.get_webhook(hook.id).await.unwrap().unwrap();
    assert_eq!((got.secret.as_str(), got.previous_secret), ("sealed:a", None));
    assert_eq!(got.updated_at, created, "re-sealing is not a change of the webhook");
    assert!(
        !store
            .replace_webhook_secret(hook.id, &hook.secret, "sealed:stale")
            .await
            .unwrap(),
        "the value was replaced already"
    );

    store
        .rotate_webhook_secret(hook.id, "sealed:b", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        store
            .replace_webhook_secret(hook.id, "sealed:a", "sealed:A")
            .await
            .unwrap()
    );
    let got = store.get_webhook(hook.id).await.unwrap().unwrap();
    assert_eq!(
        (got.secret.as_str(), got.previous_secret.as_deref()),
        ("sealed:b", Some("sealed:A"))
    );
    assert!(
        store
            .replace_webhook_secret(hook.id, "sealed:b", "sealed:B")
            .await
            .unwrap()
    );
    let got = store.get_webhook(hook.id).await.unwrap().unwrap();
    assert_eq!(
        (got.secret.as_str(), got.previous_secret.as_deref()),
        ("sealed:B", Some("sealed:A"))
    );
    assert!(!store.replace_webhook_secret(hook.id, "sealed:zzz", "x").await.unwrap());
    assert!(
        !store
            .replace_webhook_secret(Uuid::new_v4(), "sealed:B", "x")
            .await
            .unwrap()
    );
    assert_eq!(store.get_webhook(hook.id).await.unwrap().unwrap().secret, "sealed:B");
}

/// Deleting a webhook deletes its deliveries and their attempts, not other
/// webhooks' deliveries, and not the deliveries' executions.
pub async fn deleting_a_webhook_deletes_its_deliveries_and_their_attempts(store: DynStore) {
    let doomed = registered(&store).await;
    let kept = registered(&store).await;
    let mine = [delivery(doomed, 1, "deliver"), delivery(doomed, 2, "deliver")];
    let theirs = delivery(kept, 1, "deliver");
    let mut all = mine.to_vec();
    all.push(theirs.clone());
    assert!(store.enqueue_deliveries(0, 2, all).await.unwrap().value);
    for d in mine.iter().chain([&theirs]) {
        store
            .record_delivery_attempt(
                &attempt(d.id, 1, Some(503), Some("unavailable")),
                DeliveryState::Pending,
            )
            .await
            .unwrap();
    }

    assert!(store.delete_webhook(doomed).await.unwrap());
    assert_eq!(store.get_webhook(doomed).await.unwrap(), None);
    assert!(store.list_deliveries(doomed, 0, 0).await.unwrap().is_empty());
    for d in &mine {
        assert_eq!(store.get_delivery(d.id).await.unwrap(), None);
        assert!(store.list_delivery_attempts(d.id).await.unwrap().is_empty());
        // The execution stays, to finish or be cleaned up.
        assert_eq!(execution(&store, d.execution.id).await.state, ExecutionState::Pending);
    }

    assert!(store.get_webhook(kept).await.unwrap().is_some());
    assert_eq!(delivery_record(&store, theirs.id).await.attempts, 1);
    assert_eq!(store.list_delivery_attempts(theirs.id).await.unwrap().len(), 1);

    assert!(!store.delete_webhook(doomed).await.unwrap());
    assert!(!store.delete_webhook(Uuid::new_v4()).await.unwrap());
}

/// Attempts read their deliveries with the webhook and the event each
/// delivers, exactly as read on their own, in one call; an event gone from
/// the log (trimmed) reads as none, a delivery that does not exist is left
/// out, and one asked twice is answered once.
pub async fn deliveries_are_read_with_their_webhooks_and_events_for_attempts(store: DynStore) {
    let hook = webhook(now_micros());
    store.create_webhook(&hook).await.unwrap();
    let source = NewExecution::new(activity("billing"));
    let source_id = source.id;
    store.dispatch(vec![source]).await.unwrap();
    let event = events_of(&store, source_id).await.remove(0);
    let head = store.last_event_seq().await.unwrap();
    let cursor = store.webhook_cursor().await.unwrap();
    let present = delivery(hook.id, event.seq, "deliver");
    // Numbered past the head: no event holds it, as after a trim.
    let gone = delivery(hook.id, head + 1_000, "deliver");
    assert!(
        store
            .enqueue_deliveries(cursor, head, vec![present.clone(), gone.clone()])
            .await
            .unwrap()
            .value
    );

    assert!(store.get_deliveries_for_attempts(&[]).await.unwrap().is_empty());
    let mut read = store
        .get_deliveries_for_attempts(&[present.id, Uuid::new_v4(), gone.id, present.id])
        .await
        .unwrap();
    read.sort_by_key(|r| r.delivery.event_seq);
    assert_eq!(read.len(), 2, "the two that exist, once each: {read:?}");
    let (gone_read, present_read) = (read.pop().unwrap(), read.pop().unwrap());

    assert_eq!(present_read.delivery, delivery_record(&store, present.id).await);
    assert_eq!(present_read.webhook.as_ref(), Some(&hook));
    assert_eq!(present_read.event, Some(event));

    assert_eq!(gone_read.delivery, delivery_record(&store, gone.id).await);
    assert_eq!(gone_read.delivery.event_seq, head + 1_000);
    assert_eq!(gone_read.webhook, Some(hook));
    assert_eq!(gone_read.event, None);

    assert!(
        store
            .get_deliveries_for_attempts(&[Uuid::new_v4()])
            .await
            .unwrap()
            .is_empty()
    );
}

/// The cursor starts at 0. Enqueueing at the cursor creates pending deliveries
/// and dispatches their executions exactly as dispatch does (root task pending
/// and claimable, `execution.created` and `task.created`), and moves the cursor.
pub async fn enqueueing_deliveries_dispatches_their_executions_and_moves_the_cursor(store: DynStore) {
    assert_eq!(store.webhook_cursor().await.unwrap(), 0);
    let hook = registered(&store).await;
    let batch = vec![
        delivery(hook, 3, "deliver-a"),
        NewDelivery {
            event_type: EventType::TaskFailed,
            ..delivery(hook, 5, "deliver-b")
        },
    ];
    let before = store.last_event_seq().await.unwrap();
    assert!(store.enqueue_deliveries(0, 5, batch.clone()).await.unwrap().value);
    assert_eq!(store.webhook_cursor().await.unwrap(), 5);
    assert_eq!(store.last_event_seq().await.unwrap(), before + 4);

    let now = store.now().await.unwrap();
    for d in &batch {
        let got = delivery_record(&store, d.id).await;
        assert_eq!(
            (got.id, got.webhook_id, got.event_seq, got.event_type),
            (d.id, hook, d.event_seq, d.event_type)
        );
        assert_eq!(got.execution_id, d.execution.id);
        assert_eq!((got.state, got.attempts), (DeliveryState::Pending, 0));
        assert_eq!((got.last_status, got.last_error), (None, None));
        assert_close(got.created_at, now, Duration::from_secs(5), "delivery created_at");
        assert_eq!(got.updated_at, got.created_at);

        let e = execution(&store, d.execution.id).await;
        assert_eq!(
            (e.state, e.function.as_str()),
            (ExecutionState::Pending, d.execution.spec.function.as_str())
        );
        let root = task(&store, TaskId::root_of(d.execution.id)).await;
        assert_eq!((root.state, root.step, root.attempt), (TaskState::Pending, 0, 0));
        assert_eq!(root.args, d.execution.spec.args);

        let events = events_of(&store, d.execution.id).await;
        assert_eq!(
            types(&events),
            vec![EventType::ExecutionCreated, EventType::TaskCreated]
        );
        assert_eq!(events[1].task_id, Some(root.id));
        assert!(events.iter().all(|e| e.seq > before));

        let claimed = claim_one(
            &store,
            &claim_any("w", 1).functions([d.execution.spec.function.as_str()]),
        )
        .await;
        assert_eq!(claimed.task.id, root.id);
    }

    // Enqueueing nothing still moves the cursor (events that matched no webhook).
    assert!(store.enqueue_deliveries(5, 8, Vec::new()).await.unwrap().value);
    assert_eq!(store.webhook_cursor().await.unwrap(), 8);

    // An idempotency key is honoured as dispatch honours it: the delivery is made
    // by the execution that already holds the key.
    let keyed = NewExecution::new(activity("deliver-c")).with_idempotency_key("hook-key");
    let existing = keyed.id;
    store.dispatch(vec![keyed]).await.unwrap();
    let mut again = delivery(hook, 9, "deliver-c");
    again.execution = again.execution.with_idempotency_key("hook-key");
    assert!(store.enqueue_deliveries(8, 9, vec![again.clone()]).await.unwrap().value);
    assert_eq!(delivery_record(&store, again.id).await.execution_id, existing);
    assert_eq!(store.get_execution(again.execution.id).await.unwrap(), None);
}

/// An enqueue whose `from` is stale writes nothing and returns false; one that is
/// refused part-way (a taken id) writes nothing either, the cursor included.
pub async fn a_stale_or_refused_enqueue_writes_nothing(store: DynStore) {
    let hook = registered(&store).await;
    let first = delivery(hook, 1, "deliver");
    assert!(store.enqueue_deliveries(0, 4, vec![first.clone()]).await.unwrap().value);

    let snapshot = |store: DynStore| async move {
        (
            store.webhook_cursor().await.unwrap(),
            store.count_executions(None).await.unwrap(),
            store.count_tasks(None, None).await.unwrap(),
            store.list_deliveries(hook, 0, 0).await.unwrap().len(),
            store.last_event_seq().await.unwrap(),
        )
    };
    let before = snapshot(store.clone()).await;
    assert_eq!((before.0, before.1, before.3), (4, 1, 1));

    let stale = delivery(hook, 2, "deliver");
    assert!(!store.enqueue_deliveries(0, 9, vec![stale.clone()]).await.unwrap().value);
    assert!(!store.enqueue_deliveries(3, 9, vec![stale.clone()]).await.unwrap().value);
    assert_eq!(snapshot(store.clone()).await, before);
    assert_eq!(store.get_delivery(stale.id).await.unwrap(), None);
    assert_eq!(store.get_execution(stale.execution.id).await.unwrap(), None);

    // The second delivery's execution id is taken: the first is not left behind.
    let fine = delivery(hook, 5, "deliver");
    let mut clash = delivery(hook, 6, "deliver");
    clash.execution.id = first.execution.id;
    match store.enqueue_deliveries(4, 6, vec![fine.clone(), clash]).await {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("expected a conflict on a taken execution id, got {other:?}"),
    }
    // The second delivery's own id is taken.
    let mut twice = delivery(hook, 6, "deliver");
    twice.id = first.id;
    match store.enqueue_deliveries(4, 6, vec![fine.clone(), twice]).await {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("expected a conflict on a taken delivery id, got {other:?}"),
    }
    assert_eq!(snapshot(store.clone()).await, before);
    assert_eq!(store.get_delivery(fine.id).await.unwrap(), None);
    assert_eq!(store.get_execution(fine.execution.id).await.unwrap(), None);
    assert_eq!(delivery_record(&store, first.id).await.event_seq, 1);

    // The cursor did not move, so the same range can still be enqueued.
    assert!(store.enqueue_deliveries(4, 6, vec![fine.clone()]).await.unwrap().value);
    assert_eq!(store.webhook_cursor().await.unwrap(), 6);
    assert!(store.get_delivery(fine.id).await.unwrap().is_some());
}

/// Eight nodes enqueueing the same range at once: exactly one succeeds, and only
/// its deliveries and executions exist.
pub async fn racing_enqueuers_enqueue_a_range_once(store: DynStore) {
    let hook = registered(&store).await;
    let racers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let batch = vec![delivery(hook, 1, "deliver"), delivery(hook, 2, "deliver")];
            let won = store.enqueue_deliveries(0, 2, batch.clone()).await.unwrap().value;
            (won, batch)
        })
    });
    let outcomes: Vec<(bool, Vec<NewDelivery>)> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let winners: Vec<&Vec<NewDelivery>> = outcomes.iter().filter(|(won, _)| *won).map(|(_, b)| b).collect();
    assert_eq!(winners.len(), 1, "exactly one enqueuer wins");

    assert_eq!(store.webhook_cursor().await.unwrap(), 2);
    assert_eq!(store.count_executions(None).await.unwrap(), 2);
    let mut listed: Vec<Uuid> = store
        .list_deliveries(hook, 0, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let mut expected: Vec<Uuid> = winners[0].iter().map(|d| d.id).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    for (won, batch) in &outcomes {
        for d in batch {
            assert_eq!(store.get_execution(d.execution.id).await.unwrap().is_some(), *won);
        }
    }
}

/// Each attempt sets the delivery's state, attempt count, last status and last
/// error; attempts list by number, and the same number replaces; the store
/// stamps `at`. A missing delivery is `Invalid`.
pub async fn delivery_attempts_update_their_delivery_and_list_in_order(store: DynStore) {
    let hook = registered(&store).await;
    let d = delivery(hook, 1, "deliver");
    assert!(store.enqueue_deliveries(0, 1, vec![d.clone()]).await.unwrap().value);

    store
        .record_delivery_attempt(&attempt(d.id, 1, Some(500), Some("HTTP 500")), DeliveryState::Pending)
        .await
        .unwrap();
    let got = delivery_record(&store, d.id).await;
    assert_eq!((got.state, got.attempts), (DeliveryState::Pending, 1));
    assert_eq!(
        (got.last_status, got.last_error.as_deref()),
        (Some(500), Some("HTTP 500"))
    );
    assert!(got.updated_at >= got.created_at);

    store
        .record_delivery_attempt(
            &attempt(d.id, 2, None, Some("connection refused")),
            DeliveryState::Pending,
        )
        .await
        .unwrap();
    let got = delivery_record(&store, d.id).await;
    assert_eq!(got.attempts, 2);
    assert_eq!(
        (got.last_status, got.last_error.as_deref()),
        (None, Some("connection refused"))
    );

    // Attempt 2 again (a retried record of the same attempt) replaces it.
    let replaced = DeliveryAttempt {
        latency_ms: 999,
        response: Some("late".into()),
        ..attempt(d.id, 2, Some(502), Some("HTTP 502"))
    };
    store
        .record_delivery_attempt(&replaced, DeliveryState::Pending)
        .await
        .unwrap();
    store
        .record_delivery_attempt(&attempt(d.id, 3, Some(200), None), DeliveryState::Delivered)
        .await
        .unwrap();
    let got = delivery_record(&store, d.id).await;
    assert_eq!((got.state, got.attempts), (DeliveryState::Delivered, 3));
    assert_eq!((got.last_status, got.last_error), (Some(200), None));

    let attempts = store.list_delivery_attempts(d.id).await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(
        (attempts[0].status, attempts[0].latency_ms, attempts[0].error.as_deref()),
        (Some(500), 101, Some("HTTP 500"))
    );
    assert_eq!(attempts[0].response.as_deref(), Some("answered 500"));
    assert_eq!(
        (attempts[1].status, attempts[1].latency_ms, attempts[1].error.as_deref()),
        (Some(502), 999, Some("HTTP 502"))
    );
    assert_eq!(attempts[1].response.as_deref(), Some("late"));
    assert_eq!((attempts[2].status, attempts[2].error.as_deref()), (Some(200), None));
    let now = store.now().await.unwrap();
    for a in &attempts {
        assert_eq!(a.delivery_id, d.id);
        assert_close(a.at, now, Duration::from_secs(5), "attempt at (stamped by the store)");
    }
    assert!(attempts[0].at <= attempts[2].at);
    assert!(store.list_delivery_attempts(Uuid::new_v4()).await.unwrap().is_empty());

    // A failed delivery.
    store
        .record_delivery_attempt(&attempt(d.id, 4, Some(410), Some("HTTP 410")), DeliveryState::Failed)
        .await
        .unwrap();
    assert_eq!(delivery_record(&store, d.id).await.state, DeliveryState::Failed);

    let missing = Uuid::new_v4();
    match store
        .record_delivery_attempt(&attempt(missing, 1, Some(200), None), DeliveryState::Delivered)
        .await
    {
        Err(StoreError::Invalid(message)) => {
            assert!(message.contains(&missing.to_string()), "{message:?} names the delivery")
        }
        other => panic!("expected Invalid for a missing delivery, got {other:?}"),
    }
    assert!(store.list_delivery_attempts(missing).await.unwrap().is_empty());
    assert_eq!(store.get_delivery(missing).await.unwrap(), None);
}

/// Delivery attempts in a group commit are recorded as one by one, in the
/// batch's transaction: each updates its delivery and lists with its number;
/// a missing delivery, or a response holding a NUL, is refused on its own and
/// the rest of the batch (a dispatch beside them here) still lands.
pub async fn delivery_attempts_ride_the_group_commit(store: DynStore) {
    let hook = registered(&store).await;
    let first = delivery(hook, 1, "deliver");
    let second = delivery(hook, 2, "deliver");
    assert!(
        store
            .enqueue_deliveries(0, 2, vec![first.clone(), second.clone()])
            .await
            .unwrap()
            .value
    );
    let missing = Uuid::new_v4();
    let write = |a: DeliveryAttempt, state| AttemptWrite { attempt: a, state };
    let with_nul = DeliveryAttempt {
        response: Some("bad\u{0}body".into()),
        ..attempt(second.id, 2, Some(200), None)
    };
    let batch = WriteBatch {
        dispatches: vec![NewExecution::new(activity("beside"))],
        delivery_attempts: vec![
            write(
                attempt(first.id, 1, Some(500), Some("HTTP 500")),
                DeliveryState::Pending,
            ),
            write(attempt(missing, 1, Some(200), None), DeliveryState::Delivered),
            write(attempt(second.id, 1, Some(204), None), DeliveryState::Delivered),
            write(with_nul, DeliveryState::Delivered),
            write(attempt(first.id, 2, Some(200), None), DeliveryState::Delivered),
        ],
        ..WriteBatch::default()
    };
    let results = store.commit(std::sync::Arc::new(batch)).await.unwrap();
    assert!(matches!(results.dispatches[..], [Ok(_)]), "{:?}", results.dispatches);
    assert_eq!(results.delivery_attempts.len(), 5);
    assert!(results.delivery_attempts[0].is_ok());
    match &results.delivery_attempts[1] {
        Err(StoreError::Invalid(message)) => assert!(message.contains(&missing.to_string()), "{message:?}"),
        other => panic!("expected Invalid for a missing delivery, got {other:?}"),
    }
    assert!(results.delivery_attempts[2].is_ok());
    match &results.delivery_attempts[3] {
        Err(StoreError::Invalid(message)) => assert!(message.contains("response"), "{message:?}"),
        other => panic!("expected a NUL refusal, got {other:?}"),
    }
    assert!(results.delivery_attempts[4].is_ok());
    // Attempts change nothing anyone waits for: every change is the dispatch's.
    let Ok(beside) = &results.dispatches[0] else {
        unreachable!()
    };
    assert!(!results.changes.is_empty());
    assert!(
        results
            .changes
            .iter()
            .all(|c| c.event().is_some_and(|e| e.execution_id == Some(beside.id()))),
        "{:?}",
        results.changes
    );

    let got = delivery_record(&store, first.id).await;
    assert_eq!(
        (got.state, got.attempts, got.last_status),
        (DeliveryState::Delivered, 2, Some(200))
    );
    let attempts = store.list_delivery_attempts(first.id).await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(attempts[0].error.as_deref(), Some("HTTP 500"));
    let got = delivery_record(&store, second.id).await;
    assert_eq!((got.state, got.attempts), (DeliveryState::Delivered, 1));
    assert_eq!(store.list_delivery_attempts(second.id).await.unwrap().len(), 1);
    assert!(store.list_delivery_attempts(missing).await.unwrap().is_empty());
}

/// An attempt recorded on its own whose response or error holds a NUL is
/// refused with `Invalid` naming the field, and writes nothing, on every store
/// alike (Postgres text cannot hold one; it failed with a database error).
pub async fn a_lone_attempt_holding_a_nul_is_refused_and_writes_nothing(store: DynStore) {
    let hook = registered(&store).await;
    let d = delivery(hook, 1, "deliver");
    assert!(store.enqueue_deliveries(0, 1, vec![d.clone()]).await.unwrap().value);
    let with_nul = [
        (
            "response",
            DeliveryAttempt {
                response: Some("bad\u{0}body".into()),
                ..attempt(d.id, 1, Some(200), None)
            },
        ),
        ("error", attempt(d.id, 1, None, Some("reset\u{0}"))),
    ];
    for (field, a) in with_nul {
        match store.record_delivery_attempt(&a, DeliveryState::Delivered).await {
            Err(StoreError::Invalid(message)) => assert!(message.contains(field), "{message:?}"),
            other => panic!("expected Invalid naming {field}, got {other:?}"),
        }
    }
    assert!(store.list_delivery_attempts(d.id).await.unwrap().is_empty());
    let got = delivery_record(&store, d.id).await;
    assert_eq!((got.state, got.attempts), (DeliveryState::Pending, 0));
}

/// A webhook's deliveries list newest first with paging (limit 0: no limit),
/// and only its own.
pub async fn deliveries_list_newest_first_with_paging(store: DynStore) {
    let hook = registered(&store).await;
    let other = registered(&store).await;
    let mut made = Vec::new();
    for seq in 1..=3 {
        let d = delivery(hook, seq, "deliver");
        made.push(d.id);
        assert!(store.enqueue_deliveries(seq - 1, seq, vec![d]).await.unwrap().value);
        sleep_ms(5).await;
    }
    assert!(
        store
            .enqueue_deliveries(3, 4, vec![delivery(other, 4, "deliver")])
            .await
            .unwrap()
            .value
    );

    let ids = |list: Vec<DeliveryRecord>| list.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_deliveries(hook, 0, 0).await.unwrap()),
        vec![made[2], made[1], made[0]]
    );
    assert_eq!(
        ids(store.list_deliveries(hook, 2, 0).await.unwrap()),
        vec![made[2], made[1]]
    );
    assert_eq!(ids(store.list_deliveries(hook, 2, 2).await.unwrap()), vec![made[0]]);
    assert_eq!(
        ids(store.list_deliveries(hook, 0, 1).await.unwrap()),
        vec![made[1], made[0]]
    );
    assert!(store.list_deliveries(hook, 10, 3).await.unwrap().is_empty());
    assert_eq!(store.list_deliveries(other, 0, 0).await.unwrap().len(), 1);
    assert!(store.list_deliveries(Uuid::new_v4(), 0, 0).await.unwrap().is_empty());
}

/// Cleaning up a finished delivery execution deletes its delivery and the
/// delivery's attempts; unfinished deliveries and the webhook stay.
pub async fn cleanup_deletes_the_deliveries_of_cleaned_executions(store: DynStore) {
    let hook = registered(&store).await;
    let done = delivery(hook, 1, "deliver-done");
    let open = delivery(hook, 2, "deliver-open");
    assert!(
        store
            .enqueue_deliveries(0, 2, vec![done.clone(), open.clone()])
            .await
            .unwrap()
            .value
    );
    for d in [&done, &open] {
        store
            .record_delivery_attempt(&attempt(d.id, 1, Some(500), Some("HTTP 500")), DeliveryState::Pending)
            .await
            .unwrap();
    }
    store
        .record_delivery_attempt(&attempt(done.id, 2, Some(204), None), DeliveryState::Delivered)
        .await
        .unwrap();
    let c = claim_one(&store, &claim_any("w", 1).functions(["deliver-done"])).await;
    assert_eq!(c.task.execution_id, done.execution.id);
    succeed(&store, c.lease.key(), json!({"status": 204})).await.unwrap();

    sleep_ms(50).await;
    let cutoff = store.now().await.unwrap();
    sleep_ms(50).await;
    assert_eq!(store.cleanup_executions(cutoff).await.unwrap(), 1);

    assert_eq!(store.get_execution(done.execution.id).await.unwrap(), None);
    assert_eq!(store.get_delivery(done.id).await.unwrap(), None);
    assert!(store.list_delivery_attempts(done.id).await.unwrap().is_empty());

    assert!(store.get_execution(open.execution.id).await.unwrap().is_some());
    assert_eq!(delivery_record(&store, open.id).await.attempts, 1);
    assert_eq!(store.list_delivery_attempts(open.id).await.unwrap().len(), 1);
    assert!(store.get_webhook(hook).await.unwrap().is_some());
    assert_eq!(
        store
            .list_deliveries(hook, 0, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        vec![open.id]
    );
}

/// A skipped delivery is recorded with the execution id reserved for it and
/// dispatches nothing; a pending one can be skipped later (only while pending).
/// Skipped deliveries list oldest first, from `since`, up to `limit`.
pub async fn skipped_deliveries_dispatch_nothing_and_list_oldest_first(store: DynStore) {
    let hook = registered(&store).await;
    let other = registered(&store).await;
    let first = NewDelivery {
        skipped: true,
        ..delivery(hook, 1, "deliver-skipped")
    };
    let elsewhere = NewDelivery {
        skipped: true,
        ..delivery(other, 1, "deliver-elsewhere")
    };
    let before = store.last_event_seq().await.unwrap();
    assert!(
        store
            .enqueue_deliveries(0, 1, vec![first.clone(), elsewhere.clone()])
            .await
            .unwrap()
            .value
    );
    assert_eq!(store.last_event_seq().await.unwrap(), before, "nothing dispatched");
    let got = delivery_record(&store, first.id).await;
    assert_eq!((got.state, got.attempts), (DeliveryState::Skipped, 0));
    assert_eq!(got.execution_id, first.execution.id);
    assert_eq!(store.get_execution(first.execution.id).await.unwrap(), None);

    sleep_ms(20).await;
    let between = store.now().await.unwrap();
    sleep_ms(20).await;
    let pending = delivery(hook, 2, "deliver-pending");
    assert!(
        store
            .enqueue_deliveries(1, 2, vec![pending.clone()])
            .await
            .unwrap()
            .value
    );
    assert!(store.get_execution(pending.execution.id).await.unwrap().is_some());

    let ids = |list: Vec<DeliveryRecord>| list.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .list_deliveries_in_state(hook, DeliveryState::Skipped, None, 0)
            .await
            .unwrap()),
        vec![first.id]
    );
    // The pending one is skipped when its attempt comes up: once, only while pending.
    assert!(store.skip_delivery(pending.id).await.unwrap());
    assert!(!store.skip_delivery(pending.id).await.unwrap());
    assert!(!store.skip_delivery(Uuid::new_v4()).await.unwrap());
    let delivered = delivery(hook, 3, "deliver-delivered");
    assert!(
        store
            .enqueue_deliveries(2, 3, vec![delivered.clone()])
            .await
            .unwrap()
            .value
    );
    store
        .record_delivery_attempt(&attempt(delivered.id, 1, Some(204), None), DeliveryState::Delivered)
        .await
        .unwrap();
    assert!(!store.skip_delivery(delivered.id).await.unwrap());
    assert_eq!(
        delivery_record(&store, delivered.id).await.state,
        DeliveryState::Delivered
    );

    // Listed by state: a failed one is listed as failed, not as skipped or delivered.
    let failed = delivery(hook, 4, "deliver-failed");
    assert!(
        store
            .enqueue_deliveries(3, 4, vec![failed.clone()])
            .await
            .unwrap()
            .value
    );
    store
        .record_delivery_attempt(&attempt(failed.id, 1, Some(503), None), DeliveryState::Failed)
        .await
        .unwrap();
    assert_eq!(
        ids(store
            .list_deliveries_in_state(hook, DeliveryState::Failed, None, 0)
            .await
            .unwrap()),
        vec![failed.id]
    );
    assert_eq!(
        ids(store
            .list_deliveries_in_state(hook, DeliveryState::Delivered, None, 0)
            .await
            .unwrap()),
        vec![delivered.id]
    );

    // Oldest (by when recorded) first, from `since`, up to `limit`.
    assert_eq!(
        ids(store
            .list_deliveries_in_state(hook, DeliveryState::Skipped, None, 0)
            .await
            .unwrap()),
        vec![first.id, pending.id]
    );
    assert_eq!(
        ids(store
            .list_deliveries_in_state(hook, DeliveryState::Skipped, None, 1)
            .await
            .unwrap()),
        vec![first.id]
    );
    assert_eq!(
        ids(store
            .list_deliveries_in_state(hook, DeliveryState::Skipped, Some(between), 0)
            .await
            .unwrap()),
        vec![pending.id]
    );
    assert_eq!(
        ids(store
            .list_deliveries_in_state(other, DeliveryState::Skipped, None, 0)
            .await
            .unwrap()),
        vec![elsewhere.id]
    );
    assert!(
        store
            .list_deliveries_in_state(Uuid::new_v4(), DeliveryState::Skipped, None, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Replaying a skipped delivery sets it pending, made by the replay's execution,
/// which is dispatched and claimable; a delivery that is not skipped (replayed
/// already, pending, unknown) is left alone, so each is replayed once.
pub async fn replaying_a_skipped_delivery_dispatches_it_once(store: DynStore) {
    let hook = registered(&store).await;
    let skipped = NewDelivery {
        skipped: true,
        ..delivery(hook, 1, "deliver-replayed")
    };
    let pending = delivery(hook, 2, "deliver-pending");
    assert!(
        store
            .enqueue_deliveries(0, 2, vec![skipped.clone(), pending.clone()])
            .await
            .unwrap()
            .value
    );
    let again = replay(skipped.id, "deliver-replayed");
    let untouched = replay(pending.id, "deliver-not-replayed");
    let unknown = replay(Uuid::new_v4(), "deliver-unknown");
    let committed = store
        .replay_deliveries(vec![unknown.clone(), again.clone(), untouched.clone()])
        .await
        .unwrap();
    assert_eq!(committed.value, vec![skipped.id]);

    let got = delivery_record(&store, skipped.id).await;
    assert_eq!(
        (got.state, got.execution_id),
        (DeliveryState::Pending, again.execution.id)
    );
    let e = execution(&store, again.execution.id).await;
    assert_eq!(
        (e.state, e.function.as_str()),
        (ExecutionState::Pending, "deliver-replayed")
    );
    let claimed = claim_one(&store, &claim_any("w", 1).functions(["deliver-replayed"])).await;
    assert_eq!(claimed.task.execution_id, again.execution.id);
    // Nothing else was dispatched or changed.
    assert_eq!(store.get_execution(untouched.execution.id).await.unwrap(), None);
    assert_eq!(store.get_execution(unknown.execution.id).await.unwrap(), None);
    assert_eq!(
        delivery_record(&store, pending.id).await.execution_id,
        pending.execution.id
    );

    // A second replay (a racing caller's) finds it pending and does nothing.
    let late = replay(skipped.id, "deliver-replayed");
    assert!(
        store
            .replay_deliveries(vec![late.clone()])
            .await
            .unwrap()
            .value
            .is_empty()
    );
    assert_eq!(store.get_execution(late.execution.id).await.unwrap(), None);
    assert!(store.replay_deliveries(Vec::new()).await.unwrap().value.is_empty());
}

/// Racing replays of the same skipped deliveries dispatch each once.
pub async fn racing_replays_replay_each_delivery_once(store: DynStore) {
    let hook = registered(&store).await;
    let batch: Vec<NewDelivery> = (1..=20)
        .map(|seq| NewDelivery {
            skipped: true,
            ..delivery(hook, seq, "deliver-raced")
        })
        .collect();
    assert!(store.enqueue_deliveries(0, 20, batch.clone()).await.unwrap().value);
    let racers = (0..4).map(|_| {
        let store = store.clone();
        let replays: Vec<DeliveryReplay> = batch.iter().map(|d| replay(d.id, "deliver-raced")).collect();
        tokio::spawn(async move { store.replay_deliveries(replays).await.unwrap().value })
    });
    let mut replayed: Vec<Uuid> = Vec::new();
    for racer in racers {
        replayed.extend(racer.await.unwrap());
    }
    replayed.sort();
    let mut expected: Vec<Uuid> = batch.iter().map(|d| d.id).collect();
    expected.sort();
    assert_eq!(replayed, expected, "each delivery replayed by exactly one racer");
    let claimed = claim(&store, &claim_any("w", 50).functions(["deliver-raced"])).await;
    assert_eq!(claimed.len(), 20, "one execution per delivery");
}

/// Cleanup deletes skipped deliveries that no execution makes once they are
/// older than the cutoff, and keeps younger ones and those an execution makes.
pub async fn cleanup_deletes_old_skipped_deliveries(store: DynStore) {
    let hook = registered(&store).await;
    let old = NewDelivery {
        skipped: true,
        ..delivery(hook, 1, "deliver-old")
    };
    let running = delivery(hook, 2, "deliver-running");
    assert!(
        store
            .enqueue_deliveries(0, 2, vec![old.clone(), running.clone()])
            .await
            .unwrap()
            .value
    );
    // Skipped at attempt time: its (unfinished) execution keeps it.
    assert!(store.skip_delivery(running.id).await.unwrap());
    sleep_ms(50).await;
    let cutoff = store.now().await.unwrap();
    sleep_ms(50).await;
    let young = NewDelivery {
        skipped: true,
        ..delivery(hook, 3, "deliver-young")
    };
    assert!(store.enqueue_deliveries(2, 3, vec![young.clone()]).await.unwrap().value);

    assert_eq!(store.cleanup_executions(cutoff).await.unwrap(), 0);
    assert_eq!(store.get_delivery(old.id).await.unwrap(), None);
    assert_eq!(delivery_record(&store, running.id).await.state, DeliveryState::Skipped);
    assert_eq!(delivery_record(&store, young.id).await.state, DeliveryState::Skipped);
}
