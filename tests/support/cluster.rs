//! Real `courier serve` processes sharing one Postgres database (and a notifier),
//! for the cluster and fault tests; a private Redis server those tests can stop;
//! and the effects journal the nodes' fixture functions write.
//!
//! Every node runs the `courier` binary built from this workspace, with
//! `testing.fixtures` on, on its own loopback port, logging to a file that a
//! failing test prints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{get, post};

/// The workspace's target directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The `courier` binary: `COURIER_BIN` if set (scripts/test sets it to the one
/// its workspace build made), else built once per test run.
pub fn courier_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("COURIER_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "courier-cli"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build -p courier-cli failed");
        target_dir().join("debug").join("courier")
    })
    .clone()
}

pub use super::sentinel::free_port;

/// A scratch directory for one test (see [`super::leftovers`]).
pub fn scratch(name: &str) -> PathBuf {
    super::leftovers::scratch_dir_for(name)
}

/// Runs `sql` on the database `url` names, which must succeed.
pub fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([url, "-qAtc", sql])
        .output()
        .unwrap_or_else(|e| panic!("psql must be installed ({e}); scripts/test installs it"));
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `sql` prints on the database `url` names (unaligned, tuples only); it must succeed.
pub fn psql_output(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-qAtc", sql])
        .output()
        .unwrap_or_else(|e| panic!("psql must be installed ({e}); scripts/test installs it"));
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A database of its own on the test Postgres, dropped at the end.
pub struct Database {
    pub url: String,
    admin: String,
    name: String,
}

impl Database {
    /// A database on the test Postgres (`COURIER_TEST_POSTGRES_URL`).
    pub fn create() -> Database {
        Database::create_on(&super::postgres_url())
    }

    /// A database on the server `admin` (a URL of an existing database there) reaches.
    pub fn create_on(admin: &str) -> Database {
        let admin = admin.to_string();
        let name = format!("courier_cluster_{}", uuid::Uuid::new_v4().simple());
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let (base, _) = admin.rsplit_once('/').expect("a database name in the URL");
        Database {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.admin.as_str(),
                "-qAtc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One `courier serve` process.
pub struct Node {
    pub name: String,
    pub url: String,
    port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    fd_limit: Option<u64>,
}

impl Node {
    /// Starts a node called `name` with `env` (COURIER_* settings) on a free port.
    pub fn spawn(name: &str, dir: &Path, env: Vec<(String, String)>) -> Node {
        Node::spawn_with_fd_limit(name, dir, env, None)
    }

    /// [`Node::spawn`] under `ulimit -n` (soft and hard) of `fd_limit`, if given.
    pub fn spawn_with_fd_limit(name: &str, dir: &Path, env: Vec<(String, String)>, fd_limit: Option<u64>) -> Node {
        Node::spawn_on(name, dir, env, fd_limit, free_port())
    }

    /// [`Node::spawn_with_fd_limit`] on `port` (taken or not: see [`Node::ready`]).
    pub fn spawn_on(name: &str, dir: &Path, env: Vec<(String, String)>, fd_limit: Option<u64>, port: u16) -> Node {
        let mut node = Node {
            name: name.to_string(),
            url: format!("http://127.0.0.1:{port}"),
            port,
            env,
            log: dir.join(format!("{name}.log")),
            child: None,
            fd_limit,
        };
        node.start();
        node
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = match self.fd_limit {
            // `exec`: the node is the shell's process, so its pid is the child's.
            Some(limit) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" serve"))
                    .arg(courier_bin());
                c
            }
            None => {
                let mut c = Command::new(courier_bin());
                c.arg("serve");
                c
            }
        };
        command
            .env_remove("COURIER_CONFIG")
            .env_remove("COURIER_API_TOKENS")
            .env("COURIER_HTTP_ADDR", format!("127.0.0.1:{}", self.port))
            .env("COURIER_NODE_ID", &self.name)
            .env("COURIER_HTTP_WORKERS", "1")
            .env("COURIER_TESTING_FIXTURES", "true")
            // Webhook receivers of these tests listen on loopback.
            .env("COURIER_WEBHOOKS_ALLOW_PRIVATE", "127.0.0.1/32,::1/128")
            .env("COURIER_WEBHOOKS_SECRET_KEY", super::WEBHOOK_SECRET_KEY)
            .env("COURIER_LOG_LEVEL", "info,courier::http=warn")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        self.child = Some(command.spawn().expect("courier serve starts"));
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Waits until `/readyz` answers 200.
    ///
    /// A free port can still be taken by another process (an outgoing
    /// connection's source port, say) between [`free_port`] and the node's
    /// bind; a node that loses its port that way is started again on a new one.
    pub async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut port_retries = 3;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                if port_retries > 0 && self.log().contains("Address already in use") {
                    port_retries -= 1;
                    eprintln!(
                        "node {}: port {} was taken; starting it on another",
                        self.name, self.port
                    );
                    self.child = None;
                    self.port = free_port();
                    self.url = format!("http://127.0.0.1:{}", self.port);
                    // The next failure must be told apart from this one.
                    let _ = std::fs::rename(&self.log, self.log.with_extension(format!("log.{port_retries}")));
                    self.start();
                    continue;
                }
                panic!(
                    "node {} exited ({status}) before it was ready:\n{}",
                    self.name,
                    self.log()
                );
            }
            let ok = super::http::client()
                .get(self.at("/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map(|r| r.status().as_u16() == 200)
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} not ready after 60s:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9`: the process dies holding whatever it holds.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and returns at once (the node stops in its own time).
    pub fn signal_term(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
    }

    /// SIGTERM, then waits for the process to exit (a graceful stop).
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of a Prometheus counter on `/metrics` (0 if absent).
    pub async fn counter(&self, name: &str) -> f64 {
        let body = super::http::client()
            .get(self.at("/metrics"))
            .send()
            .await
            .unwrap()
            .body()
            .await
            .unwrap();
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("----- log of node {} -----\n{}", self.name, self.log());
        }
    }
}

/// Which notifier the nodes share.
#[derive(Clone, Debug)]
pub enum Notifier {
    /// Redis pub/sub at this URL.
    Redis(String),
    /// LISTEN/NOTIFY on the cluster's own database.
    Postgres,
}

/// Several nodes on one database and one notifier.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub db: Database,
    pub effects: PathBuf,
    pub dir: PathBuf,
    pub prefix: String,
}

impl Cluster {
    /// Starts `names.len()` nodes; `env` applies to all of them, `per_node` to one.
    pub async fn start(
        names: &[&str],
        notifier: Notifier,
        env: &[(&str, &str)],
        per_node: impl Fn(&str) -> Vec<(String, String)>,
    ) -> Cluster {
        Cluster::start_on(Database::create(), names, notifier, env, per_node).await
    }

    /// [`start`](Self::start), on the database `db`.
    pub async fn start_on(
        db: Database,
        names: &[&str],
        notifier: Notifier,
        env: &[(&str, &str)],
        per_node: impl Fn(&str) -> Vec<(String, String)>,
    ) -> Cluster {
        let dir = scratch("cluster");
        let effects = dir.join("effects.log");
        let prefix = format!("ct{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let notifier_url = match &notifier {
            Notifier::Redis(url) => url.clone(),
            Notifier::Postgres => db.url.clone(),
        };
        let mut nodes = Vec::new();
        for name in names {
            let mut vars: Vec<(String, String)> = vec![
                ("COURIER_STORE_URL".into(), db.url.clone()),
                // Four three-node clusters share the test Postgres at once
                // (stock max_connections = 100): a pool of 6 each (plus the
                // notifier's) keeps them under it however busy they get.
                ("COURIER_STORE_POOL_SIZE".into(), "6".into()),
                ("COURIER_NOTIFIER_URL".into(), notifier_url.clone()),
                ("COURIER_NOTIFIER_PREFIX".into(), prefix.clone()),
                ("COURIER_TESTING_EFFECTS_FILE".into(), effects.display().to_string()),
                ("COURIER_WORKER_LEASE".into(), "4s".into()),
                ("COURIER_WORKER_HEARTBEAT".into(), "1s".into()),
                ("COURIER_MAINTENANCE_STUCK_AFTER".into(), "3s".into()),
            ];
            vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            vars.extend(per_node(name));
            nodes.push(Node::spawn(name, &dir, vars));
        }
        for node in &mut nodes {
            node.ready().await;
        }
        Cluster {
            nodes,
            db,
            effects,
            dir,
            prefix,
        }
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).expect("a node of that name")
    }

    /// The node called `name`, mutably.
    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .expect("a node of that name")
    }

    /// The effects journal so far.
    pub fn effects(&self) -> Vec<Effect> {
        Effect::read(&self.effects)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill9();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One line of the effects journal (see `crates/courier-cli/src/fixtures.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct Effect {
    pub what: String,
    pub key: String,
    pub node: String,
    pub pid: u32,
    pub nanos: u128,
}

impl Effect {
    pub fn read(path: &Path) -> Vec<Effect> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                assert_eq!(f.len(), 5, "a malformed effects line: {line:?}");
                Effect {
                    what: f[0].into(),
                    key: f[1].into(),
                    node: f[2].into(),
                    pid: f[3].parse().unwrap(),
                    nanos: f[4].parse().unwrap(),
                }
            })
            .collect()
    }

    /// Completed runs (`end` lines) per key.
    pub fn ends_by_key(effects: &[Effect]) -> HashMap<String, Vec<Effect>> {
        let mut by_key: HashMap<String, Vec<Effect>> = HashMap::new();
        for e in effects.iter().filter(|e| e.what == "end") {
            by_key.entry(e.key.clone()).or_default().push(e.clone());
        }
        by_key
    }
}

/// Dispatches `function(args)` through `node`; the execution id.
pub async fn dispatch(node: &Node, function: &str, args: Value) -> String {
    let (status, body) = post(
        &node.at("/v1/executions"),
        &serde_json::json!({ "function": function, "args": args }),
    )
    .await;
    assert_eq!(status, 201, "dispatch through {}: {body}", node.name);
    body["id"].as_str().unwrap().to_string()
}

/// Long-polls `GET /v1/executions/{id}/result?wait=` on `node` until the execution
/// finishes (or `within` passes); the last body.
pub async fn result(node: &Node, id: &str, within: Duration) -> (u16, Value) {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = get(&node.at(&format!("/v1/executions/{id}/result?wait=5s"))).await;
        if status != 202 || Instant::now() >= deadline {
            return (status, body);
        }
    }
}

/// A Redis server of a test's own (so the test may stop it), on a free port.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server must be installed ({e}); scripts/test installs it"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (every connection drops; pub/sub messages meanwhile are lost).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL server of a test's own (so the test may restart it): a fresh
/// cluster made by `initdb` in a scratch directory, on a free loopback port.
pub struct PostgresServer {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

impl PostgresServer {
    pub fn start() -> PostgresServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql (scripts/test installs them)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = scratch("pg");
        let server = PostgresServer {
            port: free_port(),
            dir,
            bin,
        };
        server.give_to_postgres();
        server.run(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "--no-instructions",
            ],
        );
        server.up();
        server
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs a server program as the owner of the data directory (initdb and the
    /// server refuse to run as root).
    fn run_as_owner(&self, program: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
        let path = self.bin.join(program);
        if running_as_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()
        } else {
            Command::new(&path).args(args).output()
        }
    }

    /// [`run_as_owner`](Self::run_as_owner), which must succeed.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .run_as_owner(program, args)
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn give_to_postgres(&self) {
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown of {}", self.dir.display());
        }
    }

    fn up(&self) {
        // Asynchronous commit on purpose: an immediate stop then loses the last
        // commits the nodes were told succeeded, as a failover to a lagging
        // standby would, and the nodes must recover from that too.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// A URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Makes every commit so far survive an immediate stop: a synchronous
    /// commit writes out the WAL before it, the asynchronous commits included.
    /// (Left to itself, the WAL writer of a starved server can lag by seconds.)
    pub fn make_durable(&self) {
        psql(&self.url(), "SET synchronous_commit = on; SELECT txid_current();");
    }

    /// Stops the server abruptly (`-m immediate`: connections die, as in a crash)
    /// and starts it again after `down`.
    pub fn restart(&self, down: Duration) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
        std::thread::sleep(down);
        self.up();
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run_as_owner("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether this process runs as root.
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
