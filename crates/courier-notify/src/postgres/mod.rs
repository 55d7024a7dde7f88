//! The Postgres notifier: LISTEN/NOTIFY on the same channel names as Redis, with
//! ids and state names only in payloads (Postgres caps them at 8000 bytes).

mod listen;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use async_trait::async_trait;
use courier_core::{Notice, Notifier, NotifierStats, NotifyError, Subscription, Topic};
use courier_store_postgres::{PostgresTls, PostgresUrlError, parse_postgres_url};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::channel::{Channels, LONGEST_SUFFIX};
use crate::cluster::{Cluster, ClusterOptions, new_origin};
use crate::fanout::{FanoutActor, SubscribedChannels};
use crate::open::OpenError;
use listen::{ListenConnector, NotifyPublisher};

/// The longest channel name Postgres accepts (NAMEDATALEN - 1).
pub const MAX_CHANNEL_NAME: usize = 63;

/// The longest prefix a Postgres notifier accepts: the longest channel name is
/// `<prefix>:execution:<uuid>`, which must fit in [`MAX_CHANNEL_NAME`] bytes.
pub const MAX_POSTGRES_PREFIX: usize = MAX_CHANNEL_NAME - LONGEST_SUFFIX;

/// Connections the NOTIFY pool keeps at most.
const PUBLISH_POOL: usize = 4;

/// Notifies across nodes over Postgres LISTEN/NOTIFY.
///
/// Each node holds one LISTEN connection of its own (not from a pool: LISTEN is
/// per session), with `application_name` `courier-listen-<origin>`, owned by a
/// [`FanoutActor`], and a small pool (`courier-notify-<origin>`, verified before
/// reuse) for NOTIFY: each publish call is one statement,
/// `SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)`.
/// The channel names and JSON are the Redis notifier's. The prefix may have at
/// most [`MAX_POSTGRES_PREFIX`] bytes (channel names are identifiers of at most 63).
/// TLS as for the Postgres store: `sslmode` (default `prefer`) and `sslrootcert`
/// (see [`courier_store_postgres::tls`]).
///
/// ```no_run
/// # #[actix_rt::main] async fn main() {
/// use courier_core::{Notice, Notifier, Topic};
/// use courier_notify::PostgresNotifier;
///
/// let node_a = PostgresNotifier::connect("postgres://postgres@127.0.0.1/test", "courier").await.unwrap();
/// let node_b = PostgresNotifier::connect("postgres://postgres@127.0.0.1/test", "courier").await.unwrap();
/// let mut work = node_b.subscribe(vec![Topic::Work]).await.unwrap();
/// node_a.publish(vec![Notice::Work { queue: "default".into() }]).await.unwrap();
/// assert_eq!(work.next().await, Some(Notice::Work { queue: "default".into() }));
/// # }
/// ```
pub struct PostgresNotifier {
    cluster: Cluster,
}

impl std::fmt::Debug for PostgresNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresNotifier")
            .field("prefix", &self.cluster.channels().prefix())
            .field("origin", &self.cluster.origin())
            .finish()
    }
}

impl PostgresNotifier {
    /// Connects to the database a `postgres://` or `postgresql://` DSN names, with
    /// channels under `prefix` and default settings otherwise.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, OpenError> {
        Self::connect_with(url, ClusterOptions::with_prefix(prefix)).await
    }

    /// Connects with explicit settings. The LISTEN connection and one pooled
    /// connection are made before this returns.
    pub async fn connect_with(url: &str, options: ClusterOptions) -> Result<Self, OpenError> {
        let channels = Channels::new(&options.prefix)?;
        if channels.longest_name() > MAX_CHANNEL_NAME {
            return Err(OpenError::PrefixTooLong {
                prefix: options.prefix.clone(),
                max: MAX_POSTGRES_PREFIX,
            });
        }
        let (base, tls) = driver_config(url)?;
        let origin = new_origin();
        let connect_error = |reason: String| OpenError::Connect {
            backend: "postgres",
            target: describe_target(&base),
            reason,
        };

        let mut listen = base.clone();
        listen
            .application_name(format!("courier-listen-{origin}"))
            .connect_timeout(options.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        let mut notify = base.clone();
        notify
            .application_name(format!("courier-notify-{origin}"))
            .connect_timeout(options.connect_timeout);
        let manager = Manager::from_config(
            notify,
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(PUBLISH_POOL)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(options.connect_timeout))
            .wait_timeout(Some(options.operation_timeout))
            .recycle_timeout(Some(options.operation_timeout))
            .build()
            .map_err(|e| connect_error(format!("cannot build the NOTIFY pool: {e}")))?;
        drop(
            pool.get()
                .await
                .map_err(|e| connect_error(courier_store_postgres::with_causes(&e)))?,
        );

        let cluster = Cluster::start(
            "postgres",
            channels,
            Arc::new(ListenConnector { config: listen, tls }),
            Box::new(NotifyPublisher { pool }),
            origin,
            options,
        )
        .await
        .map_err(connect_error)?
        .limit_payload(listen::MAX_PAYLOAD);
        Ok(PostgresNotifier { cluster })
    }

    /// This notifier's random id, sent as `origin` in every message.
    pub fn origin(&self) -> &str {
        self.cluster.origin()
    }

    /// The `application_name` of the LISTEN connection (`pg_stat_activity` shows it).
    pub fn listen_application_name(&self) -> String {
        format!("courier-listen-{}", self.cluster.origin())
    }

    /// The channel names in use.
    pub fn channels(&self) -> &Channels {
        self.cluster.channels()
    }

    /// The actor holding the LISTEN connection.
    pub fn fanout(&self) -> &Addr<FanoutActor> {
        self.cluster.fanout()
    }

    /// The channels this node LISTENs to now, sorted (empty once closed).
    pub async fn subscribed_channels(&self) -> Vec<String> {
        self.cluster.fanout().send(SubscribedChannels).await.unwrap_or_default()
    }
}

#[async_trait]
impl Notifier for PostgresNotifier {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn publish(&self, notices: Vec<Notice>) -> Result<(), NotifyError> {
        self.cluster.publish(notices).await
    }

    async fn subscribe(&self, topics: Vec<Topic>) -> Result<Subscription, NotifyError> {
        self.cluster.subscribe(topics).await
    }

    fn stats(&self) -> NotifierStats {
        self.cluster.stats()
    }

    fn max_payload(&self) -> Option<usize> {
        self.cluster.max_payload()
    }
}

/// Reads the DSN and the TLS it asks for; refuses what this build cannot honour.
fn driver_config(url: &str) -> Result<(tokio_postgres::Config, PostgresTls), OpenError> {
    parse_postgres_url(url).map_err(|e| match e {
        PostgresUrlError::RootCert { .. } | PostgresUrlError::NoSystemRoots(_) => OpenError::Tls(e.to_string()),
        other => OpenError::PostgresUrl(other.to_string()),
    })
}

/// `user@host:port/db`, without the password, for error messages.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{}:{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        port,
        config.get_dbname().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_channel_fits_with_the_longest_prefix() {
        assert_eq!(MAX_POSTGRES_PREFIX, 16);
        let channels = Channels::new(&"p".repeat(MAX_POSTGRES_PREFIX)).unwrap();
        assert_eq!(channels.longest_name(), MAX_CHANNEL_NAME);
    }

    #[test]
    fn dsns_are_checked() {
        assert!(matches!(driver_config("mysql://x"), Err(OpenError::PostgresUrl(_))));
        assert!(driver_config("postgres://u@h/db?sslmode=require").is_ok());
        assert!(matches!(
            driver_config("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem"),
            Err(OpenError::Tls(m)) if m.contains("/nonexistent.pem")
        ));
        assert!(matches!(
            driver_config("postgres://u@h/db?nonsense=1"),
            Err(OpenError::PostgresUrl(_))
        ));
        let (config, _) = driver_config("postgresql://u:secret@db.internal:5433/app").unwrap();
        let shown = describe_target(&config);
        assert_eq!(shown, "u@db.internal:5433/app");
    }
}
