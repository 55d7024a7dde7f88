//! Scoped API tokens over loopback: each scope reaches its own kind of work and
//! gets 403 (with the scope it lacks) elsewhere; `/metrics` wants a read token
//! only when `metrics.require_token` says so.

use crate::support::http::*;
use crate::support::*;
use courier::Courier;
use courier::http::{ApiToken, HttpOptions, Scope, WebhookOptions};
use serde_json::{Value, json};

async fn server(options: HttpOptions) -> Server {
    Server::start(Courier::builder().store(sqlite().await).worker(fast_worker()), options).await
}

/// One request with `token` (if any): the status and the JSON body.
async fn call(s: &Server, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client().request(method, s.at(path));
    if let Some(token) = token {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    };
    json_of(response.unwrap()).await
}

fn lacks(scope: &str) -> Value {
    json!({"error": "forbidden", "detail": format!("this token lacks the {scope} scope")})
}

fn tokens() -> Vec<ApiToken> {
    vec![
        "adm".into(),
        ApiToken::new("wrk", [Scope::Worker]).unwrap(),
        ApiToken::new("rd", [Scope::Read]).unwrap(),
        ApiToken::new("dsp", [Scope::Dispatch]).unwrap(),
        ApiToken::parse("wr:worker+read").unwrap(),
    ]
}

#[actix_rt::test]
async fn each_scope_reaches_its_own_operations_and_gets_403_with_the_scope_elsewhere() {
    let s = server(HttpOptions {
        tokens: tokens(),
        webhooks: WebhookOptions {
            secret_keys: webhook_secret_keys(),
            ..WebhookOptions::default()
        },
        ..HttpOptions::default()
    })
    .await;
    let work = json!({"function": "resize", "args": 1, "queue": "ext"});

    // dispatch: create, signal, cancel, send; not claim, not read, not admin.
    let (status, body) = call(&s, "POST", "/v1/executions", Some("wrk"), Some(work.clone())).await;
    assert_eq!(
        (status, body),
        (403, lacks("dispatch")),
        "a worker token cannot dispatch"
    );
    let (status, body) = call(&s, "POST", "/v1/executions", Some("rd"), Some(work.clone())).await;
    assert_eq!((status, body), (403, lacks("dispatch")), "a read token cannot dispatch");
    let (status, created) = call(&s, "POST", "/v1/executions", Some("dsp"), Some(work.clone())).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (status, body) = call(
        &s,
        "POST",
        &format!("/v1/executions/{id}/signals/go"),
        Some("dsp"),
        Some(json!(1)),
    )
    .await;
    assert!((200..300).contains(&status), "dispatch signals: {status} {body}");
    let claim = json!({"worker_id": "w", "queues": ["ext"]});
    let (status, body) = call(&s, "POST", "/v1/workers/claim", Some("dsp"), Some(claim.clone())).await;
    assert_eq!((status, body), (403, lacks("worker")));
    let (status, body) = call(&s, "GET", "/v1/executions", Some("dsp"), None).await;
    assert_eq!((status, body), (403, lacks("read")));
    let hook = json!({"url": "https://example.com/hook"});
    let (status, body) = call(&s, "POST", "/v1/webhooks", Some("dsp"), Some(hook.clone())).await;
    assert_eq!((status, body), (403, lacks("admin")), "webhooks are managed by admins");
    let message = json!({"provider": "log", "recipient": "ada@example.com", "message": "hi"});
    let (status, body) = call(&s, "POST", "/v1/notify", Some("dsp"), Some(message.clone())).await;
    assert_eq!(status, 202, "dispatch sends messages: {body}");
    let (status, body) = call(&s, "POST", "/v1/notify", Some("wrk"), Some(message)).await;
    assert_eq!((status, body), (403, lacks("dispatch")));

    // worker: claim and work the task; nothing else.
    let (status, body) = call(&s, "POST", "/v1/workers/claim", Some("rd"), Some(claim.clone())).await;
    assert_eq!((status, body), (403, lacks("worker")), "a read token cannot claim");
    let (status, claimed) = call(&s, "POST", "/v1/workers/claim", Some("wrk"), Some(claim)).await;
    assert_eq!(status, 200, "{claimed}");
    let task = claimed[0]["task_id"].as_str().unwrap().to_string();
    let lease = json!({"lease_token": claimed[0]["lease_token"]});
    let (status, body) = call(
        &s,
        "POST",
        &format!("/v1/tasks/{task}/heartbeat"),
        Some("wrk"),
        Some(lease.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&s, "GET", &format!("/v1/tasks/{task}"), Some("wrk"), None).await;
    assert_eq!((status, body), (403, lacks("read")), "a worker token cannot read");
    let (status, body) = call(&s, "GET", &format!("/v1/tasks/{task}"), Some("wr"), None).await;
    assert_eq!(status, 200, "worker+read reads: {body}");
    let mut done = lease.clone();
    done["result"] = json!(2);
    let (status, body) = call(
        &s,
        "POST",
        &format!("/v1/tasks/{task}/complete"),
        Some("dsp"),
        Some(done.clone()),
    )
    .await;
    assert_eq!((status, body), (403, lacks("worker")));
    let (status, body) = call(
        &s,
        "POST",
        &format!("/v1/tasks/{task}/complete"),
        Some("wrk"),
        Some(done),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // read: every GET and the streams; no POST.
    let (status, body) = call(&s, "GET", &format!("/v1/executions/{id}"), Some("rd"), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(&s, "GET", "/v1/webhooks", Some("rd"), None).await;
    assert_eq!(status, 200);
    let stream = client()
        .get(s.at("/v1/events/stream?access_token=rd"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200, "a read token follows the event stream");
    drop(stream);
    let stream = client()
        .get(s.at("/v1/events/stream?access_token=wrk"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(stream).await, (403, lacks("read")));
    let (status, body) = call(&s, "POST", &format!("/v1/executions/{id}/cancel"), Some("rd"), None).await;
    assert_eq!((status, body), (403, lacks("dispatch")));

    // admin: everything, including what no other scope may do.
    let cleanup = json!({"older_than": "7d"});
    let (status, body) = call(&s, "POST", "/v1/cleanup", Some("wr"), Some(cleanup.clone())).await;
    assert_eq!((status, body), (403, lacks("admin")));
    let (status, body) = call(&s, "POST", "/v1/cleanup", Some("adm"), Some(cleanup)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&s, "POST", "/v1/webhooks", Some("adm"), Some(hook)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(&s, "GET", "/v1/executions", Some("adm"), None).await;
    assert_eq!(status, 200, "{body}");

    // A scope never stands in for a token: none, or an unknown one, is still 401.
    assert_eq!(call(&s, "GET", "/v1/executions", None, None).await.0, 401);
    assert_eq!(call(&s, "GET", "/v1/executions", Some("wrk:read"), None).await.0, 401);
    s.stop().await;
}

#[actix_rt::test]
async fn metrics_want_a_read_token_only_when_asked_to() {
    let open = server(HttpOptions {
        tokens: tokens(),
        ..HttpOptions::default()
    })
    .await;
    assert_eq!(
        call(&open, "GET", "/metrics", None, None).await.0,
        200,
        "off by default"
    );
    open.stop().await;

    let guarded = server(HttpOptions {
        tokens: tokens(),
        metrics_require_token: true,
        ..HttpOptions::default()
    })
    .await;
    let (status, body) = call(&guarded, "GET", "/metrics", None, None).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("missing bearer token")));
    assert_eq!(call(&guarded, "GET", "/metrics", Some("nope"), None).await.0, 401);
    assert_eq!(
        call(&guarded, "GET", "/metrics", Some("wrk"), None).await,
        (403, lacks("read"))
    );
    for token in ["rd", "adm", "wr"] {
        let response = client()
            .get(guarded.at("/metrics"))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{token}");
    }
    assert_eq!(
        call(&guarded, "GET", "/healthz", None, None).await.0,
        200,
        "health needs no token"
    );
    guarded.stop().await;

    // Without tokens nothing is guarded, /metrics included (as the API is open).
    let tokenless = server(HttpOptions {
        metrics_require_token: true,
        ..HttpOptions::default()
    })
    .await;
    assert_eq!(call(&tokenless, "GET", "/metrics", None, None).await.0, 200);
    tokenless.stop().await;
}
