//! Counters, custom state values and progress reports of an execution.

use std::collections::BTreeMap;

use courier_core::{EventType, Progress, TaskId};
use serde_json::json;

use crate::support::*;

/// Eight concurrent incrementers lose no increment.
pub async fn counters_stay_exact_under_eight_concurrent_incrementers(store: DynStore) {
    let id = dispatch(&store, activity("count")).await;
    let workers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..50 {
                seen.push(store.increment_execution_counter(id, "hits", 1.0).await.unwrap());
            }
            seen
        })
    });
    let mut all: Vec<i64> = Vec::new();
    for w in futures::future::join_all(workers).await {
        all.extend(w.unwrap().into_iter().map(|v| v as i64));
    }
    all.sort();
    assert_eq!(
        all,
        (1..=400).collect::<Vec<_>>(),
        "every increment saw a distinct value"
    );
    assert_eq!(
        store.get_execution_counters(id).await.unwrap().get("hits"),
        Some(&400.0)
    );
}

/// `ensure_*` creates missing entries only; `set`/`increment` change them.
pub async fn ensuring_counters_and_state_values_keeps_existing_entries(store: DynStore) {
    let id = dispatch(&store, activity("state")).await;
    store
        .ensure_execution_counters(id, &[("a".into(), 5.0), ("b".into(), 1.0)])
        .await
        .unwrap();
    assert_eq!(store.increment_execution_counter(id, "a", 2.5).await.unwrap(), 7.5);
    store
        .ensure_execution_counters(id, &[("a".into(), 0.0), ("c".into(), 3.0)])
        .await
        .unwrap();
    assert_eq!(
        store.get_execution_counters(id).await.unwrap(),
        BTreeMap::from([("a".to_string(), 7.5), ("b".to_string(), 1.0), ("c".to_string(), 3.0)])
    );
    assert_eq!(store.increment_execution_counter(id, "new", -2.0).await.unwrap(), -2.0);

    store
        .ensure_execution_state_values(id, &[("x".into(), json!(1))])
        .await
        .unwrap();
    store.set_execution_state_value(id, "y", &json!("s")).await.unwrap();
    store
        .ensure_execution_state_values(id, &[("x".into(), json!(2)), ("z".into(), json!(null))])
        .await
        .unwrap();
    assert_eq!(
        store.get_execution_state_values(id).await.unwrap(),
        BTreeMap::from([
            ("x".to_string(), json!(1)),
            ("y".to_string(), json!("s")),
            ("z".to_string(), json!(null))
        ])
    );
    store
        .set_execution_state_value(id, "x", &json!({"deep": [1]}))
        .await
        .unwrap();
    assert_eq!(
        store.get_execution_state_values(id).await.unwrap().get("x"),
        Some(&json!({"deep": [1]}))
    );
}

/// Progress lists the latest reports, oldest first, each with its event.
pub async fn progress_reports_list_the_latest_window_oldest_first(store: DynStore) {
    let id = dispatch(&store, activity("progressing")).await;
    for p in 1..=5 {
        store
            .append_progress(id, None, &Progress::percent(p as f64 * 10.0, format!("step {p}")), None)
            .await
            .unwrap();
    }
    let child = TaskId::for_step(id, 7);
    let detailed = Progress {
        step: Some("upload".into()),
        status: Some("running".into()),
        percent: None,
        message: None,
        detail: Some(json!({"bytes": 10})),
    };
    store.append_progress(id, Some(child), &detailed, None).await.unwrap();

    let latest = store.list_progress(id, 3).await.unwrap();
    let percents: Vec<Option<f64>> = latest.iter().map(|e| e.progress.percent).collect();
    assert_eq!(percents, vec![Some(40.0), Some(50.0), None]);
    assert_eq!(latest[2].task_id, Some(child));
    assert_eq!(latest[2].progress, detailed);
    assert_eq!(latest[0].execution_id, id);

    let events = events_of_type(&store, id, EventType::TaskProgress).await;
    assert_eq!(events.len(), 6);
    assert_eq!(
        events[0].task_id,
        Some(TaskId::root_of(id)),
        "execution progress is the root task's"
    );
    assert_eq!(events[0].data, json!({"percent": 10.0, "message": "step 1"}));
    assert_eq!(events[5].task_id, Some(child));
    assert_eq!(
        events[5].data,
        json!({"step": "upload", "status": "running", "detail": {"bytes": 10}})
    );
}
