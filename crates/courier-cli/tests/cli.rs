//! The client commands end to end: a real `courier serve` on a free loopback port
//! with a fresh SQLite store, driven by the test over plain HTTP (as an external
//! worker would), and the `courier` commands run as subprocesses against it.
//!
//! Every wait is bounded: the server must be ready within 30 s, each command must
//! finish within 60 s, and servers are killed when their test ends.

mod ports;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_courier");
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    ports::free_port_on("127.0.0.1")
}

fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "courier-cli-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// What a command did.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(self) -> Out {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

/// Waits for `child` (killing it after `limit`) and collects its output.
fn finish(mut child: Child, limit: Duration) -> Out {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// A `courier` client command with no URL or token from the test's environment.
fn courier(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("COURIER_URL")
        .env_remove("COURIER_TOKEN")
        .env("COURIER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A running `courier serve`, killed (and its store deleted) on drop.
struct Server {
    child: Child,
    url: String,
    dir: PathBuf,
    token: Option<String>,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Server {
    fn start(tokens: Option<&str>) -> Server {
        Server::start_with(tokens, &[])
    }

    fn start_with(tokens: Option<&str>, env: &[(&str, String)]) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = temp_dir();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .env_remove("COURIER_CONFIG")
            .env("COURIER_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("COURIER_STORE_URL", dir.join("courier.db"))
            .env("COURIER_LOG_LEVEL", "warn")
            .env("COURIER_HTTP_WORKERS", "2")
            .env("COURIER_WEBHOOKS_POLL", "200ms")
            .env("COURIER_WEBHOOKS_ALLOW_PRIVATE", "127.0.0.1/32,::1/128")
            .env(
                "COURIER_WEBHOOKS_SECRET_KEY",
                "AG997S88LNpAm0Rom4TeLVh0GSchFj+eO/whPOkGJrw=",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (key, value) in env {
            cmd.env(key, value);
        }
        match tokens {
            Some(tokens) => cmd.env("COURIER_API_TOKENS", tokens),
            None => cmd.env_remove("COURIER_API_TOKENS"),
        };
        let child = cmd.spawn().expect("courier serve starts");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let http = rt.block_on(async {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client")
        });
        let mut server = Server {
            child,
            url,
            dir,
            token: tokens.map(|t| t.split(',').next().unwrap_or_default().to_string()),
            rt,
            http,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("courier serve exited ({status}): {}", self.log());
            }
            let ready = self.rt.block_on(async {
                self.http
                    .get(format!("{}/readyz", self.url))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            });
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "not ready within 30s: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// One API request; the status and the JSON body (null when empty).
    fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.rt.block_on(async {
            let mut request = self.http.request(method, format!("{}{path}", self.url));
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.expect("API request");
            let status = response.status().as_u16();
            let bytes = response.bytes().await.expect("API body");
            let value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            (status, value)
        })
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.api(reqwest::Method::POST, path, Some(body));
        assert!((200..300).contains(&status), "POST {path}: {status} {value}");
        value
    }

    /// Dispatches an execution of `function`; its id.
    fn dispatch(&self, function: &str, args: Value) -> String {
        let created = self.post("/v1/executions", json!({"function": function, "args": args}));
        created["id"].as_str().expect("an id").to_string()
    }

    /// Claims one task of `function` as an external worker: (task id, lease token).
    fn claim(&self, function: &str) -> (String, String) {
        let claimed = self.post(
            "/v1/workers/claim",
            json!({"worker_id": "test-worker", "functions": [function], "wait": "10s", "lease": "5m"}),
        );
        let task = &claimed[0];
        (
            task["task_id"].as_str().expect("a task id").to_string(),
            task["lease_token"].as_str().expect("a lease token").to_string(),
        )
    }

    /// Fails a claimed task for good (it becomes a dead letter).
    fn fail(&self, task: &str, lease: &str) {
        self.post(
            &format!("/v1/tasks/{task}/fail"),
            json!({"lease_token": lease, "error": "boom", "retryable": false}),
        );
    }

    /// Runs a client command against this server.
    fn run(&self, args: &[&str]) -> Out {
        finish(self.spawn(args), COMMAND_LIMIT)
    }

    /// Starts a client command against this server.
    fn spawn(&self, args: &[&str]) -> Child {
        courier(args)
            .env("COURIER_URL", &self.url)
            .spawn()
            .expect("courier runs")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("server log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn executions_are_listed_shown_signalled_cancelled_and_cleaned_up() {
    let server = Server::start(None);
    let work = server.dispatch("ext.work", json!({"n": 1}));
    let other = server.dispatch("ext.other", json!(null));

    let out = server.run(&["exec", "list"]).ok();
    assert!(out.stdout.starts_with("ID "), "{out:#?}");
    for needle in [&work, &other, "ext.work", "ext.other", "pending", "default"] {
        assert!(out.stdout.contains(needle), "{needle} missing: {out:#?}");
    }
    let out = server.run(&["exec", "list", "--function", "ext.work"]).ok();
    assert!(out.stdout.contains(&work) && !out.stdout.contains(&other), "{out:#?}");
    let out = server.run(&["exec", "list", "--state", "completed"]).ok();
    assert_eq!(out.stdout.trim(), "no executions");
    let out = server.run(&["exec", "list", "--limit", "1"]).ok();
    assert_eq!(out.stdout.lines().count(), 3, "{out:#?}");
    assert!(out.stdout.contains(&other) != out.stdout.contains(&work), "{out:#?}");
    assert!(out.stdout.contains("(more with --offset 1)"), "{out:#?}");
    let out = server.run(&["exec", "list", "--json"]).ok();
    assert_eq!(out.json()["executions"].as_array().map(Vec::len), Some(2));
    let out = server.run(&["exec", "list", "--state", "bogus"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("unknown state \"bogus\""), "{out:#?}");

    let out = server.run(&["exec", "show", &work]).ok();
    for needle in [
        "function:",
        "ext.work",
        "state:",
        "pending",
        "\"n\": 1",
        "steps:",
        "activity",
    ] {
        assert!(out.stdout.contains(needle), "{needle} missing: {out:#?}");
    }
    let out = server.run(&["exec", "show", &work, "--json"]).ok();
    assert_eq!(out.json()["execution"]["id"], json!(work));
    let missing = "01a20000-0000-7000-8000-000000000000";
    let out = server.run(&["exec", "show", missing]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        format!("courier: execution not found (id: {missing})")
    );
    let out = server.run(&["exec", "show", "not-an-id"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid execution id"), "{out:#?}");

    let out = server.run(&["signal", &work, "approve", r#"{"ok": true}"#]).ok();
    assert!(out.stdout.contains("sent signal \"approve\""), "{out:#?}");
    let out = server.run(&["signal", &work, "approve", "--json"]).ok();
    assert!(out.json()["signal_id"].is_string(), "{out:#?}");
    let out = server.run(&["signal", &work, "approve", "{oops"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not valid JSON"), "{out:#?}");

    let out = server
        .run(&["exec", "cancel", &other, "--reason", "no longer needed"])
        .ok();
    assert!(
        out.stdout
            .contains(&format!("cancelled execution {other} (was pending")),
        "{out:#?}"
    );
    let out = server.run(&["exec", "show", &other, "--json"]).ok();
    assert_eq!(out.json()["execution"]["state"], "cancelled");
    let out = server.run(&["exec", "cancel", &other]).ok();
    assert!(out.stdout.contains("already cancelled"), "{out:#?}");
    // A cancelled execution ends `wait` with exit 2 and its reason.
    let out = server.run(&["exec", "wait", &other, "--timeout", "20s"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.contains("cancelled") && out.stderr.contains("no longer needed"),
        "{out:#?}"
    );

    // Complete `work`, then a cancel is refused with the API's 409.
    let (task, lease) = server.claim("ext.work");
    server.post(
        &format!("/v1/tasks/{task}/complete"),
        json!({"lease_token": lease, "result": 7}),
    );
    let out = server.run(&["exec", "cancel", &work]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("courier: execution is already completed ("),
        "{out:#?}"
    );

    let out = server.run(&["cleanup", "--older-than", "soon"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--older-than: invalid duration"), "{out:#?}");
    let out = server.run(&["cleanup", "--older-than", "7d"]).ok();
    assert!(
        out.stdout
            .contains("deleted 0 finished execution(s) and 0 dead letter(s) older than 7d"),
        "{out:#?}"
    );
    std::thread::sleep(Duration::from_millis(20));
    let out = server.run(&["cleanup", "--older-than", "0s", "--json"]).ok();
    assert_eq!(out.json()["executions"], 2, "{out:#?}");
    let out = server.run(&["exec", "list"]).ok();
    assert_eq!(out.stdout.trim(), "no executions");
}

#[test]
fn dead_letters_are_listed_replayed_and_discarded() {
    let server = Server::start(None);
    let execution = server.dispatch("ext.fail", json!({}));
    let (task, lease) = server.claim("ext.fail");
    server.fail(&task, &lease);

    // The execution failed: `wait` says why and exits 2.
    let out = server.run(&["exec", "wait", &execution, "--timeout", "20s"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.contains(&format!("courier: execution {execution} failed")),
        "{out:#?}"
    );
    assert!(out.stderr.contains("boom"), "{out:#?}");
    let out = server.run(&["exec", "wait", &execution, "--json"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert_eq!(out.json()["state"], "failed");

    let out = server.run(&["dlq", "list"]).ok();
    assert!(out.stdout.starts_with("TASK "), "{out:#?}");
    for needle in [&task, &execution, "ext.fail", "boom (error)"] {
        assert!(out.stdout.contains(needle), "{needle} missing: {out:#?}");
    }
    let out = server.run(&["dlq", "list", "--limit", "10", "--json"]).ok();
    assert_eq!(out.json()["dead_letters"][0]["task_id"], json!(task));

    let out = server.run(&["dlq", "replay", &task]).ok();
    assert!(
        out.stdout.contains(&format!(
            "replayed task {task} of execution {execution} (execution resumed)"
        )),
        "{out:#?}"
    );
    let out = server.run(&["dlq", "list"]).ok();
    assert_eq!(out.stdout.trim(), "no dead letters");
    let out = server.run(&["exec", "show", &execution, "--json"]).ok();
    assert_eq!(out.json()["execution"]["state"], "running");

    let (task_again, lease) = server.claim("ext.fail");
    assert_eq!(task_again, task);
    server.fail(&task, &lease);
    let out = server.run(&["dlq", "discard", &task]).ok();
    assert_eq!(out.stdout.trim(), format!("discarded dead letter {task}"));
    let out = server.run(&["dlq", "list"]).ok();
    assert_eq!(out.stdout.trim(), "no dead letters");
    let out = server.run(&["dlq", "discard", &task]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        format!("courier: dead letter not found (id: {task})")
    );
    let out = server.run(&["dlq", "replay", "nope"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid task id"), "{out:#?}");
}

#[test]
fn wait_follows_progress_to_the_result() {
    let server = Server::start(None);
    let execution = server.dispatch("ext.slow", json!({"size": 3}));
    let (task, lease) = server.claim("ext.slow");

    let mut waiting = server.spawn(&["exec", "wait", &execution, "--timeout", "30s"]);
    std::thread::sleep(Duration::from_millis(700));
    assert!(waiting.try_wait().expect("try_wait").is_none(), "wait returned early");
    server.post(
        &format!("/v1/tasks/{task}/progress"),
        json!({"lease_token": lease, "percent": 50, "message": "half"}),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(waiting.try_wait().expect("try_wait").is_none(), "wait returned early");
    server.post(
        &format!("/v1/tasks/{task}/complete"),
        json!({"lease_token": lease, "result": {"answer": 42}}),
    );
    let out = finish(waiting, COMMAND_LIMIT).ok();
    for needle in [
        "task.started",
        "task.progress",
        "50% half",
        "task.completed",
        &format!("execution {execution} completed"),
        r#"result: {"answer":42}"#,
    ] {
        assert!(out.stdout.contains(needle), "{needle} missing: {out:#?}");
    }

    // Once finished, `wait` answers at once; with --json it prints the execution.
    let out = server.run(&["exec", "wait", &execution, "--json"]).ok();
    let record = out.json();
    assert_eq!(record["state"], "completed");
    assert_eq!(record["result"]["answer"], 42);
    let out = server.run(&["exec", "show", &execution]).ok();
    assert!(out.stdout.contains("half") && out.stdout.contains("50%"), "{out:#?}");

    // Nothing runs this one: --timeout gives up with exit 3.
    let stuck = server.dispatch("ext.never", json!(null));
    let started = Instant::now();
    let out = server.run(&["exec", "wait", &stuck, "--timeout", "1s"]);
    assert_eq!(out.code, 3, "{out:#?}");
    assert!(
        out.stderr.contains("gave up waiting") && out.stderr.contains("pending"),
        "{out:#?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// A webhook receiver that answers 200 to every request; its URL.
fn receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head, then as much body as Content-Length says.
                loop {
                    let Ok(n) = stream.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0usize);
                        if request.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            });
        }
    });
    format!("http://127.0.0.1:{port}/hook")
}

#[test]
fn webhooks_are_created_inspected_paused_and_deleted() {
    let server = Server::start(None);
    let endpoint = receiver();
    let out = server
        .run(&[
            "webhooks",
            "create",
            &endpoint,
            "--event",
            "execution.created",
            "--header",
            "X-Test=1",
            "--description",
            "test hook",
        ])
        .ok();
    let first = out.stdout.lines().next().unwrap_or_default();
    let id = first
        .strip_prefix("created webhook ")
        .unwrap_or_else(|| panic!("{out:#?}"))
        .to_string();
    assert!(out.stdout.contains("secret: whsec_"), "{out:#?}");
    assert!(out.stdout.contains(&endpoint), "{out:#?}");

    let out = server.run(&["webhooks", "create", &endpoint, "--event", "bogus"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("unknown event type \"bogus\""), "{out:#?}");
    let out = server.run(&["webhooks", "create", &endpoint, "--header", "novalue"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("expected NAME=VALUE"), "{out:#?}");
    let out = server.run(&["webhooks", "create", "ftp://example.com/x"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with("courier: the url must be http(s)"), "{out:#?}");

    let out = server.run(&["webhooks", "list"]).ok();
    for needle in [&id, &endpoint, "execution.created", "yes", "test hook"] {
        assert!(out.stdout.contains(needle), "{needle} missing: {out:#?}");
    }
    let out = server.run(&["webhooks", "show", &id]).ok();
    for needle in ["X-Test: 1", "test hook", "enabled:", "yes"] {
        assert!(out.stdout.contains(needle), "{needle} missing: {out:#?}");
    }
    assert!(
        !out.stdout.contains("whsec_"),
        "the secret is shown once only: {out:#?}"
    );

    // An event it subscribes to is delivered to the receiver.
    server.dispatch("ext.hooked", json!(null));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = server.run(&["webhooks", "deliveries", &id, "--json"]).ok();
        let deliveries = out.json()["deliveries"].clone();
        if deliveries[0]["state"] == "delivered" {
            assert_eq!(deliveries[0]["last_status"], 200);
            assert_eq!(deliveries[0]["event_type"], "execution.created");
            break;
        }
        assert!(Instant::now() < deadline, "not delivered within 30s: {deliveries}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = server.run(&["webhooks", "deliveries", &id]).ok();
    assert!(out.stdout.starts_with("DELIVERY "), "{out:#?}");
    for needle in ["execution.created", "delivered", "200"] {
        assert!(out.stdout.contains(needle), "{needle} missing: {out:#?}");
    }

    // A new secret, shown once; the old one signs on for the grace period.
    let out = server.run(&["webhooks", "rotate-secret", &id, "--grace", "1h"]).ok();
    assert!(
        out.stdout
            .starts_with(&format!("rotated the secret of webhook {id}\nsecret: whsec_")),
        "{out:#?}"
    );
    assert!(out.stdout.contains("the old secret signs deliveries too"), "{out:#?}");
    let out = server.run(&["webhooks", "show", &id]).ok();
    assert!(out.stdout.contains("old secret signs until:"), "{out:#?}");
    assert!(!out.stdout.contains("whsec_"), "{out:#?}");
    let out = server.run(&["webhooks", "rotate-secret", &id, "--grace", "0"]).ok();
    assert!(out.stdout.contains("the old secret no longer signs"), "{out:#?}");
    let out = server.run(&["webhooks", "rotate-secret", &id, "--grace", "8d"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("at most 7d"), "{out:#?}");
    let out = server.run(&["webhooks", "rotate-secret", &id, "--grace", "soon"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("--grace"), "{out:#?}");

    let out = server.run(&["webhooks", "disable", &id]).ok();
    assert_eq!(out.stdout.trim(), format!("webhook {id} disabled"));
    let out = server.run(&["webhooks", "show", &id, "--json"]).ok();
    assert_eq!(out.json()["enabled"], false);
    // While disabled, an event is recorded as a skipped delivery; replay refuses
    // until the webhook is enabled, then makes it.
    server.dispatch("ext.webhook", json!("while disabled"));
    let skipped = || {
        let out = server.run(&["webhooks", "deliveries", &id, "--json"]).ok();
        out.json()["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["state"] == "skipped")
    };
    let start = Instant::now();
    while !skipped() {
        assert!(start.elapsed() < Duration::from_secs(20), "no skipped delivery");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = server.run(&["webhooks", "replay", &id]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("webhook is disabled"), "{out:#?}");
    let out = server.run(&["webhooks", "enable", &id]).ok();
    assert_eq!(out.stdout.trim(), format!("webhook {id} enabled"));
    let out = server
        .run(&["webhooks", "replay", &id, "--since", "2000-01-01T00:00:00Z"])
        .ok();
    assert_eq!(
        out.stdout.trim(),
        format!("replayed skipped deliveries of webhook {id}: 1")
    );
    let out = server.run(&["webhooks", "replay", &id, "--json"]).ok();
    assert_eq!(out.json()["replayed"], json!([]));
    // Nothing failed for good: nothing to recover.
    let out = server
        .run(&["webhooks", "recover", &id, "--since", "2000-01-01T00:00:00Z"])
        .ok();
    assert_eq!(
        out.stdout.trim(),
        format!("retrying failed deliveries of webhook {id}: 0")
    );
    let out = server.run(&["webhooks", "delete", &id]).ok();
    assert_eq!(out.stdout.trim(), format!("deleted webhook {id}"));
    let out = server.run(&["webhooks", "show", &id]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.trim(), format!("courier: webhook not found (id: {id})"));
    let out = server.run(&["webhooks", "list", "--json"]).ok();
    assert_eq!(out.json()["webhooks"], json!([]));
}

#[test]
fn a_token_protected_server_needs_the_token() {
    let server = Server::start(Some("secret"));
    let execution = server.dispatch("ext.auth", json!(null));

    let out = server.run(&["exec", "list"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "courier: missing bearer token (send Authorization: Bearer <token>)"
    );
    let out = server.run(&["exec", "list", "--token", "wrong"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.trim(), "courier: invalid token");
    let out = server.run(&["exec", "list", "--token", "secret"]).ok();
    assert!(out.stdout.contains(&execution), "{out:#?}");
    let out = finish(
        courier(&["exec", "show", &execution])
            .env("COURIER_URL", &server.url)
            .env("COURIER_TOKEN", "secret")
            .spawn()
            .expect("courier runs"),
        COMMAND_LIMIT,
    )
    .ok();
    assert!(out.stdout.contains("ext.auth"), "{out:#?}");

    // The event stream takes the token too.
    let (task, lease) = server.claim("ext.auth");
    server.post(
        &format!("/v1/tasks/{task}/complete"),
        json!({"lease_token": lease, "result": "fine"}),
    );
    let out = server
        .run(&["exec", "wait", &execution, "--token", "secret", "--timeout", "20s"])
        .ok();
    assert!(out.stdout.contains("result: \"fine\""), "{out:#?}");
    let out = server.run(&["exec", "wait", &execution, "--timeout", "20s"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("missing bearer token"), "{out:#?}");
}

#[test]
fn an_unreachable_server_is_named() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = finish(
        courier(&["exec", "list", "--url", &url]).spawn().expect("runs"),
        COMMAND_LIMIT,
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with(&format!("courier: could not reach {url}: ")),
        "{out:#?}"
    );
    let out = finish(
        courier(&["dlq", "list"])
            .env("COURIER_URL", &url)
            .spawn()
            .expect("runs"),
        COMMAND_LIMIT,
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains(&format!("could not reach {url}")), "{out:#?}");
    let out = finish(
        courier(&["exec", "list", "--url", "not a url"]).spawn().expect("runs"),
        COMMAND_LIMIT,
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with("courier: invalid --url"), "{out:#?}");
}

#[test]
fn messages_go_to_providers_over_the_api_tcp_and_a_stream() {
    let redis = std::env::var("COURIER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let stream = format!("cli-stream-{}", std::process::id());
    let tcp = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(
        None,
        &[
            ("COURIER_INGEST_TCP_ADDR", tcp.clone()),
            ("COURIER_INGEST_REDIS_URL", redis.clone()),
            ("COURIER_INGEST_STREAM", stream.clone()),
            ("COURIER_INGEST_CHANNEL", "off".into()),
        ],
    );
    let result_of = |id: &str| {
        let out = server.run(&["exec", "wait", id, "--timeout", "20s", "--json"]).ok();
        out.json()
    };

    // Over the API.
    let out = server
        .run(&[
            "notify",
            "send",
            "--provider",
            "log",
            "--to",
            "ada@example.com",
            "--to",
            r#"{"chat_id": 7}"#,
            "--message",
            "hi {{ address or recipient.chat_id }}",
            "--json",
        ])
        .ok();
    let id = out.json()["id"].as_str().expect("an execution id").to_string();
    let done = result_of(&id);
    let results = done["result"].as_array().unwrap_or_else(|| panic!("{done}"));
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["ok"] == json!(true)), "{done}");

    // Over TCP, in plain words.
    let out = server
        .run(&[
            "notify",
            "send",
            "--provider",
            "log",
            "--to",
            "bob@example.com",
            "--message",
            "over tcp",
            "--tcp",
            &tcp,
        ])
        .ok();
    assert!(out.stdout.starts_with("queued: execution "), "{out:#?}");

    // A refusal names the field, and the exit code says it failed.
    let out = server.run(&[
        "notify",
        "send",
        "--provider",
        "pigeon",
        "--to",
        "a@b.c",
        "--message",
        "x",
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("invalid message") && out.stderr.contains("provider"),
        "{out:#?}"
    );
    let out = server.run(&[
        "notify",
        "send",
        "--provider",
        "log",
        "--to",
        "a@b.c",
        "--message",
        "x",
        "--tcp",
        &tcp,
        "--var",
        "broken",
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("NAME=VALUE"), "{out:#?}");

    // Through the stream: a node of the group consumes it.
    let out = server
        .run(&[
            "notify",
            "stream",
            "--provider",
            "log",
            "--to",
            "carol@example.com",
            "--message",
            "via stream",
            "--stream",
            &stream,
            "--redis",
            &redis,
            "--json",
        ])
        .ok();
    assert!(
        out.json()["entry"].as_str().is_some_and(|e| e.contains('-')),
        "{out:#?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = server.api(
            reqwest::Method::GET,
            "/v1/executions?function=courier.ingest.deliver&limit=100",
            None,
        );
        let delivered = list["executions"]
            .as_array()
            .map(|all| all.iter().any(|e| e["args"]["message"] == json!("via stream")))
            .unwrap_or(false);
        if delivered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the streamed message never became an execution: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_access_log_never_prints_a_query_token() {
    let server = Server::start_with(Some("s3cret-in-query"), &[("COURIER_LOG_LEVEL", "info".into())]);
    // Sent with the header too (`api` adds it): the query copy is what must not be logged.
    let (status, _) = server.api(
        reqwest::Method::GET,
        "/v1/executions?access_token=s3cret-in-query&limit=5",
        None,
    );
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("GET /v1/executions") {
        assert!(
            Instant::now() < deadline,
            "the request was not logged: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !server.log().contains("s3cret-in-query"),
        "a token reached the log:\n{}",
        server.log()
    );
}

#[test]
fn serve_help_lists_every_setting_variable() {
    let out = Command::new(BIN).args(["serve", "--help"]).output().expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--addr <HOST:PORT>",
        "--store <URL>",
        "COURIER_HTTP_ADDR",
        "COURIER_STORE_URL",
        "COURIER_API_TOKENS",
        "COURIER_WEBHOOKS_SECRET_KEY",
        "COURIER_HTTP_MAX_STREAMS",
        "COURIER_INGEST_PROVIDERS_<NAME>_<KEY>",
    ] {
        assert!(help.contains(needle), "{needle} missing from serve --help:\n{help}");
    }
}

#[test]
fn serve_listens_where_addr_says_over_the_environment() {
    let dir = temp_dir();
    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).expect("log file");
    let store = dir.join("flag.db");
    let mut child = Command::new(BIN)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--store"])
        .arg(&store)
        .env_remove("COURIER_CONFIG")
        .env_remove("COURIER_API_TOKENS")
        // Both lose to the flags.
        .env("COURIER_HTTP_ADDR", "127.0.0.1:1")
        .env("COURIER_STORE_URL", dir.join("env.db"))
        .env("COURIER_LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("courier serve starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
                break true;
            }
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ready,
        "no /readyz on --addr's port: {}",
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    );
    assert!(store.exists(), "the store is the one --store names");
    assert!(!dir.join("env.db").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn function_settings_are_set_shown_listed_and_deleted() {
    let server = Server::start(None);
    let out = server.run(&["functions", "show", "ext.resize"]);
    assert_eq!(out.code, 1, "nothing stored, not run there: {out:#?}");
    assert!(out.stderr.contains("not found"), "{out:#?}");
    let out = server
        .run(&[
            "functions",
            "set",
            "ext.resize",
            "--queue",
            "images",
            "--priority",
            "-2",
            "--tag",
            "gpu",
            "--timeout",
            "45s",
            "--max-concurrent",
            "3",
            "--retry",
            r#"{"initial_delay": "2s"}"#,
            "--max-attempts",
            "6",
            "--rate-limit",
            "2.5",
            "--rate-burst",
            "4",
            "--rate-key",
            "/customer",
            "--concurrency-key",
            "/account",
            "--key-max",
            "3",
        ])
        .ok();
    for needle in [
        "queue:",
        "images",
        "revision 1",
        "\"max_attempts\":6",
        "45s",
        "rate limit:",
        "2.5/s (burst 4, per /customer)",
        "3 at once per /account",
    ] {
        assert!(out.stdout.contains(needle), "{needle} missing: {out:#?}");
    }
    // New tasks take them.
    let execution = server.dispatch("ext.resize", json!({}));
    let out = server.run(&["exec", "show", &execution, "--json"]).ok();
    assert_eq!(out.json()["steps"][0]["queue"], "images", "{out:#?}");
    assert_eq!(out.json()["steps"][0]["priority"], -2);

    let out = server.run(&["functions", "list"]).ok();
    assert!(out.stdout.starts_with("NAME "), "{out:#?}");
    for needle in ["ext.resize", "rev 1", "images", "-2", "3", "6", "45s"] {
        assert!(out.stdout.contains(needle), "{needle} missing: {out:#?}");
    }
    let out = server.run(&["functions", "list", "--json"]).ok();
    assert_eq!(out.json()["functions"][0]["settings"]["max_concurrent"], 3);

    let out = server.run(&["functions", "set", "ext.resize", "--max-concurrent", "0"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("max_concurrent must be at least 1"), "{out:#?}");
    let out = server.run(&["functions", "set", "ext.resize", "--retry", "[1]"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("--retry must be a JSON object"), "{out:#?}");

    // Pausing keeps the other settings; a function with none starts from none.
    let out = server.run(&["functions", "pause", "ext.resize"]).ok();
    assert_eq!(out.stdout.trim(), "function ext.resize paused");
    let out = server.run(&["functions", "show", "ext.resize", "--json"]).ok();
    assert_eq!(out.json()["settings"]["paused"], true, "{out:#?}");
    assert_eq!(out.json()["settings"]["max_concurrent"], 3, "{out:#?}");
    let out = server.run(&["functions", "resume", "ext.resize"]).ok();
    assert_eq!(out.stdout.trim(), "function ext.resize resumed");
    let out = server.run(&["functions", "pause", "ext.fresh"]).ok();
    assert_eq!(out.stdout.trim(), "function ext.fresh paused");
    server.run(&["functions", "delete", "ext.fresh"]).ok();

    let out = server.run(&["functions", "delete", "ext.resize"]).ok();
    assert!(out.stdout.contains("settings forgotten"), "{out:#?}");
    let out = server.run(&["functions", "delete", "ext.resize"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("not found"), "{out:#?}");
}

#[test]
fn schedules_are_created_listed_triggered_paused_and_deleted() {
    let server = Server::start(None);
    let out = server
        .run(&[
            "schedules",
            "create",
            "ext.nightly",
            "--id",
            "nightly",
            "--cron",
            "0 30 2 * * *",
            "--timezone",
            "Europe/Paris",
            "--args",
            r#"{"days": 1}"#,
        ])
        .ok();
    for needle in ["nightly", "cron 0 30 2 * * * (Europe/Paris)", "active", "next slots"] {
        assert!(out.stdout.contains(needle), "{needle} missing: {out:#?}");
    }
    let out = server.run(&[
        "schedules",
        "create",
        "ext.nightly",
        "--every",
        "1s",
        "--cron",
        "* * * * *",
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("exactly one of cron and every"), "{out:#?}");
    let out = server.run(&["schedules", "create", "ext.nightly", "--every", "1h", "--args", "{nope"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--args must be JSON"), "{out:#?}");

    let out = server.run(&["schedules", "list"]).ok();
    assert!(out.stdout.starts_with("ID "), "{out:#?}");
    assert!(out.stdout.contains("ext.nightly"), "{out:#?}");
    let out = server.run(&["schedules", "trigger", "nightly"]).ok();
    assert!(
        out.stdout.starts_with("schedule nightly: started execution "),
        "{out:#?}"
    );
    let out = server.run(&["schedules", "runs", "nightly", "--json"]).ok();
    let runs = out.json()["runs"].clone();
    assert_eq!(runs[0]["reason"], "trigger", "{runs}");
    assert_eq!(runs[0]["outcome"], "fired");
    let out = server
        .run(&[
            "schedules",
            "backfill",
            "nightly",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-01-03T12:00:00Z",
        ])
        .ok();
    assert_eq!(out.stdout.trim(), "schedule nightly: started 3 slots", "{out:#?}");
    let out = server.run(&["schedules", "pause", "nightly"]).ok();
    assert!(out.stdout.starts_with("schedule nightly paused"), "{out:#?}");
    let out = server.run(&["schedules", "show", "nightly", "--json"]).ok();
    assert_eq!(out.json()["paused"], true);
    let out = server.run(&["schedules", "resume", "nightly"]).ok();
    assert!(
        out.stdout.starts_with("schedule nightly resumed; next slot: 20"),
        "{out:#?}"
    );
    let out = server.run(&["schedules", "delete", "nightly"]).ok();
    assert_eq!(out.stdout.trim(), "deleted schedule nightly");
    let out = server.run(&["schedules", "show", "nightly"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.trim(), "courier: schedule not found (id: nightly)");
}

#[test]
fn executions_and_queues_are_paused_and_resumed() {
    let server = Server::start(None);
    let work = server.dispatch("ext.work", json!({"n": 1}));

    let out = server.run(&["exec", "pause", &work]).ok();
    assert_eq!(
        out.stdout.trim(),
        format!("paused execution {work}: no worker claims its tasks until it is resumed")
    );
    let out = server.run(&["exec", "pause", &work]).ok();
    assert!(out.stdout.contains("was already paused (since 20"), "{out:#?}");
    let out = server.run(&["exec", "show", &work]).ok();
    assert!(out.stdout.contains("paused since:"), "{out:#?}");
    let out = server.run(&["exec", "show", &work, "--json"]).ok();
    assert!(out.json()["paused_at"].is_string(), "{out:#?}");
    let out = server.run(&["exec", "resume", &work]).ok();
    assert_eq!(out.stdout.trim(), format!("resumed execution {work}"));
    let out = server.run(&["exec", "resume", &work]).ok();
    assert_eq!(out.stdout.trim(), format!("execution {work} was not paused"));
    let out = server.run(&["exec", "pause", "not-an-id"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid execution id"), "{out:#?}");

    let out = server.run(&["queues", "pause", "mail"]).ok();
    assert_eq!(
        out.stdout.trim(),
        "paused queue mail: no worker claims its tasks until it is resumed"
    );
    let out = server.run(&["queues", "list"]).ok();
    assert!(out.stdout.starts_with("QUEUE "), "{out:#?}");
    let mail = out
        .stdout
        .lines()
        .find(|l| l.starts_with("mail "))
        .expect("mail listed");
    assert!(mail.contains("20"), "paused since a time: {out:#?}");
    let default = out
        .stdout
        .lines()
        .find(|l| l.starts_with("default "))
        .expect("default listed");
    assert!(default.trim_end().ends_with('-'), "default is not paused: {out:#?}");
    let out = server.run(&["queues", "resume", "mail"]).ok();
    assert_eq!(out.stdout.trim(), "resumed queue mail");
    let out = server.run(&["queues", "list", "--json"]).ok();
    assert_eq!(out.json()["paused"], json!([]), "{out:#?}");
    let out = server.run(&["queues", "resume", "mail"]).ok();
    assert_eq!(out.stdout.trim(), "queue mail was not paused");
}

#[test]
fn a_parents_child_executions_are_listed_and_shown_with_their_link() {
    let server = Server::start_with(None, &[("COURIER_TESTING_FIXTURES", "true".into())]);
    let parent = server.dispatch("fixture.family", json!({"key": "cli", "children": 2}));
    let out = server.run(&["exec", "wait", &parent, "--timeout", "20s"]).ok();
    assert!(out.stdout.contains("completed"), "{out:#?}");
    let out = server.run(&["exec", "list", "--parent", &parent, "--json"]).ok();
    let children = out.json()["executions"].as_array().cloned().unwrap_or_default();
    assert_eq!(children.len(), 2, "{out:#?}");
    let child = children[0]["id"].as_str().unwrap().to_string();
    let out = server.run(&["exec", "list", "--parent", &parent]).ok();
    assert!(
        out.stdout.contains(&child) && out.stdout.contains("fixture.pipeline"),
        "{out:#?}"
    );
    assert!(
        !out.stdout.contains("fixture.family"),
        "the parent is not its own child: {out:#?}"
    );
    let out = server.run(&["exec", "show", &child]).ok();
    assert!(out.stdout.contains(&format!("{parent} (step ")), "{out:#?}");
    assert!(out.stdout.contains("cancel when it ends"), "{out:#?}");
    let out = server.run(&["exec", "list", "--parent", "not-an-id"]);
    assert_eq!(out.code, 1, "{out:#?}");
}
