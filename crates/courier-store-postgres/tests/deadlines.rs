//! Time-outs read deadlines from their own table (so that finishing an execution
//! touches no index of `executions`); every way an execution is written keeps
//! that table in step.

mod common;

use std::sync::Arc;
use std::time::Duration;

use courier_core::{
    ClaimRequest, Completion, DeadLetterStore, ExecutionId, ExecutionRecord, ExecutionState, ExecutionStore,
    NewExecution, Outcome, SeedRecords, Store, TaskError, TaskId, TaskKind, TaskSpec, TaskStore, WriteBatch,
};
use serde_json::json;

fn record(id: ExecutionId, deadline_in: chrono::Duration) -> ExecutionRecord {
    let now = chrono::Utc::now();
    ExecutionRecord {
        id,
        function: "raw".into(),
        version: None,
        state: ExecutionState::Running,
        args: json!(null),
        result: None,
        error: None,
        queue: "default".into(),
        tags: Vec::new(),
        priority: 0,
        idempotency_key: None,
        created_at: now,
        updated_at: now,
        started_at: Some(now),
        completed_at: None,
        deadline: Some(now + deadline_in),
        parent: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_records_time_out_by_their_deadline_unless_finished() {
    let store = common::fresh("deadlines_raw").await;
    let late = ExecutionId::new();
    let finished = ExecutionId::new();
    let future = ExecutionId::new();
    store
        .create_execution(&record(late, chrono::Duration::seconds(-5)))
        .await
        .unwrap();
    let mut done = record(finished, chrono::Duration::seconds(-5));
    store.create_execution(&done).await.unwrap();
    done.state = ExecutionState::Completed;
    store.update_execution(&done).await.unwrap();
    store
        .create_execution(&record(future, chrono::Duration::hours(1)))
        .await
        .unwrap();

    let timed_out = store.time_out_executions(10).await.unwrap().value;
    assert_eq!(timed_out.iter().map(|c| c.execution_id).collect::<Vec<_>>(), vec![late]);
    assert!(store.time_out_executions(10).await.unwrap().value.is_empty());
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_execution_gets_its_deadline_back() {
    let store = common::fresh("deadlines_replay").await;
    let new = NewExecution::new(TaskSpec::new(TaskKind::Activity, "fragile", json!(null)))
        .with_expiry(Duration::from_millis(600));
    let id = new.id;
    store.dispatch(vec![new]).await.unwrap();
    let claimed = finish_one(
        &store,
        Outcome::Failed {
            error: TaskError::new("bug", "boom"),
            reason: "no retries".into(),
            dead_letter: true,
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        store.time_out_executions(10).await.unwrap().value.is_empty(),
        "a failed execution does not time out"
    );

    store.replay_dead_letter(claimed).await.unwrap();
    let timed_out = store.time_out_executions(10).await.unwrap().value;
    assert_eq!(timed_out.len(), 1, "reopened past its deadline, it times out");
    assert_eq!(timed_out[0].execution_id, id);
    assert_eq!(timed_out[0].previous, ExecutionState::Running);
    store.drop_schema().await.unwrap();
}

/// Claims the one due task and completes it with `outcome`; its id.
async fn finish_one(store: &courier_store_postgres::PostgresStore, outcome: Outcome) -> TaskId {
    let claim = store
        .claim_tasks(&ClaimRequest::new("w", 1, Duration::from_secs(30)))
        .await
        .unwrap()
        .value
        .pop()
        .expect("a task is due");
    store
        .commit(Arc::new(WriteBatch {
            completions: vec![Completion {
                lease: claim.lease.key(),
                outcome,
            }],
            ..WriteBatch::default()
        }))
        .await
        .unwrap()
        .completions[0]
        .as_ref()
        .unwrap();
    claim.task.id
}

/// How many deadline rows `schema` holds for `id`.
async fn deadline_rows(schema: &str, id: ExecutionId) -> i64 {
    let (client, connection) = tokio_postgres::connect(&common::url(), tokio_postgres::NoTls)
        .await
        .expect("connected");
    tokio::spawn(connection);
    client
        .query_one(
            &format!("SELECT count(*) FROM {schema}.execution_deadlines WHERE execution_id = $1"),
            &[&id.0],
        )
        .await
        .expect("counted")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_settled_by_its_root_task_leaves_no_deadline_behind() {
    let schema = format!("courier_test_deadlines_settled_{}", uuid::Uuid::new_v4().simple());
    let store = common::open(&schema, 4).await;
    let new = NewExecution::new(TaskSpec::new(TaskKind::Activity, "quick", json!(null)))
        .with_expiry(Duration::from_secs(3600));
    let id = new.id;
    store.dispatch(vec![new]).await.unwrap();
    assert_eq!(deadline_rows(&schema, id).await, 1);
    finish_one(
        &store,
        Outcome::Succeeded {
            result: json!("done"),
            remember: Vec::new(),
        },
    )
    .await;
    assert_eq!(
        store.get_execution(id).await.unwrap().unwrap().state,
        ExecutionState::Completed
    );
    assert_eq!(deadline_rows(&schema, id).await, 0, "forgotten with the settling");
    store.drop_schema().await.unwrap();
}
