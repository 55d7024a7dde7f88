//! An idle worker's claim rides the group commit that makes its work: the
//! dispatch (or an orchestrator's new step) and the claim are one
//! transaction, so the work starts without a claim of its own and wakes no
//! worker. Its claim is still the store's claim,
//! with the function settings as they are when the commit runs.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use courier::core::{
    Event, EventFilter, EventType, ExecutionState, FunctionSettings, Notice, Store, TaskError, TaskId, TaskState, Topic,
};
use courier::{Courier, OrchestratorContext};

async fn node(store: Arc<dyn Store>) -> Courier {
    let courier = Courier::builder()
        .store(store)
        .activity("echo", |_ctx, n: u64| async move { Ok::<_, TaskError>(n) })
        .orchestrator("twice", |ctx: OrchestratorContext, n: u64| async move {
            let once: u64 = ctx.call("echo", n).await?;
            let twice: u64 = ctx.call("echo", once + 1).await?;
            Ok::<_, TaskError>(twice)
        })
        .worker(idle_worker())
        .start()
        .await
        .unwrap();
    // Its first claim finds nothing, and it offers the next.
    tokio::time::sleep(Duration::from_millis(300)).await;
    courier
}

/// Dispatches `function(arg)`, waits for it to complete, and returns its events.
async fn run_to_the_end(courier: &Courier, function: &str, arg: u64) -> Vec<Event> {
    let id = courier.dispatch(function, arg).await.unwrap();
    let done = courier.wait_for(id, WAIT).await.unwrap();
    assert_eq!(done.state, ExecutionState::Completed);
    courier
        .store()
        .read_events(&EventFilter {
            execution_id: Some(id),
            ..EventFilter::after(0)
        })
        .await
        .unwrap()
        .events
}

async fn starts_in_the_dispatching_commit(store: Arc<dyn Store>) {
    let courier = node(store).await;
    let mut work = courier.notifier().subscribe(vec![Topic::Work]).await.unwrap();
    for n in 0..3u64 {
        let events = run_to_the_end(&courier, "echo", n).await;
        let at = |t: EventType| {
            events
                .iter()
                .find(|e| e.event_type == t)
                .unwrap_or_else(|| panic!("no {t:?} in {events:?}"))
        };
        let (created, started) = (at(EventType::ExecutionCreated), at(EventType::TaskStarted));
        // Both stores stamp a transaction's events with one time: the
        // commit's on SQLite, the transaction's start on Postgres.
        assert_eq!(
            created.timestamp, started.timestamp,
            "execution {n} was claimed in a transaction of its own"
        );
        assert_eq!(started.seq, created.seq + 2, "created, task created, started");
    }
    // The work was claimed by the writes that made it: no worker was woken.
    while let Ok(notice) = tokio::time::timeout(Duration::from_millis(200), work.next()).await {
        assert!(
            !matches!(notice, Some(Notice::Work { .. })),
            "a Work notice went out: {notice:?}"
        );
        if notice.is_none() {
            break;
        }
    }
    courier.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn an_idle_worker_starts_a_dispatch_in_the_commit_that_made_it_on_sqlite() {
    starts_in_the_dispatching_commit(sqlite().await).await;
}

#[actix_rt::test]
async fn an_idle_worker_starts_a_dispatch_in_the_commit_that_made_it_on_postgres() {
    starts_in_the_dispatching_commit(postgres().await).await;
}

/// An orchestrator's steps start in the commits that create them: each child
/// is claimed in the transaction that records it.
#[actix_rt::test]
async fn an_orchestrators_children_start_in_the_commits_that_create_them() {
    let courier = node(sqlite().await).await;
    let events = run_to_the_end(&courier, "twice", 1).await;
    let id = events[0].execution_id.expect("an execution's event");
    let children: Vec<TaskId> = events
        .iter()
        .filter(|e| e.event_type == EventType::TaskCreated && e.task_id != Some(TaskId::root_of(id)))
        .filter_map(|e| e.task_id)
        .collect();
    assert_eq!(children.len(), 2, "{events:?}");
    for child in children {
        let at = |t: EventType| {
            events
                .iter()
                .find(|e| e.event_type == t && e.task_id == Some(child))
                .unwrap_or_else(|| panic!("no {t:?} of {child} in {events:?}"))
                .timestamp
        };
        assert_eq!(
            at(EventType::TaskCreated),
            at(EventType::TaskStarted),
            "child {child} was claimed in a transaction of its own"
        );
    }
    courier.shutdown().await.unwrap();
}

/// A function paused after the worker made its offer is left alone by the
/// commit that carries the offer: the claim takes the settings as they are
/// when it runs, not as they were when offered.
#[actix_rt::test]
async fn a_standing_offer_leaves_a_function_paused_since_alone() {
    let courier = node(sqlite().await).await;
    let paused = FunctionSettings {
        paused: Some(true),
        ..FunctionSettings::default()
    };
    courier.set_function_settings("echo", paused).await.unwrap();
    let id = courier.dispatch("echo", 1u64).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let task = courier.task(TaskId::root_of(id)).await.unwrap().expect("its root task");
    assert_eq!(task.state, TaskState::Pending, "a paused function's task was claimed");
    courier.shutdown().await.unwrap();
}
