//! The connection pool, and when a connection is checked before it is handed out.
//!
//! A connection is checked with a round trip (an empty query) only when it has
//! not been handed out for [`CHECK_AFTER_IDLE`]. Checking every hand-out, as
//! before, cost one round trip per transaction and per read: four of the some
//! twenty round trips between a dispatch and its `wait_for`. A connection in
//! steady use does not need it: when the server ends a backend (a restart, a
//! `pg_terminate_backend`), it says so and closes the socket, the driver's
//! connection task sees it, and the pool's own `is_closed` test throws the
//! connection away. What that test cannot see is a connection that died
//! without a word (a server that vanished, a dropped route): those have sat
//! idle, and the round trip still catches them, so a restart still costs one
//! failed check, not one failed operation.

use std::time::Duration;

use courier_core::StoreError;
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Config;

use crate::tls::PostgresTls;

/// How long a connection may go without being handed out before it is checked
/// with a round trip first.
pub(crate) const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// How long that check may take before the connection is given up.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the pool of at most `max_size` connections to `config`.
pub(crate) fn build(config: Config, tls: PostgresTls, max_size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            // `Fast` only asks the driver whether the connection is closed; the
            // round trip is the hook's, and only after idling.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .pre_recycle(Hook::async_fn(|client, metrics| {
            Box::pin(async move {
                if metrics.last_used() < CHECK_AFTER_IDLE {
                    return Ok(());
                }
                match tokio::time::timeout(CHECK_TIMEOUT, client.simple_query("")).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "an idle Postgres connection failed its check; opening another");
                        Err(HookError::Backend(e))
                    }
                    Err(_) => Err(HookError::message(
                        "an idle Postgres connection did not answer its check",
                    )),
                }
            })
        }))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(CHECK_TIMEOUT))
        // Waiting for a free connection is bounded too: a caller gets an error it
        // retries, never a wait that outlives every lease it holds.
        .wait_timeout(Some(Duration::from_secs(30)))
        .build()
        .map_err(|e| StoreError::Invalid(format!("cannot build the Postgres pool: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::{PostgresOptions, PostgresStore};

    fn url() -> String {
        std::env::var("COURIER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    async fn backend_pid(store: &PostgresStore) -> i32 {
        let client = store.client().await.expect("a connection");
        client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("answered")
            .get(0)
    }

    #[tokio::test]
    async fn a_connection_whose_backend_was_ended_is_not_handed_out_again() {
        let store = PostgresStore::connect(PostgresOptions::new(url()).pool_size(1))
            .await
            .expect("Postgres reachable");
        let before = backend_pid(&store).await;
        let (admin, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
            .await
            .expect("admin");
        tokio::spawn(connection);
        let ended: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[&before])
            .await
            .expect("terminated")
            .get(0);
        assert!(ended);
        // The server says it ends the backend and closes the socket; the driver
        // reads that on its own, without a query of ours.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = backend_pid(&store).await;
        assert_ne!(before, after, "a fresh connection, and no failed operation");
    }

    /// Forwards connections to Postgres; [`Proxy::silence`] makes every
    /// connection open so far swallow what it is sent without a word, as a
    /// server that vanished would, while new connections still get through.
    struct Proxy {
        addr: std::net::SocketAddr,
        opened: Arc<AtomicUsize>,
        silent_below: Arc<AtomicUsize>,
    }

    impl Proxy {
        async fn start(upstream: String) -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let opened = Arc::new(AtomicUsize::new(0));
            let silent_below = Arc::new(AtomicUsize::new(0));
            let (o, s) = (opened.clone(), silent_below.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let id = o.fetch_add(1, Ordering::SeqCst);
                    let server = TcpStream::connect(&upstream).await.unwrap();
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let done = Arc::new(AtomicBool::new(false));
                    tokio::spawn(forward(cr, sw, id, s.clone(), done.clone()));
                    tokio::spawn(forward(sr, cw, id, s.clone(), done));
                }
            });
            Proxy {
                addr,
                opened,
                silent_below,
            }
        }

        fn silence(&self) {
            self.silent_below
                .store(self.opened.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    }

    async fn forward(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        id: usize,
        silent_below: Arc<AtomicUsize>,
        done: Arc<AtomicBool>,
    ) {
        let mut buf = vec![0u8; 16 * 1024];
        while !done.load(Ordering::SeqCst) {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if id < silent_below.load(Ordering::SeqCst) {
                continue;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        done.store(true, Ordering::SeqCst);
    }

    #[tokio::test]
    async fn a_connection_that_went_silent_while_idle_is_checked_and_replaced() {
        let config: tokio_postgres::Config = url().parse().expect("a Postgres URL");
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            other => panic!("a TCP host is needed, not {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream = format!("{host}:{port}");
        let proxy = Proxy::start(upstream.clone()).await;
        let through_proxy = url().replacen(&upstream, &proxy.addr.to_string(), 1);
        assert_ne!(through_proxy, url(), "the test URL names {upstream}");
        let store = PostgresStore::connect(PostgresOptions::new(through_proxy).pool_size(1))
            .await
            .expect("Postgres reachable through the proxy");
        let before = backend_pid(&store).await;

        proxy.silence();
        tokio::time::sleep(CHECK_AFTER_IDLE + Duration::from_millis(200)).await;
        // Without the check the query would wait for an answer that never comes.
        let after = tokio::time::timeout(CHECK_TIMEOUT * 3, backend_pid(&store))
            .await
            .expect("the silent connection was replaced, not used");
        assert_ne!(before, after);
    }
}
