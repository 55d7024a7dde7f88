//! Behaviour the shared conformance suite does not reach: how claims fill up
//! around saturated limits, fencing reasons, signal ordering, the writer's group
//! commit isolating a failed job, and what a file database keeps across reopens.

use std::sync::Arc;
use std::time::Duration;

use courier_core::store::*;
use courier_core::{
    ChildCreated, ClaimRequest, Completed, Completion, EventFilter, ExecutionId, ExecutionRecord, ExecutionState,
    LeaseKey, LeaseLost, LeaseToken, NewExecution, NewTask, Outcome, StoreError, StoreResult, TaskId, TaskKind,
    TaskSpec, TaskState,
};
use courier_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;

async fn memory() -> SqliteStore {
    let store = SqliteStore::open(SqliteOptions::memory()).await.unwrap();
    store.init().await.unwrap();
    store
}

fn activity(function: &str) -> TaskSpec {
    TaskSpec::new(TaskKind::Activity, function, json!(null))
}

async fn dispatch(store: &SqliteStore, spec: TaskSpec) -> ExecutionId {
    store.dispatch(vec![NewExecution::new(spec)]).await.unwrap().value[0].id()
}

async fn complete(store: &SqliteStore, completions: Vec<Completion>) -> StoreResult<Vec<StoreResult<Completed>>> {
    let batch = WriteBatch {
        completions,
        ..WriteBatch::default()
    };
    Ok(store.commit(Arc::new(batch)).await?.completions)
}

async fn create_children(
    store: &SqliteStore,
    fence: Option<LeaseKey>,
    tasks: Vec<NewTask>,
) -> StoreResult<Vec<ChildCreated>> {
    let batch = WriteBatch {
        children: vec![ChildGroup { fence, tasks }],
        ..WriteBatch::default()
    };
    store.commit(Arc::new(batch)).await?.children.pop().unwrap()
}

fn req(max: u32) -> ClaimRequest {
    ClaimRequest::new("w", max, Duration::from_secs(30))
}

#[tokio::test]
async fn a_saturated_limit_does_not_starve_other_functions_of_a_claim() {
    let store = memory().await;
    // The limited function's tasks come first in claim order (higher priority).
    for _ in 0..10 {
        dispatch(&store, activity("hot").with_priority(5)).await;
    }
    for _ in 0..3 {
        dispatch(&store, activity("cold")).await;
    }
    let claimed = store.claim_tasks(&req(5).limit("hot", 2)).await.unwrap().value;
    let hot = claimed.iter().filter(|c| c.task.function == "hot").count();
    let cold = claimed.iter().filter(|c| c.task.function == "cold").count();
    assert_eq!((hot, cold), (2, 3));

    // The two live leases count against the limit on the next claim too.
    let again = store.claim_tasks(&req(5).limit("hot", 2)).await.unwrap().value;
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test]
async fn an_expired_lease_frees_its_limit_slot_and_is_reclaimed() {
    let store = memory().await;
    dispatch(&store, activity("f")).await;
    dispatch(&store, activity("f")).await;
    let short = ClaimRequest::new("w", 1, Duration::from_millis(1)).limit("f", 1);
    let first = store.claim_tasks(&short).await.unwrap().value;
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    // The first lease expired: it no longer counts, and it is claimable itself.
    let next = store.claim_tasks(&req(2).limit("f", 1)).await.unwrap().value;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].task.id, first[0].task.id, "the expired task goes first (older)");
    assert_eq!(next[0].task.attempt, 2);
}

#[tokio::test]
async fn filters_combine_kinds_functions_tags_and_queues() {
    let store = memory().await;
    let gpu = dispatch(&store, activity("render").with_tags(["gpu"])).await;
    let untagged = dispatch(&store, activity("render")).await;
    let other_queue = dispatch(&store, activity("render").on_queue("slow")).await;
    let sleep = dispatch(&store, TaskSpec::new(TaskKind::Sleep, "courier.sleep", json!(null))).await;

    // A CPU worker for "render" on the default queue: untagged render, and the
    // timer (functions do not filter timers); not the GPU task, not the other queue.
    let cpu = req(10).queues(["default"]).tags(["cpu"]).functions(["render"]);
    let mut got: Vec<ExecutionId> = store
        .claim_tasks(&cpu)
        .await
        .unwrap()
        .value
        .into_iter()
        .map(|c| c.task.execution_id)
        .collect();
    got.sort();
    let mut want = vec![untagged, sleep];
    want.sort();
    assert_eq!(got, want);

    // Only activities, with a tag that overlaps.
    let gpu_worker = req(10).tags(["gpu", "x"]).kinds([TaskKind::Activity]);
    let got = store.claim_tasks(&gpu_worker).await.unwrap().value;
    let ids: Vec<ExecutionId> = got.iter().map(|c| c.task.execution_id).collect();
    assert!(
        ids.contains(&gpu) && ids.contains(&other_queue) && ids.len() == 2,
        "{ids:?}"
    );
}

#[tokio::test]
async fn fenced_writes_say_why_they_were_refused() {
    let store = memory().await;
    dispatch(&store, activity("f")).await;
    let claimed = store.claim_tasks(&req(1)).await.unwrap().value.pop().unwrap();
    let stale = LeaseKey {
        task_id: claimed.task.id,
        token: LeaseToken::new(),
    };
    match store.checkpoint(stale, json!(1)).await {
        Err(StoreError::LeaseLost { reason, .. }) => assert_eq!(reason, LeaseLost::Reclaimed),
        other => panic!("{other:?}"),
    }
    let done = Completion {
        lease: claimed.lease.key(),
        outcome: Outcome::Succeeded {
            result: json!(0),
            remember: vec![],
        },
    };
    complete(&store, vec![done.clone()])
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
    match complete(&store, vec![done]).await.unwrap().pop().unwrap() {
        Err(StoreError::LeaseLost { reason, .. }) => assert_eq!(reason, LeaseLost::NotRunning(TaskState::Completed)),
        other => panic!("{other:?}"),
    }
    let missing = LeaseKey {
        task_id: TaskId::root_of(ExecutionId::new()),
        token: LeaseToken::new(),
    };
    assert!(matches!(
        store.heartbeat(missing, Duration::from_secs(1), None).await,
        Err(StoreError::TaskNotFound(_))
    ));
}

#[tokio::test]
async fn signal_waits_consume_signals_oldest_first() {
    let store = memory().await;
    let exec = dispatch(&store, TaskSpec::new(TaskKind::Orchestrator, "o", json!(null))).await;
    let parent = store.claim_tasks(&req(1)).await.unwrap().value.pop().unwrap();
    store.send_signal(exec, "go", json!(1)).await.unwrap();
    store.send_signal(exec, "go", json!(2)).await.unwrap();
    let wait = |step| NewTask {
        execution_id: exec,
        parent_id: Some(parent.task.id),
        step,
        spec: TaskSpec::new(TaskKind::SignalWait, "go", json!(null)),
        result: None,
    };
    let created = create_children(&store, Some(parent.lease.key()), vec![wait(1), wait(2), wait(3)])
        .await
        .unwrap();
    let states: Vec<TaskState> = created
        .iter()
        .map(|c| match c {
            ChildCreated::Created { state, .. } => *state,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(states, [TaskState::Completed, TaskState::Completed, TaskState::Waiting]);
    let results: Vec<_> = store
        .get_tasks(&[TaskId::for_step(exec, 1), TaskId::for_step(exec, 2)])
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.step, t.result))
        .collect();
    assert!(results.contains(&(1, Some(json!(1)))) && results.contains(&(2, Some(json!(2)))));
    // Two consumed signals woke the (running) parent twice.
    assert_eq!(store.get_task(parent.task.id).await.unwrap().unwrap().wake_gen, 2);

    // The third wait gets the next signal sent.
    let sent = store.send_signal(exec, "go", json!(3)).await.unwrap().value;
    assert_eq!(sent.delivered_to, Some(TaskId::for_step(exec, 3)));
    assert_eq!(sent.parent_id, Some(parent.task.id));
}

#[tokio::test]
async fn a_failed_job_in_a_group_commit_leaves_its_neighbours_alone() {
    let store = Arc::new(memory().await);
    let taken = ExecutionId::new();
    store.create_execution(&record(taken)).await.unwrap();
    // Many writes at once share transactions on the writer; the conflicting ones
    // must fail alone and the rest must land.
    let mut jobs = Vec::new();
    for i in 0..200 {
        let store = Arc::clone(&store);
        jobs.push(tokio::spawn(async move {
            let id = if i % 10 == 0 { taken } else { ExecutionId::new() };
            (id, store.create_execution(&record(id)).await)
        }));
    }
    let mut landed = 0;
    for job in jobs {
        let (id, result) = job.await.unwrap();
        if id == taken {
            assert!(matches!(result, Err(StoreError::Conflict { .. })), "{result:?}");
        } else {
            result.unwrap();
            assert!(store.get_execution(id).await.unwrap().is_some());
            landed += 1;
        }
    }
    assert_eq!(landed, 180);
    assert_eq!(store.count_executions(None).await.unwrap(), 181);
}

fn record(id: ExecutionId) -> ExecutionRecord {
    let now = chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros()).unwrap();
    ExecutionRecord {
        id,
        function: "f".into(),
        version: None,
        state: ExecutionState::Pending,
        args: json!(null),
        result: None,
        error: None,
        queue: "default".into(),
        tags: vec![],
        priority: 0,
        idempotency_key: None,
        created_at: now,
        updated_at: now,
        started_at: None,
        completed_at: None,
        deadline: None,
        parent: None,
    }
}

/// A directory of its own for a file database, and the database's path in it
/// (no file there yet); remove the directory when done.
fn fresh_database(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("courier-sqlite-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("courier.db");
    (dir, path)
}

#[tokio::test]
async fn a_file_database_keeps_its_data_and_sequence_across_reopens() {
    let (dir, path) = fresh_database("reopen");

    let store = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
    store.init().await.unwrap();
    let exec = dispatch(&store, activity("f")).await;
    let seq = store.last_event_seq().await.unwrap();
    assert!(seq >= 2);
    store
        .trim_events(chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    store.close().await;
    assert!(matches!(
        store.get_execution(exec).await,
        Err(StoreError::Unavailable(_))
    ));

    let store = SqliteStore::open(SqliteOptions::file(&path).synchronous_full(true))
        .await
        .unwrap();
    // Migrating an up-to-date database is a no-op.
    store.init().await.unwrap();
    store.init().await.unwrap();
    assert_eq!(
        store.get_execution(exec).await.unwrap().unwrap().state,
        ExecutionState::Pending
    );
    assert_eq!(store.last_event_seq().await.unwrap(), seq);
    dispatch(&store, activity("f")).await;
    assert_eq!(
        store.last_event_seq().await.unwrap(),
        seq + 2,
        "trimmed numbers are not reused"
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two stores on one file (two processes, say) append to one log: each
/// writer reads the head when its transaction takes the write lock, so their
/// events are numbered one after another, without a gap or a collision.
#[tokio::test]
async fn two_stores_on_one_file_number_their_events_as_one_log() {
    let (dir, path) = fresh_database("two-writers");
    let a = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
    a.init().await.unwrap();
    let b = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
    b.init().await.unwrap();
    // In turns, so that each writer's every transaction follows the other's.
    for _ in 0..20 {
        dispatch(&a, activity("f")).await;
        dispatch(&b, activity("f")).await;
    }
    let events = a
        .read_events(&courier_core::EventFilter::after(0).limit(1000))
        .await
        .unwrap()
        .events;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=80).collect::<Vec<i64>>(),
        "two events per dispatch, numbered as one log"
    );
    assert_eq!(b.last_event_seq().await.unwrap(), 80);
    a.close().await;
    b.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_memory_path_is_a_private_database() {
    let a = SqliteStore::open(SqliteOptions::file(":memory:")).await.unwrap();
    let b = SqliteStore::open(SqliteOptions::memory()).await.unwrap();
    a.init().await.unwrap();
    b.init().await.unwrap();
    dispatch(&a, activity("f")).await;
    assert_eq!(a.count_executions(None).await.unwrap(), 1);
    assert_eq!(b.count_executions(None).await.unwrap(), 0);
}

/// The store's priority ageing is applied at `init`: reopening with another
/// rebuilds the claim order of the tasks already written, and of new ones.
#[tokio::test]
async fn reopening_with_another_priority_ageing_rebuilds_the_claim_order() {
    let (dir, path) = fresh_database("ageing");
    let open = |ageing_ms: u64| {
        let path = path.clone();
        async move {
            let ageing = courier_core::PriorityAgeing::new(Duration::from_millis(ageing_ms)).unwrap();
            let store = SqliteStore::open(SqliteOptions::file(path).priority_ageing(ageing))
                .await
                .unwrap();
            store.init().await.unwrap();
            store
        }
    };
    let next = |store: &SqliteStore| {
        let store = store.clone();
        async move { store.claim_tasks(&req(1)).await.unwrap().value[0].task.function.clone() }
    };
    // A priority-0 task, then 200 ms later a priority-1 one: with the default
    // (a level is worth 60 s) the later, higher one would go first.
    let store = open(60_000).await;
    dispatch(&store, activity("low")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    dispatch(&store, activity("high").with_priority(1)).await;
    store.close().await;

    // With 10 ms a level, 200 ms of waiting outweighs one level.
    let store = open(10).await;
    assert_eq!(next(&store).await, "low");
    assert_eq!(next(&store).await, "high");
    store.close().await;

    // Back to the default: priority wins again within the minute.
    let store = open(60_000).await;
    dispatch(&store, activity("low")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    dispatch(&store, activity("high").with_priority(1)).await;
    assert_eq!(next(&store).await, "high");
    assert_eq!(next(&store).await, "low");
    store.close().await;

    // Rebuilt twice and back at the default, the claim indexes are the ones a
    // new file gets from the migrations: the rebuild is kept in step with them.
    let (fresh_dir, fresh_path) = fresh_database("ageing-fresh");
    let fresh = SqliteStore::open(SqliteOptions::file(fresh_path.clone()))
        .await
        .unwrap();
    fresh.init().await.unwrap();
    fresh.close().await;
    assert_eq!(claim_indexes(&path), claim_indexes(&fresh_path));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&fresh_dir);
}

/// The definitions of the claim indexes in the file at `path`, whitespace
/// collapsed, by name.
fn claim_indexes(path: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT sql FROM sqlite_master WHERE type = 'index' \
             AND name IN ('tasks_claim', 'tasks_pending_function', 'tasks_pending_timers') ORDER BY name",
        )
        .unwrap();
    let found: Vec<String> = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|sql| sql.unwrap().split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    found
}

/// The log has no index by time: trimming walks it from its oldest event and
/// stops at the first one appended at or after the cut. Events appended after
/// the clock stepped back wait for the one before the step, and nothing
/// appended at or after the cut is ever deleted.
#[tokio::test]
async fn trimming_walks_the_log_from_its_start_and_stops_at_the_first_event_too_new() {
    let (dir, path) = fresh_database("trim");
    let hours = |h: u64| Duration::from_secs(h * 3600);
    // Appends three executions' events: three hours ago, now, then (the clock
    // stepped back) two hours ago.
    let mut appended = Vec::new();
    for clock in [
        courier_core::Clock::shifted(hours(3), false),
        courier_core::Clock::system(),
        courier_core::Clock::shifted(hours(2), false),
    ] {
        let store = SqliteStore::open(SqliteOptions::file(&path).clock(clock))
            .await
            .unwrap();
        store.init().await.unwrap();
        appended.push(dispatch(&store, activity("logged")).await);
        store.close().await;
    }
    let store = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
    let left = || async {
        let events = store.read_events(&EventFilter::after(0)).await.unwrap().events;
        events.iter().filter_map(|e| e.execution_id).collect::<Vec<_>>()
    };
    let all = left().await;
    assert_eq!(all.len(), 6, "two events per dispatch: {all:?}");

    let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    assert_eq!(store.trim_events(an_hour_ago).await.unwrap(), 2);
    assert_eq!(
        left().await,
        [appended[1], appended[1], appended[2], appended[2]],
        "the oldest execution's events went; the stepped-back ones wait behind the newer"
    );
    assert_eq!(store.trim_events(an_hour_ago).await.unwrap(), 0);
    let soon = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(store.trim_events(soon).await.unwrap(), 4);
    assert!(left().await.is_empty());
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
