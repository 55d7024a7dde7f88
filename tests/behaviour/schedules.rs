//! Schedules over HTTP: an interval schedule fires each slot once (recorded,
//! logged, its execution run), pauses and resumes, is triggered by hand,
//! retimed by a patch and deleted; bad definitions get clear 4xx answers; a
//! schedule declared at build time exists once the node has started.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use courier::Courier;
use courier::core::{ScheduleDefinition, Store, TaskError};
use courier::http::HttpOptions;
use serde_json::{Value, json};

use crate::support::http::*;
use crate::support::*;

async fn server(store: Arc<dyn Store>, ticks: Arc<AtomicU32>) -> Server {
    let builder = Courier::builder()
        .store(store)
        .activity("tick", move |_ctx, _: Value| {
            let ticks = ticks.clone();
            async move {
                ticks.fetch_add(1, Ordering::SeqCst);
                Ok::<_, TaskError>(json!("tock"))
            }
        })
        .schedule(
            "declared",
            serde_json::from_value::<ScheduleDefinition>(json!({"function": "tick", "cron": "0 0 0 1 1 *"})).unwrap(),
        )
        .worker(fast_worker());
    Server::start(builder, HttpOptions::default()).await
}

async fn send(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let request = match method {
        "PATCH" => client().patch(url),
        "DELETE" => client().delete(url),
        "POST" => client().post(url),
        _ => client().get(url),
    };
    let response = match body {
        Some(body) => request.send_json(body).await.unwrap(),
        None => request.send().await.unwrap(),
    };
    json_of(response).await
}

async fn runs(s: &Server, id: &str) -> Vec<Value> {
    let (status, body) = get(&s.at(&format!("/v1/schedules/{id}/runs?limit=1000"))).await;
    assert_eq!(status, 200, "{body}");
    body["runs"].as_array().unwrap().clone()
}

async fn an_interval_schedule_fires_pauses_resumes_and_is_triggered(store: Arc<dyn Store>) {
    let ticks = Arc::new(AtomicU32::new(0));
    let s = server(store, ticks.clone()).await;
    let (status, declared) = get(&s.at("/v1/schedules/declared")).await;
    assert_eq!(status, 200, "declared at build time: {declared}");
    assert_eq!(declared["upcoming"].as_array().unwrap().len(), 5);

    let (status, created) = post(
        &s.at("/v1/schedules"),
        &json!({"id": "every-second", "function": "tick", "args": {"n": 1}, "every": "1s", "overlap": "allow"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["revision"], 1);
    assert_eq!(created["timezone"], "UTC");
    assert_eq!(created["upcoming"].as_array().unwrap().len(), 5);

    eventually(Duration::from_secs(10), "three slots fired", || async {
        runs(&s, "every-second").await.len() >= 3
    })
    .await;
    let (status, paused) = post(&s.at("/v1/schedules/every-second/pause"), &json!(null)).await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["upcoming"], json!([]));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fired = runs(&s, "every-second").await;
    let slots: Vec<&str> = fired.iter().map(|r| r["slot"].as_str().unwrap()).collect();
    let mut unique = slots.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), slots.len(), "each slot once: {slots:?}");
    assert!(
        fired
            .iter()
            .all(|r| r["outcome"] == "fired" && r["reason"] == "schedule"),
        "{fired:?}"
    );
    // Slots are whole intervals apart, newest first.
    let times: Vec<chrono::DateTime<chrono::Utc>> = slots.iter().map(|s| s.parse().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] - w[1] == chrono::TimeDelta::seconds(1)),
        "{slots:?}"
    );
    // Each run's execution ran.
    for run in &fired {
        let id = run["execution_id"].as_str().unwrap();
        let (status, result) = get(&s.at(&format!("/v1/executions/{id}/result?wait=10s"))).await;
        assert_eq!((status, &result["result"]), (200, &json!("tock")), "{result}");
    }
    // Paused: nothing more fires.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        runs(&s, "every-second").await.len(),
        fired.len(),
        "a paused schedule fires nothing"
    );
    // The log has a schedule.fired per slot, each naming its execution.
    let (_, events) = get(&s.at("/v1/events?type=schedule.fired&limit=1000")).await;
    let logged: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["schedule_id"] == "every-second")
        .collect();
    assert_eq!(logged.len(), fired.len(), "{events}");
    assert!(logged.iter().all(|e| e["execution_id"].is_string()));

    // Triggered by hand while paused.
    let (status, triggered) = post(&s.at("/v1/schedules/every-second/trigger"), &json!(null)).await;
    assert_eq!(status, 201, "{triggered}");
    assert_eq!(triggered["reason"], "trigger");
    let id = triggered["execution_id"].as_str().unwrap();
    let (status, _) = get(&s.at(&format!("/v1/executions/{id}/result?wait=10s"))).await;
    assert_eq!(status, 200);
    assert_eq!(runs(&s, "every-second").await[0]["reason"], "trigger");

    // Resumed: it goes on from now, without catching up the paused slots.
    let before = runs(&s, "every-second").await.len();
    let (status, resumed) = post(&s.at("/v1/schedules/every-second/resume"), &json!(null)).await;
    assert_eq!((status, &resumed["paused"]), (200, &json!(false)), "{resumed}");
    eventually(Duration::from_secs(10), "a slot after resuming", || async {
        runs(&s, "every-second").await.len() > before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        runs(&s, "every-second").await.len() <= before + 2,
        "the paused slots are not caught up"
    );

    // Retimed by a patch (cron every two seconds); unknown fields are refused.
    let (status, patched) = send(
        "PATCH",
        &s.at("/v1/schedules/every-second"),
        Some(&json!({"every": null, "cron": "*/2 * * * * *", "overlap": "skip"})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["cron"], "*/2 * * * * *");
    assert!(patched.get("every").is_none(), "{patched}");
    let upcoming: Vec<chrono::DateTime<chrono::Utc>> = patched["upcoming"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        upcoming.iter().all(|t| chrono::Timelike::second(t) % 2 == 0),
        "{upcoming:?}"
    );
    let (status, refused) = send(
        "PATCH",
        &s.at("/v1/schedules/every-second"),
        Some(&json!({"colour": "red"})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");

    let (status, _) = send("DELETE", &s.at("/v1/schedules/every-second"), None).await;
    assert_eq!(status, 204);
    let (status, gone) = get(&s.at("/v1/schedules/every-second")).await;
    assert_eq!(status, 404, "{gone}");
    assert_eq!(gone["error"], "schedule not found");
    assert!(ticks.load(Ordering::SeqCst) >= 4);
    s.stop().await;
}

#[actix_rt::test]
async fn an_interval_schedule_fires_pauses_resumes_and_is_triggered_on_sqlite() {
    an_interval_schedule_fires_pauses_resumes_and_is_triggered(sqlite().await).await;
}

#[actix_rt::test]
async fn an_interval_schedule_fires_pauses_resumes_and_is_triggered_on_postgres() {
    an_interval_schedule_fires_pauses_resumes_and_is_triggered(postgres().await).await;
}

/// Bad definitions are refused with 400 naming the problem; a taken id is 409.
#[actix_rt::test]
async fn bad_schedules_get_clear_answers() {
    let s = server(sqlite().await, Arc::new(AtomicU32::new(0))).await;
    for (body, needle) in [
        (json!({"function": "tick", "cron": "61 * * * *"}), "cron expression"),
        (
            json!({"function": "tick", "cron": "* * * * *", "timezone": "Mars/Olympus"}),
            "IANA",
        ),
        (
            json!({"function": "tick", "cron": "* * * * *", "every": "5s"}),
            "exactly one of cron and every",
        ),
        (json!({"function": "tick"}), "exactly one of cron and every"),
        (json!({"function": "tick", "every": "10ms"}), "at least 1s"),
        (
            json!({"function": "tick", "every": "1s", "overlap": "sometimes"}),
            "Overlap",
        ),
        (json!({"function": "tick", "every": "1s", "colour": "red"}), "colour"),
        (json!({"function": "", "every": "1s"}), "function"),
        (json!(["tick"]), "JSON object"),
    ] {
        let (status, answer) = post(&s.at("/v1/schedules"), &body).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(answer["error"].is_string(), "{answer}");
        assert!(answer.to_string().contains(needle), "{body}: {answer} lacks {needle}");
    }
    let one = json!({"id": "once", "function": "tick", "every": "1h"});
    assert_eq!(post(&s.at("/v1/schedules"), &one).await.0, 201);
    let (status, taken) = post(&s.at("/v1/schedules"), &one).await;
    assert_eq!(status, 409, "{taken}");
    let (status, _) = post(&s.at("/v1/schedules/nope/pause"), &json!(null)).await;
    assert_eq!(status, 404);
    let (status, _) = get(&s.at("/v1/schedules/nope/runs")).await;
    assert_eq!(status, 404);
    s.stop().await;
}

/// A past range is backfilled: each slot in it starts once (its key), again
/// only pointing at the execution it made; a range too wide or backwards is
/// refused.
#[actix_rt::test]
async fn a_past_range_is_backfilled_once_per_slot() {
    let s = server(sqlite().await, Arc::new(AtomicU32::new(0))).await;
    let (status, _) = post(
        &s.at("/v1/schedules"),
        &json!({"id": "hourly", "function": "tick", "cron": "0 0 * * * *", "paused": true}),
    )
    .await;
    assert_eq!(status, 201);
    let now = chrono::Utc::now();
    let from = now - chrono::TimeDelta::hours(3);
    let range = json!({"from": from, "to": now});
    let (status, first) = post(&s.at("/v1/schedules/hourly/backfill"), &range).await;
    assert_eq!(status, 201, "{first}");
    let runs = first["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "three hours, three slots: {first}");
    assert!(
        runs.iter()
            .all(|r| r["reason"] == "backfill" && r["outcome"] == "fired")
    );
    for run in runs {
        let id = run["execution_id"].as_str().unwrap();
        let (status, result) = get(&s.at(&format!("/v1/executions/{id}/result?wait=10s"))).await;
        assert_eq!((status, &result["result"]), (200, &json!("tock")), "{result}");
    }
    let (status, again) = post(&s.at("/v1/schedules/hourly/backfill"), &range).await;
    assert_eq!(status, 201, "{again}");
    let ids = |v: &Value| -> Vec<Value> {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["execution_id"].clone())
            .collect()
    };
    assert_eq!(ids(&again), ids(&first), "a slot keeps its one execution");
    let (_, listed) = get(&s.at("/v1/executions?function=tick&limit=100")).await;
    assert_eq!(listed["executions"].as_array().unwrap().len(), 3, "{listed}");

    let wide = json!({"from": now - chrono::TimeDelta::days(100), "to": now});
    let (status, refused) = post(&s.at("/v1/schedules/hourly/backfill"), &wide).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("in parts"), "{refused}");
    let backwards = json!({"from": now, "to": from});
    assert_eq!(post(&s.at("/v1/schedules/hourly/backfill"), &backwards).await.0, 400);
    s.stop().await;
}
