//! The store counts the statements it sends (`WriteVolume::sent`), so a bench
//! can say how many an execution costs on a server without
//! `pg_stat_statements`. Alone in its binary: the count is the process's.

mod common;

use std::time::Duration;

use courier_core::{ClaimRequest, ExecutionId, ExecutionStore, NewExecution, Store, TaskKind, TaskSpec, TaskStore};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statements_a_write_sends_are_counted_as_they_go_out() {
    let store = common::fresh("statements_sent").await;
    let before = store.write_volume().await.unwrap();
    store
        .dispatch(vec![NewExecution::new(TaskSpec::new(
            TaskKind::Activity,
            "counted",
            json!(1),
        ))])
        .await
        .unwrap();
    let dispatched = store.write_volume().await.unwrap().since(&before).sent;
    // A dispatch is a transaction: its BEGIN, one statement for the execution
    // and its root task (two, one per table, until both went in one), the
    // append to the event log, and the COMMIT sent with it.
    assert_eq!(dispatched, 4, "a dispatch sent {dispatched} statements");

    // A claim pipelines its statements itself: each one is counted too.
    let before = store.write_volume().await.unwrap();
    let claimed = store
        .claim_tasks(&ClaimRequest::new("w", 1, Duration::from_secs(30)))
        .await
        .unwrap()
        .value;
    assert_eq!(claimed.len(), 1);
    let claim = store.write_volume().await.unwrap().since(&before).sent;
    // Its BEGIN, the claim and the check for pauses sent with it, and its
    // COMMIT, at least (the two it pipelines went uncounted once: 3).
    assert!((4..=8).contains(&claim), "a claim sent {claim} statements");

    // Reading the counters sends nothing through the store's statements.
    let idle = store.write_volume().await.unwrap();
    assert_eq!(store.write_volume().await.unwrap().since(&idle).sent, 0);

    let before = store.write_volume().await.unwrap();
    store.get_execution(ExecutionId::new()).await.unwrap();
    assert_eq!(
        store.write_volume().await.unwrap().since(&before).sent,
        1,
        "a read of one row is one statement, outside any transaction"
    );
    store.drop_schema().await.unwrap();
}
