//! A Redis Cluster on loopback for the tests and the cluster bench: three
//! masters and three replicas (`redis-server --cluster-enabled yes`, node
//! timeout 2 s, no persistence), joined by `redis-cli --cluster create
//! --cluster-replicas 1`, in a scratch directory; every process is killed (and
//! the directory removed) when dropped, failing test or not. Also over TLS
//! ([`RedisCluster::start_tls`]: TLS only, for clients, the cluster bus and
//! replication, with a CA and a certificate for 127.0.0.1 made by `openssl`).
//!
//! Included by path beside `sentinel.rs`, which must be included as `mod
//! sentinel` at the crate's root (its process and port helpers are used here):
//! by the notifier's tests (`crates/courier-notify/tests/redis_cluster.rs`),
//! ingestion's (`crates/courier-ingest/tests/redis_cluster_inputs.rs`) and
//! `benches/cluster.rs`. Std and the `redis` crate's blocking client only.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sentinel::{RedisProcess, ScratchDir, free_port, on_new_ports};
use certificates::make_certificates;

#[path = "certificates.rs"]
mod certificates;

/// How long a node may go unanswered before the others fail it over.
pub const NODE_TIMEOUT_MS: u64 = 2000;

/// Three masters, three replicas.
pub struct RedisCluster {
    /// The nodes, in the order given to `redis-cli --cluster create` (which
    /// makes the first three masters).
    pub nodes: Vec<RedisProcess>,
    /// Ports of the nodes killed so far.
    pub killed: BTreeSet<u16>,
    /// With TLS: the CA file the nodes' certificate is signed by.
    pub ca: Option<PathBuf>,
    dir: ScratchDir,
}

/// One slot range and who serves it, as `CLUSTER SLOTS` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRange {
    pub first: u16,
    pub last: u16,
    pub master: u16,
    pub replicas: Vec<u16>,
}

impl RedisCluster {
    /// Starts the six nodes, creates the cluster and waits until every node says
    /// `cluster_state:ok` and knows the five others, and every replica is in sync.
    /// An error if `redis-server` or `redis-cli` cannot be run.
    pub fn start() -> Result<RedisCluster, String> {
        RedisCluster::start_with(false)
    }

    /// The same over TLS only (clients, cluster bus, replication), the nodes'
    /// certificate naming 127.0.0.1; an error also if `openssl` cannot make it.
    pub fn start_tls() -> Result<RedisCluster, String> {
        RedisCluster::start_with(true)
    }

    /// Creating a cluster can fail for reasons of the machine, not of what the
    /// tests check (a port or its cluster-bus port, ten thousand above it, taken
    /// between choosing and binding it): such a start is tried again on new ports,
    /// twice at most, saying why.
    fn start_with(tls: bool) -> Result<RedisCluster, String> {
        on_new_ports("a Redis Cluster", || RedisCluster::start_once(tls))
    }

    fn start_once(tls: bool) -> Result<RedisCluster, String> {
        let dir = ScratchDir::new("redis-cluster");
        if tls {
            make_certificates(&dir.0)?;
        }
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = free_port();
            let (plain, tls_args) = if tls {
                let tls_args = [
                    "--tls-port",
                    &port.to_string(),
                    "--tls-cluster",
                    "yes",
                    "--tls-replication",
                    "yes",
                    "--tls-cert-file",
                    "server.pem",
                    "--tls-key-file",
                    "server.key",
                    "--tls-ca-cert-file",
                    "ca.pem",
                    "--tls-auth-clients",
                    "no",
                ]
                .map(str::to_string)
                .to_vec();
                ("0".to_string(), tls_args)
            } else {
                (port.to_string(), Vec::new())
            };
            let mut args: Vec<String> = [
                "--port",
                &plain,
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--cluster-node-timeout",
                &NODE_TIMEOUT_MS.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dbfilename",
                &format!("dump-{port}.rdb"),
            ]
            .map(str::to_string)
            .to_vec();
            args.extend(tls_args);
            nodes.push(RedisProcess::spawn(port, &args, &dir.0, &format!("redis-{port}.log"))?);
        }
        let cluster = RedisCluster {
            nodes,
            killed: BTreeSet::new(),
            ca: tls.then(|| dir.0.join("ca.pem")),
            dir,
        };
        let mut create = Command::new("redis-cli");
        if let Some(ca) = &cluster.ca {
            create.arg("--tls").arg("--cacert").arg(ca);
        }
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let log = std::fs::File::create(cluster.dir.0.join("create.log")).map_err(|e| e.to_string())?;
        let status = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(log)
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run redis-cli ({e}); scripts/test installs it"))?;
        if !status.success() {
            // The scratch directory goes with the cluster: say what the log said.
            let said = std::fs::read_to_string(cluster.dir.0.join("create.log")).unwrap_or_default();
            let tail: Vec<&str> = said.lines().rev().take(8).collect();
            return Err(format!(
                "redis-cli --cluster create failed ({status}): {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        cluster.wait(
            "every node seeing a healthy cluster of six",
            Duration::from_secs(30),
            |c| {
                for port in c.alive() {
                    let mut connection = c.connect(port)?;
                    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut connection)?;
                    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut connection)?;
                    let all_known = nodes.lines().filter(|l| !l.contains("handshake")).count() == 6;
                    if !info.contains("cluster_state:ok") || !all_known {
                        return Ok(false);
                    }
                }
                Ok(c.slots()?.iter().all(|r| r.replicas.len() == 1))
            },
        )?;
        cluster.wait("every replica in sync", Duration::from_secs(30), |c| {
            for range in c.slots()? {
                for replica in range.replicas {
                    let info: String = redis::cmd("INFO").arg("replication").query(&mut c.connect(replica)?)?;
                    if !info.contains("master_link_status:up") {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })?;
        Ok(cluster)
    }

    /// The ports of the nodes not killed.
    pub fn alive(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .map(|n| n.port)
            .filter(|p| !self.killed.contains(p))
            .collect()
    }

    /// A blocking connection to the node on `port` (over TLS, trusting the CA,
    /// for a TLS cluster).
    pub fn connect(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        let client = match &self.ca {
            None => redis::Client::open(format!("redis://127.0.0.1:{port}"))?,
            Some(ca) => redis::Client::build_with_tls(
                format!("rediss://127.0.0.1:{port}"),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(ca)?),
                },
            )?,
        };
        let connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
        connection.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(connection)
    }

    /// `host:port` of every node, in start order.
    pub fn hosts(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        hosts.join(",")
    }

    /// `redis+cluster://` naming every node (`rediss+cluster://...?ssl_ca_certs=`
    /// for a TLS cluster).
    pub fn url(&self) -> String {
        match &self.ca {
            None => format!("redis+cluster://{}", self.hosts()),
            Some(ca) => format!("rediss+cluster://{}?ssl_ca_certs={}", self.hosts(), ca.display()),
        }
    }

    /// The plain comma form, `redis://a,b,...`, naming every node.
    pub fn comma_url(&self) -> String {
        match &self.ca {
            None => format!("redis://{}", self.hosts()),
            Some(ca) => format!("rediss://{}?ssl_ca_certs={}", self.hosts(), ca.display()),
        }
    }

    /// The slot map, as the first live node that answers says.
    pub fn slots(&self) -> redis::RedisResult<Vec<SlotRange>> {
        let mut last = None;
        for port in self.alive() {
            match self
                .connect(port)
                .and_then(|mut c| redis::cmd("CLUSTER").arg("SLOTS").query::<redis::Value>(&mut c))
            {
                Ok(value) => return Ok(parse_slots(&value)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| (redis::ErrorKind::Io, "no node alive").into()))
    }

    /// The masters, sorted by port.
    pub fn masters(&self) -> Vec<u16> {
        let set: BTreeSet<u16> = self.slots().unwrap().into_iter().map(|r| r.master).collect();
        set.into_iter().collect()
    }

    /// The master serving `slot`.
    pub fn master_of(&self, slot: u16) -> u16 {
        self.slots()
            .unwrap()
            .into_iter()
            .find(|r| r.first <= slot && slot <= r.last)
            .map(|r| r.master)
            .expect("every slot is served")
    }

    /// Kills the node on `port` with SIGKILL.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        node.kill();
        self.killed.insert(port);
    }

    /// Waits (up to `within`) until the live nodes agree that the master killed
    /// on `old` is replaced and the cluster is `ok` again; the new master of its
    /// slots.
    pub fn failed_over(&self, old: u16, within: Duration) -> Result<u16, String> {
        let mut new = None;
        self.wait("a replica promoted in place of the killed master", within, |c| {
            let ranges = c.slots()?;
            if ranges.iter().any(|r| r.master == old) {
                return Ok(false);
            }
            for port in c.alive() {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c.connect(port)?)?;
                if !info.contains("cluster_state:ok") {
                    return Ok(false);
                }
            }
            let before: BTreeSet<u16> = c.nodes.iter().map(|n| n.port).filter(|p| *p != old).collect();
            new = ranges
                .iter()
                .map(|r| r.master)
                .find(|m| before.contains(m) && !c.was_master_before(*m));
            Ok(true)
        })?;
        new.ok_or_else(|| "no promoted replica found".to_string())
    }

    /// Whether `port` was one of the three first (original) masters.
    fn was_master_before(&self, port: u16) -> bool {
        self.nodes.iter().take(3).any(|n| n.port == port)
    }

    /// Polls `check` every 100 ms for up to `within`.
    fn wait(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut(&Self) -> redis::RedisResult<bool>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let last = match check(self) {
                Ok(true) => return Ok(()),
                Ok(false) => "not yet".to_string(),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "waited {within:?} for {what} ({last}); logs in {}",
                    self.dir.0.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        // The processes go before the directory they write in.
        self.nodes.clear();
    }
}

/// Reads a `CLUSTER SLOTS` answer (loopback ports only).
fn parse_slots(value: &redis::Value) -> Vec<SlotRange> {
    let int = |v: &redis::Value| match v {
        redis::Value::Int(n) => *n,
        other => panic!("not a number in CLUSTER SLOTS: {other:?}"),
    };
    let port = |v: &redis::Value| match v {
        redis::Value::Array(node) => int(&node[1]) as u16,
        other => panic!("not a node in CLUSTER SLOTS: {other:?}"),
    };
    let redis::Value::Array(ranges) = value else {
        panic!("not CLUSTER SLOTS: {value:?}")
    };
    let mut out: Vec<SlotRange> = ranges
        .iter()
        .map(|range| {
            let redis::Value::Array(items) = range else {
                panic!("not a slot range: {range:?}")
            };
            SlotRange {
                first: int(&items[0]) as u16,
                last: int(&items[1]) as u16,
                master: port(&items[2]),
                replicas: items[3..].iter().map(port).collect(),
            }
        })
        .collect();
    out.sort_by_key(|r| r.first);
    out
}
