//! TLS to Postgres, for the store's pool and the notifier alike, against private
//! Postgres servers this test starts on loopback (Debian's initdb and pg_ctl, run
//! as the postgres user when the tests run as root) with a CA and a server
//! certificate made by openssl. What each `sslmode` does is checked on the
//! server's side, in `pg_stat_ssl`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_core::{Notice, Notifier, Store, StoreError, Topic};
use courier_notify::{OpenError, PostgresNotifier};
use courier_store_postgres::{PostgresOptions, PostgresStore};

const WAIT: Duration = Duration::from_secs(5);

/// A missing tool fails the test under `CI=true`; elsewhere it skips loudly.
fn missing(what: &str) {
    if common::in_ci() {
        panic!("{what}, and CI=true");
    }
    common::skip(what);
}

/// Runs `program args` as the postgres user when we are root (initdb refuses
/// root), as ourselves otherwise.
fn as_server_user(program: &str, args: &[&str], dir: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut command = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn run(mut command: Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The newest installed server's binaries (Debian keeps them off PATH).
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    versions.pop()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private Postgres cluster with trust authentication on 127.0.0.1, in a
/// scratch directory; stopped and removed on drop.
struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// Makes the certificates (the server's names only `localhost`; `other-ca.pem`
    /// is a CA that did not sign it) and starts a server, with TLS if `tls`.
    fn start(name: &str, tls: bool) -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            missing("no Postgres server binaries under /usr/lib/postgresql (apt-get install postgresql)");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("courier-pg-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The server user must own its data directory and key.
        let _ = Command::new("chown")
            .args(["postgres:", dir.to_str().unwrap()])
            .status();
        let server = PrivatePostgres {
            dir: dir.clone(),
            bin: bin.clone(),
            port: free_port(),
        };
        if let Err(e) = make_certificates(&dir) {
            missing(&format!("openssl could not make test certificates: {e}"));
            return None;
        }
        let data = dir.join("data");
        let data = data.to_str().unwrap();
        let initdb = bin.join("initdb");
        if let Err(e) = run(as_server_user(
            initdb.to_str().unwrap(),
            &["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
            &dir,
        )) {
            missing(&format!("cannot initdb a private Postgres: {e}"));
            return None;
        }
        let mut settings = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            server.port,
            dir.display()
        );
        if tls {
            settings.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.pem -c ssl_key_file={0}/server.key",
                dir.display()
            ));
        } else {
            settings.push_str(" -c ssl=off");
        }
        let pg_ctl = bin.join("pg_ctl");
        let log = dir.join("server.log");
        run(as_server_user(
            pg_ctl.to_str().unwrap(),
            &[
                "-D",
                data,
                "-o",
                &settings,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
            &dir,
        ))
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("{e}\n{log}")
        });
        Some(server)
    }

    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Whether the session with `application_name` is encrypted, asked over a
    /// separate plain connection.
    async fn ssl_of(&self, application_name: &str) -> bool {
        let (client, connection) =
            tokio_postgres::connect(&self.url("127.0.0.1", "sslmode=disable"), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = $1",
                &[&application_name],
            )
            .await
            .unwrap();
        row.get::<_, Option<bool>>(0)
            .unwrap_or_else(|| panic!("no session named {application_name}"))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let _ = run(as_server_user(
            pg_ctl.to_str().unwrap(),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"],
            &self.dir,
        ));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `ca.pem` signing `server.pem` (for `localhost` only), and an unrelated
/// `other-ca.pem`, made as the server user so that it owns `server.key`.
fn make_certificates(dir: &Path) -> Result<(), String> {
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").map_err(|e| e.to_string())?;
    let openssl = |args: &[&str]| run(as_server_user("openssl", args, dir));
    let ca = |key: &str, pem: &str, subject: &str| {
        openssl(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", pem, "-days", "2", "-subj",
            subject,
        ])
    };
    ca("ca.key", "ca.pem", "/CN=Courier test CA")?;
    ca("other-ca.key", "other-ca.pem", "/CN=Someone else's CA")?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ])
}

async fn store(url: &str) -> Result<PostgresStore, StoreError> {
    tokio::time::timeout(WAIT * 2, PostgresStore::connect(PostgresOptions::new(url).pool_size(2)))
        .await
        .expect("connecting the store took too long")
}

#[actix_rt::test]
async fn each_sslmode_is_honoured_by_the_store_and_the_notifier() {
    let Some(server) = PrivatePostgres::start("tls", true) else {
        return;
    };
    let ca = server.file("ca.pem");

    // require: encrypted, nothing verified (the server's CA is unknown here).
    let s = store(&server.url("127.0.0.1", "sslmode=require&application_name=require"))
        .await
        .unwrap();
    s.now().await.unwrap();
    assert!(server.ssl_of("require").await, "sslmode=require must encrypt");

    // prefer, against a server that offers TLS: encrypted.
    let s2 = store(&server.url("127.0.0.1", "application_name=prefer"))
        .await
        .unwrap();
    assert!(
        server.ssl_of("prefer").await,
        "the default sslmode=prefer must use TLS when offered"
    );

    // disable: plaintext.
    let s3 = store(&server.url("127.0.0.1", "sslmode=disable&application_name=disable"))
        .await
        .unwrap();
    assert!(!server.ssl_of("disable").await);

    // verify-full with the right CA and the certificate's name.
    let s4 = store(&server.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}&application_name=full"),
    ))
    .await
    .unwrap();
    assert!(server.ssl_of("full").await);

    // verify-full by an address the certificate does not name: refused...
    let err = store(&server.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}")))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("TLS") && err.contains("certificate"), "{err}");
    // ...which verify-ca accepts: the chain is what it checks.
    let s5 = store(&server.url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}&application_name=ca"),
    ))
    .await
    .unwrap();
    assert!(server.ssl_of("ca").await);

    // A CA that did not sign the server's certificate: refused by verify-full,
    // verify-ca, and by require with that sslrootcert (libpq's verify-ca).
    let other = server.file("other-ca.pem");
    for mode in ["verify-full", "verify-ca", "require"] {
        let err = store(&server.url("localhost", &format!("sslmode={mode}&sslrootcert={other}")))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("TLS") && err.contains("UnknownIssuer"), "{mode}: {err}");
    }
    // No sslrootcert: the system's roots, which do not know our CA.
    let err = store(&server.url("localhost", "sslmode=verify-full"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("certificate"), "{err}");

    // The notifier: LISTEN and NOTIFY connections over verified TLS.
    let url = server.url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let prefix = common::fresh_prefix();
    let a = PostgresNotifier::connect(&url, &prefix).await.unwrap();
    let b = PostgresNotifier::connect(&url, &prefix).await.unwrap();
    let mut work = b.subscribe(vec![Topic::Work]).await.unwrap();
    a.publish(vec![Notice::Work { queue: "tls".into() }]).await.unwrap();
    let got = tokio::time::timeout(WAIT, work.next())
        .await
        .expect("no notice over TLS");
    assert_eq!(got, Some(Notice::Work { queue: "tls".into() }));
    assert!(server.ssl_of(&b.listen_application_name()).await);
    // ...and refusing a server it cannot verify.
    let bad = server.url("localhost", &format!("sslmode=verify-full&sslrootcert={other}"));
    let err = PostgresNotifier::connect(&bad, &prefix).await.unwrap_err();
    assert!(
        matches!(&err, OpenError::Connect { reason, .. } if reason.contains("UnknownIssuer")),
        "{err:?}"
    );
    for s in [s, s2, s3, s4, s5] {
        s.close().await;
    }
}

/// A tracing writer into a shared buffer, to see what was logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn prefer_against_a_server_without_tls_connects_in_plaintext_and_says_so() {
    let Some(server) = PrivatePostgres::start("plain", false) else {
        return;
    };
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let s = store(&server.url("127.0.0.1", "sslmode=prefer&application_name=prefer"))
        .await
        .unwrap();
    s.now().await.unwrap();
    assert!(!server.ssl_of("prefer").await);
    let logged = captured.text();
    assert!(
        logged.contains("WARN") && logged.contains("PLAINTEXT") && logged.contains("127.0.0.1"),
        "{logged}"
    );
    // Once per pool, not once per connection.
    assert_eq!(logged.matches("PLAINTEXT").count(), 1, "{logged}");

    // disable asks for plaintext: nothing to warn about.
    let before = captured.text().len();
    let s2 = store(&server.url("127.0.0.1", "sslmode=disable")).await.unwrap();
    assert_eq!(captured.text().len(), before, "{}", captured.text());

    // require refuses a server without TLS.
    let err = store(&server.url("127.0.0.1", "sslmode=require"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not support TLS"), "{err}");
    s.close().await;
    s2.close().await;
}
