//! What the process-level benches share: a `courier serve` process of their own,
//! a free loopback port, and `psql` for making and dropping databases.
#![allow(dead_code)] // each bench uses a part

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `sql` on the database `url` names, which must succeed.
pub fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .args([url, "-qAtc", sql])
        .stdout(Stdio::null())
        .status()
        .expect("psql runs");
    assert!(status.success(), "psql {sql:?} failed");
}

/// A fresh store for one bench run: a SQLite file in a scratch folder, or a
/// Postgres database made for it (on `COURIER_TEST_POSTGRES_URL`'s server);
/// both removed when dropped.
pub struct BenchStore {
    /// What `COURIER_STORE_URL` should say.
    pub url: String,
    dir: std::path::PathBuf,
    /// The admin URL and the database made, for Postgres.
    database: Option<(String, String)>,
}

impl BenchStore {
    /// A store of kind `store` (`sqlite` or `postgres`) for the bench `bench`.
    pub fn create(bench: &str, store: &str) -> BenchStore {
        let dir = std::env::temp_dir().join(format!("courier-{bench}-bench-{}-{store}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (url, database) = match store {
            "sqlite" => (dir.join("bench.db").display().to_string(), None),
            "postgres" => {
                let admin = std::env::var("COURIER_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".into());
                let database = format!("courier_{bench}_bench_{}", std::process::id());
                psql(&admin, &format!("CREATE DATABASE {database}"));
                let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
                (format!("{base}/{database}"), Some((admin, database)))
            }
            other => panic!("unknown store {other:?} (sqlite or postgres)"),
        };
        BenchStore { url, dir, database }
    }
}

impl Drop for BenchStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((admin, database)) = &self.database {
            psql(admin, &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
        }
    }
}

/// A `courier serve` process (`COURIER_BIN`, default target/release/courier),
/// killed and reaped when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// Starts a node on a free port with these `COURIER_*` settings (logging at
    /// `warn` unless they say otherwise) and waits until it listens.
    pub fn start(env: &[(&str, String)]) -> Server {
        let bin = std::env::var("COURIER_BIN").unwrap_or_else(|_| "target/release/courier".into());
        let port = free_port();
        let child = Command::new(&bin)
            .arg("serve")
            .env("COURIER_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("COURIER_LOG_LEVEL", "warn")
            // Benchmark receivers listen on loopback.
            .env("COURIER_WEBHOOKS_ALLOW_PRIVATE", "127.0.0.1/32,::1/128")
            // Registering a webhook needs a key to seal its secret under.
            .env(
                "COURIER_WEBHOOKS_SECRET_KEY",
                "AG997S88LNpAm0Rom4TeLVh0GSchFj+eO/whPOkGJrw=",
            )
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} ({e}); build it with cargo build --release -p courier-cli"));
        // Owned at once, so that it is killed and reaped however this ends.
        let server = Server { child, port };
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("courier serve did not listen on {port}");
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one HTTP/1.1 message head and its `Content-Length` body; `None` at EOF.
pub async fn read_message(
    reader: &mut tokio::io::BufReader<tokio::net::TcpStream>,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(Some((head, body)))
}

/// One keep-alive API connection.
pub struct Api(BufReader<TcpStream>);

impl Api {
    pub async fn connect(port: u16) -> Api {
        Api(BufReader::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap()))
    }

    pub async fn get(&mut self, path: &str) -> (String, Vec<u8>) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.0.get_mut().write_all(request.as_bytes()).await.unwrap();
        read_message(&mut self.0)
            .await
            .unwrap()
            .expect("the server closed the connection")
    }

    pub async fn post(&mut self, path: &str, body: &str) -> (String, Vec<u8>) {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.0.get_mut().write_all(request.as_bytes()).await.unwrap();
        read_message(&mut self.0)
            .await
            .unwrap()
            .expect("the server closed the connection")
    }
}
