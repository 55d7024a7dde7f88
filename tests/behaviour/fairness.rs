//! Fairness under a flood, on SQLite and Postgres.
//!
//! Priority: with priority ageing, a steady flood of priority-10 work that
//! outruns the worker does not starve a priority-0 task: it is overtaken only
//! by flood tasks that became due less than 10 × ageing after it, so it runs
//! while the flood goes on (strict priority would leave it pending forever).
//!
//! Concurrency keys: a flood on one key does not hold back another key's task.
//! A task refused a slot of its key is given back due at least 250 ms later,
//! behind everything already due, so another key's task waits at most one
//! claim pass over the work due before it, never a drain of the flood.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use courier::Courier;
use courier::core::{Store, TaskError, TaskFilter, TaskRecord};
use courier::http::HttpOptions;
use serde_json::{Value, json};

use crate::support::http::*;
use crate::support::*;

/// What a priority level is worth in these tests.
const AGEING: Duration = Duration::from_millis(100);

/// How long each task of the flood runs: with one slot, the worker does at
/// most ~33 a second, and the flood is dispatched faster than that.
const WORK: Duration = Duration::from_millis(30);

/// A node with one slot running `work` (the flood) and `low` (the
/// low-priority task), each taking [`WORK`].
async fn one_slot_server(store: Arc<dyn Store>) -> Server {
    let builder = Courier::builder()
        .store(store)
        .activity("work", |_ctx, args: Value| async move {
            tokio::time::sleep(WORK).await;
            Ok::<_, TaskError>(args)
        })
        .activity("low", |_ctx, args: Value| async move {
            tokio::time::sleep(WORK).await;
            Ok::<_, TaskError>(args)
        })
        .worker(fast_worker().max_concurrency(1));
    Server::start(builder, HttpOptions::default()).await
}

/// Dispatches `function` with `priority` every few milliseconds until `stop`
/// is set; how many it dispatched.
async fn flood(url: String, function: &'static str, priority: i32, args: Value, stop: Rc<Cell<bool>>) -> usize {
    let mut n = 0;
    while !stop.get() {
        let (status, created) = post(&url, &json!({"function": function, "args": args, "priority": priority})).await;
        assert_eq!(status, 201, "{created}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    n
}

async fn all_tasks(store: &Arc<dyn Store>) -> Vec<TaskRecord> {
    store
        .list_tasks(&TaskFilter {
            limit: 100_000,
            ..TaskFilter::default()
        })
        .await
        .unwrap()
}

async fn a_priority_flood_overtakes_only_within_the_ageing_bound(store: Arc<dyn Store>) {
    let s = one_slot_server(store.clone()).await;
    let stop = Rc::new(Cell::new(false));
    let flooding = actix_rt::spawn(flood(s.at("/v1/executions"), "work", 10, json!({}), stop.clone()));
    // Let a backlog of priority-10 work build up.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (status, created) = post(
        &s.at("/v1/executions"),
        &json!({"function": "low", "args": {"low": true}, "priority": 0}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (status, done) = get(&s.at(&format!("/v1/executions/{id}/result?wait=30s"))).await;
    stop.set(true);
    let dispatched = flooding.await.unwrap();
    assert_eq!(status, 200, "the low-priority task starved under the flood: {done}");

    let tasks = all_tasks(&store).await;
    let low = tasks.iter().find(|t| t.function == "low").expect("the low task");
    let low_started = low.started_at.expect("the low task started");
    let bound = chrono::Duration::from_std(AGEING * 10).unwrap();
    let flood: Vec<&TaskRecord> = tasks.iter().filter(|t| t.function == "work").collect();
    assert_eq!(flood.len(), dispatched);
    // The bound: only flood tasks due less than 10 × ageing after it ran first.
    for t in &flood {
        if t.started_at.is_some_and(|at| at < low_started) {
            assert!(
                t.scheduled_for < low.scheduled_for + bound,
                "a priority-10 task due {} after the low one ran before it (bound {bound})",
                t.scheduled_for - low.scheduled_for
            );
        }
    }
    // And the case was a real flood: when the low task started, priority-10
    // work that strict priority would have taken first was due and waiting.
    let passed_over = flood
        .iter()
        .filter(|t| t.scheduled_for < low_started && t.started_at.is_none_or(|at| at > low_started))
        .count();
    assert!(
        passed_over > 0,
        "no due priority-10 work was waiting when the low task ran; the flood did not saturate the worker"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn a_priority_flood_overtakes_only_within_the_ageing_bound_on_sqlite() {
    a_priority_flood_overtakes_only_within_the_ageing_bound(sqlite_aged(AGEING).await).await;
}

#[actix_rt::test]
async fn a_priority_flood_overtakes_only_within_the_ageing_bound_on_postgres() {
    a_priority_flood_overtakes_only_within_the_ageing_bound(postgres_aged(AGEING).await).await;
}

/// How long each `hold` task runs: the flooded key, one at a time, drains at
/// about six a second.
const HOLD: Duration = Duration::from_millis(150);

/// How long another key's task may wait behind a flood on one key: a claim
/// pass or two plus the worker's poll interval, far less than the flood's drain.
const KEY_BOUND: Duration = Duration::from_secs(1);

async fn a_flood_on_one_key_does_not_starve_another_key(store: Arc<dyn Store>) {
    // Per customer: how many `hold` tasks run now, and the most that ever did.
    let running: Arc<Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
    let counted = running.clone();
    let builder = Courier::builder()
        .store(store)
        .activity("hold", move |_ctx, args: Value| {
            let running = counted.clone();
            async move {
                let customer = args["customer"].as_str().unwrap_or("-").to_string();
                {
                    let mut all = running.lock().unwrap();
                    let (now, most) = all.entry(customer.clone()).or_default();
                    *now += 1;
                    *most = (*most).max(*now);
                }
                tokio::time::sleep(HOLD).await;
                running.lock().unwrap().get_mut(&customer).unwrap().0 -= 1;
                Ok::<_, TaskError>(args)
            }
        })
        .worker(fast_worker());
    let s = Server::start(builder, HttpOptions::default()).await;
    let (status, stored) = json_of(
        client()
            .put(s.at("/v1/functions/hold"))
            .send_json(&json!({"concurrency_key": {"key": "/customer", "max": 1}}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{stored}");

    // A steady flood on acme: dispatched far faster than its one slot drains it.
    let stop = Rc::new(Cell::new(false));
    let flooding = actix_rt::spawn(flood(
        s.at("/v1/executions"),
        "hold",
        0,
        json!({"customer": "acme"}),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Globex's tasks, one after another, each behind the acme backlog.
    let mut waits = Vec::new();
    for n in 0..3 {
        let (status, created) = post(
            &s.at("/v1/executions"),
            &json!({"function": "hold", "args": {"customer": "globex", "n": n}}),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        let (status, done) = get(&s.at(&format!("/v1/executions/{id}/result?wait=30s"))).await;
        assert_eq!(status, 200, "{done}");
        let (_, detail) = get(&s.at(&format!("/v1/executions/{id}"))).await;
        let created_at: DateTime<Utc> = serde_json::from_value(created["created_at"].clone()).unwrap();
        let started: DateTime<Utc> = serde_json::from_value(detail["steps"][0]["started_at"].clone()).unwrap();
        waits.push((started - created_at).to_std().unwrap_or_default());
    }
    stop.set(true);
    let dispatched = flooding.await.unwrap();

    for wait in &waits {
        assert!(
            *wait <= KEY_BOUND,
            "globex waited {wait:?} behind acme's flood of {dispatched} (bound {KEY_BOUND:?})"
        );
    }
    // The flood really was one: acme had more due than its slot could run in
    // the time globex's tasks took.
    let drain = HOLD * dispatched as u32;
    assert!(
        drain > KEY_BOUND * 3,
        "acme's flood ({dispatched} tasks) was too small to test anything"
    );
    let peaks = running.lock().unwrap().clone();
    assert!(peaks["acme"].1 <= 1, "acme's cap of 1 was exceeded: {peaks:?}");
    s.stop().await;
}

#[actix_rt::test]
async fn a_flood_on_one_key_does_not_starve_another_key_on_sqlite() {
    a_flood_on_one_key_does_not_starve_another_key(sqlite().await).await;
}

#[actix_rt::test]
async fn a_flood_on_one_key_does_not_starve_another_key_on_postgres() {
    a_flood_on_one_key_does_not_starve_another_key(postgres().await).await;
}
