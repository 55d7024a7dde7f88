//! Redis Sentinel on loopback for the tests and the cluster bench: a master, one
//! replica and three sentinels (quorum 2), started from the `redis-server` binary
//! in a scratch directory, and all killed (the directory removed) when dropped,
//! failing test or not. Also a scripted stand-in for a sentinel, which names the
//! master it is told to and announces `+switch-master` when told to, so a test can
//! move the master without Redis killing any connection.
//!
//! One file, included by path by the notifier's tests
//! (`crates/courier-notify/tests/redis_sentinel.rs`), ingestion's
//! (`crates/courier-ingest/tests/redis_inputs.rs`, `tests/ingest.rs`) and
//! `benches/cluster.rs`: std and the `redis` crate's blocking client only, so it
//! fits each of them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The name the sentinels monitor the master by.
pub const MASTER: &str = "mymaster";

/// A free loopback port, never one this process handed out before.
///
/// The kernel may offer a port again as soon as the probing listener is
/// closed, before the server it was meant for has bound it, so two nodes
/// started in a row could otherwise be given the same port. And it is taken
/// below the kernel's ephemeral range (32768 and up unless configured
/// otherwise): a port from that range, once probed and closed, can become the
/// local end of any outgoing connection a test running beside makes (to
/// Postgres, to Redis) before the server meant for it binds, and the server
/// then fails to start. Below 22768, so that a Redis Cluster node's bus port
/// (its port + 10000) is below that range too.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = 10_000 + (rand_u64() % 12_000) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// Runs `start` (which starts servers on ports from [`free_port`]) again, up to
/// twice, when it fails for any reason but a missing `redis-server`: a port
/// can be taken by another process between the probe and the server's bind.
pub fn on_new_ports<T>(what: &str, mut start: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let mut attempt = 1;
    loop {
        match start() {
            Ok(started) => return Ok(started),
            Err(e) if attempt < 3 && !e.starts_with("cannot run") => {
                eprintln!("starting {what} failed (attempt {attempt}), trying on new ports: {e}");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The last `lines` lines of a server's log (none if it cannot be read).
fn tail(log: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A scratch directory, removed when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(what: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("courier-{what}-{:016x}", rand_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `redis-server` process (a data node or a sentinel), killed on drop.
pub struct RedisProcess {
    pub port: u16,
    child: Option<Child>,
}

impl RedisProcess {
    /// Starts `redis-server <args>` and waits until it accepts connections; an
    /// error if there is no `redis-server` to run, or it does not listen.
    ///
    /// A port can be taken by another process between [`free_port`] and the
    /// server's bind, and then the connection that says the server listens is
    /// answered by that other process: so the server must also still be
    /// running a moment after it answered (one whose bind fails exits at once).
    pub fn spawn(port: u16, args: &[String], dir: &std::path::Path, log: &str) -> Result<RedisProcess, String> {
        let log_path = dir.join(log);
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(dir)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server ({e}); scripts/test installs it"))?;
        let mut process = RedisProcess {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            process.check_running(&log_path)?;
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("redis-server did not listen on {port}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        process.check_running(&log_path)?;
        Ok(process)
    }

    /// An error naming how the server it just started ended, with its log's
    /// tail, if it has.
    fn check_running(&mut self, log: &std::path::Path) -> Result<(), String> {
        let child = self.child.as_mut().expect("spawn holds its child until it returns");
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "redis-server on {} exited ({status}):\n{}",
                self.port,
                tail(log, 5)
            )),
            Err(e) => Err(format!("redis-server on {}: {e}", self.port)),
        }
    }

    /// A data node: no persistence, `password` for clients and for its master.
    pub fn data_node(
        port: u16,
        password: Option<&str>,
        replica_of: Option<u16>,
        dir: &std::path::Path,
    ) -> Result<RedisProcess, String> {
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
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
        if let Some(password) = password {
            args.extend(["--requirepass", password, "--masterauth", password].map(str::to_string));
        }
        if let Some(master) = replica_of {
            args.extend(["--replicaof".to_string(), "127.0.0.1".into(), master.to_string()]);
        }
        RedisProcess::spawn(port, &args, dir, &format!("redis-{port}.log"))
    }

    /// Kills it with SIGKILL: no goodbye to anyone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking connection to a loopback Redis (data node or sentinel).
pub fn connect(port: u16, password: Option<&str>) -> redis::RedisResult<redis::Connection> {
    let url = match password {
        Some(password) => format!("redis://:{password}@127.0.0.1:{port}"),
        None => format!("redis://127.0.0.1:{port}"),
    };
    let connection = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
    connection.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(connection)
}

/// Passwords of a [`SentinelSet`]: the data nodes', the sentinels'.
#[derive(Clone, Debug, Default)]
pub struct Passwords {
    pub data: Option<String>,
    pub sentinel: Option<String>,
}

/// A master, one replica and three sentinels watching them (quorum 2, the master
/// down after 1 s without an answer).
pub struct SentinelSet {
    pub dir: PathBuf,
    pub passwords: Passwords,
    /// The data nodes, master first at the start.
    pub data: Vec<RedisProcess>,
    pub sentinels: Vec<RedisProcess>,
}

impl SentinelSet {
    /// Starts them and waits until the replica is in sync and every sentinel knows
    /// the replica and the two other sentinels (so that a failover can be agreed).
    /// A set that fails to come up (a server whose port another process took
    /// before it bound it, say) is started again, on new ports, up to twice.
    pub fn start(passwords: Passwords) -> Result<SentinelSet, String> {
        on_new_ports("a sentinel set", || SentinelSet::start_once(passwords.clone()))
    }

    fn start_once(passwords: Passwords) -> Result<SentinelSet, String> {
        let dir = std::env::temp_dir().join(format!("courier-sentinel-{:016x}", rand_u64()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut set = SentinelSet {
            dir: dir.clone(),
            passwords: passwords.clone(),
            data: Vec::new(),
            sentinels: Vec::new(),
        };
        let data_pw = passwords.data.as_deref();
        let master = RedisProcess::data_node(free_port(), data_pw, None, &dir)?;
        let master_port = master.port;
        set.data.push(master);
        set.data
            .push(RedisProcess::data_node(free_port(), data_pw, Some(master_port), &dir)?);
        let replica = set.data[1].port;
        set.wait("the replica in sync", || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut connect(replica, data_pw)?)?;
            Ok(info.contains("master_link_status:up"))
        })?;
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{port}.conf"));
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 3000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir = dir.display()
            );
            if let Some(pw) = data_pw {
                text.push_str(&format!("sentinel auth-pass {MASTER} {pw}\n"));
            }
            if let Some(pw) = &passwords.sentinel {
                text.push_str(&format!("requirepass {pw}\nsentinel sentinel-pass {pw}\n"));
            }
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            let args = [conf.display().to_string(), "--sentinel".into()];
            set.sentinels
                .push(RedisProcess::spawn(port, &args, &dir, &format!("sentinel-{port}.log"))?);
        }
        for sentinel in set.sentinels.iter().map(|s| s.port).collect::<Vec<_>>() {
            let pw = passwords.sentinel.clone();
            set.wait(
                "every sentinel knowing the replica and the other sentinels",
                move || {
                    let mut c = connect(sentinel, pw.as_deref())?;
                    let others: Vec<redis::Value> =
                        redis::cmd("SENTINEL").arg("sentinels").arg(MASTER).query(&mut c)?;
                    let replicas: Vec<redis::Value> =
                        redis::cmd("SENTINEL").arg("replicas").arg(MASTER).query(&mut c)?;
                    Ok(others.len() == 2 && replicas.len() == 1)
                },
            )?;
        }
        Ok(set)
    }

    /// Polls `check` every 100 ms for up to 30 s.
    fn wait(&self, what: &str, mut check: impl FnMut() -> redis::RedisResult<bool>) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = match check() {
                Ok(true) => return Ok(()),
                Ok(false) => "not yet".to_string(),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                // The directory goes when the set is dropped, which an error
                // here does at once: the logs travel in the message.
                return Err(format!("waited 30 s for {what} ({last}){}", self.log_tails()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of each process's log, for a failure's message.
    fn log_tails(&self) -> String {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
        logs.sort();
        let mut out = String::new();
        for log in logs {
            out.push_str(&format!(
                "\n--- {} (last 20 lines) ---\n{}",
                log.display(),
                tail(&log, 20)
            ));
        }
        out
    }

    /// The `redis+sentinel://` URL naming every sentinel, with both passwords.
    pub fn url(&self) -> String {
        let auth = match &self.passwords.data {
            Some(pw) => format!(":{pw}@"),
            None => String::new(),
        };
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        let query = match &self.passwords.sentinel {
            Some(pw) => format!("?sentinel_password={pw}"),
            None => String::new(),
        };
        format!("redis+sentinel://{auth}{}/{MASTER}{query}", hosts.join(","))
    }

    /// The master's port, as the first sentinel that answers says.
    pub fn master_port(&self) -> u16 {
        for sentinel in &self.sentinels {
            if let Some(port) = self.asked(sentinel.port) {
                return port;
            }
        }
        panic!("no sentinel answered; logs in {}", self.dir.display());
    }

    fn asked(&self, sentinel: u16) -> Option<u16> {
        let mut c = connect(sentinel, self.passwords.sentinel.as_deref()).ok()?;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER)
            .query(&mut c)
            .ok()?;
        Some(port)
    }

    /// A connection to the data node on `port`.
    pub fn data_connection(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        connect(port, self.passwords.data.as_deref())
    }

    /// Kills the current master with SIGKILL; its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        let node = self
            .data
            .iter_mut()
            .find(|d| d.port == port)
            .expect("the master is one of ours");
        node.kill();
        port
    }

    /// The new master's port once every sentinel names a master other than `old`
    /// and that node says it is the master; otherwise what the sentinels say.
    /// (One look, without waiting: callers poll it without blocking their runtime.)
    pub fn failed_over(&self, old: u16) -> Result<u16, String> {
        let named: Vec<Option<u16>> = self.sentinels.iter().map(|s| self.asked(s.port)).collect();
        match named.first() {
            Some(Some(new))
                if *new != old
                    && named.iter().all(|n| *n == Some(*new))
                    && self.role(*new).as_deref() == Some("master") =>
            {
                Ok(*new)
            }
            _ => Err(format!(
                "the sentinels name {named:?} (the old master was {old}); logs in {}",
                self.dir.display()
            )),
        }
    }

    fn role(&self, port: u16) -> Option<String> {
        let mut c = self.data_connection(port).ok()?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).ok()?;
        match role.first()? {
            redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        self.sentinels.clear();
        self.data.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// A stand-in for a sentinel, on a port of its own: it answers `AUTH`, `CLIENT`,
/// `PING`, `SENTINEL get-master-addr-by-name` (with the address it was last
/// given, for [`MASTER`] only) and `SUBSCRIBE`, and [`FakeSentinel::switch`]
/// announces `+switch-master` to its subscribers, as a sentinel does after a
/// failover. Nothing is done to the Redis servers themselves.
pub struct FakeSentinel {
    pub port: u16,
    master: Arc<Mutex<u16>>,
    subscribers: Arc<Mutex<Vec<TcpStream>>>,
    stopping: Arc<AtomicBool>,
}

impl FakeSentinel {
    /// Listens, naming 127.0.0.1:`master_port` as the master.
    pub fn start(master_port: u16) -> FakeSentinel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let fake = FakeSentinel {
            port: listener.local_addr().unwrap().port(),
            master: Arc::new(Mutex::new(master_port)),
            subscribers: Arc::default(),
            stopping: Arc::default(),
        };
        let (master, subscribers, stopping) = (fake.master.clone(), fake.subscribers.clone(), fake.stopping.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (master, subscribers) = (master.clone(), subscribers.clone());
                std::thread::spawn(move || serve(stream, master, subscribers));
            }
        });
        fake
    }

    /// Names 127.0.0.1:`to` from now on, without announcing it (as a sentinel
    /// whose announcement was missed).
    pub fn name(&self, to: u16) {
        *self.master.lock().unwrap() = to;
    }

    /// Names 127.0.0.1:`to` from now on and announces the move to every subscriber.
    pub fn switch(&self, to: u16) {
        let from = std::mem::replace(&mut *self.master.lock().unwrap(), to);
        let payload = format!("{MASTER} 127.0.0.1 {from} 127.0.0.1 {to}");
        let message = resp_array(&["message", "+switch-master", &payload]);
        for subscriber in self.subscribers.lock().unwrap().iter_mut() {
            let _ = subscriber.write_all(&message);
        }
    }

    /// How many connections are subscribed to `+switch-master` (closed ones included).
    pub fn watchers(&self) -> usize {
        self.subscribers.lock().unwrap().len()
    }
}

impl Drop for FakeSentinel {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for subscriber in self.subscribers.lock().unwrap().drain(..) {
            let _ = subscriber.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn resp_array(items: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for item in items {
        out.extend(format!("${}\r\n{item}\r\n", item.len()).into_bytes());
    }
    out
}

/// Answers one client of a [`FakeSentinel`] until it goes.
fn serve(stream: TcpStream, master: Arc<Mutex<u16>>, subscribers: Arc<Mutex<Vec<TcpStream>>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut subscribed = false;
    while let Some(command) = read_command(&mut reader) {
        let name = command.first().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
        let answer = match name.as_str() {
            "AUTH" | "CLIENT" => b"+OK\r\n".to_vec(),
            "PING" if subscribed => resp_array(&["pong", ""]),
            "PING" => b"+PONG\r\n".to_vec(),
            "SENTINEL" if command.get(2).map(String::as_str) == Some(MASTER) => {
                resp_array(&["127.0.0.1", &master.lock().unwrap().to_string()])
            }
            "SENTINEL" => b"*-1\r\n".to_vec(),
            "SUBSCRIBE" => {
                subscribed = true;
                subscribers.lock().unwrap().push(writer.try_clone().unwrap());
                let mut out = Vec::new();
                for (i, channel) in command[1..].iter().enumerate() {
                    out.extend(
                        format!(
                            "*3\r\n$9\r\nsubscribe\r\n${}\r\n{channel}\r\n:{}\r\n",
                            channel.len(),
                            i + 1
                        )
                        .into_bytes(),
                    );
                }
                out
            }
            _ => format!("-ERR unknown command '{name}'\r\n").into_bytes(),
        };
        if writer.write_all(&answer).is_err() {
            return;
        }
    }
}

/// One client command (an array of bulk strings); `None` when the client is gone.
fn read_command(reader: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let count: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut bytes = vec![0; len + 2];
        reader.read_exact(&mut bytes).ok()?;
        bytes.truncate(len);
        args.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    Some(args)
}
