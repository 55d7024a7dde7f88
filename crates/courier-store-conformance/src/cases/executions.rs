//! Dispatch, raw execution records, listing, cancel and expiry.

use std::collections::HashSet;
use std::time::Duration;

use courier_core::{
    ClaimRequest, Dispatched, EventType, ExecutionFilter, ExecutionId, ExecutionState, LeaseLost, NewExecution,
    RetryPolicy, StoreError, TaskId, TaskKind, TaskState,
};
use serde_json::json;

use crate::support::*;

/// Dispatch creates a pending execution and its pending root task at step 0, with events.
pub async fn dispatch_creates_the_execution_and_its_root_task(store: DynStore) {
    let before = store.now().await.unwrap();
    let retry = RetryPolicy {
        max_attempts: 7,
        retry_on: Some(vec!["io".into()]),
        ..RetryPolicy::default()
    };
    let spec = activity("greet")
        .on_queue("q1")
        .with_tags(["a", "b"])
        .with_priority(3)
        .with_retry(retry.clone());
    let mut new = NewExecution::new(spec).with_expiry(Duration::from_secs(3600));
    new.spec.args = json!({"name": "ada"});
    new.spec.version = Some("v2".into());
    let id = new.id;
    assert_eq!(
        store.dispatch(vec![new]).await.unwrap().value,
        vec![Dispatched::Created(id)]
    );

    let e = execution(&store, id).await;
    assert_eq!(e.state, ExecutionState::Pending);
    assert_eq!(e.function, "greet");
    assert_eq!(e.version.as_deref(), Some("v2"));
    assert_eq!(e.queue, "q1");
    assert_eq!(e.tags, vec!["a", "b"]);
    assert_eq!(e.priority, 3);
    assert_eq!(e.args, json!({"name": "ada"}));
    assert_eq!(
        (e.result, e.error, e.started_at, e.completed_at),
        (None, None, None, None)
    );
    assert_close(e.created_at, before, Duration::from_secs(5), "created_at");
    let deadline = e.deadline.expect("expiry sets a deadline");
    assert_close(
        deadline,
        e.created_at + chrono::Duration::hours(1),
        Duration::from_secs(1),
        "deadline",
    );

    let t = task(&store, TaskId::root_of(id)).await;
    assert_eq!(t.execution_id, id);
    assert_eq!((t.step, t.parent_id, t.kind), (0, None, TaskKind::Activity));
    assert_eq!((t.state, t.attempt), (TaskState::Pending, 0));
    assert_eq!(t.retry, retry);
    assert_eq!(t.function, "greet");
    assert_eq!(t.version.as_deref(), Some("v2"));
    assert_eq!(t.args, json!({"name": "ada"}));
    assert_eq!((t.queue.as_str(), t.priority), ("q1", 3));
    assert_eq!(t.tags, vec!["a", "b"]);
    assert!(t.scheduled_for <= store.now().await.unwrap());
    assert_eq!(store.get_task(TaskId::for_step(id, 0)).await.unwrap(), Some(t.clone()));

    let events = events_of(&store, id).await;
    assert_eq!(
        types(&events),
        vec![EventType::ExecutionCreated, EventType::TaskCreated]
    );
    assert_eq!(events[0].data, json!({"function": "greet", "queue": "q1"}));
    assert_eq!(events[0].task_id, None);
    assert_eq!(events[1].task_id, Some(t.id));
    assert_eq!(
        events[1].data,
        json!({"function": "greet", "kind": "activity", "step": 0, "queue": "q1"})
    );
    assert!(events[0].seq < events[1].seq);
}

/// The same idempotency key yields the same execution: sequentially, within one
/// batch, and under eight concurrent dispatchers.
pub async fn dispatching_twice_with_one_idempotency_key_creates_one_execution(store: DynStore) {
    let first = NewExecution::new(activity("charge")).with_idempotency_key("order-1");
    let second = NewExecution::new(activity("charge")).with_idempotency_key("order-1");
    let (a, b) = (first.id, second.id);
    assert_eq!(
        store.dispatch(vec![first]).await.unwrap().value,
        vec![Dispatched::Created(a)]
    );
    assert_eq!(
        store.dispatch(vec![second]).await.unwrap().value,
        vec![Dispatched::Existing(a)]
    );
    assert!(store.get_execution(b).await.unwrap().is_none());
    assert!(store.get_task(TaskId::root_of(b)).await.unwrap().is_none());
    assert_eq!(execution(&store, a).await.idempotency_key.as_deref(), Some("order-1"));

    let x = NewExecution::new(activity("charge")).with_idempotency_key("order-2");
    let y = NewExecution::new(activity("charge")).with_idempotency_key("order-2");
    let free = NewExecution::new(activity("charge"));
    let (xid, fid) = (x.id, free.id);
    assert_eq!(
        store.dispatch(vec![x, y, free]).await.unwrap().value,
        vec![
            Dispatched::Created(xid),
            Dispatched::Existing(xid),
            Dispatched::Created(fid)
        ]
    );

    let racers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let new = NewExecution::new(activity("charge")).with_idempotency_key("order-3");
            store.dispatch(vec![new]).await.unwrap().value.pop().unwrap()
        })
    });
    let outcomes: Vec<Dispatched> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let created = outcomes.iter().filter(|d| matches!(d, Dispatched::Created(_))).count();
    assert_eq!(created, 1, "exactly one racer creates: {outcomes:?}");
    let ids: HashSet<ExecutionId> = outcomes.iter().map(|d| d.id()).collect();
    assert_eq!(ids.len(), 1, "every racer gets the same execution");
    assert_eq!(store.count_executions(None).await.unwrap(), 4);
    assert_eq!(store.count_tasks(None, None).await.unwrap(), 4);
}

/// A dispatch with a delay leaves its root task scheduled in the future.
pub async fn a_delayed_dispatch_is_not_claimable_before_its_time(store: DynStore) {
    let id = dispatch(&store, activity("later").with_delay(Duration::from_secs(3600))).await;
    let t = task(&store, TaskId::root_of(id)).await;
    let now = store.now().await.unwrap();
    assert_close(
        t.scheduled_for,
        now + chrono::Duration::hours(1),
        Duration::from_secs(5),
        "scheduled_for",
    );
    assert!(claim(&store, &claim_any("w", 10)).await.is_empty());
}

/// `create_execution_with_root_task` writes both records or neither: when the
/// root task cannot be inserted, the execution is not left behind.
pub async fn creating_an_execution_with_its_root_task_is_atomic(store: DynStore) {
    let exec = ExecutionId::new();
    let other = ExecutionId::new();
    // Occupy the id the root task will need, under another execution.
    let mut blocker = task_record(other, 0, TaskKind::Activity, "blocker");
    blocker.id = TaskId::root_of(exec);
    store.create_task(&blocker).await.unwrap();

    let record = execution_record(exec, "atomic");
    let root = task_record(exec, 0, TaskKind::Activity, "atomic");
    let err = store.create_execution_with_root_task(&record, &root).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(
        store.get_execution(exec).await.unwrap().is_none(),
        "no execution without its root task"
    );

    // The same through dispatch: whether the store refuses the item or the call,
    // the execution must not exist.
    let mut new = NewExecution::new(activity("atomic"));
    new.id = ExecutionId::new();
    let mut blocker2 = task_record(other, 1, TaskKind::Activity, "blocker");
    blocker2.id = TaskId::root_of(new.id);
    store.create_task(&blocker2).await.unwrap();
    let new_id = new.id;
    match store.dispatch(vec![new]).await {
        Err(_) => {}
        Ok(out) => panic!("a dispatch whose root task cannot be written must fail, got {out:?}"),
    }
    assert!(store.get_execution(new_id).await.unwrap().is_none());

    let good = ExecutionId::new();
    let record = execution_record(good, "atomic");
    let root = task_record(good, 0, TaskKind::Activity, "atomic");
    store.create_execution_with_root_task(&record, &root).await.unwrap();
    assert_eq!(execution(&store, good).await, record);
    assert_eq!(task(&store, root.id).await, root);
}

/// Seed-parity execution records: create, get, update, count.
pub async fn raw_execution_records_round_trip(store: DynStore) {
    let id = ExecutionId::new();
    let mut record = execution_record(id, "raw");
    record.idempotency_key = Some("raw-key".into());
    record.deadline = Some(now_micros() + chrono::Duration::minutes(5));
    store.create_execution(&record).await.unwrap();
    assert_eq!(execution(&store, id).await, record);
    let dup = store.create_execution(&record).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict { .. }), "{dup:?}");

    record.state = ExecutionState::Completed;
    record.result = Some(json!({"done": true}));
    record.completed_at = Some(now_micros());
    record.updated_at = now_micros();
    store.update_execution(&record).await.unwrap();
    assert_eq!(execution(&store, id).await, record);

    let missing = execution_record(ExecutionId::new(), "raw");
    let err = store.update_execution(&missing).await.unwrap_err();
    assert!(
        matches!(err, StoreError::ExecutionNotFound(m) if m == missing.id),
        "{err:?}"
    );

    assert_eq!(store.count_executions(None).await.unwrap(), 1);
    assert_eq!(
        store.count_executions(Some(ExecutionState::Completed)).await.unwrap(),
        1
    );
    assert_eq!(store.count_executions(Some(ExecutionState::Pending)).await.unwrap(), 0);
}

/// Listing is newest first and honours state, function, limit and offset.
pub async fn executions_list_newest_first_with_filters_and_paging(store: DynStore) {
    let mut ids = Vec::new();
    for i in 0..8 {
        let function = if i % 3 == 0 { "b" } else { "a" };
        ids.push(dispatch(&store, activity(function)).await);
        sleep_ms(2).await;
    }
    let newest_first: Vec<ExecutionId> = ids.iter().rev().copied().collect();

    let page = |limit, offset| ExecutionFilter {
        limit,
        offset,
        ..ExecutionFilter::default()
    };
    let first: Vec<ExecutionId> = store
        .list_executions(&page(3, 0))
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(first, newest_first[..3]);
    let third: Vec<ExecutionId> = store
        .list_executions(&page(3, 6))
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(third, newest_first[6..]);

    let only_b = store
        .list_executions(&ExecutionFilter {
            function: Some("b".into()),
            limit: 100,
            ..ExecutionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(only_b.len(), 3);
    assert!(only_b.iter().all(|e| e.function == "b"));

    let claimed = claim_one(&store, &claim_any("w", 1)).await;
    succeed(&store, claimed.lease.key(), json!(1)).await.unwrap();
    let completed = store
        .list_executions(&ExecutionFilter {
            state: Some(ExecutionState::Completed),
            limit: 100,
            ..ExecutionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].id, claimed.task.execution_id);
    assert_eq!(store.count_executions(Some(ExecutionState::Pending)).await.unwrap(), 7);
}

/// Listing narrows by the root task's queue, by a creation-time range
/// (from inclusive, to exclusive) and by idempotency key, each alone and together.
pub async fn executions_list_by_queue_time_range_and_idempotency_key(store: DynStore) {
    let mut made = Vec::new();
    for i in 0..6 {
        let queue = if i % 2 == 0 { "images" } else { "mail" };
        let new = NewExecution::new(activity("f").on_queue(queue)).with_idempotency_key(format!("key-{i}"));
        let id = new.id;
        store.dispatch(vec![new]).await.unwrap();
        made.push((id, execution(&store, id).await.created_at));
        sleep_ms(3).await;
    }
    let list = |filter: ExecutionFilter| {
        let store = store.clone();
        async move {
            let mut ids: Vec<ExecutionId> = store
                .list_executions(&ExecutionFilter { limit: 100, ..filter })
                .await
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect();
            ids.reverse();
            ids
        }
    };
    let images = list(ExecutionFilter {
        queue: Some("images".into()),
        ..ExecutionFilter::default()
    })
    .await;
    assert_eq!(images, [made[0].0, made[2].0, made[4].0]);
    let middle = list(ExecutionFilter {
        created_after: Some(made[1].1),
        created_before: Some(made[4].1),
        ..ExecutionFilter::default()
    })
    .await;
    assert_eq!(
        middle,
        [made[1].0, made[2].0, made[3].0],
        "from inclusive, to exclusive"
    );
    let both = list(ExecutionFilter {
        queue: Some("mail".into()),
        created_after: Some(made[2].1),
        ..ExecutionFilter::default()
    })
    .await;
    assert_eq!(both, [made[3].0, made[5].0]);
    let keyed = list(ExecutionFilter {
        idempotency_key: Some("key-4".into()),
        ..ExecutionFilter::default()
    })
    .await;
    assert_eq!(keyed, [made[4].0]);
    let none = list(ExecutionFilter {
        idempotency_key: Some("key-4".into()),
        queue: Some("mail".into()),
        ..ExecutionFilter::default()
    })
    .await;
    assert!(none.is_empty());
}

/// Cancel moves the execution and all its unfinished tasks to cancelled, fences
/// the running ones, is idempotent, and leaves nothing claimable.
pub async fn cancel_sticks_and_fences_running_tasks(store: DynStore) {
    let (id, orch) = running_orchestrator(&store, "flow").await;
    store
        .create_children(
            Some(orch.lease.key()),
            vec![child(&orch, 1, activity("step1")), child(&orch, 2, activity("step2"))],
        )
        .await
        .unwrap();
    let running_child = claim_one(&store, &claim_any("w", 1).functions(["step1"])).await;

    let cancelled = store.cancel_execution(id, "user asked").await.unwrap().value;
    assert_eq!(cancelled.execution_id, id);
    assert_eq!(cancelled.previous, ExecutionState::Running);
    let expected: HashSet<TaskId> = [0, 1, 2].into_iter().map(|s| TaskId::for_step(id, s)).collect();
    assert_eq!(cancelled.tasks.iter().copied().collect::<HashSet<_>>(), expected);

    let e = execution(&store, id).await;
    assert_eq!(e.state, ExecutionState::Cancelled);
    assert!(e.completed_at.is_some());
    assert_eq!(e.error.as_ref().map(|e| e.kind.as_str()), Some("cancelled"));
    for t in &expected {
        let t = task(&store, *t).await;
        assert_eq!(t.state, TaskState::Cancelled, "{}", t.function);
        assert!(t.completed_at.is_some());
    }

    assert_lease_lost(
        succeed(&store, running_child.lease.key(), json!("late")).await,
        running_child.task.id,
        LeaseLost::NotRunning(TaskState::Cancelled),
    );
    assert_lease_lost(
        succeed(&store, orch.lease.key(), json!("late")).await,
        orch.task.id,
        LeaseLost::NotRunning(TaskState::Cancelled),
    );
    assert_eq!(
        execution(&store, id).await.state,
        ExecutionState::Cancelled,
        "cancel sticks"
    );

    let events = events_of(&store, id).await;
    assert_eq!(
        types(&events)
            .iter()
            .filter(|t| **t == EventType::TaskCancelled)
            .count(),
        3
    );
    let last = events.last().unwrap();
    assert_eq!(last.event_type, EventType::ExecutionCancelled);
    assert_eq!(last.data, json!({"function": "flow", "reason": "user asked"}));

    let again = store.cancel_execution(id, "twice").await.unwrap().value;
    assert_eq!(again.previous, ExecutionState::Cancelled);
    assert!(again.tasks.is_empty());
    assert_eq!(
        events_of(&store, id).await.len(),
        events.len(),
        "a no-op cancel appends nothing"
    );

    let missing = ExecutionId::new();
    assert!(matches!(
        store.cancel_execution(missing, "x").await,
        Err(StoreError::ExecutionNotFound(m)) if m == missing
    ));
    assert!(
        claim(&store, &ClaimRequest::new("w", 10, Duration::from_secs(5)))
            .await
            .is_empty()
    );
}

/// Executions past their deadline time out; others are untouched.
pub async fn executions_past_their_deadline_time_out(store: DynStore) {
    let short = NewExecution::new(activity("slow")).with_expiry(Duration::from_millis(300));
    let long = NewExecution::new(activity("slow")).with_expiry(Duration::from_secs(3600));
    let none = NewExecution::new(activity("slow"));
    let (s, l, n) = (short.id, long.id, none.id);
    store.dispatch(vec![short, long, none]).await.unwrap();
    assert!(store.time_out_executions(100).await.unwrap().value.is_empty());

    sleep_ms(600).await;
    let timed_out = store.time_out_executions(100).await.unwrap().value;
    assert_eq!(timed_out.len(), 1);
    assert_eq!(timed_out[0].execution_id, s);
    assert_eq!(timed_out[0].previous, ExecutionState::Pending);
    assert_eq!(timed_out[0].tasks, vec![TaskId::root_of(s)]);

    let e = execution(&store, s).await;
    assert_eq!(e.state, ExecutionState::TimedOut);
    assert_eq!(e.error.as_ref().map(|e| e.kind.as_str()), Some("timeout"));
    assert_eq!(task(&store, TaskId::root_of(s)).await.state, TaskState::Cancelled);
    assert_eq!(
        types(&events_of(&store, s).await)[2..],
        [EventType::TaskCancelled, EventType::ExecutionTimedOut]
    );
    for other in [l, n] {
        assert_eq!(execution(&store, other).await.state, ExecutionState::Pending);
    }
    assert!(store.time_out_executions(100).await.unwrap().value.is_empty());
}

/// Courier's own executions (`courier.*` functions) are listed only when asked for.
pub async fn internal_executions_are_listed_only_when_asked_for(store: DynStore) {
    let mine = dispatch(&store, activity("send")).await;
    let internal = dispatch(&store, activity("courier.webhook.deliver")).await;
    let listed = |include_internal| {
        let store = store.clone();
        async move {
            store
                .list_executions(&ExecutionFilter {
                    include_internal,
                    limit: 10,
                    ..ExecutionFilter::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(false).await, vec![mine]);
    assert_eq!(listed(true).await, vec![internal, mine]);
    assert_eq!(
        store.count_executions(None).await.unwrap(),
        2,
        "counts include everything"
    );
}
