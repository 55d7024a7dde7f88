//! The Postgres transport: one non-pooled connection doing LISTEN (polled for
//! `AsyncMessage::Notification`), and NOTIFY through a small pool, one statement
//! per publish call.

use std::sync::Arc;

use async_trait::async_trait;
use courier_store_postgres::{PostgresTls, with_causes};
use deadpool_postgres::Pool;
use futures::StreamExt;
use tokio_postgres::AsyncMessage;

use crate::cluster::Publisher;
use crate::fanout::{Connection, Connector, Incoming, Link};

/// Postgres refuses a NOTIFY payload of 8000 bytes or more.
pub(crate) const MAX_PAYLOAD: usize = 7999;

/// How many notifications may wait between the connection and the actor before
/// the connection stops being read (Postgres then queues them server-side).
const BUFFER: usize = 4096;

/// Opens the fanout actor's LISTEN connection.
pub(crate) struct ListenConnector {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: PostgresTls,
}

#[async_trait]
impl Connector for ListenConnector {
    async fn connect(&self) -> Result<Connection, String> {
        let (client, mut connection) = self.config.connect(self.tls.clone()).await.map_err(|e| describe(&e))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Incoming>(BUFFER);
        // The connection must be polled for anything to happen, queries included;
        // this task does that and forwards notifications. It ends when the server
        // goes away or the client is dropped, which ends the message stream.
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        let incoming = Incoming {
                            channel: n.channel().to_string(),
                            payload: n.payload().as_bytes().to_vec(),
                        };
                        if tx.send(incoming).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(AsyncMessage::Notice(notice))) => {
                        tracing::debug!(message = %notice.message(), "Postgres notice on the LISTEN connection");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "the Postgres LISTEN connection ended");
                        break;
                    }
                    None => break,
                }
            }
        });
        let messages = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed();
        Ok(Connection {
            link: Arc::new(ListenLink { client }),
            messages,
        })
    }
}

/// LISTEN / UNLISTEN on the one connection.
struct ListenLink {
    client: tokio_postgres::Client,
}

#[async_trait]
impl Link for ListenLink {
    async fn subscribe(&self, channels: Vec<String>) -> Result<(), String> {
        let sql: String = channels.iter().map(|c| format!("LISTEN {};", quote(c))).collect();
        // Several statements in one simple query run as one transaction, and LISTEN
        // takes effect at its commit: active once this returns.
        self.client.batch_execute(&sql).await.map_err(|e| describe(&e))
    }

    async fn unsubscribe(&self, channels: Vec<String>) -> Result<(), String> {
        let sql: String = channels.iter().map(|c| format!("UNLISTEN {};", quote(c))).collect();
        self.client.batch_execute(&sql).await.map_err(|e| describe(&e))
    }

    async fn ping(&self) -> Result<(), String> {
        self.client.batch_execute("SELECT 1").await.map_err(|e| describe(&e))
    }
}

/// A channel name as a quoted identifier (prefixes hold no quotes, but be exact).
pub(crate) fn quote(channel: &str) -> String {
    format!("\"{}\"", channel.replace('"', "\"\""))
}

/// NOTIFY for a whole publish call in one statement.
pub(crate) struct NotifyPublisher {
    pub(crate) pool: Pool,
}

const NOTIFY_ALL: &str = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)";

#[async_trait]
impl Publisher for NotifyPublisher {
    async fn publish(&self, messages: Vec<(String, String)>) -> Result<(), String> {
        let total = messages.len();
        let (channels, payloads): (Vec<String>, Vec<String>) =
            messages.into_iter().filter(|(_, p)| p.len() <= MAX_PAYLOAD).unzip();
        let oversized = total - channels.len();
        if !channels.is_empty() {
            let client = self.pool.get().await.map_err(|e| with_causes(&e))?;
            let statement = client.prepare_cached(NOTIFY_ALL).await.map_err(|e| describe(&e))?;
            client
                .execute(&statement, &[&channels, &payloads])
                .await
                .map_err(|e| describe(&e))?;
        }
        if oversized > 0 {
            return Err(format!(
                "{oversized} notice(s) exceed Postgres' 8000-byte payload limit (an overlong queue name?) and were not sent"
            ));
        }
        Ok(())
    }
}

/// A driver error with the server's message when there is one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => with_causes(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_quoted_identifiers() {
        assert_eq!(quote("courier:task:1"), "\"courier:task:1\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
