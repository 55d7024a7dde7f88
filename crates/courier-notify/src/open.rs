//! Choosing a notifier from a URL: what `COURIER_NOTIFIER_URL` names.

use std::sync::Arc;

use courier_core::Notifier;
use thiserror::Error;

use crate::channel::PrefixError;
use crate::postgres::PostgresNotifier;
use crate::redis::{RedisNotifier, RedisUrlError, mask_password};
use courier_core::LocalNotifier;

/// Why a notifier could not be opened.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use courier_notify::{OpenError, open};
/// let err = open("kafka://broker:9092", "courier").await.err().unwrap();
/// assert!(matches!(err, OpenError::Unsupported(_)));
/// assert!(err.to_string().contains("redis://"));
/// # }
/// ```
#[derive(Debug, Error)]
pub enum OpenError {
    /// The URL names no backend this crate has.
    #[error(
        "unsupported notifier URL {0:?}: use \"memory\", redis://, rediss://, redis+sentinel://, \
         rediss+sentinel://, redis+cluster://, rediss+cluster://, postgres:// or postgresql://"
    )]
    Unsupported(String),
    /// A malformed Redis connection string.
    #[error(transparent)]
    RedisUrl(#[from] RedisUrlError),
    /// A malformed or unusable Postgres DSN.
    #[error("invalid Postgres notifier URL: {0}")]
    PostgresUrl(String),
    /// A prefix that cannot start channel names.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// A prefix too long for Postgres channel names.
    #[error(
        "channel prefix {prefix:?} is too long for Postgres: channel names are at most 63 bytes \
         (<prefix>:execution:<uuid>), so the prefix may have at most {max} bytes"
    )]
    PrefixTooLong {
        /// The prefix given.
        prefix: String,
        /// The most it may have.
        max: usize,
    },
    /// TLS could not be set up (CA file unreadable, no system roots).
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The server could not be reached, or refused the connection.
    #[error("cannot connect the {backend} notifier to {target}: {reason}")]
    Connect {
        /// `"redis"` or `"postgres"`.
        backend: &'static str,
        /// Where, password masked.
        target: String,
        /// Why (for a failover list, why for each node; for Sentinel, what each
        /// sentinel said, and why the master it named would not do).
        reason: String,
    },
}

/// Opens the notifier `url` names: `"memory"` (the in-process default),
/// `redis://`, `rediss://`, `redis+sentinel://` or `rediss+sentinel://` (Redis
/// pub/sub, Sentinel finding the master), `redis+cluster://` or
/// `rediss+cluster://` (Redis Cluster, sharded pub/sub), `postgres://` or `postgresql://`
/// (LISTEN/NOTIFY), with channels under `prefix` (ignored in memory).
///
/// Call it inside a running actix system (as `courier serve` does): the cluster
/// notifiers start their `FanoutActor` on the current arbiter. Outside one, the
/// actor gets a thread with an actix system of its own.
///
/// ```
/// # #[actix_rt::main] async fn main() {
/// let notifier = courier_notify::open("memory", "courier").await.unwrap();
/// assert_eq!(notifier.backend(), "memory");
/// # }
/// ```
pub async fn open(url: &str, prefix: &str) -> Result<Arc<dyn Notifier>, OpenError> {
    let url = url.trim();
    if url.eq_ignore_ascii_case("memory") {
        return Ok(Arc::new(LocalNotifier::new()));
    }
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
        .unwrap_or_default();
    match scheme.as_str() {
        "postgres" | "postgresql" => Ok(Arc::new(PostgresNotifier::connect(url, prefix).await?)),
        // Every redis-ish scheme goes to the Redis parser, which explains what it
        // refuses (Unix sockets, a Sentinel URL without a master) better than
        // "unsupported" would.
        s if s.starts_with("redis") => Ok(Arc::new(RedisNotifier::connect(url, prefix).await?)),
        _ => Err(OpenError::Unsupported(mask_password(url))),
    }
}
