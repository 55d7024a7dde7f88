//! `courier serve` on a non-loopback address: it refuses to start without API
//! tokens unless `api.allow_unauthenticated` says the operator means it (and then
//! warns at every start). A real binary on `0.0.0.0:<free port>`, reached over
//! loopback with plain HTTP/1.1.

mod ports;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_courier");

fn free_port() -> u16 {
    ports::free_port_on("0.0.0.0")
}

fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "courier-exposure-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A `courier serve` process, killed on drop.
struct Node {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Node {
    /// Starts `courier serve` with nothing from the test's environment but `env`,
    /// on `0.0.0.0:<port>` unless `env` names another address.
    fn spawn(env: &[(&str, &str)]) -> Node {
        let port = free_port();
        let addr = format!("0.0.0.0:{port}");
        Node::launch(&[], port, Some(&addr), env)
    }

    /// `courier serve <args>` expecting to listen on `port`; `addr`, when given,
    /// goes in `COURIER_HTTP_ADDR`.
    fn launch(args: &[&str], port: u16, addr: Option<&str>, env: &[(&str, &str)]) -> Node {
        let dir = temp_dir();
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .args(args)
            .env_remove("COURIER_CONFIG")
            .env_remove("COURIER_API_TOKENS")
            .env_remove("COURIER_API_ALLOW_UNAUTHENTICATED")
            .env_remove("COURIER_METRICS_REQUIRE_TOKEN")
            .env_remove("COURIER_HTTP_ADDR")
            .env("COURIER_STORE_URL", dir.join("courier.db"))
            .env("COURIER_LOG_LEVEL", "info,courier::http=warn")
            .env("COURIER_HTTP_WORKERS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(addr) = addr {
            command.env("COURIER_HTTP_ADDR", addr);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("courier serve starts");
        Node { child, port, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Waits for the process to exit on its own; its exit code.
    fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "still running after 30s, serving where it should have refused:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `/readyz` answers 200.
    fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("courier serve exited ({status}):\n{}", self.log());
            }
            if get(self.port, "/readyz", None).is_some_and(|(status, _)| status == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "not ready within 30s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET path` on the node's port over loopback: the status and the body.
fn get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{authorization}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

#[test]
fn a_non_loopback_address_without_tokens_is_refused_with_a_clear_message() {
    let mut node = Node::spawn(&[]);
    let code = node.exit_code();
    let log = node.log();
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("0.0.0.0"), "the message names the address: {log}");
    assert!(
        log.contains("COURIER_API_TOKENS"),
        "the message says how to fix it: {log}"
    );
    assert!(log.contains("COURIER_API_ALLOW_UNAUTHENTICATED"), "{log}");
    assert!(get(node.port, "/readyz", None).is_none(), "nothing listens");

    // Only empty tokens are no tokens.
    let mut node = Node::spawn(&[("COURIER_API_TOKENS", " , ")]);
    assert_ne!(node.exit_code(), 0, "{}", node.log());
}

#[test]
fn the_same_address_from_a_config_file_is_refused_too() {
    let dir = temp_dir();
    let port = free_port();
    let file = dir.join("exposed.toml");
    std::fs::write(&file, format!("[http]\naddr = \"0.0.0.0:{port}\"\n")).expect("config file");
    let path = file.to_str().expect("a UTF-8 path");
    let mut node = Node::launch(&["--config", path], port, None, &[]);
    let code = node.exit_code();
    let log = node.log();
    assert_ne!(code, 0, "{log}");
    assert!(log.contains(&format!("0.0.0.0:{port}")), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_a_token_it_serves_and_the_api_wants_the_token() {
    let mut node = Node::spawn(&[("COURIER_API_TOKENS", "s3cret")]);
    node.ready();
    assert_eq!(get(node.port, "/v1/executions", None).map(|(s, _)| s), Some(401));
    assert_eq!(
        get(node.port, "/v1/executions", Some("s3cret")).map(|(s, _)| s),
        Some(200)
    );
    assert!(!node.log().contains("allow_unauthenticated"), "{}", node.log());
}

#[test]
fn allow_unauthenticated_serves_the_open_api_and_warns_at_start() {
    let mut node = Node::spawn(&[("COURIER_API_ALLOW_UNAUTHENTICATED", "true")]);
    node.ready();
    assert_eq!(get(node.port, "/v1/executions", None).map(|(s, _)| s), Some(200));
    let log = node.log();
    assert!(
        log.contains("WARN") && log.contains("api.allow_unauthenticated"),
        "a loud warning at start: {log}"
    );
}

#[test]
fn loopback_without_tokens_still_serves_without_a_warning() {
    let port = free_port();
    let mut node = Node::launch(&[], port, Some(&format!("127.0.0.1:{port}")), &[]);
    node.ready();
    assert_eq!(get(port, "/v1/executions", None).map(|(s, _)| s), Some(200));
    assert!(!node.log().contains("allow_unauthenticated"), "{}", node.log());
}
