//! What the notifier tests share: where the servers are, whether a missing one
//! fails the run (`CI=true`) or skips loudly, fresh prefixes, and a way to run the
//! same cases against both cluster backends.
#![allow(dead_code)]

use std::time::Duration;

use courier_core::{Notifier, NotifierStats};
use courier_notify::{ClusterOptions, PostgresNotifier, RedisNotifier};

/// The Redis the tests use (`COURIER_TEST_REDIS_URL`, default the local one).
pub fn redis_url() -> String {
    std::env::var("COURIER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The Postgres the tests use (`COURIER_TEST_POSTGRES_URL`, default the local one).
pub fn postgres_url() -> String {
    std::env::var("COURIER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether a missing service fails the test (in CI) rather than skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `true` if the service answered; otherwise panics under `CI=true`, or prints a
/// loud skip notice and returns `false`.
pub fn reachable(service: &str, result: Result<(), String>) -> bool {
    match result {
        Ok(()) => true,
        Err(reason) if in_ci() => panic!("{service} is unreachable and CI=true: {reason}"),
        Err(reason) => {
            skip(&format!(
                "{service} is unreachable ({reason}); run scripts/test to start it"
            ));
            false
        }
    }
}

/// Says loudly that a test did not run. Written straight to stderr, which the test
/// harness does not capture (it captures only `eprintln!`), so a skip is seen.
pub fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n!!!!! SKIPPED: {why} !!!!!\n");
}

/// A plain client to the test Redis, for looking behind the notifier's back.
pub async fn redis_admin() -> Option<redis::aio::MultiplexedConnection> {
    let attempt = async {
        let client = redis::Client::open(redis_url()).map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(3), client.get_multiplexed_async_connection())
            .await
            .map_err(|_| "no answer within 3 s".to_string())?
            .map_err(|e| e.to_string())
    };
    match attempt.await {
        Ok(connection) => reachable("Redis", Ok(())).then_some(connection),
        Err(reason) => {
            reachable("Redis", Err(reason));
            None
        }
    }
}

/// A plain client to the test Postgres.
pub async fn postgres_admin() -> Option<tokio_postgres::Client> {
    let attempt = async {
        let (client, connection) = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls),
        )
        .await
        .map_err(|_| "no answer within 3 s".to_string())?
        .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok::<_, String>(client)
    };
    match attempt.await {
        Ok(client) => reachable("PostgreSQL", Ok(())).then_some(client),
        Err(reason) => {
            reachable("PostgreSQL", Err(reason));
            None
        }
    }
}

/// A prefix no other test uses (short enough for Postgres).
pub fn fresh_prefix() -> String {
    format!("t{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

/// Settings for tests: quick unsubscribes and reconnects.
pub fn test_options(prefix: &str) -> ClusterOptions {
    ClusterOptions {
        unsubscribe_delay: Duration::from_millis(50),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(3),
        operation_timeout: Duration::from_secs(5),
        ..ClusterOptions::with_prefix(prefix)
    }
}

/// Polls `check` every 20 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One cluster backend, as the shared cases see it.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// The notifier type.
    type Node: Notifier;
    /// A name for messages.
    const NAME: &'static str;
    /// Whether the server is there (panics in CI if not).
    async fn available() -> bool;
    /// A node on the test server.
    async fn node(options: courier_notify::ClusterOptions) -> Self::Node;
    /// How many subscription connections this node holds on the server.
    async fn subscription_connections(node: &Self::Node) -> usize;
    /// Kills the node's subscription connection from the server's side.
    async fn kill_subscription_connection(node: &Self::Node);
    /// The channels the node's actor says are subscribed.
    async fn subscribed(node: &Self::Node) -> Vec<String>;
}

/// Redis.
pub struct Redis;

/// `CLIENT LIST TYPE pubsub` lines of connections named `name`.
pub async fn pubsub_clients_named(name: &str) -> Vec<String> {
    let mut admin = redis_admin().await.expect("Redis");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter(|line| line.split(' ').any(|field| field == format!("name={name}")))
        .map(str::to_string)
        .collect()
}

impl Backend for Redis {
    type Node = RedisNotifier;
    const NAME: &'static str = "redis";

    async fn available() -> bool {
        redis_admin().await.is_some()
    }

    async fn node(options: ClusterOptions) -> RedisNotifier {
        let config = redis_url().parse().expect("the test Redis URL parses");
        RedisNotifier::connect_with(config, options)
            .await
            .expect("connects to Redis")
    }

    async fn subscription_connections(node: &RedisNotifier) -> usize {
        pubsub_clients_named(&node.subscription_client_name()).await.len()
    }

    async fn kill_subscription_connection(node: &RedisNotifier) {
        let lines = pubsub_clients_named(&node.subscription_client_name()).await;
        assert_eq!(lines.len(), 1, "exactly one subscription connection to kill: {lines:?}");
        let id = lines[0]
            .split(' ')
            .find_map(|field| field.strip_prefix("id="))
            .expect("CLIENT LIST has id=")
            .to_string();
        let mut admin = redis_admin().await.expect("Redis");
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(&id)
            .query_async(&mut admin)
            .await
            .expect("CLIENT KILL");
        assert_eq!(killed, 1);
    }

    async fn subscribed(node: &RedisNotifier) -> Vec<String> {
        node.subscribed_channels().await
    }
}

/// Postgres.
pub struct Postgres;

impl Backend for Postgres {
    type Node = PostgresNotifier;
    const NAME: &'static str = "postgres";

    async fn available() -> bool {
        postgres_admin().await.is_some()
    }

    async fn node(options: ClusterOptions) -> PostgresNotifier {
        PostgresNotifier::connect_with(&postgres_url(), options)
            .await
            .expect("connects to Postgres")
    }

    async fn subscription_connections(node: &PostgresNotifier) -> usize {
        let admin = postgres_admin().await.expect("Postgres");
        let row = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&node.listen_application_name()],
            )
            .await
            .expect("pg_stat_activity");
        row.get::<_, i64>(0) as usize
    }

    async fn kill_subscription_connection(node: &PostgresNotifier) {
        let admin = postgres_admin().await.expect("Postgres");
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&node.listen_application_name()],
            )
            .await
            .expect("pg_terminate_backend");
        assert_eq!(rows.len(), 1, "exactly one LISTEN connection to kill");
    }

    async fn subscribed(node: &PostgresNotifier) -> Vec<String> {
        node.subscribed_channels().await
    }
}

/// A summary for assertion messages.
pub fn show(stats: NotifierStats) -> String {
    format!("{stats:?}")
}
