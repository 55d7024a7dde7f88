//! The TCP input (`ingest.tcp_addr`; seed 001's port is 8991).
//!
//! A connection carries JSON messages one after another, answered one JSON
//! line each, in order. That covers both framings senders use: the seed's (one
//! message, then the client half-closes; the server answers and closes) and
//! newline-delimited JSON (many messages, many answer lines). Messages of one
//! connection are accepted concurrently (up to [`PIPELINE`] at a time) but
//! answered in the order they were sent.
//!
//! Answers: `{"id": "<execution id>", "status": "queued"}` once the execution is
//! committed; `{"error": "...", "detail": ...}` for a message that does not parse
//! or validate; `{"error": "queue full", "retry_after_ms": N}` past
//! `ingest.queue_size`. Bounded: message size (a whole message past it is
//! refused; unframed input past it is answered and the connection closed, as
//! what follows cannot be framed), open connections (one past the bound is
//! answered and closed), idle time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use framing::Buffer;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::intake::{Intake, Origin};
use crate::options::IngestOptions;

/// Messages of one connection being accepted at once.
pub(crate) const PIPELINE: usize = 64;

/// The TCP input's bounds.
#[derive(Clone, Debug)]
pub(crate) struct TcpOptions {
    pub token: Option<String>,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub max_message_bytes: usize,
}

impl From<&IngestOptions> for TcpOptions {
    fn from(options: &IngestOptions) -> Self {
        TcpOptions {
            token: options.tcp_token.clone().filter(|t| !t.is_empty()),
            max_connections: options.tcp_max_connections.max(1),
            idle_timeout: options.tcp_idle_timeout,
            max_message_bytes: options.max_message_bytes.max(64),
        }
    }
}

/// Binds `addr` and serves it until `stop` turns true.
pub(crate) async fn start(
    addr: SocketAddr,
    intake: Intake,
    options: TcpOptions,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let options = Arc::new(options);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.changed() => break,
            };
            let (mut socket, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    metrics::counter!(courier_core::metric::INGEST_ERRORS, "input" => "tcp").increment(1);
                    tracing::warn!(error = %e, "ingest tcp: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                intake.refused_by_input(&Origin::Tcp, "too_many_connections");
                tracing::warn!(%peer, "ingest tcp: connection refused, at ingest.tcp_max_connections");
                tokio::spawn(async move {
                    let _ = answer(
                        &mut socket,
                        &json!({"error": "too many connections", "detail": "try again later"}),
                    )
                    .await;
                    let _ = socket.shutdown().await;
                });
                continue;
            };
            let (intake, options, stop) = (intake.clone(), options.clone(), stop.clone());
            tokio::spawn(async move {
                serve(socket, intake, options, stop).await;
                drop(slot);
            });
        }
    });
    Ok((bound, task))
}

async fn answer(socket: &mut (impl AsyncWriteExt + Unpin), value: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).expect("answers serialize");
    line.push(b'\n');
    socket.write_all(&line).await
}

/// An answer, ready now or once its message is committed.
enum Pending {
    Ready(Value),
    Waiting(JoinHandle<Value>),
}

/// Serves one connection: a reader that frames and submits messages, a
/// writer that answers them in order.
async fn serve(socket: TcpStream, intake: Intake, options: Arc<TcpOptions>, stop: watch::Receiver<bool>) {
    let (mut reader, mut writer) = socket.into_split();
    let (tx, mut rx) = mpsc::channel::<Pending>(PIPELINE);
    let writing = tokio::spawn(async move {
        while let Some(pending) = rx.recv().await {
            let value = match pending {
                Pending::Ready(value) => value,
                Pending::Waiting(task) => task
                    .await
                    .unwrap_or_else(|e| json!({"error": "internal", "detail": e.to_string()})),
            };
            if answer(&mut writer, &value).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    read(&mut reader, &intake, &options, &tx, stop).await;
    drop(tx);
    let _ = writing.await;
    // Closing with unread input makes the kernel reset the connection, and a
    // reset can destroy the answer before the client reads it: read what is
    // still coming (briefly, boundedly) before letting go.
    let mut sink = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut drained = 0usize;
    while drained < 1 << 20 {
        match tokio::time::timeout_at(deadline, reader.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

async fn read(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    intake: &Intake,
    options: &TcpOptions,
    tx: &mpsc::Sender<Pending>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buffer = Buffer::default();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = tokio::time::timeout(options.idle_timeout, reader.read(&mut chunk)) => read,
            _ = stop.changed() => return,
        };
        let eof = match read {
            Err(_) => {
                let _ = tx
                    .send(Pending::Ready(
                        json!({"error": "idle timeout", "detail": format!("no data for {:?}", options.idle_timeout)}),
                    ))
                    .await;
                return;
            }
            Ok(Err(_)) => return,
            Ok(Ok(0)) => true,
            Ok(Ok(n)) => {
                buffer.extend(&chunk[..n]);
                false
            }
        };
        loop {
            match buffer.next_value(eof) {
                Framed::Value(value, size) if size > options.max_message_bytes => {
                    // Framed, so the connection can go on; the message cannot.
                    intake.refused_by_input(&Origin::Tcp, "too_large");
                    let answer = json!({"error": "message too large", "detail": {"limit_bytes": options.max_message_bytes, "size_bytes": size}});
                    drop(value);
                    if tx.send(Pending::Ready(answer)).await.is_err() {
                        return;
                    }
                }
                Framed::Value(value, _) => {
                    if tx.send(submit(intake, options, value)).await.is_err() {
                        return;
                    }
                }
                Framed::Malformed(detail) => {
                    intake.refused_by_input(&Origin::Tcp, "invalid");
                    if tx
                        .send(Pending::Ready(json!({"error": "invalid JSON", "detail": detail})))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Framed::NeedMore => break,
            }
        }
        if buffer.pending() > options.max_message_bytes {
            intake.refused_by_input(&Origin::Tcp, "too_large");
            let _ = tx
                .send(Pending::Ready(
                    json!({"error": "message too large", "detail": {"limit_bytes": options.max_message_bytes}}),
                ))
                .await;
            return;
        }
        if eof {
            return;
        }
    }
}

/// Checks the token, then hands the message to the intake; the answer
/// arrives once the execution is committed.
fn submit(intake: &Intake, options: &TcpOptions, value: Value) -> Pending {
    if let Some(token) = &options.token {
        let given = value.get("auth").and_then(Value::as_str).unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            intake.refused_by_input(&Origin::Tcp, "unauthorized");
            return Pending::Ready(
                json!({"error": "unauthorized", "detail": "the message's `auth` does not match ingest.tcp_token"}),
            );
        }
    }
    let message = match intake.check(value) {
        Ok(message) => message,
        Err(invalid) => {
            let error = crate::intake::IntakeError::Invalid(invalid);
            intake.refused(&Origin::Tcp, &error);
            return Pending::Ready(error.to_answer());
        }
    };
    let intake = intake.clone();
    Pending::Waiting(tokio::spawn(async move {
        match intake.offer(message, Origin::Tcp).await {
            Ok(id) => json!({"id": id, "status": "queued"}),
            Err(error) => error.to_answer(),
        }
    }))
}

/// What the buffer holds next.
enum Framed {
    /// A whole message, and how many bytes it took.
    Value(Value, usize),
    Malformed(String),
    NeedMore,
}

mod framing {
    use super::Framed;

    /// Bytes read and not yet framed into messages.
    #[derive(Default)]
    pub(super) struct Buffer {
        bytes: Vec<u8>,
        /// After malformed input, bytes are dropped up to the next newline
        /// (the next line of a newline-delimited stream).
        skipping: bool,
    }

    impl Buffer {
        pub(super) fn extend(&mut self, data: &[u8]) {
            self.bytes.extend_from_slice(data);
        }

        /// Bytes held that are not yet a whole message.
        pub(super) fn pending(&self) -> usize {
            self.bytes.len()
        }

        pub(super) fn next_value(&mut self, eof: bool) -> Framed {
            if self.skipping {
                match self.bytes.iter().position(|b| *b == b'\n') {
                    Some(newline) => {
                        self.bytes.drain(..=newline);
                        self.skipping = false;
                    }
                    None => {
                        self.bytes.clear();
                        return Framed::NeedMore;
                    }
                }
            }
            let start = self
                .bytes
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.bytes.len());
            self.bytes.drain(..start);
            if self.bytes.is_empty() {
                return Framed::NeedMore;
            }
            let mut values = serde_json::Deserializer::from_slice(&self.bytes).into_iter::<serde_json::Value>();
            match values.next() {
                Some(Ok(value)) => {
                    let used = values.byte_offset();
                    self.bytes.drain(..used);
                    Framed::Value(value, used)
                }
                Some(Err(e)) if e.is_eof() && !eof => Framed::NeedMore,
                Some(Err(e)) => {
                    self.skipping = true;
                    if eof {
                        self.bytes.clear();
                        self.skipping = false;
                    }
                    Framed::Malformed(e.to_string())
                }
                None => Framed::NeedMore,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn all(buffer: &mut Buffer, eof: bool) -> Vec<Result<serde_json::Value, String>> {
            let mut out = Vec::new();
            loop {
                match buffer.next_value(eof) {
                    Framed::Value(v, _) => out.push(Ok(v)),
                    Framed::Malformed(e) => out.push(Err(e)),
                    Framed::NeedMore => return out,
                }
            }
        }

        #[test]
        fn frames_ndjson_pretty_json_and_split_reads() {
            let mut b = Buffer::default();
            b.extend(b"{\"a\":1}\n{\"b\":");
            assert_eq!(all(&mut b, false).len(), 1);
            b.extend(b"2}\n{\n  \"c\": 3\n}");
            let got = all(&mut b, false);
            assert_eq!(got.len(), 2, "{got:?}");
            assert!(all(&mut b, true).is_empty());
        }

        #[test]
        fn a_malformed_line_is_answered_and_the_next_line_still_read() {
            let mut b = Buffer::default();
            b.extend(b"{\"a\":1}\nnot json at all\n{\"b\":2}\n");
            let got = all(&mut b, false);
            assert!(got[0].is_ok() && got[1].is_err() && got[2].is_ok(), "{got:?}");
        }

        #[test]
        fn a_truncated_message_at_eof_is_an_error() {
            let mut b = Buffer::default();
            b.extend(b"{\"a\":");
            assert!(all(&mut b, false).is_empty());
            let got = all(&mut b, true);
            assert_eq!(got.len(), 1);
            assert!(got[0].is_err());
        }
    }
}
