//! The cluster's nodes: a node joins (stamped with the store's clock), reports
//! (only while it has a row), leaves; the list is by id; nodes not seen lately
//! are forgotten; a NUL is refused.

use std::time::Duration;

use courier_core::{NodeReport, StoreError};

use crate::support::*;

fn report(running: u32) -> NodeReport {
    let mut report = NodeReport {
        version: "1.2.3".into(),
        functions: vec!["resize".into(), "charge".into()],
        worker: true,
        capacity: 16,
        running,
        live_executions: 2,
        ready: true,
        ..NodeReport::default()
    };
    report.gauges.insert("streams.events".into(), 12);
    report.gauges.insert("streams.notifications".into(), 340);
    report
}

/// Joining writes the report with `started_at = seen_at =` the store's clock; a
/// report replaces it and moves `seen_at` on but not `started_at`; a node
/// without a row is told so and nothing is written; leaving removes the row.
pub async fn a_node_joins_reports_and_leaves(store: DynStore) {
    assert!(store.list_nodes().await.unwrap().is_empty());
    let joined = store.join_node("node-a", &report(0)).await.unwrap();
    assert_eq!(joined.id, "node-a");
    assert_eq!(joined.report, report(0));
    assert_eq!(joined.started_at, joined.seen_at);
    let now = store.now().await.unwrap();
    assert_close(joined.seen_at, now, Duration::from_secs(5), "seen_at");
    assert_eq!(store.list_nodes().await.unwrap(), std::slice::from_ref(&joined));

    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(store.report_node("node-a", &report(5)).await.unwrap());
    let nodes = store.list_nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].report, report(5), "the latest report replaces the last");
    assert_eq!(nodes[0].started_at, joined.started_at, "a report is not a restart");
    assert!(nodes[0].seen_at > joined.seen_at, "a report is seen later");

    assert!(
        !store.report_node("node-b", &report(1)).await.unwrap(),
        "no row: join first"
    );
    assert_eq!(store.list_nodes().await.unwrap().len(), 1);

    assert!(store.leave_node("node-a").await.unwrap());
    assert!(!store.leave_node("node-a").await.unwrap());
    assert!(store.list_nodes().await.unwrap().is_empty());
    assert!(
        !store.report_node("node-a", &report(1)).await.unwrap(),
        "gone: join again"
    );
}

/// The list is in byte order of the ids; a node joining again under its id
/// (a restart) starts afresh.
pub async fn nodes_list_by_id_and_a_restart_joins_afresh(store: DynStore) {
    for id in ["zeta", "Alpha", "alpha", "émile", "node-2"] {
        store.join_node(id, &report(1)).await.unwrap();
    }
    let ids: Vec<String> = store.list_nodes().await.unwrap().into_iter().map(|n| n.id).collect();
    assert_eq!(ids, ["Alpha", "alpha", "node-2", "zeta", "émile"]);

    let first = store.list_nodes().await.unwrap().remove(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = store.join_node("Alpha", &NodeReport::default()).await.unwrap();
    assert!(again.started_at > first.started_at, "a restart starts again");
    assert_eq!(again.report, NodeReport::default());
    assert_eq!(store.list_nodes().await.unwrap().len(), 5);
}

/// Forgetting removes exactly the nodes whose last report is older than the
/// span, by the store's clock, and says how many.
pub async fn nodes_not_seen_lately_are_forgotten(store: DynStore) {
    store.join_node("quiet", &report(0)).await.unwrap();
    store.join_node("gone", &report(0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(store.report_node("quiet", &report(0)).await.unwrap());
    store.join_node("new", &report(0)).await.unwrap();
    assert_eq!(store.forget_nodes(Duration::from_secs(3600)).await.unwrap(), 0);
    assert_eq!(store.forget_nodes(Duration::from_millis(300)).await.unwrap(), 1);
    let ids: Vec<String> = store.list_nodes().await.unwrap().into_iter().map(|n| n.id).collect();
    assert_eq!(ids, ["new", "quiet"]);
}

/// A NUL in the id or in any text of the report is refused as `Invalid`,
/// naming the field, and nothing is stored.
pub async fn a_node_report_holding_a_nul_is_refused(store: DynStore) {
    let refused = |result: Result<_, StoreError>, field: &str| match result {
        Err(StoreError::Invalid(detail)) => {
            assert!(detail.contains("NUL") && detail.starts_with(field), "{detail}");
        }
        other => panic!("expected {field} refused, got {other:?}"),
    };
    refused(store.join_node("n\u{0}", &report(0)).await.map(|_| ()), "id");
    let version = NodeReport {
        version: "1\u{0}".into(),
        ..report(0)
    };
    refused(store.join_node("n", &version).await.map(|_| ()), "version");
    let mut gauges = report(0);
    gauges.gauges.insert("k\u{0}".into(), 1);
    refused(store.join_node("n", &gauges).await.map(|_| ()), "gauges");
    store.join_node("n", &report(0)).await.unwrap();
    let functions = NodeReport {
        functions: vec!["f\u{0}".into()],
        ..report(0)
    };
    refused(store.report_node("n", &functions).await.map(|_| ()), "functions");
    assert_eq!(store.list_nodes().await.unwrap()[0].report, report(0));
}
