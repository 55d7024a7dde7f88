//! Schedules: created (a taken id refused), read, listed by id, updated and
//! fired only at the revision read, deleted with their runs; the due ones read
//! by the store's clock; a firing dispatches each fired slot's execution once
//! (its idempotency key), records and logs its runs; racing firings of one
//! revision write once; a NUL is refused.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use courier_core::{
    EventType, Firing, NewExecution, NewRun, Overlap, RunOutcome, ScheduleDefinition, ScheduleRecord, StoreError,
    slot_key,
};
use serde_json::json;

use crate::support::*;

fn definition() -> ScheduleDefinition {
    ScheduleDefinition {
        function: "report".into(),
        args: json!({"daily": true}),
        cron: Some("0 0 9 * * *".into()),
        every: None,
        timezone: "Europe/Paris".into(),
        overlap: Overlap::BufferOne,
        catchup_window: Duration::from_secs(600),
        jitter: Duration::from_secs(2),
        queue: Some("reports".into()),
        priority: Some(3),
    }
}

fn schedule(id: &str, next_slot: Option<DateTime<Utc>>) -> ScheduleRecord {
    let at = now_micros();
    ScheduleRecord {
        id: id.into(),
        definition: definition(),
        paused: false,
        anchor_at: at,
        next_slot,
        buffered_slot: None,
        last_slot: None,
        last_execution_id: None,
        created_at: at,
        updated_at: at,
        revision: 0,
    }
}

fn fired(id: &str, slot: DateTime<Utc>) -> NewRun {
    let mut new = NewExecution::new(activity("report"));
    new.idempotency_key = Some(slot_key(id, slot));
    NewRun {
        slot,
        outcome: RunOutcome::Fired,
        count: 1,
        reason: "schedule".into(),
        execution: Some(new),
    }
}

fn skipped(slot: DateTime<Utc>, count: u32) -> NewRun {
    NewRun {
        slot,
        outcome: RunOutcome::Skipped,
        count,
        reason: "catchup_window".into(),
        execution: None,
    }
}

/// A schedule is stored as given, stamped with the store's clock and revision
/// 1; a second one with its id is a conflict; it reads back; the list is by id.
pub async fn schedules_are_created_read_and_listed(store: DynStore) {
    let soon = now_micros() + TimeDelta::seconds(30);
    let created = store.create_schedule(&schedule("nightly", Some(soon))).await.unwrap();
    assert_eq!(created.revision, 1);
    assert_eq!(created.definition, definition());
    assert_eq!(created.next_slot, Some(soon));
    assert_close(
        created.created_at,
        store.now().await.unwrap(),
        Duration::from_secs(5),
        "created_at",
    );
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(store.get_schedule("nightly").await.unwrap(), Some(created.clone()));
    assert_eq!(store.get_schedule("never").await.unwrap(), None);
    match store.create_schedule(&schedule("nightly", None)).await {
        Err(StoreError::Conflict { id, .. }) => assert_eq!(id, "nightly"),
        other => panic!("a taken id must conflict, got {other:?}"),
    }
    for id in ["zeta", "Alpha", "émile"] {
        store.create_schedule(&schedule(id, None)).await.unwrap();
    }
    let ids: Vec<String> = store
        .list_schedules(0, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["Alpha", "nightly", "zeta", "émile"]);
    let page: Vec<String> = store
        .list_schedules(2, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(page, ["nightly", "zeta"]);
}

/// An update lands only at the revision read, taking the next one; a stale
/// one writes nothing. Deleting removes the schedule and its runs.
pub async fn schedules_update_at_their_revision_and_delete_with_their_runs(store: DynStore) {
    let created = store.create_schedule(&schedule("s", None)).await.unwrap();
    let mut paused = created.clone();
    paused.paused = true;
    paused.definition.overlap = Overlap::Allow;
    let updated = store
        .update_schedule(&paused, 1)
        .await
        .unwrap()
        .expect("at its revision");
    assert_eq!(updated.revision, 2);
    assert!(updated.paused);
    assert_eq!(updated.definition.overlap, Overlap::Allow);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(store.update_schedule(&created, 1).await.unwrap(), None, "stale");
    assert_eq!(store.get_schedule("s").await.unwrap(), Some(updated.clone()));
    assert_eq!(store.update_schedule(&schedule("gone", None), 1).await.unwrap(), None);

    let slot = now_micros();
    store
        .fire_schedule(&Firing {
            schedule_id: "s".into(),
            expected_revision: 2,
            next_slot: None,
            buffered_slot: None,
            runs: vec![skipped(slot, 1)],
        })
        .await
        .unwrap();
    assert_eq!(store.list_schedule_runs("s", 0, 0).await.unwrap().len(), 1);
    assert!(store.delete_schedule("s").await.unwrap());
    assert!(!store.delete_schedule("s").await.unwrap());
    assert_eq!(store.get_schedule("s").await.unwrap(), None);
    assert!(
        store.list_schedule_runs("s", 0, 0).await.unwrap().is_empty(),
        "its runs go with it"
    );
}

/// Due: not paused, next slot at or before the store's clock, or holding a
/// buffered slot; earliest first.
pub async fn due_schedules_are_read_by_the_stores_clock(store: DynStore) {
    let now = store.now().await.unwrap();
    store
        .create_schedule(&schedule("late", Some(now - TimeDelta::seconds(5))))
        .await
        .unwrap();
    store
        .create_schedule(&schedule("later", Some(now - TimeDelta::seconds(1))))
        .await
        .unwrap();
    store
        .create_schedule(&schedule("future", Some(now + TimeDelta::hours(1))))
        .await
        .unwrap();
    store.create_schedule(&schedule("never", None)).await.unwrap();
    let mut paused = schedule("paused", Some(now - TimeDelta::seconds(9)));
    paused.paused = true;
    store.create_schedule(&paused).await.unwrap();
    let mut buffered = schedule("buffered", Some(now + TimeDelta::hours(2)));
    buffered.buffered_slot = Some(now - TimeDelta::minutes(1));
    store.create_schedule(&buffered).await.unwrap();
    let due: Vec<String> = store
        .due_schedules(10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(due, ["late", "later", "buffered"]);
    assert_eq!(store.due_schedules(1).await.unwrap()[0].id, "late");
}

/// A firing moves the schedule on, dispatches the fired slot's execution,
/// records each run and logs `schedule.fired` (with the execution) and
/// `schedule.skipped`; the same revision again writes nothing, and the slot's
/// key makes one execution even when fired again at a later revision.
pub async fn a_firing_dispatches_records_and_logs_each_slot_once(store: DynStore) {
    let now = store.now().await.unwrap();
    let (first, second) = (now - TimeDelta::minutes(20), now - TimeDelta::seconds(1));
    let next = now + TimeDelta::minutes(1);
    store.create_schedule(&schedule("s", Some(first))).await.unwrap();
    let head = store.last_event_seq().await.unwrap();
    let firing = Firing {
        schedule_id: "s".into(),
        expected_revision: 1,
        next_slot: Some(next),
        buffered_slot: None,
        runs: vec![skipped(first, 19), fired("s", second)],
    };
    let out = store.fire_schedule(&firing).await.unwrap();
    let moved = out.value.clone().expect("at its revision");
    assert_eq!(moved.revision, 2);
    assert_eq!(moved.next_slot, Some(next));
    assert_eq!(moved.last_slot, Some(second));
    let execution = moved.last_execution_id.expect("the fired slot's execution");
    assert_eq!(execution, firing.runs[1].execution.as_ref().unwrap().id);
    assert!(store.get_execution(execution).await.unwrap().is_some());
    assert_logged(&store, head, &out.changes, "a firing").await;
    let logged = store
        .read_events(&courier_core::EventFilter::after(head).limit(100))
        .await
        .unwrap()
        .events;
    let schedule_events: Vec<_> = logged
        .iter()
        .filter(|e| matches!(e.event_type, EventType::ScheduleFired | EventType::ScheduleSkipped))
        .map(|e| (e.event_type, e.execution_id, e.data["count"].clone()))
        .collect();
    assert_eq!(
        schedule_events,
        [
            (EventType::ScheduleSkipped, None, json!(19)),
            (EventType::ScheduleFired, Some(execution), json!(1)),
        ]
    );

    let runs = store.list_schedule_runs("s", 0, 0).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| (r.slot, r.outcome, r.count)).collect::<Vec<_>>(),
        [(second, RunOutcome::Fired, 1), (first, RunOutcome::Skipped, 19)],
        "newest slot first"
    );
    assert_eq!(runs[0].execution_id, Some(execution));
    assert_eq!(runs[1].reason, "catchup_window");

    // The same revision again: nothing written.
    let again = store.fire_schedule(&firing).await.unwrap();
    assert_eq!(again.value, None);
    assert!(again.changes.is_empty());
    assert_eq!(store.list_schedule_runs("s", 0, 0).await.unwrap().len(), 2);
    // The same slot at the new revision: its key names the execution it made.
    let refire = Firing {
        expected_revision: 2,
        runs: vec![fired("s", second)],
        ..firing.clone()
    };
    let refired = store.fire_schedule(&refire).await.unwrap().value.unwrap();
    assert_eq!(refired.last_execution_id, Some(execution), "one execution per slot");
}

/// Eight firings of one revision at once: one writes, one execution is made.
pub async fn racing_firings_of_one_revision_write_once(store: DynStore) {
    let slot = store.now().await.unwrap() - TimeDelta::seconds(1);
    store.create_schedule(&schedule("raced", Some(slot))).await.unwrap();
    let racers = (0..8).map(|_| {
        let store = store.clone();
        let firing = Firing {
            schedule_id: "raced".into(),
            expected_revision: 1,
            next_slot: Some(slot + TimeDelta::hours(1)),
            buffered_slot: None,
            runs: vec![fired("raced", slot)],
        };
        tokio::spawn(async move { store.fire_schedule(&firing).await.unwrap().value })
    });
    let mut won = 0;
    for racer in racers {
        if racer.await.unwrap().is_some() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    let runs = store.list_schedule_runs("raced", 0, 0).await.unwrap();
    assert_eq!(runs.len(), 1);
    let executions = store
        .list_executions(&courier_core::ExecutionFilter {
            function: Some("report".into()),
            limit: 100,
            ..courier_core::ExecutionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(executions.len(), 1, "one slot, one execution");
}

/// A NUL in the id, function, arguments, cron or time zone is refused as
/// `Invalid`, naming the field, and nothing is stored.
pub async fn a_schedule_holding_a_nul_is_refused(store: DynStore) {
    let refused = |result: Result<ScheduleRecord, StoreError>, field: &str| match result {
        Err(StoreError::Invalid(detail)) => {
            assert!(detail.contains("NUL") && detail.starts_with(field), "{detail}");
        }
        other => panic!("expected {field} refused, got {other:?}"),
    };
    refused(store.create_schedule(&schedule("s\u{0}", None)).await, "id");
    let mut s = schedule("s", None);
    s.definition.function = "f\u{0}".into();
    refused(store.create_schedule(&s).await, "function");
    let mut s = schedule("s", None);
    s.definition.args = json!({"k": "v\u{0}"});
    refused(store.create_schedule(&s).await, "args");
    let mut s = schedule("s", None);
    s.definition.cron = Some("* * * * *\u{0}".into());
    refused(store.create_schedule(&s).await, "cron");
    assert!(store.list_schedules(0, 0).await.unwrap().is_empty());
}

/// Firings written together answer one by one: a stale one writes nothing of
/// its own and does not stop its neighbours.
pub async fn firings_in_one_write_answer_each(store: DynStore) {
    let slot = store.now().await.unwrap() - TimeDelta::seconds(1);
    for id in ["a", "b", "c"] {
        store.create_schedule(&schedule(id, Some(slot))).await.unwrap();
    }
    let firing = |id: &str, revision: i64| Firing {
        schedule_id: id.into(),
        expected_revision: revision,
        next_slot: Some(slot + TimeDelta::hours(1)),
        buffered_slot: None,
        runs: vec![fired(id, slot)],
    };
    let head = store.last_event_seq().await.unwrap();
    let out = store
        .fire_schedules(&[firing("c", 1), firing("a", 7), firing("b", 1)])
        .await
        .unwrap();
    let answers: Vec<Option<String>> = out.value.iter().map(|r| r.as_ref().map(|r| r.id.clone())).collect();
    assert_eq!(answers, [Some("c".to_string()), None, Some("b".to_string())]);
    assert_logged(&store, head, &out.changes, "firings in one write").await;
    assert!(
        store.list_schedule_runs("a", 0, 0).await.unwrap().is_empty(),
        "the stale one wrote nothing"
    );
    assert_eq!(store.get_schedule("a").await.unwrap().unwrap().revision, 1);
    for id in ["b", "c"] {
        let s = store.get_schedule(id).await.unwrap().unwrap();
        assert_eq!((s.revision, s.last_slot), (2, Some(slot)));
        assert_eq!(store.list_schedule_runs(id, 0, 0).await.unwrap().len(), 1);
    }
    assert!(store.fire_schedules(&[]).await.unwrap().value.is_empty());
}
