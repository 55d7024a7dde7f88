//! Claims, leases, fencing, heartbeats.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use courier_core::{
    Change, ClaimRequest, Completion, EventType, ExecutionId, ExecutionState, LeaseKey, LeaseLost, LeaseToken,
    NewExecution, Outcome, Release, Requeue, StoreError, TaskId, TaskKind, TaskSpec, TaskState, WriteBatch,
};
use serde_json::json;

use crate::support::*;

/// Six workers racing over 500 tasks claim every task exactly once.
pub async fn six_claimers_claim_each_of_500_tasks_exactly_once(store: DynStore) {
    dispatch_many(&store, "job", 500).await;
    let workers = (0..6).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let req = claim_any(&format!("worker-{w}"), 7);
            let mut mine = Vec::new();
            loop {
                let got = claim(&store, &req).await;
                if got.is_empty() {
                    break;
                }
                for c in &got {
                    assert_eq!(c.task.state, TaskState::Running);
                    assert_eq!(c.task.attempt, 1);
                    assert_eq!(c.task.lease_owner.as_deref(), Some(req.worker_id.as_str()));
                }
                mine.extend(got.into_iter().map(|c| c.task.id));
            }
            mine
        })
    });
    let mut all = Vec::new();
    for w in futures::future::join_all(workers).await {
        all.extend(w.unwrap());
    }
    let unique: HashSet<TaskId> = all.iter().copied().collect();
    assert_eq!(all.len(), 500, "claims: {}", all.len());
    assert_eq!(unique.len(), 500, "a task was claimed twice");
    assert_eq!(store.count_tasks(None, Some(TaskState::Running)).await.unwrap(), 500);
}

/// A per-function limit of two is never exceeded by eight concurrent claimers.
pub async fn a_concurrency_limit_of_two_holds_with_eight_claimers(store: DynStore) {
    dispatch_many(&store, "limited", 40).await;
    dispatch_many(&store, "free", 10).await;
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let claimers = (0..8).map(|w| {
        let (store, running, peak, done) = (store.clone(), running.clone(), peak.clone(), done.clone());
        tokio::spawn(async move {
            let req = claim_any(&format!("w{w}"), 5).limit("limited", 2);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while done.load(Ordering::SeqCst) < 50 {
                assert!(tokio::time::Instant::now() < deadline, "limited work did not finish");
                let got = claim(&store, &req).await;
                if got.is_empty() {
                    sleep_ms(5).await;
                    continue;
                }
                // Count after the claim commits and uncount before the completion
                // does, so this count never exceeds the store's.
                let limited = got.iter().filter(|c| c.task.function == "limited").count();
                if limited > 0 {
                    let now = running.fetch_add(limited, Ordering::SeqCst) + limited;
                    peak.fetch_max(now, Ordering::SeqCst);
                }
                for c in got {
                    if c.task.function == "limited" {
                        sleep_ms(15).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                    succeed(&store, c.lease.key(), json!(null)).await.unwrap();
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    });
    for c in futures::future::join_all(claimers).await {
        c.unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 50);
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "limit of 2 exceeded: {peak} ran at once");
    assert_eq!(peak, 2, "the limit should also be reached, not just respected");
}

/// Once a task is claimed again, the old claim's writes are all refused.
pub async fn a_stale_lease_owner_cannot_write(store: DynStore) {
    dispatch(&store, activity("work")).await;
    let short = ClaimRequest::new("old", 1, Duration::from_millis(200));
    let old = claim_one(&store, &short).await;
    sleep_ms(400).await;
    let new = claim_one(&store, &claim_any("new", 1)).await;
    assert_eq!(new.task.id, old.task.id);
    let id = old.task.id;

    assert_lease_lost(
        succeed(&store, old.lease.key(), json!("old")).await,
        id,
        LeaseLost::Reclaimed,
    );
    assert_lease_lost(
        fail_for_good(&store, old.lease.key(), "x").await,
        id,
        LeaseLost::Reclaimed,
    );
    assert_lease_lost(
        store.heartbeat(old.lease.key(), Duration::from_secs(5), None).await,
        id,
        LeaseLost::Reclaimed,
    );
    assert_lease_lost(
        store.checkpoint(old.lease.key(), json!({"p": 1})).await,
        id,
        LeaseLost::Reclaimed,
    );
    assert_lease_lost(
        store.release_task(old.lease.key(), Duration::ZERO).await,
        id,
        LeaseLost::Reclaimed,
    );
    assert_lease_lost(
        store.renew_task_lease(old.lease.key(), Duration::from_secs(5)).await,
        id,
        LeaseLost::Reclaimed,
    );
    let t = task(&store, id).await;
    assert_eq!(t.state, TaskState::Running);
    assert_eq!(t.lease_token, Some(new.lease.token), "the new owner still holds it");

    succeed(&store, new.lease.key(), json!("new")).await.unwrap();
    assert_eq!(task(&store, id).await.result, Some(json!("new")));
    assert_lease_lost(
        succeed(&store, new.lease.key(), json!("again")).await,
        id,
        LeaseLost::NotRunning(TaskState::Completed),
    );
    assert_eq!(
        task(&store, id).await.result,
        Some(json!("new")),
        "the result is not overwritten"
    );

    let ghost = LeaseKey {
        task_id: TaskId::root_of(ExecutionId::new()),
        token: LeaseToken::new(),
    };
    assert!(matches!(
        succeed(&store, ghost, json!(1)).await,
        Err(StoreError::TaskNotFound(t)) if t == ghost.task_id
    ));
}

/// An expired lease makes the task claimable again, as a new attempt with a new token.
pub async fn an_expired_lease_is_reclaimed_as_a_new_attempt(store: DynStore) {
    let exec = dispatch(&store, activity("work")).await;
    let first = claim_one(&store, &ClaimRequest::new("w1", 1, Duration::from_millis(300))).await;
    assert_eq!(first.lease.attempt, 1);
    assert_eq!(first.lease.owner, "w1");
    assert!(
        claim(&store, &claim_any("w2", 1)).await.is_empty(),
        "a live lease is not claimable"
    );
    sleep_ms(500).await;
    let second = claim_one(&store, &claim_any("w2", 1)).await;
    assert_eq!(second.task.id, first.task.id);
    assert_eq!(second.lease.attempt, 2);
    assert_eq!(second.task.attempt, 2);
    assert_eq!(second.lease.owner, "w2");
    assert_ne!(second.lease.token, first.lease.token);
    assert!(second.lease.expires_at > first.lease.expires_at);
    let started = events_of_type(&store, exec, EventType::TaskStarted).await;
    assert_eq!(started.len(), 2);
    assert_eq!(started[1].data["attempt"], json!(2));
    assert_eq!(started[1].data["worker"], json!("w2"));
}

/// A lease that ran out but was not claimed again still accepts its completion.
pub async fn an_expired_but_unclaimed_lease_still_completes(store: DynStore) {
    dispatch(&store, activity("work")).await;
    let c = claim_one(&store, &ClaimRequest::new("w", 1, Duration::from_millis(200))).await;
    sleep_ms(400).await;
    succeed(&store, c.lease.key(), json!(7)).await.unwrap();
    assert_eq!(task(&store, c.task.id).await.state, TaskState::Completed);
}

/// `scheduled_for` in the future keeps a task out of claims until it is due.
pub async fn a_task_scheduled_in_the_future_is_claimable_only_when_due(store: DynStore) {
    dispatch(&store, activity("later").with_delay(Duration::from_millis(500))).await;
    assert!(claim(&store, &claim_any("w", 5)).await.is_empty());
    sleep_ms(800).await;
    assert_eq!(claim(&store, &claim_any("w", 5)).await.len(), 1);
}

/// Higher priority first; equal priority in order of creation.
pub async fn claims_follow_priority_then_age(store: DynStore) {
    let mut by_name = Vec::new();
    for (name, priority) in [("a", 0), ("b", 5), ("c", 0), ("d", 9), ("e", 5)] {
        dispatch(&store, activity(name).with_priority(priority)).await;
        by_name.push(name);
        sleep_ms(2).await;
    }
    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(claim_one(&store, &claim_any("w", 1)).await.task.function);
    }
    assert_eq!(order, vec!["d", "b", "e", "a", "c"]);
}

/// Priority ageing at the default (a level is worth 60 s of waiting): a flood
/// of priority-10 work overtakes a priority-0 task only if it became due less
/// than 10 × 60 s after it. Due 15 minutes before the flood, the low task is
/// claimed first; due 5 minutes before it, after the whole flood. Checked on
/// each way a claim reads its candidates: walking the queue, per named
/// function, and through a concurrency-limited function's own branch.
pub async fn a_flood_of_higher_priority_overtakes_only_within_the_ageing_bound(store: DynStore) {
    let ageing = courier_core::PriorityAgeing::DEFAULT.duration();
    assert_eq!(
        ageing,
        Duration::from_secs(60),
        "this case is written for the default ageing"
    );
    let requests = [
        ("queue walk", claim_any("w", 1)),
        ("named functions", claim_any("w", 1).functions(["low", "flood"])),
        (
            "limited function",
            claim_any("w", 1).functions(["low", "flood"]).limit("flood", 100),
        ),
    ];
    for (how, req) in requests {
        let exec = ExecutionId::new();
        store
            .create_execution(&execution_record(exec, "fairness"))
            .await
            .unwrap();
        let now = now_micros();
        let due = |ago_s: i64| now - chrono::Duration::seconds(ago_s);
        let mk = |step: i64, function: &str, priority: i32, scheduled_for| {
            let mut t = task_record(exec, step, TaskKind::Activity, function);
            t.priority = priority;
            t.scheduled_for = scheduled_for;
            t
        };
        // Beyond the bound: due 15 min before the flood (bound: 10 levels × 60 s).
        let mut tasks = vec![mk(1, "low", 0, due(15 * 60 + 1))];
        // Within it: due 5 min before the flood.
        tasks.push(mk(2, "low", 0, due(5 * 60 + 1)));
        // The flood, due over the last second.
        for i in 0..5 {
            tasks.push(mk(3 + i, "flood", 10, due(1)));
        }
        store.create_tasks(&tasks).await.unwrap();

        let mut order = Vec::new();
        for _ in 0..tasks.len() {
            let c = claim_one(&store, &req).await;
            // The flood's tasks tie (due and created together): any order among them.
            let step = if c.task.function == "low" { c.task.step } else { 0 };
            order.push((c.task.function.clone(), step));
        }
        let expected: Vec<(String, i64)> = [("low", 1)]
            .into_iter()
            .chain((3..8).map(|_| ("flood", 0)))
            .chain([("low", 2)])
            .map(|(f, s)| (f.to_string(), s))
            .collect();
        assert_eq!(order, expected, "claim order ({how})");
        assert!(claim(&store, &req).await.is_empty(), "{how}: all claimed");
    }

    // One claim taking several returns them in claim order too.
    let exec = ExecutionId::new();
    store
        .create_execution(&execution_record(exec, "fairness"))
        .await
        .unwrap();
    let now = now_micros();
    let mut old = task_record(exec, 1, TaskKind::Activity, "low");
    old.scheduled_for = now - chrono::Duration::seconds(20 * 60);
    let mut high = task_record(exec, 2, TaskKind::Activity, "flood");
    high.priority = 10;
    let mut recent = task_record(exec, 3, TaskKind::Activity, "low");
    recent.scheduled_for = now - chrono::Duration::seconds(2);
    store.create_tasks(&[recent, high, old]).await.unwrap();
    let steps: Vec<i64> = claim(&store, &claim_any("w", 10))
        .await
        .iter()
        .map(|c| c.task.step)
        .collect();
    assert_eq!(steps, vec![1, 2, 3]);
}

/// Queues, tags (overlap; untagged matches everyone), functions (timers exempt)
/// and kinds route claims; effects are never claimed.
pub async fn claims_route_by_queue_tags_function_and_kind(store: DynStore) {
    let exec = ExecutionId::new();
    store
        .create_execution(&execution_record(exec, "routing"))
        .await
        .unwrap();
    let mk = |step, kind, function: &str, queue: &str, tags: &[&str]| {
        let mut t = task_record(exec, step, kind, function);
        t.queue = queue.into();
        t.tags = tags.iter().map(|s| s.to_string()).collect();
        t
    };
    let tasks = vec![
        mk(1, TaskKind::Activity, "f1", "q1", &[]),
        mk(2, TaskKind::Activity, "f1", "q1", &["gpu"]),
        mk(3, TaskKind::Activity, "f2", "q2", &[]),
        mk(4, TaskKind::Activity, "f1", "q1", &["eu", "big"]),
        mk(5, TaskKind::Orchestrator, "f3", "q1", &[]),
        mk(6, TaskKind::Sleep, "courier.sleep", "q1", &[]),
        mk(7, TaskKind::Effect, "courier.counter:n", "q1", &[]),
    ];
    store.create_tasks(&tasks).await.unwrap();
    let steps = |claimed: Vec<courier_core::Claimed>| {
        let mut s: Vec<i64> = claimed.iter().map(|c| c.task.step).collect();
        s.sort();
        s
    };

    assert_eq!(steps(claim(&store, &claim_any("w", 10).queues(["q2"])).await), vec![3]);
    assert_eq!(
        steps(
            claim(
                &store,
                &claim_any("w", 10)
                    .queues(["q1"])
                    .tags(["gpu", "other"])
                    .kinds([TaskKind::Activity])
            )
            .await
        ),
        vec![1, 2],
        "untagged and overlapping tasks only"
    );
    assert_eq!(
        steps(claim(&store, &claim_any("w", 10).functions(["f1"])).await),
        vec![4, 6],
        "f1 without a tag filter, plus the timer that ignores the function filter"
    );
    assert_eq!(
        steps(claim(&store, &claim_any("w", 10).kinds([TaskKind::Orchestrator])).await),
        vec![5]
    );
    assert!(
        claim(&store, &claim_any("w", 10)).await.is_empty(),
        "effects are never claimed"
    );
    assert_eq!(task(&store, tasks[6].id).await.state, TaskState::Pending);
}

/// The first claim of a root task starts its execution, once.
pub async fn claiming_a_root_task_starts_its_execution_once(store: DynStore) {
    let id = dispatch(&store, activity("go")).await;
    let first = claim_one(&store, &ClaimRequest::new("w1", 1, Duration::from_millis(200))).await;
    let e = execution(&store, id).await;
    assert_eq!(e.state, ExecutionState::Running);
    let started_at = e.started_at.expect("started_at");
    assert_close(
        started_at,
        first.task.started_at.unwrap(),
        Duration::from_secs(1),
        "started_at",
    );
    let events = events_of(&store, id).await;
    assert_eq!(
        types(&events),
        vec![
            EventType::ExecutionCreated,
            EventType::TaskCreated,
            EventType::TaskStarted,
            EventType::ExecutionStarted
        ]
    );
    assert_eq!(
        events[2].data,
        json!({"function": "go", "kind": "activity", "attempt": 1, "worker": "w1"})
    );
    assert_eq!(events[3].data, json!({"function": "go"}));

    sleep_ms(400).await;
    claim_one(&store, &claim_any("w2", 1)).await;
    assert_eq!(
        events_of_type(&store, id, EventType::ExecutionStarted).await.len(),
        1,
        "a second attempt does not start the execution again"
    );
    assert_eq!(execution(&store, id).await.started_at, Some(started_at));
}

/// Renewal extends live leases and refuses lost ones, item by item.
pub async fn lease_renewal_extends_live_leases_and_reports_lost_ones(store: DynStore) {
    dispatch_many(&store, "work", 2).await;
    let claims = claim(&store, &ClaimRequest::new("w", 2, Duration::from_secs(1))).await;
    let (a, b) = (&claims[0], &claims[1]);
    let stale = LeaseKey {
        task_id: b.task.id,
        token: LeaseToken::new(),
    };
    let results = store
        .renew_leases(&[a.lease.key(), stale], Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    let renewed = results[0].as_ref().expect("live lease renews");
    assert_eq!(renewed.task_id, a.task.id);
    let now = store.now().await.unwrap();
    assert_close(
        renewed.expires_at,
        now + chrono::Duration::seconds(60),
        Duration::from_secs(5),
        "renewed expiry",
    );
    assert!(matches!(&results[1], Err(e) if is_lease_lost(e, b.task.id)));
    let t = task(&store, a.task.id).await;
    assert_eq!(t.lease_expires_at, Some(renewed.expires_at));
    assert!(t.heartbeat_at.unwrap() >= a.task.heartbeat_at.unwrap());

    let single = store
        .renew_task_lease(b.lease.key(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(single.task_id, b.task.id);
    sleep_ms(1200).await;
    assert!(
        claim(&store, &claim_any("thief", 5)).await.is_empty(),
        "renewed leases are not stolen"
    );
}

/// A heartbeat and a checkpoint each leave an event; the checkpoint is offered to the next attempt.
pub async fn heartbeats_and_checkpoints_are_recorded_and_survive_a_retry(store: DynStore) {
    let exec = dispatch(&store, activity("long")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    let renewed = store
        .heartbeat(c.lease.key(), Duration::from_secs(120), Some(json!({"rows": 10})))
        .await
        .unwrap()
        .value;
    assert!(renewed.expires_at > c.lease.expires_at);
    store.checkpoint(c.lease.key(), json!({"page": 3})).await.unwrap();
    let hb = events_of_type(&store, exec, EventType::TaskHeartbeat).await;
    assert_eq!(hb.len(), 1);
    assert_eq!(hb[0].data, json!({"details": {"rows": 10}}));
    assert_eq!(hb[0].task_id, Some(c.task.id));
    let cp = events_of_type(&store, exec, EventType::TaskCheckpoint).await;
    assert_eq!(cp.len(), 1);
    assert_eq!(cp[0].data, json!({"checkpoint": {"page": 3}}));

    let retry = store
        .complete_tasks(vec![courier_core::Completion {
            lease: c.lease.key(),
            outcome: courier_core::Outcome::Retry {
                error: courier_core::TaskError::new("io", "flaky"),
                delay: Duration::ZERO,
            },
        }])
        .await
        .unwrap();
    retry[0].as_ref().unwrap();
    let again = claim_one(&store, &claim_any("w", 1)).await;
    assert_eq!(again.task.attempt, 2);
    assert_eq!(again.task.checkpoint, Some(json!({"page": 3})));
}

/// Releasing gives the task back without using an attempt.
pub async fn releasing_a_claim_gives_the_attempt_back(store: DynStore) {
    let exec = dispatch(&store, activity("polite")).await;
    let c = claim_one(&store, &claim_any("w", 1)).await;
    store.release_task(c.lease.key(), Duration::ZERO).await.unwrap();
    let t = task(&store, c.task.id).await;
    assert_eq!(t.state, TaskState::Pending);
    assert_eq!(t.attempt, 0);
    assert_eq!((t.lease_token, t.lease_expires_at), (None, None));
    let queued = events_of_type(&store, exec, EventType::TaskQueued).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].data["reason"], json!("released"));

    let again = claim_one(&store, &claim_any("w", 1)).await;
    assert_eq!(again.task.attempt, 1);
    store
        .release_task(again.lease.key(), Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(
        claim(&store, &claim_any("w", 1)).await.is_empty(),
        "released with a delay"
    );
}

/// Releases in a group commit give back every claim that still holds its task,
/// each due after its own delay and without using its attempt, and refuse the
/// others item by item: a claim that lost its task, a task given back twice in
/// one batch (the second sees the first), a task that does not exist.
pub async fn releases_ride_the_group_commit(store: DynStore) {
    let executions = dispatch_many(&store, "held_back", 4).await;
    let claimed = claim(&store, &claim_any("w", 4)).await;
    assert_eq!(claimed.len(), 4);
    let (now, later, lost, done) = (&claimed[0], &claimed[1], &claimed[2], &claimed[3]);
    let stale = LeaseKey {
        task_id: lost.task.id,
        token: LeaseToken(uuid::Uuid::new_v4()),
    };
    let nowhere = LeaseKey {
        task_id: TaskId(uuid::Uuid::new_v4()),
        token: LeaseToken(uuid::Uuid::new_v4()),
    };
    let release = |lease, delay| Release { lease, delay };
    let batch = WriteBatch {
        releases: vec![
            release(now.lease.key(), Duration::ZERO),
            release(stale, Duration::ZERO),
            release(later.lease.key(), Duration::from_secs(3600)),
            release(now.lease.key(), Duration::ZERO),
            release(nowhere, Duration::ZERO),
        ],
        completions: vec![Completion {
            lease: done.lease.key(),
            outcome: Outcome::Succeeded {
                result: json!("done"),
                remember: Vec::new(),
            },
        }],
        ..WriteBatch::default()
    };
    let results = store.commit(Arc::new(batch)).await.unwrap();
    assert_eq!(results.releases.len(), 5);
    assert!(results.releases[0].is_ok(), "{:?}", results.releases[0]);
    assert!(
        matches!(results.releases[1], Err(StoreError::LeaseLost { task_id, reason: LeaseLost::Reclaimed }) if task_id == lost.task.id),
        "{:?}",
        results.releases[1]
    );
    assert!(results.releases[2].is_ok(), "{:?}", results.releases[2]);
    assert!(
        matches!(results.releases[3], Err(StoreError::LeaseLost { task_id, reason: LeaseLost::NotRunning(TaskState::Pending) }) if task_id == now.task.id),
        "{:?}",
        results.releases[3]
    );
    assert!(
        matches!(results.releases[4], Err(StoreError::TaskNotFound(id)) if id == nowhere.task_id),
        "{:?}",
        results.releases[4]
    );
    assert!(results.completions[0].is_ok(), "{:?}", results.completions[0]);

    // Each release queued its task once, in batch order, saying whether it may
    // be claimed at once.
    let queued: Vec<(TaskId, bool)> = results
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::TaskQueued {
                task,
                reason: Requeue::Released,
                claimable_now,
                attempt,
                ..
            } => {
                assert_eq!(*attempt, 0, "a release gives its attempt back");
                Some((task.task, *claimable_now))
            }
            _ => None,
        })
        .collect();
    assert_eq!(queued, vec![(now.task.id, true), (later.task.id, false)]);
    for c in [now, later] {
        let t = task(&store, c.task.id).await;
        assert_eq!((t.state, t.attempt), (TaskState::Pending, 0));
        assert_eq!((t.lease_token, t.lease_expires_at), (None, None));
        let released = events_of_type(&store, c.task.execution_id, EventType::TaskQueued).await;
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].data["reason"], json!("released"));
    }
    let untouched = task(&store, lost.task.id).await;
    assert_eq!(untouched.state, TaskState::Running);
    assert_eq!(untouched.lease_token, Some(lost.lease.token));
    assert_eq!(
        events_of_type(&store, lost.task.execution_id, EventType::TaskQueued)
            .await
            .len(),
        0
    );
    assert_eq!(task(&store, done.task.id).await.state, TaskState::Completed);
    assert_eq!(executions.len(), 4);

    // Only the one given back without a delay is claimable now, at its first attempt.
    let again = claim(&store, &claim_any("w", 4)).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!((again[0].task.id, again[0].task.attempt), (now.task.id, 1));
}

/// The seed's one-at-a-time claim takes the next task by the same rules, and
/// nothing when nothing is claimable.
pub async fn the_seed_claim_takes_one_task_at_a_time(store: DynStore) {
    let ids = dispatch_many(&store, "one_by_one", 2).await;
    let first = store
        .claim_next_task(&claim_any("w", 10))
        .await
        .unwrap()
        .expect("a task");
    let second = store
        .claim_next_task(&claim_any("w", 10))
        .await
        .unwrap()
        .expect("another task");
    let claimed: std::collections::BTreeSet<_> = [first.task.execution_id, second.task.execution_id].into();
    assert_eq!(claimed, ids.into_iter().collect());
    assert!(store.claim_next_task(&claim_any("w", 10)).await.unwrap().is_none());
}

/// An external claim leaves alone the functions it excludes and Courier's own
/// (`courier.`), even with no function filter; timers are not functions.
pub async fn a_claim_leaves_excluded_and_internal_functions_alone(store: DynStore) {
    for function in ["courier.webhook.deliver", "served", "outside", "courierx"] {
        dispatch(&store, activity(function)).await;
    }
    let mut req = claim_any("external:w", 10);
    req.exclude_functions = vec!["served".into()];
    req.exclude_internal = true;
    let mut got: Vec<String> = claim(&store, &req).await.into_iter().map(|c| c.task.function).collect();
    got.sort();
    assert_eq!(got, ["courierx", "outside"]);
    let mut rest: Vec<String> = claim(&store, &claim_any("node", 10))
        .await
        .into_iter()
        .map(|c| c.task.function)
        .collect();
    rest.sort();
    assert_eq!(rest, ["courier.webhook.deliver", "served"]);
}

/// A claim riding a group commit runs after the batch's writes, in its
/// transaction, as a claim of its own would: it takes the work the batch made
/// due, in claim order, and leaves alone what its queue filter, a delay or a
/// concurrency limit keeps from it; its changes come last and are logged.
pub async fn a_claim_riding_a_commit_takes_the_work_the_commit_made(store: DynStore) {
    dispatch(&store, activity("limited")).await;
    let holder = claim_one(&store, &claim_any("other", 1)).await;
    let after = store.last_event_seq().await.unwrap();

    let low = NewExecution::new(TaskSpec {
        priority: -5,
        ..activity("rides")
    });
    let high = NewExecution::new(TaskSpec {
        priority: 5,
        ..activity("rides")
    });
    let elsewhere = NewExecution::new(TaskSpec {
        queue: "elsewhere".into(),
        ..activity("rides")
    });
    let delayed = NewExecution::new(TaskSpec {
        delay: Some(Duration::from_secs(3600)),
        ..activity("rides")
    });
    let capped = NewExecution::new(activity("limited"));
    let ids: Vec<ExecutionId> = [&low, &high, &elsewhere, &delayed, &capped]
        .iter()
        .map(|e| e.id)
        .collect();
    let batch = WriteBatch {
        dispatches: vec![low, high, elsewhere, delayed, capped],
        claim: Some(claim_any("rider", 10).queues(["default"]).limit("limited", 1)),
        ..WriteBatch::default()
    };
    let results = store.commit(Arc::new(batch)).await.unwrap();
    assert!(results.dispatches.iter().all(Result::is_ok), "{:?}", results.dispatches);

    let claimed: Vec<TaskId> = results.claimed.iter().map(|c| c.task.id).collect();
    assert_eq!(
        claimed,
        vec![TaskId::root_of(ids[1]), TaskId::root_of(ids[0])],
        "the due work of its queue, in claim order; not the other queue's, the delayed or the capped"
    );
    for c in &results.claimed {
        assert_eq!(c.task.state, TaskState::Running);
        assert_eq!(c.task.attempt, 1);
        assert_eq!(c.lease.owner, "rider");
        assert_eq!(c.task.lease_token, Some(c.lease.token));
        assert_eq!(task(&store, c.task.id).await.state, TaskState::Running);
        assert_eq!(
            execution(&store, c.task.execution_id).await.state,
            ExecutionState::Running
        );
    }
    // The batch's own changes first, then the claim's, each logged as reported.
    let first_started = results
        .changes
        .iter()
        .position(|c| matches!(c, Change::TaskStarted { .. }))
        .expect("the claim reported its starts");
    assert!(
        results.changes[first_started..]
            .iter()
            .all(|c| matches!(c, Change::TaskStarted { .. } | Change::ExecutionStarted { .. })),
        "{:?}",
        results.changes
    );
    assert_eq!(
        results.changes.len() - first_started,
        4,
        "two starts, two executions started"
    );
    assert_logged(&store, after, &results.changes, "a commit with a claim").await;
    assert_eq!(
        types(&events_of(&store, ids[0]).await),
        vec![
            EventType::ExecutionCreated,
            EventType::TaskCreated,
            EventType::TaskStarted,
            EventType::ExecutionStarted
        ]
    );

    // What it claimed is held (a claim of its own finds only what it left),
    // and its leases fence like any claim's.
    let rest = claim(&store, &claim_any("late", 10).limit("limited", 1)).await;
    assert_eq!(
        rest.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![TaskId::root_of(ids[2])],
        "only the other queue's work is left (the capped waits for its limit)"
    );
    succeed(&store, results.claimed[0].lease.key(), json!("done"))
        .await
        .unwrap();
    succeed(&store, holder.lease.key(), json!("done")).await.unwrap();

    // A claim can ride a batch with nothing else in it: once the limit's
    // holder is done, it takes the capped work.
    let batch = WriteBatch {
        claim: Some(claim_any("rider", 10).queues(["default"])),
        ..WriteBatch::default()
    };
    let results = store.commit(Arc::new(batch)).await.unwrap();
    assert_eq!(
        results.claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![TaskId::root_of(ids[4])],
        "with the limit's holder done, a claim alone takes the capped work"
    );
}
