//! Each provider against a real receiver on loopback, no mocks: an SMTP server
//! (aiosmtpd, `tests/support/smtp_sink.py`, run by Debian's `/usr/bin/python3`
//! with `python3-aiosmtpd`) for email, and a minimal HTTP/1.1 server started in
//! the test for Slack, Teams and webhooks.
//!
//! Every test is bounded in time, and the SMTP server is a child process owned
//! by a guard that kills it when the test ends, passing or panicking.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use courier_core::ExecutionId;
use courier_ingest::Recipient;
use courier_ingest::provider::{
    Delivery, EmailProvider, Provider, ProviderConfig, Rendered, SlackProvider, TeamsProvider, WebhookProvider,
};
use courier_webhooks::signing::{new_secret, verify_seed, verify_standard};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest any test here may run.
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Runs a test body, failing it if it outlasts [`TEST_LIMIT`].
async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("the test did not finish in time");
}

fn config(pairs: &[(&str, &str)]) -> ProviderConfig {
    let mut config = ProviderConfig::default();
    for (key, value) in pairs {
        config
            .settings
            .insert(key.to_string(), Value::String(value.to_string()));
    }
    config
}

fn delivery(execution_id: ExecutionId, index: usize, recipient: Recipient, rendered: Rendered) -> Delivery {
    Delivery {
        id: format!("{execution_id}:{index}"),
        execution_id,
        index,
        recipient,
        rendered,
        vars: serde_json::Map::new(),
        attempt: 1,
    }
}

fn rendered(subject: Option<&str>, text: &str, html: Option<&str>) -> Rendered {
    Rendered {
        subject: subject.map(str::to_string),
        text: text.to_string(),
        html: html.map(str::to_string),
    }
}

fn named(name: &str, address: &str) -> Recipient {
    Recipient {
        name: Some(name.to_string()),
        ..Recipient::at(address)
    }
}

// ---------------------------------------------------------------- SMTP ----

/// `smtp_sink.py` running as a child process; killed (and its files removed)
/// when dropped.
struct SmtpSink {
    child: Child,
    port: u16,
    out: PathBuf,
    err: PathBuf,
}

impl SmtpSink {
    fn start(extra: &[&str]) -> SmtpSink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let stem = format!("courier-smtp-sink-{}-{}", std::process::id(), uuid::Uuid::new_v4());
        let out = std::env::temp_dir().join(format!("{stem}.jsonl"));
        let err = std::env::temp_dir().join(format!("{stem}.err"));
        let stderr = File::create(&err).expect("a file for the sink's stderr");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .args(["--port", "0", "--out"])
            .arg(&out)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("/usr/bin/python3 runs (Debian's python3 with python3-aiosmtpd)");
        let stdout = child.stdout.take().expect("the sink's stdout is piped");
        // The guard exists before anything can panic, so the child dies with it.
        let mut sink = SmtpSink {
            child,
            port: 0,
            out,
            err,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        match line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()) {
            Some(port) => sink.port = port,
            None => panic!(
                "smtp_sink.py did not start (is python3-aiosmtpd installed?): first line {line:?}, stderr:\n{}",
                std::fs::read_to_string(&sink.err).unwrap_or_default()
            ),
        }
        sink
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages received so far, one JSON object each.
    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("the sink writes JSON lines"))
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_file(&self.err);
    }
}

/// A message body as the sink's parser returns it, with line ends normalised.
fn content(part: &Value) -> String {
    part["content"]
        .as_str()
        .unwrap_or_default()
        .replace("\r\n", "\n")
        .trim_end()
        .to_string()
}

#[tokio::test]
async fn email_one_transaction_per_recipient_against_a_real_smtp_server() {
    bounded(async {
        let sink = SmtpSink::start(&["--reject-substring", "reject", "--defer-substring", "defer"]);
        let provider = EmailProvider::new(
            "email",
            &config(&[
                ("smtp_url", &sink.url()),
                ("from", "Courier <noreply@example.com>"),
                ("reply_to", "Support <support@example.com>"),
            ]),
            Duration::from_secs(10),
        )
        .expect("the email provider sets up");
        let execution = ExecutionId::new();

        // A named recipient, a UTF-8 subject, text and HTML: delivered.
        let zoe = named("Zoë Ådler", "zoe@example.com");
        assert_eq!(provider.check_recipient(&zoe), Ok(()));
        let text = "Hallo Zoë,\nIhre Bestellung ist unterwegs.";
        let html = "<p>Hallo <b>Zoë</b>, Ihre Bestellung ist unterwegs.</p>";
        let first = delivery(execution, 0, zoe, rendered(Some("Grüße ✓"), text, Some(html)));
        let detail = provider.deliver(&first).await.expect("the good recipient is delivered");
        assert_eq!(
            detail, "250 2.0.0 Ok: queued as sink",
            "the detail quotes the server's reply"
        );

        // A recipient the server rejects: permanent, with the server's words.
        let rejected = delivery(
            execution,
            1,
            Recipient::at("reject-me@example.com"),
            rendered(Some("Grüße ✓"), text, Some(html)),
        );
        let error = provider.deliver(&rejected).await.expect_err("the server rejects it");
        assert!(error.permanent, "a 550 is permanent: {error:?}");
        assert_eq!(
            error.detail,
            "550 5.1.1 <reject-me@example.com>: Recipient address rejected"
        );

        // A 4xx: transient, with the server's words.
        let deferred = delivery(
            execution,
            2,
            Recipient::at("defer-me@example.com"),
            rendered(None, text, None),
        );
        let error = provider.deliver(&deferred).await.expect_err("the server defers it");
        assert!(!error.permanent, "a 451 is transient: {error:?}");
        assert_eq!(
            error.detail,
            "451 4.2.1 <defer-me@example.com>: Mailbox busy, try again later"
        );

        // After those failures the provider still delivers (a fresh connection):
        // a bare address, text only.
        let plain = delivery(
            execution,
            3,
            Recipient::at("plain@example.com"),
            rendered(Some("Plain"), "just text", None),
        );
        let detail = provider.deliver(&plain).await.expect("the plain message is delivered");
        assert!(detail.starts_with("250 "), "{detail}");

        let messages = sink.messages();
        assert_eq!(
            messages.len(),
            2,
            "only the accepted recipients' messages arrive: {messages:#?}"
        );

        let good = &messages[0];
        assert_eq!(good["mail_from"], "noreply@example.com");
        assert_eq!(
            good["rcpt_tos"],
            json!(["zoe@example.com"]),
            "one recipient per transaction"
        );
        let parsed = &good["parsed"];
        assert_eq!(parsed["subject"], "Grüße ✓");
        assert_eq!(parsed["to_display_name"], "Zoë Ådler");
        assert_eq!(parsed["to_address"], "zoe@example.com");
        assert_eq!(parsed["from"], "Courier <noreply@example.com>");
        assert_eq!(parsed["reply_to"], "Support <support@example.com>");
        assert_eq!(parsed["message_id"], format!("<{execution}.0@example.com>"));
        assert!(parsed["date"].is_string(), "a Date header: {parsed}");
        assert_eq!(parsed["content_type"], "multipart/alternative");
        let parts = parsed["parts"].as_array().expect("parts");
        assert_eq!(parts.len(), 2, "{parts:#?}");
        assert_eq!(parts[0]["content_type"], "text/plain");
        assert_eq!(content(&parts[0]), text);
        assert_eq!(parts[1]["content_type"], "text/html");
        assert_eq!(content(&parts[1]), html);
        // The headers themselves are ASCII: the subject and the name travel as
        // RFC 2047 encoded words.
        let raw = good["data"].as_str().expect("raw data");
        let headers = raw.split("\r\n\r\n").next().unwrap_or_default();
        assert!(headers.is_ascii(), "non-ASCII in the headers:\n{headers}");
        let subject_line = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("subject:"))
            .expect("a Subject header");
        assert!(subject_line.contains("=?utf-8?"), "{subject_line}");

        let plain = &messages[1];
        assert_eq!(plain["rcpt_tos"], json!(["plain@example.com"]));
        assert_eq!(plain["parsed"]["subject"], "Plain");
        assert_eq!(plain["parsed"]["to"], "plain@example.com");
        assert_eq!(plain["parsed"]["to_display_name"], "");
        assert_eq!(plain["parsed"]["content_type"], "text/plain");
        assert_eq!(content(&plain["parsed"]["parts"][0]), "just text");
        assert_eq!(plain["parsed"]["message_id"], format!("<{execution}.3@example.com>"));
    })
    .await;
}

#[tokio::test]
async fn email_the_message_id_is_the_same_on_every_attempt() {
    bounded(async {
        let sink = SmtpSink::start(&[]);
        let provider = courier_ingest::provider::build(
            "mail",
            &ProviderConfig {
                kind: Some("email".into()),
                ..config(&[("smtp_url", &sink.url()), ("from", "noreply@example.com")])
            },
        )
        .expect("build makes an email provider");
        let execution = ExecutionId::new();
        let mut attempt = delivery(
            execution,
            7,
            Recipient::at("ada@example.com"),
            rendered(None, "hi", None),
        );
        provider.deliver(&attempt).await.expect("first attempt");
        attempt.attempt = 2;
        provider.deliver(&attempt).await.expect("second attempt");
        let messages = sink.messages();
        assert_eq!(messages.len(), 2);
        let ids: Vec<&Value> = messages.iter().map(|m| &m["parsed"]["message_id"]).collect();
        assert_eq!(ids[0], &json!(format!("<{execution}.7@example.com>")));
        assert_eq!(ids[0], ids[1], "a receiver can drop the second as a duplicate");
    })
    .await;
}

#[tokio::test]
async fn email_a_refused_connection_is_transient() {
    bounded(async {
        // A port nothing listens on, held (bound, never listening) for the whole
        // test: a port let go could be taken by a test running beside this one,
        // whose server would then answer instead of refusing.
        let held = tokio::net::TcpSocket::new_v4().expect("socket");
        held.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let port = held.local_addr().expect("addr").port();
        let provider = EmailProvider::new(
            "email",
            &config(&[
                ("smtp_url", &format!("smtp://127.0.0.1:{port}")),
                ("from", "noreply@example.com"),
            ]),
            Duration::from_secs(5),
        )
        .expect("the email provider sets up");
        let attempt = delivery(
            ExecutionId::new(),
            0,
            Recipient::at("ada@example.com"),
            rendered(Some("hi"), "hi", None),
        );
        let error = provider.deliver(&attempt).await.expect_err("nothing listens");
        assert!(!error.permanent, "a refused connection may pass later: {error:?}");
        assert!(error.detail.contains(&format!("127.0.0.1:{port}")), "{}", error.detail);
        assert!(error.detail.to_lowercase().contains("refused"), "{}", error.detail);
    })
    .await;
}

// ---------------------------------------------------------------- HTTP ----

/// One request the HTTP receiver took.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1:0. The status it answers is the last
/// path segment (`/hook/404` answers 404; anything else 200), with a body like
/// the services' own; 429 comes with `Retry-After: 7`. Stops when dropped.
struct HttpReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpReceiver {
    async fn start() -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the HTTP receiver");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(serve(stream, store));
            }
        });
        HttpReceiver { addr, received, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request, records it, answers per its path, closes. The request is
/// recorded before the answer leaves, so a test sees it once its call returns.
async fn serve(mut stream: TcpStream, store: Arc<Mutex<Vec<Received>>>) -> Option<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (request_line.next()?.to_string(), request_line.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);

    let status: u16 = path.rsplit('/').next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let (reason, text, extra) = match status {
        200 => ("OK", "ok", ""),
        202 => ("Accepted", "", ""),
        404 => ("Not Found", "no_service", ""),
        410 => ("Gone", "channel_is_archived", ""),
        429 => ("Too Many Requests", "rate_limited", "Retry-After: 7\r\n"),
        500 => ("Internal Server Error", "internal error", ""),
        _ => ("Whatever", "", ""),
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{text}",
        text.len()
    );
    store.lock().unwrap_or_else(|p| p.into_inner()).push(Received {
        method,
        path,
        headers,
        body,
    });
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    Some(())
}

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn slack(receiver: &HttpReceiver, path: &str) -> SlackProvider {
    SlackProvider::new("slack", &config(&[("webhook_url", &receiver.url(path))]), HTTP_TIMEOUT).expect("slack sets up")
}

#[tokio::test]
async fn slack_posts_text_with_the_subject_in_bold() {
    bounded(async {
        let receiver = HttpReceiver::start().await;
        let provider = slack(&receiver, "/services/T0/B0/200");
        let to_channel = Recipient {
            channel_id: Some(json!("C0123")),
            ..Recipient::default()
        };
        let detail = provider
            .deliver(&delivery(
                ExecutionId::new(),
                0,
                to_channel,
                rendered(Some("Disk"), "at 91%", None),
            ))
            .await
            .expect("delivered");
        assert_eq!(detail, "HTTP 200: ok");
        provider
            .deliver(&delivery(
                ExecutionId::new(),
                0,
                Recipient::default(),
                rendered(None, "no subject", None),
            ))
            .await
            .expect("delivered");

        let requests = receiver.take();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].path, "/services/T0/B0/200");
        assert_eq!(requests[0].header("content-type"), Some("application/json"));
        assert_eq!(
            requests[0].json(),
            json!({"text": "*Disk*\nat 91%", "channel": "C0123"})
        );
        assert_eq!(requests[1].json(), json!({"text": "no subject"}));
    })
    .await;
}

#[tokio::test]
async fn slack_answers_decide_permanent_or_transient() {
    bounded(async {
        let receiver = HttpReceiver::start().await;
        let attempt = delivery(
            ExecutionId::new(),
            0,
            Recipient::default(),
            rendered(None, "hello", None),
        );

        for (status, body) in [(404, "no_service"), (410, "channel_is_archived")] {
            let error = slack(&receiver, &format!("/hook/{status}"))
                .deliver(&attempt)
                .await
                .expect_err("refused");
            assert!(error.permanent, "{status} is permanent: {error:?}");
            assert_eq!(error.detail, format!("HTTP {status}: {body}"));
            assert_eq!(error.retry_after, None);
        }

        let error = slack(&receiver, "/hook/500")
            .deliver(&attempt)
            .await
            .expect_err("server error");
        assert!(!error.permanent, "500 is transient: {error:?}");
        assert_eq!(error.detail, "HTTP 500: internal error");

        let error = slack(&receiver, "/hook/429")
            .deliver(&attempt)
            .await
            .expect_err("rate limited");
        assert!(!error.permanent, "429 is transient: {error:?}");
        assert_eq!(
            error.retry_after,
            Some(Duration::from_secs(7)),
            "Retry-After is honoured"
        );
        assert_eq!(error.detail, "HTTP 429: rate_limited");

        assert_eq!(receiver.take().len(), 4, "every attempt reached the receiver");
    })
    .await;
}

#[tokio::test]
async fn teams_posts_an_adaptive_card() {
    bounded(async {
        let receiver = HttpReceiver::start().await;
        let provider = TeamsProvider::new(
            "teams",
            &config(&[("webhook_url", &receiver.url("/workflows/202"))]),
            HTTP_TIMEOUT,
        )
        .expect("teams sets up");
        let detail = provider
            .deliver(&delivery(
                ExecutionId::new(),
                0,
                Recipient::default(),
                rendered(Some("Deploy done"), "v1.2 is live", None),
            ))
            .await
            .expect("delivered");
        assert_eq!(detail, "HTTP 202");

        let requests = receiver.take();
        assert_eq!(requests.len(), 1);
        let body = requests[0].json();
        assert_eq!(body["type"], "message");
        let attachments = body["attachments"].as_array().expect("attachments");
        assert_eq!(attachments.len(), 1);
        assert_eq!(attachments[0]["contentType"], "application/vnd.microsoft.card.adaptive");
        let card = &attachments[0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
        assert!(card["version"].is_string());
        assert_eq!(card["body"][0]["type"], "TextBlock");
        assert_eq!(card["body"][0]["text"], "Deploy done");
        assert_eq!(card["body"][0]["weight"], "Bolder");
        assert_eq!(card["body"][1]["text"], "v1.2 is live");

        let error = TeamsProvider::new(
            "teams",
            &config(&[("webhook_url", &receiver.url("/workflows/404"))]),
            HTTP_TIMEOUT,
        )
        .expect("teams sets up")
        .deliver(&delivery(
            ExecutionId::new(),
            0,
            Recipient::default(),
            rendered(None, "x", None),
        ))
        .await
        .expect_err("a removed workflow");
        assert!(error.permanent, "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn webhook_posts_a_signed_body_that_verifies() {
    bounded(async {
        let receiver = HttpReceiver::start().await;
        let secret = new_secret();
        let provider = WebhookProvider::new(
            "webhook",
            &config(&[("url", &receiver.url("/in/200")), ("secret", &secret)]),
            HTTP_TIMEOUT,
        )
        .expect("webhook sets up");
        let mut attempt = delivery(
            ExecutionId::new(),
            2,
            named("Ada", "ada@example.com"),
            rendered(Some("Order"), "shipped", None),
        );
        attempt.vars.insert("order".into(), json!(42));
        let detail = provider.deliver(&attempt).await.expect("delivered");
        assert_eq!(detail, "HTTP 200: ok");

        let requests = receiver.take();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        let body = request.json();
        assert_eq!(body["id"], attempt.id);
        assert_eq!(body["index"], 2);
        assert_eq!(body["attempt"], 1);
        assert_eq!(body["subject"], "Order");
        assert_eq!(body["message"], "shipped");
        assert_eq!(body["recipient"]["account"]["address"], "ada@example.com");
        assert_eq!(body["vars"]["order"], 42);
        assert_eq!(request.header("x-courier-delivery"), Some(attempt.id.as_str()));

        let id = request.header("webhook-id").expect("webhook-id");
        assert_eq!(id, attempt.id, "webhook-id is the stable delivery id");
        let timestamp: i64 = request
            .header("webhook-timestamp")
            .and_then(|t| t.parse().ok())
            .expect("a numeric webhook-timestamp");
        assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
        let standard = request.header("webhook-signature").expect("webhook-signature");
        assert!(verify_standard(&secret, id, timestamp, &request.body, standard));
        let seed = request.header("x-webhook-signature").expect("X-Webhook-Signature");
        assert!(verify_seed(&secret, &request.body, seed));
        // And they are signatures of this body with this secret, not anything.
        let mut tampered = request.body.clone();
        tampered.push(b' ');
        assert!(!verify_standard(&secret, id, timestamp, &tampered, standard));
        assert!(!verify_seed(&secret, &tampered, seed));
        assert!(!verify_seed(&new_secret(), &request.body, seed));

        // Without a secret, nothing is signed.
        WebhookProvider::new("webhook", &config(&[("url", &receiver.url("/in/200"))]), HTTP_TIMEOUT)
            .expect("webhook sets up")
            .deliver(&attempt)
            .await
            .expect("delivered");
        let unsigned = receiver.take();
        assert_eq!(unsigned.len(), 1);
        assert_eq!(unsigned[0].header("webhook-signature"), None);
        assert_eq!(unsigned[0].header("x-webhook-signature"), None);
    })
    .await;
}

#[tokio::test]
async fn email_a_kept_connection_the_server_dropped_is_replaced_within_the_attempt() {
    bounded(async {
        let sink = SmtpSink::start(&[]);
        let port = sink.port.to_string();
        let provider = EmailProvider::new(
            "email",
            &config(&[("smtp_url", &sink.url()), ("from", "noreply@example.com")]),
            Duration::from_secs(10),
        )
        .expect("valid settings");
        let first = delivery(
            ExecutionId::new(),
            0,
            Recipient::at("ada@example.com"),
            rendered(None, "one", None),
        );
        provider.deliver(&first).await.expect("the first message");
        // The server restarts: the connection kept from the first message is dead.
        drop(sink);
        let sink = SmtpSink::start(&["--port", &port]);
        let second = delivery(
            ExecutionId::new(),
            0,
            Recipient::at("bob@example.com"),
            rendered(None, "two", None),
        );
        let detail = provider
            .deliver(&second)
            .await
            .expect("the second message, over a fresh connection");
        assert!(detail.starts_with("250"), "{detail}");
        assert_eq!(sink.messages().len(), 1);
    })
    .await;
}
