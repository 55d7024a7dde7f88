//! What the dashboard asks for: `/v1/stats` (the last hour as the node's log tail
//! counted it) and the executions list's filters.

use std::time::Duration;

use crate::http_functions::server_on;
use crate::support::http::*;
use crate::support::*;
use serde_json::json;

/// `/v1/stats` counts what the node's log tail saw, minute by minute: the
/// executions dispatched, completed and failed, and how long each waited to start.
#[actix_rt::test]
async fn stats_count_the_last_hour_from_the_event_log() {
    let s = server_on(sqlite().await).await;
    for n in 0..5 {
        let (_, created) = post(&s.at("/v1/executions"), &json!({"function": "double", "args": n})).await;
        let id = created["id"].as_str().unwrap();
        let (status, _) = get(&s.at(&format!("/v1/executions/{id}/result?wait=10s"))).await;
        assert_eq!(status, 200);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, stats) = get(&s.at("/v1/stats")).await;
        assert_eq!(status, 200, "{stats}");
        let sum = |key: &str| {
            stats[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum::<u64>()
        };
        if sum("completed") == 5 {
            assert_eq!(sum("dispatched"), 5, "{stats}");
            assert_eq!(sum("failed"), 0);
            let minutes = stats["minutes"].as_array().unwrap().len();
            assert!((1..=60).contains(&minutes), "{stats}");
            assert_eq!(stats["dispatched"].as_array().unwrap().len(), minutes);
            assert_eq!(stats["start_latency_ms"]["last_5m"]["count"], 5, "{stats}");
            assert_eq!(stats["dead_letters"], 0);
            assert_eq!(stats["holders"], json!([]), "nothing runs now: {stats}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never counted: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An outside worker holding a task is shown with what it holds.
    post(&s.at("/v1/executions"), &json!({"function": "ext.held"})).await;
    let (_, claimed) = post(
        &s.at("/v1/workers/claim"),
        &json!({"worker_id": "w1", "functions": ["ext.held"], "wait": "2s"}),
    )
    .await;
    assert_eq!(claimed.as_array().unwrap().len(), 1, "{claimed}");
    let (_, stats) = get(&s.at("/v1/stats")).await;
    assert_eq!(
        stats["holders"],
        json!([{"owner": "external:w1", "running": 1, "functions": ["ext.held"]}])
    );

    // Streams open on this node, and what ingestion took in and refused.
    assert_eq!(stats["streams"], json!({"events": 0, "notifications": 0}), "{stats}");
    assert_eq!(stats["ingest"]["inputs"], json!([]), "{stats}");
    let stream = client()
        .get(s.at("/v1/events/stream"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let message = json!({"provider": "log", "recipient": ["ops@example.com"], "message": "disk full"});
    let (status, body) = post(&s.at("/v1/notify"), &message).await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = post(
        &s.at("/v1/notify"),
        &json!({"provider": "carrier-pigeon", "recipient": ["x"]}),
    )
    .await;
    assert_eq!(status, 400);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stats) = get(&s.at("/v1/stats")).await;
        if stats["streams"]["events"] == 1 {
            let ingest = &stats["ingest"];
            assert_eq!(
                ingest["inputs"],
                json!([{"input": "http", "accepted": 1, "refused": 1}]),
                "{stats}"
            );
            assert_eq!(ingest["dead_lettered"], 0, "{stats}");
            assert!(ingest["capacity"].as_u64().unwrap() > 0, "{stats}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the open stream was never counted: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stream);
    s.stop().await;
}

/// The executions list narrows by queue, creation-time range and idempotency
/// key, as the dashboard's filters ask it to.
#[actix_rt::test]
async fn executions_list_by_queue_time_and_idempotency_key() {
    let s = server_on(sqlite().await).await;
    let (_, first) = post(
        &s.at("/v1/executions"),
        &json!({"function": "ext.a", "queue": "images", "idempotency_key": "k-1"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (_, second) = post(&s.at("/v1/executions"), &json!({"function": "ext.a", "queue": "mail"})).await;
    let ids = |list: &serde_json::Value| -> Vec<String> {
        list["executions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, images) = get(&s.at("/v1/executions?queue=images")).await;
    assert_eq!(status, 200, "{images}");
    assert_eq!(ids(&images), [first["id"].as_str().unwrap()]);
    let (_, keyed) = get(&s.at("/v1/executions?idempotency_key=k-1")).await;
    assert_eq!(ids(&keyed), [first["id"].as_str().unwrap()]);
    let after = second["created_at"].as_str().unwrap();
    let (_, later) = get(&s.at(&format!("/v1/executions?created_after={after}"))).await;
    assert_eq!(ids(&later), [second["id"].as_str().unwrap()]);
    let (_, earlier) = get(&s.at(&format!("/v1/executions?created_before={after}"))).await;
    assert_eq!(ids(&earlier), [first["id"].as_str().unwrap()]);
    let (status, bad) = get(&s.at("/v1/executions?created_after=yesterday")).await;
    assert_eq!(status, 400, "{bad}");
    s.stop().await;
}
