//! The REST API end to end over loopback: create → wait → result, idempotent
//! create, external workers (claim, heartbeat, complete, fail; stale tokens
//! refused), auth refusals, and clear 4xx errors for bad input.

use std::time::Duration;

use crate::support::http::*;
use crate::support::*;
use courier::Courier;
use courier::core::{ClaimRequest, NewExecution, TaskError, TaskKind, TaskSpec, TaskState};
use courier::http::HttpOptions;
use serde_json::{Value, json};

async fn server(options: HttpOptions) -> Server {
    let builder = Courier::builder()
        .store(sqlite().await)
        .activity("double", |_ctx, n: i64| async move { Ok::<_, TaskError>(n * 2) })
        .activity("slow", |_ctx, ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, TaskError>(ms)
        })
        .worker(fast_worker());
    Server::start(builder, options).await
}

#[actix_rt::test]
async fn create_then_wait_then_result() {
    let s = server(HttpOptions::default()).await;
    let (status, created) = post(&s.at("/v1/executions"), &json!({"function": "double", "args": 21})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["function"], "double");
    let (status, result) = get(&s.at(&format!("/v1/executions/{id}/result?wait=10s"))).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["state"], "completed");
    assert_eq!(result["result"], 42);

    let (status, detail) = get(&s.at(&format!("/v1/executions/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(detail["execution"]["state"], "completed");
    assert_eq!(detail["steps"].as_array().unwrap().len(), 1);

    let (_, slow) = post(&s.at("/v1/executions"), &json!({"function": "slow", "args": 2000})).await;
    let slow_id = slow["id"].as_str().unwrap();
    let (status, body) = get(&s.at(&format!("/v1/executions/{slow_id}/result?wait=100ms"))).await;
    assert_eq!(status, 202, "still running after the wait: {body}");
    assert!(matches!(body["state"].as_str(), Some("pending" | "running")));
    s.stop().await;
}

#[actix_rt::test]
async fn the_same_idempotency_key_returns_the_same_execution() {
    let s = server(HttpOptions::default()).await;
    let body = json!({"function": "double", "args": 1, "idempotency_key": "order-9"});
    let (first, a) = post(&s.at("/v1/executions"), &body).await;
    let (second, b) = post(&s.at("/v1/executions"), &body).await;
    assert_eq!((first, second), (201, 200));
    assert_eq!(a["id"], b["id"]);
    s.stop().await;
}

#[actix_rt::test]
async fn an_external_worker_claims_heartbeats_and_completes_with_fencing() {
    let s = server(HttpOptions::default()).await;
    // A long-poll claim waits for work to appear.
    let claim_url = s.at("/v1/workers/claim");
    let claimer = actix_rt::spawn(async move {
        post(
            &claim_url,
            &json!({"worker_id": "py-1", "queues": ["ext"], "wait": "10s", "lease": "30s"}),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, created) = post(
        &s.at("/v1/executions"),
        &json!({"function": "resize", "args": {"w": 800}, "queue": "ext"}),
    )
    .await;
    let (status, claimed) = claimer.await.unwrap();
    assert_eq!(status, 200, "{claimed}");
    let task = &claimed[0];
    assert_eq!(task["function"], "resize");
    assert_eq!(task["args"], json!({"w": 800}));
    assert_eq!(task["execution_id"], created["id"]);
    let task_id = task["task_id"].as_str().unwrap();
    let token = task["lease_token"].as_str().unwrap();

    let (status, renewed) = post(
        &s.at(&format!("/v1/tasks/{task_id}/heartbeat")),
        &json!({"lease_token": token, "details": {"pct": 10}}),
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let (status, _) = post(
        &s.at(&format!("/v1/tasks/{task_id}/progress")),
        &json!({"lease_token": token, "percent": 50, "message": "half"}),
    )
    .await;
    assert_eq!(status, 200);

    let stale = json!({"lease_token": uuid::Uuid::new_v4(), "result": "forged"});
    let (status, error) = post(&s.at(&format!("/v1/tasks/{task_id}/complete")), &stale).await;
    assert_eq!(status, 409, "a stale token is refused: {error}");
    assert!(error["error"].is_string() && error.get("detail").is_some());

    let (status, done) = post(
        &s.at(&format!("/v1/tasks/{task_id}/complete")),
        &json!({"lease_token": token, "result": {"url": "x.png"}}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["execution_state"], "completed");
    let (status, _) = post(
        &s.at(&format!("/v1/tasks/{task_id}/complete")),
        &json!({"lease_token": token, "result": "again"}),
    )
    .await;
    assert_eq!(status, 409, "a finished task takes no second result");
    let id = created["id"].as_str().unwrap();
    let (_, result) = get(&s.at(&format!("/v1/executions/{id}/result"))).await;
    assert_eq!(result["result"], json!({"url": "x.png"}));

    // A non-retryable failure fails the execution and leaves a dead letter.
    let (_, failing) = post(&s.at("/v1/executions"), &json!({"function": "resize", "queue": "ext"})).await;
    let (_, claimed) = post(
        &s.at("/v1/workers/claim"),
        &json!({"worker_id": "py-1", "queues": ["ext"]}),
    )
    .await;
    let t = &claimed[0];
    let (status, failed) = post(
        &s.at(&format!("/v1/tasks/{}/fail", t["task_id"].as_str().unwrap())),
        &json!({"lease_token": t["lease_token"], "error": {"kind": "bad_image", "message": "not a PNG"}, "retryable": false}),
    )
    .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["state"], "failed");
    let fid = failing["id"].as_str().unwrap();
    let (_, result) = get(&s.at(&format!("/v1/executions/{fid}/result"))).await;
    assert_eq!(result["state"], "failed");
    assert_eq!(result["error"]["kind"], "bad_image");
    let (status, dead) = get(&s.at(&format!("/v1/dead-letters/{}", t["task_id"].as_str().unwrap()))).await;
    assert_eq!(status, 200, "{dead}");
    s.stop().await;
}

#[actix_rt::test]
async fn tokens_are_required_when_configured() {
    let s = server(HttpOptions {
        tokens: vec!["t0ken".into()],
        ..HttpOptions::default()
    })
    .await;
    let (status, body) = get(&s.at("/v1/executions")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "missing bearer token");
    let wrong = client()
        .get(s.at("/v1/executions"))
        .insert_header(("Authorization", "Bearer nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(wrong).await.0, 401);
    let right = client()
        .get(s.at("/v1/executions"))
        .insert_header(("Authorization", "Bearer t0ken"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(right).await.0, 200);
    let (status, _) = get(&s.at("/v1/executions?access_token=t0ken")).await;
    assert_eq!(
        status, 401,
        "a token in a URL is taken only where a header cannot be set"
    );
    let stream = client()
        .get(s.at("/v1/events/stream?access_token=t0ken"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200, "a query token works for EventSource");
    drop(stream);
    assert_eq!(get(&s.at("/healthz")).await.0, 200, "health checks need no token");
    s.stop().await;
}

#[actix_rt::test]
async fn a_401_names_its_scheme_the_scheme_is_any_case_and_an_empty_token_never_matches() {
    // An empty entry, as a config file with `tokens = ["", "t0ken"]` would give.
    let s = server(HttpOptions {
        tokens: vec!["".into(), "t0ken".into()],
        ..HttpOptions::default()
    })
    .await;
    let call = |authorization: &'static str| {
        client()
            .get(s.at("/v1/executions"))
            .insert_header(("Authorization", authorization))
            .send()
    };
    let missing = client().get(s.at("/v1/executions")).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 401);
    assert_eq!(
        missing.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let (status, body) = json_of(missing).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("missing bearer token")));
    let empty = call("Bearer ").await.unwrap();
    assert_eq!(
        empty.status().as_u16(),
        401,
        "an empty token matched an empty configured one"
    );
    assert_eq!(
        empty.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    assert_eq!(
        call("bearer t0ken").await.unwrap().status().as_u16(),
        200,
        "the scheme is case-insensitive"
    );
    assert_eq!(call("BEARER t0ken").await.unwrap().status().as_u16(), 200);
    assert_eq!(call("Basic t0ken").await.unwrap().status().as_u16(), 401);
    s.stop().await;
}

#[actix_rt::test]
async fn courier_names_are_reserved_and_nul_is_refused() {
    let s = server(HttpOptions::default()).await;
    for (body, field) in [
        (
            json!({"function": "courier.webhook.deliver", "args": {"delivery_id": "00000000-0000-0000-0000-000000000000"}}),
            "function",
        ),
        (json!({"function": "courier.ingest.deliver", "args": {}}), "function"),
        (
            json!({"function": "mine", "idempotency_key": "courier.webhook:x:1"}),
            "idempotency_key",
        ),
        (json!({"function": "nul\u{0}name"}), "function"),
        (
            json!({"function": "mine", "idempotency_key": "k\u{0}"}),
            "idempotency_key",
        ),
    ] {
        let (status, answer) = post(&s.at("/v1/executions"), &body).await;
        assert_eq!(
            (status, answer["detail"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {answer}"
        );
    }
    let (status, _) = post(&s.at("/v1/executions"), &json!({"function": "couriers.are.fine"})).await;
    assert_eq!(status, 201);
    s.stop().await;
}

/// On Postgres, which cannot store a NUL, a value holding one was a 500 carrying
/// the server's error text, and an external worker whose result held one could
/// neither complete nor fail its task. Now it is a 400 in Courier's words, and
/// the claim survives it.
#[actix_rt::test]
async fn a_nul_in_a_value_is_a_400_on_postgres_and_the_worker_can_still_fail() {
    let builder = Courier::builder()
        .store(postgres().await)
        .activity("nul-result", |_ctx, _: Value| async move {
            Ok::<_, TaskError>("a\u{0}b".to_string())
        })
        .worker(fast_worker());
    let s = Server::start(builder, HttpOptions::default()).await;
    // An in-process activity's result holding a NUL fails its task for good,
    // saying why, instead of re-running at every lease expiry.
    let (_, created) = post(&s.at("/v1/executions"), &json!({"function": "nul-result"})).await;
    let id = created["id"].as_str().unwrap().to_string();
    let (status, result) = get(&s.at(&format!("/v1/executions/{id}/result?wait=10s"))).await;
    assert_eq!((status, result["state"].as_str()), (200, Some("failed")), "{result}");
    assert_eq!(result["error"]["kind"], "unstorable", "{result}");
    let no_backend_text = |answer: &Value| {
        let text = answer.to_string().to_lowercase();
        assert!(
            !text.contains("postgres") && !text.contains("unicode escape"),
            "{answer}"
        );
    };
    let (status, answer) = post(
        &s.at("/v1/executions"),
        &json!({"function": "ext-nul", "queue": "ext-nul", "args": {"s": "a\u{0}b"}}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["detail"].to_string().contains("NUL"), "{answer}");
    no_backend_text(&answer);

    let (status, _) = post(
        &s.at("/v1/executions"),
        &json!({"function": "ext-nul", "queue": "ext-nul"}),
    )
    .await;
    assert_eq!(status, 201);
    let (_, claimed) = post(
        &s.at("/v1/workers/claim"),
        &json!({"worker_id": "w", "queues": ["ext-nul"]}),
    )
    .await;
    let task_id = claimed[0]["task_id"].as_str().unwrap().to_string();
    let token = claimed[0]["lease_token"].clone();
    let (status, answer) = post(
        &s.at(&format!("/v1/tasks/{task_id}/complete")),
        &json!({"lease_token": token, "result": ["\u{0}"]}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    no_backend_text(&answer);
    let (status, answer) = post(
        &s.at(&format!("/v1/tasks/{task_id}/fail")),
        &json!({"lease_token": token, "error": {"kind": "k", "message": "m\u{0}"}, "retryable": false}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (status, failed) = post(
        &s.at(&format!("/v1/tasks/{task_id}/fail")),
        &json!({"lease_token": token, "error": {"kind": "unstorable", "message": "the result held a NUL"}, "retryable": false}),
    )
    .await;
    assert_eq!((status, failed["state"].as_str()), (200, Some("failed")), "{failed}");
    s.stop().await;
}

/// An external claim with no function filter took anything pending, Courier's
/// own webhook deliveries and functions this node serves in process included,
/// and the outcome routes took any task whose token was shown. Now the claim
/// leaves those alone and the routes accept only externally claimed tasks.
#[actix_rt::test]
async fn external_workers_get_only_external_work_and_settle_only_their_own() {
    let store = sqlite().await;
    let mut worker = fast_worker();
    // This node's own worker serves only another queue, so work of `double` on
    // the default queue waits where an outside claim could take it.
    worker.queues = Some(vec!["elsewhere".into()]);
    let builder = Courier::builder()
        .store(store.clone())
        .activity("double", |_ctx, n: i64| async move { Ok::<_, TaskError>(n * 2) })
        .worker(worker);
    let s = Server::start(builder, HttpOptions::default()).await;
    let internal = NewExecution::new(TaskSpec::new(TaskKind::Activity, "courier.webhook.deliver", json!({})));
    store.dispatch(vec![internal]).await.unwrap();
    for function in ["double", "resize"] {
        let (status, _) = post(&s.at("/v1/executions"), &json!({"function": function, "args": 1})).await;
        assert_eq!(status, 201);
    }
    let (status, claimed) = post(&s.at("/v1/workers/claim"), &json!({"worker_id": "py", "max": 10})).await;
    assert_eq!(status, 200, "{claimed}");
    let functions: Vec<&str> = claimed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"].as_str().unwrap())
        .collect();
    assert_eq!(functions, ["resize"], "only work no node runs itself");

    // A task this node's worker holds: its token (had it leaked) settles nothing.
    let held = store
        .claim_tasks(&ClaimRequest::new("node-worker", 1, Duration::from_secs(30)).functions(["double"]))
        .await
        .unwrap()
        .value;
    let (task_id, token) = (held[0].task.id, held[0].lease.token);
    for (route, body) in [
        ("complete", json!({"lease_token": token, "result": 1})),
        (
            "fail",
            json!({"lease_token": token, "error": {"kind": "k", "message": "m"}}),
        ),
        ("heartbeat", json!({"lease_token": token})),
        ("checkpoint", json!({"lease_token": token, "checkpoint": 1})),
    ] {
        let (status, answer) = post(&s.at(&format!("/v1/tasks/{task_id}/{route}")), &body).await;
        assert_eq!(status, 409, "{route}: {answer}");
        assert!(
            answer.to_string().contains("not claimed by an external worker"),
            "{answer}"
        );
    }
    assert_eq!(
        store.get_task(task_id).await.unwrap().unwrap().state,
        TaskState::Running
    );
    s.stop().await;
}

#[actix_rt::test]
async fn bad_input_gets_clear_4xx_json_errors() {
    let s = server(HttpOptions {
        body_limit: 1024,
        ..HttpOptions::default()
    })
    .await;
    let c = client();
    let raw = |body: &'static str| {
        c.post(s.at("/v1/executions"))
            .insert_header(("Content-Type", "application/json"))
            .send_body(body)
    };
    let cases: Vec<(u16, (u16, Value))> = vec![
        (400, json_of(raw("{not json").await.unwrap()).await),
        (
            400,
            json_of(raw(r#"{"function": "x", "surprise": 1}"#).await.unwrap()).await,
        ),
        (400, json_of(raw(r#"{"function": ""}"#).await.unwrap()).await),
        // An array is not an object, though serde would read the struct's fields from it.
        (400, json_of(raw(r#"["x"]"#).await.unwrap()).await),
        (400, json_of(raw("[]").await.unwrap()).await),
        (
            400,
            post(
                &s.at("/v1/executions/00000000-0000-0000-0000-000000000000/cancel"),
                &json!([]),
            )
            .await,
        ),
        (400, post(&s.at("/v1/workers/claim"), &json!(["w"])).await),
        (
            400,
            json_of(raw(r#"{"function": "x", "delay": "soon"}"#).await.unwrap()).await,
        ),
        (
            413,
            post(
                &s.at("/v1/executions"),
                &json!({"function": "x", "args": "a".repeat(4096)}),
            )
            .await,
        ),
        (
            415,
            json_of(
                c.post(s.at("/v1/executions"))
                    .insert_header(("Content-Type", "text/plain"))
                    .send_body("hi")
                    .await
                    .unwrap(),
            )
            .await,
        ),
        (
            404,
            get(&s.at(&format!("/v1/executions/{}", uuid::Uuid::new_v4()))).await,
        ),
        (400, get(&s.at("/v1/executions/not-a-uuid")).await),
        (400, get(&s.at("/v1/executions?limit=5000")).await),
        // A deep offset would read every skipped row: bounded.
        (400, get(&s.at("/v1/executions?offset=100001")).await),
        (400, get(&s.at("/v1/dead-letters?offset=4000000000")).await),
        (400, get(&s.at("/v1/webhooks?offset=100001")).await),
        (400, get(&s.at("/v1/executions?state=sleepy")).await),
        (
            400,
            get(&s.at(&format!("/v1/executions/{}/result?wait=forever", uuid::Uuid::new_v4()))).await,
        ),
        (400, get(&s.at("/v1/events?type=task.exploded")).await),
        (404, get(&s.at("/v1/nowhere")).await),
        (
            405,
            json_of(c.delete(s.at("/v1/executions")).send().await.unwrap()).await,
        ),
        (
            404,
            post(
                &s.at(&format!("/v1/dead-letters/{}/replay", uuid::Uuid::new_v4())),
                &json!(null),
            )
            .await,
        ),
        (
            400,
            post(&s.at("/v1/workers/claim"), &json!({"worker_id": "w", "max": 0})).await,
        ),
        (
            400,
            post(&s.at("/v1/webhooks"), &json!({"url": "ftp://example.com"})).await,
        ),
    ];
    for (i, (expected, (status, body))) in cases.into_iter().enumerate() {
        assert_eq!(status, expected, "case {i}: {body}");
        assert!(body["error"].is_string(), "case {i}: not a JSON error: {body}");
        assert!(body.get("detail").is_some(), "case {i}: no detail: {body}");
    }
    s.stop().await;
}

#[actix_rt::test]
async fn cancel_signal_dead_letters_queues_and_cleanup_over_http() {
    let s = server(HttpOptions::default()).await;
    let (_, slow) = post(&s.at("/v1/executions"), &json!({"function": "slow", "args": 60_000})).await;
    let id = slow["id"].as_str().unwrap();
    let (status, signal) = post(&s.at(&format!("/v1/executions/{id}/signals/poke")), &json!({"n": 1})).await;
    assert_eq!(status, 202, "{signal}");
    let (status, cancelled) = post(
        &s.at(&format!("/v1/executions/{id}/cancel")),
        &json!({"reason": "test"}),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    let (status, _) = post(&s.at(&format!("/v1/executions/{id}/cancel")), &json!(null)).await;
    assert_eq!(status, 200, "cancelling twice is fine");
    let (status, refused) = post(&s.at(&format!("/v1/executions/{id}/signals/poke")), &json!(1)).await;
    assert_eq!(status, 409, "{refused}");

    let (_, done) = post(&s.at("/v1/executions"), &json!({"function": "double", "args": 2})).await;
    let done_id = done["id"].as_str().unwrap();
    get(&s.at(&format!("/v1/executions/{done_id}/result?wait=10s"))).await;
    let (status, _) = post(&s.at(&format!("/v1/executions/{done_id}/cancel")), &json!(null)).await;
    assert_eq!(status, 409, "a completed execution cannot be cancelled");

    let (status, queues) = get(&s.at("/v1/queues")).await;
    assert_eq!(status, 200);
    assert!(queues["queues"].is_array());
    let task_id = courier::core::TaskId::root_of(done_id.parse().unwrap());
    let (status, task) = get(&s.at(&format!("/v1/tasks/{task_id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(task["state"], "completed");

    let (status, list) = get(&s.at("/v1/executions?state=completed")).await;
    assert_eq!(status, 200);
    assert_eq!(list["executions"].as_array().unwrap().len(), 1);
    let (status, report) = post(&s.at("/v1/cleanup"), &json!({"older_than": 0})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["executions"], 2, "the cancelled and the completed one");

    let (status, metrics) = json_of(client().get(s.at("/metrics")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap_or_default().to_string();
    for name in [
        "courier_claims_total",
        "courier_completions_total",
        "courier_queue_ready",
        "courier_event_log_lag",
        "courier_notification_streams",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    // Every Courier metric exported is one of the names listed in one place.
    for line in text.lines().filter(|l| l.starts_with("courier_")) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let listed = courier::core::metric::ALL.iter().any(|m| {
            name == *m
                || name
                    .strip_prefix(m)
                    .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))
        });
        assert!(listed, "{name} is exported but not listed in courier_core::metric");
    }
    let (status, ready) = get(&s.at("/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    s.stop().await;
}

#[actix_rt::test]
async fn pages_forbid_framing_foreign_scripts_and_referrers() {
    let s = server(HttpOptions::default()).await;
    for path in ["/", "/notifications/demo"] {
        let response = client().get(s.at(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let csp = header("content-security-policy");
        assert!(csp.contains("script-src 'self' 'sha256-"), "{path}: {csp}");
        assert!(!csp.contains("script-src 'self' 'unsafe-inline'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
    s.stop().await;
}

#[actix_rt::test]
async fn a_lease_token_is_only_in_the_claim_answer() {
    let s = server(HttpOptions::default()).await;
    let (status, created) = post(&s.at("/v1/executions"), &json!({"function": "ext.secret", "args": 1})).await;
    assert_eq!(status, 201, "{created}");
    let execution = created["id"].as_str().unwrap().to_string();
    let (status, claimed) = post(
        &s.at("/v1/workers/claim"),
        &json!({"worker_id": "w1", "functions": ["ext.secret"], "wait": "5s"}),
    )
    .await;
    assert_eq!(status, 200, "{claimed}");
    let task = &claimed[0];
    let token = task["lease_token"]
        .as_str()
        .expect("the claim answer carries the token")
        .to_string();
    let task_id = task["task_id"].as_str().unwrap();
    let (_, read) = get(&s.at(&format!("/v1/tasks/{task_id}"))).await;
    assert_eq!(read["state"], "running", "{read}");
    assert!(
        read.get("lease_token").is_none(),
        "GET /v1/tasks leaks the token: {read}"
    );
    let (_, detail) = get(&s.at(&format!("/v1/executions/{execution}"))).await;
    assert!(
        !detail.to_string().contains(&token),
        "GET /v1/executions leaks the token: {detail}"
    );
    // Failed for good, it becomes a dead letter: its task is shown without the token too.
    let (status, _) = post(
        &s.at(&format!("/v1/tasks/{task_id}/fail")),
        &json!({"lease_token": token, "error": "no", "retryable": false}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, letters) = get(&s.at("/v1/dead-letters")).await;
    assert!(letters["total"].as_u64().unwrap_or(0) >= 1, "{letters}");
    assert!(!letters.to_string().contains(&token), "{letters}");
    let (_, letter) = get(&s.at(&format!("/v1/dead-letters/{task_id}"))).await;
    assert!(!letter.to_string().contains(&token), "{letter}");
    s.stop().await;
}

#[actix_rt::test]
async fn a_cross_site_form_or_text_post_is_refused() {
    let s = server(HttpOptions::default()).await;
    let (status, created) = post(&s.at("/v1/executions"), &json!({"function": "ext.csrf"})).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_string();
    let send = |path: String, content_type: &'static str, body: &'static str| {
        client()
            .post(s.at(&path))
            .insert_header(("Content-Type", content_type))
            .send_body(body)
    };
    for (path, content_type, body) in [
        (
            "/v1/executions".to_string(),
            "text/plain",
            r#"{"function": "ext.csrf"}"#,
        ),
        (format!("/v1/executions/{id}/signals/go"), "text/plain", r#"{"x": 1}"#),
        (
            format!("/v1/executions/{id}/cancel"),
            "application/x-www-form-urlencoded",
            "reason=x",
        ),
        (
            format!("/v1/executions/{id}/cancel"),
            "multipart/form-data; boundary=b",
            "--b--",
        ),
    ] {
        let response = send(path.clone(), content_type, body).await.unwrap();
        let (status, answer) = json_of(response).await;
        assert_eq!(status, 415, "{path} as {content_type}: {answer}");
        assert_eq!(answer["error"], "the body must be application/json");
    }
    // JSON, or no body at all, is fine.
    let response = client()
        .post(s.at(&format!("/v1/executions/{id}/signals/go")))
        .send_json(&json!({"x": 1}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let response = client()
        .post(s.at(&format!("/v1/executions/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    s.stop().await;
}
