//! Real receivers for the ingestion tests: an HTTP server that records every
//! request (webhook, Slack and Teams providers post to it), and the SMTP
//! server the email provider's own tests use (Debian's aiosmtpd).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub webhook_id: Option<String>,
    pub body: Value,
}

/// An HTTP server on 127.0.0.1 that answers 200 to everything (after `delay`)
/// and records what it got.
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    pub async fn start(delay: Duration) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let for_app = got.clone();
        let server = HttpServer::new(move || {
            let got = for_app.clone();
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let got = got.clone();
                async move {
                    // When it arrived, not when it was answered.
                    let at = Instant::now();
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    got.lock().unwrap().push(Received {
                        at,
                        path: req.path().to_string(),
                        webhook_id: req
                            .headers()
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    });
                    HttpResponse::Ok().body("ok")
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let running = server.run();
        let handle = running.handle();
        actix_rt::spawn(running);
        Receiver {
            url: format!("http://{addr}"),
            got,
            handle,
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// What arrived at `path`.
    pub fn at_path(&self, path: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits until `done` holds for what arrived (or panics after `within`).
    pub async fn wait_until(&self, within: Duration, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver: {what} not seen within {within:?} ({} requests)",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// The aiosmtpd receiver (`crates/courier-ingest/tests/support/smtp_sink.py`);
/// addresses containing `reject` are refused with 550.
pub struct SmtpSink {
    pub port: u16,
    out: PathBuf,
    child: Child,
}

impl SmtpSink {
    pub fn start(dir: &Path) -> SmtpSink {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/courier-ingest/tests/support/smtp_sink.py");
        let out = dir.join("smtp.jsonl");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .args(["--port", "0", "--reject-substring", "reject", "--out"])
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("/usr/bin/python3 with python3-aiosmtpd is needed ({e}); scripts/test installs it")
            });
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("smtp_sink.py did not start (is python3-aiosmtpd installed?): {line:?}"));
        SmtpSink { port, out, child }
    }

    /// Every message accepted: `{mail_from, rcpt_tos, data, parsed}`.
    pub fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
