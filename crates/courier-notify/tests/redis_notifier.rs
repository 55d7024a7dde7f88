//! What only the Redis notifier does: seed 000's bytes on the wire, its connection
//! strings (db number, password, ACL user, failover list, TLS), and riding out a
//! Redis outage. The shared cluster cases are in `cluster_notifiers.rs`.

#[path = "../../../tests/support/certificates.rs"]
mod certificates;
mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Backend, Redis, eventually, fresh_prefix, pubsub_clients_named, redis_admin, redis_url, test_options};
use courier_core::{ExecutionId, ExecutionState, Notice, Notifier, NotifyError, TaskId, TaskState, Topic};
use courier_notify::{OpenError, RedisConfig, RedisNotifier};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

/// `host:port` of the test Redis.
fn test_node() -> String {
    let config: RedisConfig = redis_url().parse().unwrap();
    config.nodes[0].to_string()
}

async fn node(url: &str, prefix: &str) -> Result<RedisNotifier, OpenError> {
    RedisNotifier::connect_with(url.parse()?, test_options(prefix)).await
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[actix_rt::test]
async fn a_task_message_on_the_wire_is_seed_000s_json_plus_origin() {
    if !Redis::available().await {
        return;
    }
    let prefix = fresh_prefix();
    let a = Redis::node(test_options(&prefix)).await;
    let exec = ExecutionId::new();
    let task = TaskId::for_step(exec, 1);

    let client = redis::Client::open(redis_url()).unwrap();
    let mut raw = client.get_async_pubsub().await.unwrap();
    raw.subscribe(format!("{prefix}:task:{task}")).await.unwrap();
    raw.subscribe(format!("{prefix}:execution:{exec}")).await.unwrap();
    raw.subscribe(format!("{prefix}:work")).await.unwrap();
    raw.subscribe(format!("{prefix}:events")).await.unwrap();

    a.publish(vec![
        Notice::Task {
            task_id: task,
            state: TaskState::Completed,
        },
        Notice::Execution {
            execution_id: exec,
            state: ExecutionState::Running,
            child: Some((task, TaskState::Completed)),
        },
        Notice::Work { queue: "emails".into() },
        Notice::Events,
    ])
    .await
    .unwrap();

    let origin = a.origin().to_string();
    let mut messages = raw.on_message();
    let mut next = async || {
        let msg = tokio::time::timeout(WAIT, messages.next()).await.unwrap().unwrap();
        (msg.get_channel_name().to_string(), msg.get_payload::<String>().unwrap())
    };
    let (channel, payload) = next().await;
    assert_eq!(channel, format!("{prefix}:task:{task}"));
    assert_eq!(
        payload,
        format!(r#"{{"task_id":"{task}","state":"completed","origin":"{origin}"}}"#)
    );
    // Seed 000's fields exactly, and `origin` besides.
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&payload).unwrap();
    let keys: Vec<&str> = json.keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(json["task_id"], task.to_string());
    assert_eq!(json["state"], "completed");

    let (channel, payload) = next().await;
    assert_eq!(channel, format!("{prefix}:execution:{exec}"));
    assert_eq!(
        payload,
        format!(
            r#"{{"execution_id":"{exec}","state":"running","child_task_id":"{task}","child_state":"completed","origin":"{origin}"}}"#
        )
    );
    assert_eq!(
        next().await,
        (
            format!("{prefix}:work"),
            format!(r#"{{"queue":"emails","origin":"{origin}"}}"#)
        )
    );
    assert_eq!(
        next().await,
        (format!("{prefix}:events"), format!(r#"{{"origin":"{origin}"}}"#))
    );
}

#[actix_rt::test]
async fn messages_from_seed_publishers_are_understood_and_garbage_is_counted() {
    let Some(mut admin) = redis_admin().await else { return };
    let prefix = fresh_prefix();
    let b = Redis::node(test_options(&prefix)).await;
    let task = TaskId::for_step(ExecutionId::new(), 1);
    let mut sub = b.subscribe_to_task(task, None).await.unwrap();
    let channel = format!("{prefix}:task:{task}");
    let publish = |payload: String| redis::cmd("PUBLISH").arg(&channel).arg(payload).clone();

    let _: i64 = publish(format!(r#"{{"task_id": "{task}", "state": "completed"}}"#))
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: i64 = publish(r#"{"state": "failed"}"#.into())
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: i64 = publish("garbage".into()).query_async(&mut admin).await.unwrap();
    let _: i64 = publish(r#"{"state": "exploded"}"#.into())
        .query_async(&mut admin)
        .await
        .unwrap();

    let completed = Notice::Task {
        task_id: task,
        state: TaskState::Completed,
    };
    let failed = Notice::Task {
        task_id: task,
        state: TaskState::Failed,
    };
    assert_eq!(sub.next_within(WAIT).await, Some(completed));
    assert_eq!(sub.next_within(WAIT).await, Some(failed));
    assert_eq!(sub.next_within(QUIET).await, None);
    let stats = b.stats();
    assert_eq!((stats.received, stats.malformed), (4, 2), "{stats:?}");
}

#[actix_rt::test]
async fn pubsub_numsub_sees_one_subscriber_per_node_and_none_after_the_last_leaves() {
    let Some(mut admin) = redis_admin().await else { return };
    let prefix = fresh_prefix();
    let a = Redis::node(test_options(&prefix)).await;
    let b = Redis::node(test_options(&prefix)).await;
    let channel = format!("{prefix}:work");
    let numsub = async |admin: &mut redis::aio::MultiplexedConnection| {
        let reply: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(admin)
            .await
            .unwrap();
        reply.1
    };
    let mut subs = Vec::new();
    for _ in 0..50 {
        subs.push(a.subscribe(vec![Topic::Work]).await.unwrap());
        subs.push(b.subscribe(vec![Topic::Work]).await.unwrap());
    }
    assert_eq!(numsub(&mut admin).await, 2);
    drop(subs);
    let mut last = -1;
    for _ in 0..100 {
        last = numsub(&mut admin).await;
        if last == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, 0);
}

#[actix_rt::test]
async fn the_database_number_form_connects_and_delivers() {
    if !Redis::available().await {
        return;
    }
    let prefix = fresh_prefix();
    let url = format!("redis://{}/3", test_node());
    let a = node(&url, &prefix).await.unwrap();
    let b = node(&url, &prefix).await.unwrap();
    let mut events = b.subscribe(vec![Topic::Events]).await.unwrap();
    let lines = pubsub_clients_named(&b.subscription_client_name()).await;
    assert!(lines.len() == 1 && lines[0].contains(" db=3 "), "{lines:?}");
    a.publish(vec![Notice::Events]).await.unwrap();
    assert_eq!(events.next_within(WAIT).await, Some(Notice::Events));
}

/// Deletes a temporary ACL user, even when the test fails.
struct AclUser(String);

impl Drop for AclUser {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(redis_url())
            && let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(2))
        {
            let _: redis::RedisResult<i64> = redis::cmd("ACL").arg("DELUSER").arg(&self.0).query(&mut connection);
        }
    }
}

#[actix_rt::test]
async fn an_acl_user_connects_and_a_wrong_password_is_a_clear_error() {
    let Some(mut admin) = redis_admin().await else { return };
    let prefix = fresh_prefix();
    let user = AclUser(format!("courier-test-{prefix}"));
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user.0)
        .arg("on")
        .arg(">s3cret:pw")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .unwrap();

    let url = format!("redis://{}:s3cret%3Apw@{}", user.0, test_node());
    let a = node(&url, &prefix).await.unwrap();
    let b = node(&url, &prefix).await.unwrap();
    let mut work = b.subscribe(vec![Topic::Work]).await.unwrap();
    let lines = pubsub_clients_named(&b.subscription_client_name()).await;
    assert!(
        lines.len() == 1 && lines[0].contains(&format!(" user={} ", user.0)),
        "{lines:?}"
    );
    a.publish(vec![Notice::Work { queue: "q".into() }]).await.unwrap();
    assert_eq!(work.next_within(WAIT).await, Some(Notice::Work { queue: "q".into() }));

    let wrong = format!("redis://{}:wrong-pw@{}", user.0, test_node());
    let err = node(&wrong, &prefix).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OpenError::Connect { .. }), "{err:?}");
    assert!(text.contains("AUTH refused") && text.contains("WRONGPASS"), "{text}");
    assert!(!text.contains("wrong-pw"), "{text}");
}

#[actix_rt::test]
async fn a_failover_list_connects_to_the_first_node_that_answers() {
    if !Redis::available().await {
        return;
    }
    let prefix = fresh_prefix();
    let dead = closed_port();
    let url = format!("redis://127.0.0.1:{dead},{}", test_node());
    let a = node(&url, &prefix).await.unwrap();
    let b = node(&url, &prefix).await.unwrap();
    let mut events = b.subscribe(vec![Topic::Events]).await.unwrap();
    a.publish(vec![Notice::Events]).await.unwrap();
    assert_eq!(events.next_within(WAIT).await, Some(Notice::Events));

    let other = closed_port();
    let err = node(&format!("redis://127.0.0.1:{dead},127.0.0.1:{other}"), &prefix)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{dead}")) && err.contains(&format!("127.0.0.1:{other}")),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// Private redis-server instances (a password, an outage, TLS)
// ---------------------------------------------------------------------------

/// A redis-server this test started, in a directory of its own; killed on drop.
struct PrivateRedis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

impl PrivateRedis {
    /// Starts one with `args` (after `--port`), or `None` with a notice if there is
    /// no redis-server binary here.
    fn start(port: u16, args: &[&str], dir: PathBuf) -> Option<Self> {
        let mut server = PrivateRedis {
            child: None,
            port,
            dir,
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn()?;
        Some(server)
    }

    fn spawn(&mut self) -> Option<()> {
        std::fs::create_dir_all(&self.dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .args(&self.args)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => {
                self.child = Some(child);
                Some(())
            }
            Err(e) => {
                common::skip(&format!("cannot run redis-server ({e})"));
                None
            }
        }
    }

    /// Waits until something accepts connections on `port`.
    async fn listening(port: u16) {
        let up = eventually(WAIT, || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        assert!(up, "redis-server did not start on port {port}");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("courier-notify-{prefix}"))
}

#[actix_rt::test]
async fn a_password_only_url_connects_and_a_redis_outage_is_ridden_out() {
    let prefix = fresh_prefix();
    let port = closed_port();
    let Some(mut server) = PrivateRedis::start(port, &["--requirepass", "hunter2"], scratch_dir(&prefix)) else {
        return;
    };
    PrivateRedis::listening(port).await;
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let a = node(&url, &prefix).await.unwrap();
    let b = node(&url, &prefix).await.unwrap();
    let mut on_b = b.subscribe(vec![Topic::Events]).await.unwrap();
    let mut on_a = a.subscribe(vec![Topic::Events]).await.unwrap();
    a.publish(vec![Notice::Events]).await.unwrap();
    assert_eq!(on_b.next_within(WAIT).await, Some(Notice::Events));
    assert_eq!(on_a.next_within(WAIT).await, Some(Notice::Events));

    // Redis goes away.
    server.stop();
    assert!(eventually(WAIT, || async { !b.stats().connected }).await);
    let err = a.publish(vec![Notice::Events]).await.unwrap_err();
    assert!(matches!(err, NotifyError::Unavailable(_)), "{err:?}");
    assert_eq!(
        on_a.next_within(WAIT).await,
        Some(Notice::Events),
        "delivered locally regardless"
    );
    assert_eq!(a.stats().publish_failures, 1);
    // Subscribing neither fails nor hangs while disconnected.
    let exec = ExecutionId::new();
    let subscribed = tokio::time::timeout(Duration::from_secs(1), b.subscribe_to_execution(exec, None)).await;
    let mut late = subscribed.expect("subscribe returned while Redis was down").unwrap();

    // Redis comes back: the node reconnects, re-subscribes, and everyone resyncs.
    server.spawn().unwrap();
    PrivateRedis::listening(port).await;
    assert_eq!(on_b.next_within(Duration::from_secs(10)).await, Some(Notice::Resync));
    assert_eq!(late.next_within(WAIT).await, Some(Notice::Resync));
    assert_eq!(b.stats().reconnects, 1);
    let notice = Notice::Execution {
        execution_id: exec,
        state: ExecutionState::Completed,
        child: None,
    };
    // A's publisher re-dials at most once a second.
    assert!(eventually(WAIT, || async { a.publish(vec![notice.clone()]).await.is_ok() }).await);
    assert_eq!(late.next_within(WAIT).await, Some(notice));
}

#[actix_rt::test]
async fn rediss_connects_over_tls_trusting_the_given_ca() {
    let prefix = fresh_prefix();
    let dir = scratch_dir(&prefix);
    std::fs::create_dir_all(&dir).unwrap();
    if let Err(e) = certificates::make_certificates(&dir) {
        common::skip(&format!("openssl could not make test certificates: {e}"));
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let port = closed_port();
    let args = [
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        "server.pem",
        "--tls-key-file",
        "server.key",
        "--tls-ca-cert-file",
        "ca.pem",
        "--tls-auth-clients",
        "no",
    ]
    .map(str::to_string);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Plain TCP on port 0 (off): TLS only.
    let Some(_server) = PrivateRedis::start(0, &args, dir.clone()) else {
        return;
    };
    PrivateRedis::listening(port).await;

    let ca = dir.join("ca.pem");
    let url = format!("rediss://127.0.0.1:{port}?ssl_ca_certs={}", ca.display());
    let a = node(&url, &prefix).await.unwrap();
    let b = node(&url, &prefix).await.unwrap();
    let mut work = b.subscribe(vec![Topic::Work]).await.unwrap();
    a.publish(vec![Notice::Work { queue: "tls".into() }]).await.unwrap();
    assert_eq!(work.next_within(WAIT).await, Some(Notice::Work { queue: "tls".into() }));
    assert!(a.config().tls.is_some());

    // Without the CA, the server's certificate is not trusted.
    let err = node(&format!("rediss://localhost:{port}"), &prefix)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TLS handshake failed") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    // Plain text to a TLS port is refused too.
    assert!(node(&format!("redis://127.0.0.1:{port}"), &prefix).await.is_err());
    // An unreadable CA file is a TLS setup error before any connection.
    let err = node(
        &format!("rediss://127.0.0.1:{port}?ssl_ca_certs=/nonexistent/ca.pem"),
        &prefix,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OpenError::Tls(_)), "{err:?}");
}
