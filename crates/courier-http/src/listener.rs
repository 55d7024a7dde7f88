//! The node's HTTP listener: actix-web answers every request, and a
//! notification stream, once the app has answered its request, is written
//! straight to its socket.
//!
//! Why: actix's HTTP/1 dispatcher keeps an 8 KiB read buffer and an 8 KiB
//! write buffer for every connection, as long as it lives. A browser's
//! notification stream lives for hours and is idle nearly all that time, so
//! for tens of thousands of them those buffers were most of the node's memory.
//! Here a connection whose first bytes are `GET /notifications/stream` (or
//! `GET /v1/events/stream`, the event log's SSE stream) has its
//! request head read into a short-lived buffer, answered by the same app (every
//! middleware, the same handler, the same errors), and its body written chunk
//! by chunk with nothing kept between frames but the socket, the outbox and
//! this small task. Every other connection goes to actix's dispatcher
//! untouched. The task also watches the socket, so a client that goes away is
//! noticed at once rather than at the next keepalive.
//!
//! ```no_run
//! # async fn run(http: courier_http::Http) -> std::io::Result<()> {
//! use actix_web::App;
//! use courier_http::listener::{Listen, listen};
//!
//! let app = move || App::new().configure(|cfg| courier_http::configure(cfg, &http));
//! listen(Listen::new("127.0.0.1:8080".parse().unwrap()), app)?.server.await
//! # }
//! ```

use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use actix_http::body::{BodySize, MessageBody};
use actix_http::{HttpService, Request, Response};
use actix_service::ServiceFactoryExt as _;
use actix_web::Error;
use actix_web::dev::{AppConfig, Server, Service, ServiceFactory, fn_factory, fn_service};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, Uri, Version};
use actix_web::rt::net::TcpStream;
use bytes::Bytes;
use futures::future::poll_fn;
use tokio::io::AsyncWriteExt;

/// What a stream connection starts with; only these go the direct way.
const STREAM_REQUESTS: [&[u8]; 2] = [b"GET /notifications/stream", b"GET /v1/events/stream"];
/// The longest of them.
const LONGEST_STREAM_REQUEST: usize = 25;
const _: () =
    assert!(STREAM_REQUESTS[0].len() <= LONGEST_STREAM_REQUEST && STREAM_REQUESTS[1].len() <= LONGEST_STREAM_REQUEST);
/// The longest request head a stream may send (cookies and a token included).
const MAX_HEAD: usize = 16 * 1024;
/// Most header lines in a stream's request.
const MAX_HEADERS: usize = 64;

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct Listen {
    /// The address to bind.
    pub addr: SocketAddr,
    /// Worker threads (0: one per core).
    pub workers: usize,
    /// How long a stopping server waits for open connections.
    pub shutdown_timeout: Duration,
    /// How long a client may take to send its request head.
    pub request_timeout: Duration,
    /// Connections held at once, over all workers (0: actix's default of
    /// 25,000 per worker); see [`crate::descriptors`].
    pub max_connections: usize,
}

impl Listen {
    /// `addr` with actix's defaults: a worker per core, 30 s to shut down, 5 s
    /// for a request head.
    pub fn new(addr: SocketAddr) -> Self {
        Listen {
            addr,
            workers: 0,
            shutdown_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
            max_connections: 0,
        }
    }
}

/// A bound, running listener: await `server` (stop it through its handle).
pub struct Listening {
    /// The address it listens on (the port chosen when `Listen.addr` had 0).
    pub addr: SocketAddr,
    /// The server; signals are the caller's to handle.
    pub server: Server,
}

/// Binds `listen.addr` and serves the apps `factory` makes (one per worker),
/// notification streams written straight to their sockets.
pub fn listen<F, I, S, B>(listen: Listen, factory: F) -> io::Result<Listening>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: actix_service::IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let std_listener = std::net::TcpListener::bind(listen.addr)?;
    let local = std_listener.local_addr()?;
    let mut builder = Server::build()
        .disable_signals()
        .shutdown_timeout(listen.shutdown_timeout.as_secs().max(1));
    if listen.workers > 0 {
        builder = builder.workers(listen.workers);
    }
    if listen.max_connections > 0 {
        // actix counts per worker; past its share a worker stops accepting and
        // new connections wait in the backlog instead of failing on EMFILE.
        let workers = match listen.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        builder = builder.max_concurrent_connections(listen.max_connections.div_ceil(workers).max(1));
    }
    let request_timeout = listen.request_timeout;
    // Idle keep-alive connections close when a graceful stop begins, as under
    // actix-web's own HttpServer.
    let stopping = builder.graceful_shutdown_signal();
    builder = builder.listen("courier", std_listener, move || {
        let stopping = stopping.clone();
        let answered = factory().into_factory().map_err(|e| e.into().error_response());
        let dispatched = HttpService::build()
            .graceful_shutdown_signal(move || {
                let stopping = stopping.clone();
                async move { stopping.notified().await }
            })
            .client_request_timeout(request_timeout)
            .client_disconnect_timeout(Duration::from_secs(1))
            .local_addr(local)
            .finish(actix_service::map_config(answered, app_config))
            .tcp();
        let direct = actix_service::map_config(factory().into_factory(), app_config);
        fn_factory(move || {
            let dispatched = dispatched.new_service(());
            let direct = direct.new_service(());
            async move {
                let dispatched = dispatched
                    .await
                    .map_err(|e| tracing::error!(error = ?e, "could not start the HTTP service"))?;
                let direct = direct
                    .await
                    .map_err(|e| tracing::error!(error = ?e, "could not start the stream service"))?;
                let both = Rc::new((dispatched, direct));
                Ok::<_, ()>(fn_service(move |io: TcpStream| {
                    let both = Rc::clone(&both);
                    async move {
                        match opening(&io, request_timeout).await {
                            Opening::Stream => serve_stream(&both.1, io, request_timeout).await,
                            Opening::Other => {
                                // Boxed, so its size does not also size every
                                // stream's future (this one is a union of both).
                                if let Err(e) = Box::pin(both.0.call(io)).await {
                                    tracing::debug!(error = ?e, "HTTP connection ended with an error");
                                }
                            }
                            Opening::Gone => {}
                        }
                        Ok::<_, ()>(())
                    }
                }))
            }
        })
    })?;
    Ok(Listening {
        addr: local,
        server: builder.run(),
    })
}

/// The app's view of the connection. actix's own default: the listener's
/// address only matters to URL generation, which Courier does not use.
fn app_config(_: ()) -> AppConfig {
    AppConfig::default()
}

/// How a connection starts.
#[derive(Debug, PartialEq)]
enum Opening {
    Stream,
    Other,
    Gone,
}

/// Reads (without consuming) the first bytes of a connection to see whether it
/// opens a stream.
async fn opening(io: &TcpStream, timeout: Duration) -> Opening {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = [0u8; LONGEST_STREAM_REQUEST + 1];
    loop {
        let n = match tokio::time::timeout_at(deadline, io.peek(&mut first)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Opening::Gone,
            Ok(Ok(n)) => n,
            // Let actix answer a client this slow as it answers any other.
            Err(_) => return Opening::Other,
        };
        let seen = &first[..n];
        let complete = STREAM_REQUESTS
            .iter()
            .any(|r| seen.len() > r.len() && seen.starts_with(r) && matches!(seen[r.len()], b' ' | b'?'));
        if complete {
            return Opening::Stream;
        }
        let possible = STREAM_REQUESTS.iter().any(|r| r.starts_with(seen));
        if !possible || n == first.len() {
            return Opening::Other;
        }
        // A prefix of a stream request has arrived: peeking again at once would
        // return the same bytes, so give the rest a moment to come.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The request head of a stream, parsed, or the reason it cannot be.
async fn read_head(io: &mut TcpStream, timeout: Duration) -> Result<Request, Refusal> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = match tokio::time::timeout_at(deadline, io.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(Refusal::Gone),
            Ok(Ok(n)) => n,
            Err(_) => return Err(Refusal::Status(408, "the request head did not arrive in time")),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return request_of(&parsed),
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(Refusal::Status(431, "the request head is too large"));
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Refusal::Status(431, "the request has too many headers"));
            }
            Err(_) => return Err(Refusal::Status(400, "malformed request")),
        }
    }
}

/// Why a stream request is answered here, without the app.
enum Refusal {
    /// The client went away.
    Gone,
    /// An HTTP-level error, answered with the JSON error body.
    Status(u16, &'static str),
}

fn request_of(parsed: &httparse::Request<'_, '_>) -> Result<Request, Refusal> {
    let bad = |what| Refusal::Status(400, what);
    let mut request = Request::new();
    let head = request.head_mut();
    head.method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes()).map_err(|_| bad("bad method"))?;
    head.uri = Uri::try_from(parsed.path.unwrap_or_default()).map_err(|_| bad("bad request target"))?;
    head.version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| bad("bad header name"))?;
        let value = HeaderValue::from_bytes(header.value).map_err(|_| bad("bad header value"))?;
        head.headers.append(name, value);
    }
    Ok(request)
}

/// Reads a stream's request, has the app answer it, and writes the answer.
async fn serve_stream<A, B>(app: &A, mut io: TcpStream, timeout: Duration)
where
    A: Service<Request>,
    A::Error: Into<Error>,
    A::Response: Into<Response<B>>,
    B: MessageBody,
{
    let peer = io.peer_addr().ok();
    // The head's reading and the app's answer are boxed: their state is freed
    // when they finish instead of sizing this future, which lives as long as
    // the stream.
    let mut request = match Box::pin(read_head(&mut io, timeout)).await {
        Ok(request) => request,
        Err(Refusal::Gone) => return,
        Err(Refusal::Status(status, error)) => {
            let body = serde_json::json!({"error": error, "detail": null}).to_string();
            let head = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                actix_web::http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or(""),
                body.len()
            );
            let _ = io.write_all(head.as_bytes()).await;
            let _ = io.write_all(body.as_bytes()).await;
            return;
        }
    };
    request.head_mut().peer_addr = peer;
    let http10 = request.head().version == Version::HTTP_10;
    match Box::pin(app.call(request)).await {
        Ok(response) => write_response(&mut io, response.into(), http10).await,
        Err(e) => {
            let e: Error = e.into();
            write_response(&mut io, e.error_response().into(), http10).await
        }
    }
    let _ = io.shutdown().await;
}

/// Writes `response`: a sized body with its length, a streamed one chunk by
/// chunk (close-delimited for an HTTP/1.0 client), until it ends or the client
/// goes away.
async fn write_response<B: MessageBody>(io: &mut TcpStream, response: Response<B>, http10: bool) {
    let (head, body) = response.into_parts();
    let size = body.size();
    let mut out = String::with_capacity(256);
    let status = head.status();
    out.push_str(&format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    ));
    for (name, value) in head.headers().iter() {
        if matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection") {
            continue;
        }
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        out.push_str("\r\n");
    }
    let chunked = matches!(size, BodySize::Stream) && !http10;
    match size {
        BodySize::None => out.push_str("content-length: 0\r\n"),
        BodySize::Sized(n) => out.push_str(&format!("content-length: {n}\r\n")),
        BodySize::Stream if chunked => out.push_str("transfer-encoding: chunked\r\n"),
        BodySize::Stream => {}
    }
    out.push_str("connection: close\r\n\r\n");
    // The head's header map (a few KiB) must not live as long as the stream.
    drop(head);
    if io.write_all(out.as_bytes()).await.is_err() {
        return;
    }
    drop(out);

    let mut body = pin!(body);
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            chunk = poll_fn(|cx| body.as_mut().poll_next(cx)) => match chunk {
                Some(Ok(bytes)) => {
                    if bytes.is_empty() {
                        continue;
                    }
                    if write_chunk(io, &bytes, chunked).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    let e: Box<dyn std::error::Error> = e.into();
                    tracing::debug!(error = %e, "a stream's body failed; closing it");
                    return;
                }
                None => {
                    if chunked {
                        let _ = io.write_all(b"0\r\n\r\n").await;
                    }
                    return;
                }
            },
            // A stream's client sends nothing after its request: readable
            // means it closed (or reset) the connection.
            ready = io.readable() => {
                if ready.is_err() {
                    return;
                }
                match io.try_read(&mut probe) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        }
    }
}

async fn write_chunk(io: &mut TcpStream, bytes: &Bytes, chunked: bool) -> io::Result<()> {
    if !chunked {
        return io.write_all(bytes).await;
    }
    let size = format!("{:x}\r\n", bytes.len());
    let parts = [
        IoSlice::new(size.as_bytes()),
        IoSlice::new(bytes),
        IoSlice::new(b"\r\n"),
    ];
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let written = io.write_vectored(&parts).await?;
    if written == total {
        return Ok(());
    }
    // A short write (a full socket buffer): send the rest in order.
    let mut rest = Vec::with_capacity(total - written);
    for part in parts {
        rest.extend_from_slice(&part);
    }
    io.write_all(&rest[written..]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), server.unwrap().0)
    }

    #[actix_rt::test]
    async fn only_a_stream_request_goes_the_direct_way() {
        for (sent, expected) in [
            (&b"GET /notifications/stream HTTP/1.1\r\n"[..], Opening::Stream),
            (b"GET /notifications/stream?token=x HTTP/1.1\r\n", Opening::Stream),
            (b"GET /notifications/streams HTTP/1.1\r\n", Opening::Other),
            (b"GET /v1/executions HTTP/1.1\r\n", Opening::Other),
            (b"POST /notifications/stream HTTP/1.1\r\n", Opening::Other),
            (b"GET /v1/events/stream HTTP/1.1\r\n", Opening::Stream),
            (b"GET /v1/events/stream?after=3 HTTP/1.1\r\n", Opening::Stream),
            (b"GET /v1/events/streams HTTP/1.1\r\n", Opening::Other),
            (b"GET /v1/events HTTP/1.1\r\n", Opening::Other),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Opening::Other),
        ] {
            let (mut client, server) = pair().await;
            client.write_all(sent).await.unwrap();
            assert_eq!(opening(&server, Duration::from_secs(2)).await, expected, "{sent:?}");
        }
    }

    #[actix_rt::test]
    async fn a_stream_request_sent_in_pieces_is_recognised() {
        let (mut client, server) = pair().await;
        client.write_all(b"GET /notif").await.unwrap();
        let writer = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(b"ications/stream HTTP/1.1\r\n").await.unwrap();
            client
        };
        let (seen, _client) = tokio::join!(opening(&server, Duration::from_secs(2)), writer);
        assert_eq!(seen, Opening::Stream);
    }

    #[actix_rt::test]
    async fn a_connection_closed_before_a_request_is_gone() {
        let (client, server) = pair().await;
        drop(client);
        assert_eq!(opening(&server, Duration::from_secs(2)).await, Opening::Gone);
    }
}
