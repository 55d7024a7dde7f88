//! A real Courier HTTP server on a loopback port, and clients for it.

use std::time::Duration;

use actix_web::App;
use courier::CourierBuilder;
use courier::http::{Http, HttpOptions};
use futures::StreamExt;
use serde_json::Value;

/// A running server.
pub struct Server {
    pub url: String,
    pub http: Http,
    handle: actix_web::dev::ServerHandle,
}

impl Server {
    /// Starts a node from `builder` with its HTTP surface on 127.0.0.1:0.
    pub async fn start(builder: CourierBuilder, options: HttpOptions) -> Server {
        let http = courier::http::prepare(builder, options).start().await.unwrap();
        let for_app = http.clone();
        // The listener `courier serve` runs: notification streams take its
        // direct path, everything else actix's dispatcher.
        let mut listen = courier::http::listener::Listen::new("127.0.0.1:0".parse().unwrap());
        listen.workers = 1;
        let running = courier::http::listener::listen(listen, move || {
            App::new()
                .wrap(courier::http::json_errors())
                .configure(|cfg| courier::http::configure(cfg, &for_app))
        })
        .unwrap();
        let addr = running.addr;
        let running = running.server;
        let handle = running.handle();
        actix_rt::spawn(running);
        Server {
            url: format!("http://{addr}"),
            http,
            handle,
        }
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Stops the listener and the node.
    pub async fn stop(self) {
        self.http.shutdown().await;
        self.handle.stop(false).await;
    }
}

/// An HTTP client with a generous timeout.
pub fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(60)).finish()
}

/// Status and JSON body of a response.
pub async fn json_of(
    mut response: awc::ClientResponse<
        impl futures::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
    >,
) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.body().limit(64 * 1024 * 1024).await.unwrap();
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()))
    };
    (status, value)
}

/// GET `url` → (status, JSON).
pub async fn get(url: &str) -> (u16, Value) {
    json_of(client().get(url).send().await.unwrap()).await
}

/// POST JSON to `url` → (status, JSON).
pub async fn post(url: &str, body: &Value) -> (u16, Value) {
    json_of(client().post(url).send_json(body).await.unwrap()).await
}

/// One SSE frame.
#[derive(Debug, Clone, PartialEq)]
pub struct SseFrame {
    pub id: Option<i64>,
    pub event: Option<String>,
    pub data: Value,
}

/// Reads SSE frames from a streaming response.
pub struct SseReader<S> {
    body: S,
    buffer: String,
}

impl<S: futures::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin> SseReader<S> {
    pub fn new(body: S) -> Self {
        SseReader {
            body,
            buffer: String::new(),
        }
    }

    /// The next frame (comments skipped), or None when the stream ends or `wait` passes.
    pub async fn next(&mut self, wait: Duration) -> Option<SseFrame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut frame = SseFrame {
                    id: None,
                    event: None,
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        frame.id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        frame.event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if frame.event.is_none() && data.is_empty() {
                    continue; // a comment (keepalive, connected)
                }
                frame.data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(frame);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.ok()??.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
