//! Fault tests on real `courier serve` processes: a node killed with `kill -9`
//! while holding leases, Redis stopped and restarted, Postgres restarted, and a
//! node whose clock runs 30 s ahead. Each is bounded in time and uses loopback
//! addresses only; Redis and Postgres are the test's own servers where the test
//! stops them, so no other test is disturbed.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use support::cluster::*;
use support::http::*;

fn redis() -> Notifier {
    Notifier::Redis(std::env::var("COURIER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
}

/// Dispatches `n` two-step pipelines round-robin over `nodes`; their ids.
async fn dispatch_pipelines(nodes: &[Node], n: usize, sleep_ms: u64, prefix: &str) -> Vec<String> {
    let requests = nodes.iter().cycle().take(n).enumerate().map(|(i, node)| {
        dispatch(
            node,
            "fixture.pipeline",
            json!({ "key": format!("{prefix}{i}"), "steps": 2, "sleep_ms": sleep_ms }),
        )
    });
    let mut ids = Vec::with_capacity(n);
    let mut requests = futures::stream::iter(requests).buffered(16);
    while let Some(id) = requests.next().await {
        ids.push(id);
    }
    ids
}

/// Steps `node` started and has not ended.
fn unfinished_on(effects: &[Effect], node: &str) -> usize {
    let ended: std::collections::HashSet<&str> = effects
        .iter()
        .filter(|e| e.what == "end")
        .map(|e| e.key.as_str())
        .collect();
    effects
        .iter()
        .filter(|e| e.node == node && e.what == "start" && !ended.contains(e.key.as_str()))
        .count()
}

/// Waits (through `node`) for every execution to complete with result 2.
async fn all_complete(node: &Node, ids: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    for id in ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let (status, body) = result(node, id, left).await;
        if status != 200 {
            let (_, detail) = get(&node.at(&format!("/v1/executions/{id}"))).await;
            panic!("execution {id} did not finish in time ({status}: {body}); its steps: {detail}");
        }
        assert_eq!(body["state"], "completed", "{body}");
        assert_eq!(body["result"], 2, "{body}");
    }
}

/// How many events of `event_type` the log holds per execution.
async fn events_per_execution(node: &Node, event_type: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut after = 0;
    loop {
        let (status, page) = get(&node.at(&format!("/v1/events?after={after}&limit=1000&type={event_type}"))).await;
        assert_eq!(status, 200, "{page}");
        for e in page["events"].as_array().unwrap() {
            *counts
                .entry(e["execution_id"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        after = page["next"].as_i64().unwrap();
        if !page["has_more"].as_bool().unwrap() {
            return counts;
        }
    }
}

/// Every pipeline step ran to its end at least once, and a step that ended on a
/// survivor never ended anywhere else as well, unless on the killed node (whose
/// completion may not have been committed when it died).
fn exactly_once_on_survivors(effects: &[Effect], executions: usize, killed: Option<&str>) {
    let ends = Effect::ends_by_key(effects);
    assert_eq!(ends.len(), executions * 2, "every step ran");
    for (key, runs) in &ends {
        let on_survivors = runs.iter().filter(|e| Some(e.node.as_str()) != killed).count();
        assert!(
            on_survivors <= 1,
            "step {key} ran to its end {on_survivors} times on survivors: {runs:?}"
        );
    }
}

#[actix_rt::test]
async fn kill_9_of_a_node_holding_leases_loses_nothing_and_repeats_no_committed_step() {
    const N: usize = 1000;
    let mut cluster = Cluster::start(&["a", "b", "c"], redis(), &[], |_| Vec::new()).await;
    let ids = dispatch_pipelines(&cluster.nodes, N, 200, "k").await;
    // Kill b in the middle, while it runs many steps.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let effects = cluster.effects();
        let ended = effects.iter().filter(|e| e.what == "end").count();
        if ended >= N / 2 && unfinished_on(&effects, "b") >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "b never held work in the middle of the run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let unfinished_on_b = unfinished_on(&cluster.effects(), "b");
    cluster.node_mut("b").kill9();
    eprintln!("killed b with {unfinished_on_b} steps of its own unfinished");

    all_complete(cluster.node("a"), &ids, Duration::from_secs(120)).await;
    exactly_once_on_survivors(&cluster.effects(), N, Some("b"));
    let completed = events_per_execution(cluster.node("c"), "execution.completed").await;
    assert_eq!(completed.len(), N);
    assert!(
        completed.values().all(|&n| n == 1),
        "every execution completed exactly once"
    );
}

#[actix_rt::test]
async fn redis_stopped_and_restarted_mid_run_loses_nothing_and_subscribers_recover() {
    const N: usize = 300;
    let mut redis = RedisServer::start();
    let cluster = Cluster::start(&["a", "b"], Notifier::Redis(redis.url()), &[], |_| Vec::new()).await;
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    // A live SSE subscriber on a, across the outage.
    let response = client()
        .get(a.at("/v1/events/stream"))
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(response);

    let ids = dispatch_pipelines(&cluster.nodes, N, 20, "e").await;
    support::eventually(Duration::from_secs(60), "some progress", || {
        let ended = cluster.effects().iter().filter(|e| e.what == "end").count();
        async move { ended >= N / 2 }
    })
    .await;
    redis.stop();
    // Work goes on meanwhile (polling is the safety net), including new dispatches.
    let more = dispatch_pipelines(&cluster.nodes, 20, 0, "m").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart();

    all_complete(a, &ids, Duration::from_secs(120)).await;
    all_complete(b, &more, Duration::from_secs(60)).await;
    exactly_once_on_survivors(&cluster.effects(), N + 20, None);

    // Both nodes reconnect by themselves (their backoff is at most 5 s) ...
    for node in &cluster.nodes {
        support::eventually(Duration::from_secs(30), "the notifier reconnected", || async move {
            node.counter("courier_notifier_reconnects").await >= 1.0
                && node.counter("courier_notifier_connected").await == 1.0
        })
        .await;
    }
    // ... and notices flow again: a wait on a wakes for work done by either node,
    // and the SSE subscriber reaches the end of the log.
    let id = dispatch(b, "fixture.pipeline", json!({ "key": "after", "steps": 2 })).await;
    let (status, body) = result(a, &id, Duration::from_secs(30)).await;
    assert_eq!(status, 200, "{body}");
    let last = last_seq(a).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while seen < last {
        assert!(
            Instant::now() < deadline,
            "the SSE subscriber stalled at {seen} of {last}"
        );
        if let Some(id) = sse.next(Duration::from_secs(10)).await.and_then(|frame| frame.id) {
            assert!(id > seen, "sequence went backwards: {id} after {seen}");
            seen = id;
        }
    }
}

async fn last_seq(node: &Node) -> i64 {
    let mut after = 0;
    loop {
        let (_, page) = get(&node.at(&format!("/v1/events?after={after}&limit=1000"))).await;
        after = page["next"].as_i64().unwrap();
        if !page["has_more"].as_bool().unwrap() {
            return after;
        }
    }
}

#[actix_rt::test]
async fn postgres_restarted_mid_run_nodes_reconnect_and_nothing_is_left_stuck() {
    const N: usize = 300;
    let pg = PostgresServer::start();
    let db = Database::create_on(&pg.url());
    let cluster = Cluster::start_on(db, &["a", "b"], Notifier::Postgres, &[], |_| Vec::new()).await;
    let ids = dispatch_pipelines(&cluster.nodes, N, 20, "e").await;
    // The executions themselves must survive: only what the nodes write after
    // this may be lost (the CI machine once lost an acknowledged dispatch,
    // seconds old, whose asynchronous commit had not been written yet).
    pg.make_durable();
    support::eventually(Duration::from_secs(60), "some progress", || {
        let ended = cluster.effects().iter().filter(|e| e.what == "end").count();
        async move { ended >= N / 2 }
    })
    .await;
    pg.restart(Duration::from_secs(2));

    all_complete(cluster.node("a"), &ids, Duration::from_secs(180)).await;
    let (status, running) = get(&cluster.node("b").at("/v1/executions?state=running&limit=10")).await;
    assert_eq!(status, 200, "{running}");
    assert_eq!(running["executions"].as_array().map(Vec::len), Some(0), "{running}");
    let ends = Effect::ends_by_key(&cluster.effects());
    assert_eq!(ends.len(), N * 2, "every step ran");
    // The server runs with asynchronous commit, so the stop may lose children
    // the nodes were told were created; their orchestrators replay to recreate them.
    let replayed: usize = cluster
        .nodes
        .iter()
        .map(|n| n.log().matches("gone from the store").count())
        .sum();
    eprintln!("orchestrators replayed for children the restart lost: {replayed}");
    for node in &cluster.nodes {
        assert!(
            !node.log().contains("panicked"),
            "node {} panicked:\n{}",
            node.name,
            node.log()
        );
    }
}

#[actix_rt::test]
async fn a_node_whose_clock_runs_30s_ahead_steals_no_live_lease() {
    // a starts alone and takes long activities; then c, 30 s ahead, joins.
    let mut cluster = Cluster::start(&["a"], redis(), &[], |_| Vec::new()).await;
    let a = cluster.node("a");
    let mut ids = Vec::new();
    for i in 0..4 {
        // 8 s each: two lease lengths (4 s), renewed by a's heartbeats every second.
        ids.push(
            dispatch(
                a,
                "fixture.effect",
                json!({ "key": format!("long{i}"), "sleep_ms": 8000 }),
            )
            .await,
        );
    }
    support::eventually(Duration::from_secs(20), "a runs all four", || {
        let started = cluster.effects().iter().filter(|e| e.what == "start").count();
        async move { started == 4 }
    })
    .await;
    let mut env = vec![
        ("COURIER_STORE_URL".to_string(), cluster.db.url.clone()),
        ("COURIER_TESTING_CLOCK_OFFSET".to_string(), "30s".to_string()),
        (
            "COURIER_TESTING_EFFECTS_FILE".to_string(),
            cluster.effects.display().to_string(),
        ),
        ("COURIER_WORKER_LEASE".to_string(), "4s".to_string()),
        ("COURIER_WORKER_HEARTBEAT".to_string(), "1s".to_string()),
        ("COURIER_WORKER_POLL_MAX".to_string(), "200ms".to_string()),
        ("COURIER_MAINTENANCE_STUCK_AFTER".to_string(), "3s".to_string()),
    ];
    if let Notifier::Redis(url) = redis() {
        env.push(("COURIER_NOTIFIER_URL".into(), url));
        env.push(("COURIER_NOTIFIER_PREFIX".into(), cluster.prefix.clone()));
    }
    let mut c = Node::spawn("c", &cluster.dir, env);
    c.ready().await;
    for id in &ids {
        let (status, body) = result(cluster.node("a"), id, Duration::from_secs(30)).await;
        assert_eq!(status, 200, "{body}");
    }
    let effects = cluster.effects();
    for i in 0..4 {
        let key = format!("long{i}");
        let runs: Vec<&Effect> = effects.iter().filter(|e| e.key == key).collect();
        assert_eq!(runs.len(), 2, "{key} started and ended once: {runs:?}");
        assert!(runs.iter().all(|e| e.node == "a"), "c stole {key}: {runs:?}");
    }
    // c is a working node all the same: it takes new work.
    cluster.node_mut("a").terminate();
    let id = dispatch(&c, "fixture.effect", json!({ "key": "on_c" })).await;
    let (status, body) = result(&c, &id, Duration::from_secs(30)).await;
    assert_eq!(status, 200, "{body}");
    let on_c: Vec<Value> = cluster
        .effects()
        .into_iter()
        .filter(|e| e.key == "on_c")
        .map(|e| json!(e.node))
        .collect();
    assert_eq!(on_c, vec![json!("c"), json!("c")]);
}

#[actix_rt::test]
async fn an_orchestrator_killed_mid_run_sends_each_notification_once() {
    const STEPS: u32 = 4;
    // a serves the API only; the orchestrator runs on b or c, and on the other after the kill.
    let mut cluster = Cluster::start(&["a", "b", "c"], redis(), &[], |name| {
        if name == "a" {
            vec![("COURIER_WORKER_ENABLED".into(), "false".into())]
        } else {
            Vec::new()
        }
    })
    .await;
    let id = dispatch(
        cluster.node("a"),
        "fixture.notifying",
        json!({ "key": "n", "user": "linus", "steps": STEPS, "sleep_ms": 1500 }),
    )
    .await;
    // Kill whichever node runs it once two steps' notifications are out and the third step runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let runner = loop {
        if let Some(e) = cluster
            .effects()
            .into_iter()
            .find(|e| e.what == "start" && e.key == "n/2")
        {
            break e.node;
        }
        assert!(Instant::now() < deadline, "the third step never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    cluster.node_mut(&runner).kill9();
    let (status, body) = result(cluster.node("a"), &id, Duration::from_secs(60)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "completed", "{body}");
    let survivor = if runner == "b" { "c" } else { "b" };
    assert!(
        cluster.effects().iter().any(|e| e.node == survivor && e.key == "n/2"),
        "{survivor} replayed the execution after {runner} died"
    );

    let (status, listed) = get(&cluster
        .node("a")
        .at("/v1/notifications?target=user&user_id=linus&limit=100"))
    .await;
    assert_eq!(status, 200, "{listed}");
    let notifications = listed["notifications"].as_array().expect("a list");
    let steps: Vec<&Value> = notifications.iter().filter(|n| n.get("group").is_none()).collect();
    let progress: Vec<&Value> = notifications.iter().filter(|n| n.get("group").is_some()).collect();
    assert_eq!(
        steps.len(),
        STEPS as usize,
        "one notification per step, none twice: {listed}"
    );
    let mut messages: Vec<&str> = steps
        .iter()
        .map(|n| n["payload"]["message"].as_str().unwrap())
        .collect();
    messages.sort();
    assert_eq!(messages, ["step 1/4", "step 2/4", "step 3/4", "step 4/4"]);
    assert_eq!(
        progress.len(),
        1,
        "the progress toast is replaced in place, not repeated: {listed}"
    );
    assert_eq!(progress[0]["group"], id.as_str());
    assert_eq!(progress[0]["payload"]["message"], "step 4/4");
    let (_, sent_events) = get(&cluster.node("a").at("/v1/events?type=notification.sent&limit=100")).await;
    assert_eq!(
        sent_events["events"].as_array().map(Vec::len),
        Some(2 * STEPS as usize),
        "each notify step is sent (and logged) exactly once: {sent_events}"
    );
}
