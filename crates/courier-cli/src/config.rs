//! Configuration: built-in defaults (exactly `config/default.toml`), then a
//! config file (`--config` or `COURIER_CONFIG`), then `COURIER_<SECTION>_<KEY>`
//! environment variables, each layer overriding the one before.

use std::path::Path;
use std::time::Duration;

use courier_core::{NotificationTtl, RetryPolicy, serde_duration};
use courier_http::{ApiToken, HttpOptions, NotificationHttpOptions, Scope, WebhookOptions};
use courier_ingest::{IngestOptions, ProviderConfig};
use courier_runtime::{MaintenanceOptions, NotificationOptions, PollBackoff, WorkerOptions};
use serde::Deserialize;

/// The built-in defaults: the repository's `config/default.toml`.
pub const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// Settings whose values are lists (comma-separated in the environment).
const LISTS: &[&str] = &[
    "http.cors_origins",
    "api.tokens",
    "worker.queues",
    "worker.tags",
    "webhooks.schedule",
    "webhooks.allow_private",
    "webhooks.retired_secret_keys",
];

/// Everything `courier serve` reads.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: Node,
    pub store: Store,
    pub notifier: Notifier,
    pub http: Http,
    pub api: Api,
    pub metrics: Metrics,
    pub worker: Worker,
    pub maintenance: Maintenance,
    pub streams: Streams,
    pub webhooks: Webhooks,
    pub notifications: Notifications,
    pub ingest: Ingest,
    pub log: Log,
    pub testing: Testing,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
    /// How often the node reports itself to the cluster's list of nodes.
    #[serde(with = "serde_duration")]
    pub report_interval: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    pub url: String,
    /// `0s`: no limit.
    #[serde(with = "serde_duration")]
    pub statement_timeout: Duration,
    /// Postgres: the most connections the node's pool opens (at least 1, checked at load).
    pub pool_size: usize,
    pub sqlite_synchronous: SqliteSynchronous,
    /// What one priority level is worth in waiting (at most an hour, checked at load).
    #[serde(with = "serde_duration")]
    pub priority_aging: Duration,
}

/// `store.sqlite_synchronous`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// WAL with `synchronous=NORMAL`: a power loss may lose the last commits, never corrupts.
    Normal,
    /// `synchronous=FULL`: every commit is fsynced before it is acknowledged.
    Full,
}

impl Store {
    /// The settings the store is opened with.
    pub fn settings(&self) -> courier_store::StoreSettings {
        courier_store::StoreSettings {
            statement_timeout: (!self.statement_timeout.is_zero()).then_some(self.statement_timeout),
            pool_size: self.pool_size,
            sqlite_synchronous_full: self.sqlite_synchronous == SqliteSynchronous::Full,
            // Checked by `Config::load`, so the fallback is never taken.
            priority_ageing: courier_core::PriorityAgeing::new(self.priority_aging).unwrap_or_default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notifier {
    pub url: String,
    pub prefix: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub addr: String,
    pub body_limit: usize,
    pub cors_origins: Vec<String>,
    #[serde(with = "serde_duration")]
    pub max_wait: Duration,
    pub max_streams: usize,
    pub max_waiters: usize,
    pub max_ws_subscriptions: usize,
    pub max_event_bytes: usize,
    pub workers: usize,
    #[serde(with = "serde_duration")]
    pub shutdown_timeout: Duration,
    /// How long `/readyz` answers 503 on SIGTERM before the listener closes, so a
    /// load balancer stops sending here while the node still answers.
    #[serde(with = "serde_duration")]
    pub drain_period: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub tokens: Vec<TokenEntry>,
    pub allow_unauthenticated: bool,
}

/// One `api.tokens` entry: `"token"` (admin), `"token:scope+scope"`, or
/// `{token = "...", scopes = ["worker", "read"]}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum TokenEntry {
    Short(String),
    Scoped(ScopedToken),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopedToken {
    pub token: String,
    pub scopes: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub require_token: bool,
}

/// Who can reach the API, as `courier serve` decides before it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// Tokens guard `/v1`.
    Guarded,
    /// No tokens, but only this machine can connect (`http.addr` is loopback).
    Loopback,
    /// No tokens on a non-loopback address, because `api.allow_unauthenticated` says so.
    OpenByChoice { addr: String },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    pub enabled: bool,
    pub queues: Vec<String>,
    pub tags: Vec<String>,
    pub max_concurrency: usize,
    pub claim_batch: u32,
    #[serde(with = "serde_duration")]
    pub lease: Duration,
    #[serde(with = "serde_duration")]
    pub heartbeat: Duration,
    #[serde(with = "serde_duration")]
    pub poll_min: Duration,
    #[serde(with = "serde_duration")]
    pub poll_max: Duration,
    pub poll_factor: f64,
    pub max_executions: usize,
    #[serde(with = "serde_duration")]
    pub suspend_after: Duration,
    #[serde(with = "serde_duration")]
    pub drain_timeout: Duration,
    #[serde(with = "serde_duration")]
    pub version_backoff: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    #[serde(with = "serde_duration")]
    pub interval: Duration,
    #[serde(with = "serde_duration")]
    pub stuck_after: Duration,
    #[serde(with = "serde_duration")]
    pub cleanup_interval: Duration,
    #[serde(with = "serde_duration")]
    pub retention: Duration,
    #[serde(with = "serde_duration")]
    pub event_retention: Duration,
    #[serde(with = "serde_duration")]
    pub idempotency_retention: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Streams {
    #[serde(with = "serde_duration")]
    pub keepalive: Duration,
    #[serde(with = "serde_duration")]
    pub ws_ping: Duration,
    #[serde(with = "serde_duration")]
    pub ws_timeout: Duration,
    pub session_mailbox: usize,
    #[serde(with = "serde_duration")]
    pub poll: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhooks {
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    pub schedule: Vec<String>,
    pub queue: String,
    pub concurrency: u32,
    #[serde(with = "serde_duration")]
    pub poll: Duration,
    pub allow_private: Vec<String>,
    pub max_endpoints: u32,
    pub secret_key: String,
    pub retired_secret_keys: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    pub token_secret: String,
    pub webhook_secret: String,
    #[serde(with = "serde_duration")]
    pub webhook_failure_window: Duration,
    #[serde(with = "serde_duration")]
    pub queued_ttl: Duration,
    #[serde(with = "serde_duration")]
    pub timeseries_ttl: Duration,
    #[serde(with = "serde_duration")]
    pub cleanup_interval: Duration,
    #[serde(with = "serde_duration")]
    pub keepalive: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ingest {
    pub tcp_addr: String,
    pub tcp_token: String,
    pub tcp_max_connections: usize,
    #[serde(with = "serde_duration")]
    pub tcp_idle_timeout: Duration,
    pub max_message_bytes: usize,
    pub redis_url: String,
    pub channel: String,
    pub stream: String,
    pub group: String,
    pub queue_size: usize,
    #[serde(with = "serde_duration")]
    pub reclaim_after: Duration,
    pub max_deliveries: u32,
    #[serde(with = "serde_duration")]
    pub stream_max_age: Duration,
    pub stream_max_len: u64,
    pub template_dir: String,
    pub callback_url: String,
    pub callback_secret: String,
    pub queue: String,
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, ProviderConfig>,
}

/// Keys a provider's settings may have, for reading them from the environment
/// (`COURIER_INGEST_PROVIDERS_<NAME>_<KEY>`), longest first so `SMTP_URL` wins over `URL`.
const PROVIDER_KEYS: &[&str] = &[
    "webhook_url",
    "smtp_url",
    "reply_to",
    "concurrency",
    "timeout",
    "secret",
    "from",
    "kind",
    "url",
];

/// Seed 001's variables and the `ingest.*` settings they set.
const SEED_VARIABLES: &[(&str, &str)] = &[
    ("NOTIFY_REDIS", "redis_url"),
    ("NOTIFY_CHANNEL", "channel"),
    ("NOTIFY_WORKER_STREAM", "stream"),
    ("NOTIFY_WORKER_GROUP", "group"),
    ("NOTIFY_QUEUE_SIZE", "queue_size"),
];

/// Where the seed's Redis inputs read when only their names are given.
const SEED_REDIS: &str = "redis://127.0.0.1:6379";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub level: String,
    pub format: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Testing {
    pub fixtures: bool,
    pub effects_file: String,
    #[serde(with = "serde_duration")]
    pub clock_offset: Duration,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not valid TOML: {source}")]
    Parse { path: String, source: Box<toml::de::Error> },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error(
        "refusing to serve the API unauthenticated on {addr}, which is not a loopback address: \
         set api.tokens (COURIER_API_TOKENS=<token>), listen on 127.0.0.1, or set \
         api.allow_unauthenticated = true (COURIER_API_ALLOW_UNAUTHENTICATED=true) if anyone who \
         can reach it may use it"
    )]
    Unguarded { addr: String },
}

/// Whether every address `addr` (host:port) names is a loopback one. A name that
/// does not resolve counts as exposed: the listener would fail anyway.
fn is_loopback(addr: &str) -> bool {
    use std::net::{SocketAddr, ToSocketAddrs};
    if let Ok(addr) = addr.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    match addr.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Overlays `layer` onto `base`, table by table.
fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => merge(b, l),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Every setting's environment variable with its default, one per line, for
/// `courier serve --help`.
pub fn variables_help() -> String {
    let defaults: toml::Table = DEFAULTS.parse().expect("config/default.toml is valid TOML");
    let mut out = String::from(
        "Settings (config/default.toml has what each does): a --config file overrides the \
         built-in defaults, and these environment variables override both.\n",
    );
    for (section, keys) in &defaults {
        let toml::Value::Table(keys) = keys else { continue };
        for (key, default) in keys {
            if default.is_table() {
                continue;
            }
            let shown = match default {
                toml::Value::String(s) if s.is_empty() => "(empty)".to_string(),
                toml::Value::String(s) => s.clone(),
                toml::Value::Array(items) if items.is_empty() => "(none)".to_string(),
                other => other.to_string(),
            };
            out.push_str(&format!("\n  {:<48} {shown}", env_name(section, key)));
        }
    }
    out.push_str(
        "\n\nIngest providers: COURIER_INGEST_PROVIDERS_<NAME>_<KEY> (e.g. \
         COURIER_INGEST_PROVIDERS_EMAIL_SMTP_URL).",
    );
    out
}

/// The environment variable that overrides `section.key`.
pub fn env_name(section: &str, key: &str) -> String {
    format!("COURIER_{}_{}", section.to_uppercase(), key.to_uppercase())
}

/// Seed 001's `NOTIFY_*` variables, each turning its part of ingestion on; the
/// `COURIER_INGEST_*` variables read after them win.
fn seed_variables(
    table: &mut toml::Table,
    defaults: &toml::Table,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let Some(toml::Value::Table(ingest_defaults)) = defaults.get("ingest") else {
        return Ok(());
    };
    let mut set = Vec::new();
    for (variable, key) in SEED_VARIABLES {
        if let Some(raw) = env(variable).filter(|v| !v.trim().is_empty()) {
            let value = env_value(
                &format!("ingest.{key} ({variable})"),
                &ingest_defaults[*key],
                raw.trim(),
            )?;
            set.push((key.to_string(), value));
        }
    }
    let host = env("NOTIFY_DEFAULT_HOST").filter(|v| !v.trim().is_empty());
    let port = env("NOTIFY_DEFAULT_PORT").filter(|v| !v.trim().is_empty());
    if host.is_some() || port.is_some() {
        let host = host.unwrap_or_else(|| "127.0.0.1".into());
        let port = port.unwrap_or_else(|| "8991".into());
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{}]", host.trim())
        } else {
            host.trim().to_string()
        };
        set.push((
            "tcp_addr".into(),
            toml::Value::String(format!("{host}:{}", port.trim())),
        ));
    }
    if let Some(toml::Value::Table(ingest)) = table.get_mut("ingest") {
        for (key, value) in set {
            ingest.insert(key, value);
        }
    }
    Ok(())
}

/// `COURIER_INGEST_PROVIDERS_<NAME>_<KEY>`: a provider's setting from the
/// environment (a secret such as an SMTP password rarely belongs in a file).
fn provider_variables(table: &mut toml::Table, env: &impl Fn(&str) -> Option<String>) {
    const PREFIX: &str = "COURIER_INGEST_PROVIDERS_";
    let mut found = Vec::new();
    for (name, _) in std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))) {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(key) = PROVIDER_KEYS
            .iter()
            .find(|k| rest.ends_with(&format!("_{}", k.to_uppercase())))
        else {
            continue;
        };
        let provider = rest[..rest.len() - key.len() - 1].to_lowercase();
        if let (false, Some(value)) = (provider.is_empty(), env(&name)) {
            found.push((provider, key.to_string(), value));
        }
    }
    let Some(toml::Value::Table(ingest)) = table.get_mut("ingest") else {
        return;
    };
    let providers = ingest
        .entry("providers")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(providers) = providers.as_table_mut() else {
        return;
    };
    for (provider, key, value) in found {
        let value = match key.as_str() {
            "concurrency" => value
                .trim()
                .parse()
                .map(toml::Value::Integer)
                .unwrap_or(toml::Value::String(value)),
            _ => toml::Value::String(value),
        };
        if let Some(settings) = providers
            .entry(provider)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
        {
            settings.insert(key, value);
        }
    }
}

/// Reads an environment override as the type the default has.
fn env_value(path: &str, default: &toml::Value, raw: &str) -> Result<toml::Value, ConfigError> {
    let bad = |what: &str| ConfigError::Invalid(format!("{path}: {what} (got {raw:?})"));
    Ok(match default {
        _ if LISTS.contains(&path) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        toml::Value::Integer(_) => toml::Value::Integer(raw.trim().parse().map_err(|_| bad("expected an integer"))?),
        toml::Value::Float(_) => toml::Value::Float(raw.trim().parse().map_err(|_| bad("expected a number"))?),
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(bad("expected true or false")),
        }),
        _ => toml::Value::String(raw.to_string()),
    })
}

impl Config {
    /// Loads defaults, then `file` (if any), then the environment `env`.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut table: toml::Table = DEFAULTS.parse().expect("config/default.toml is valid TOML");
        if let Some(path) = file {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: name.clone(),
                source,
            })?;
            let layer: toml::Table = text.parse().map_err(|source| ConfigError::Parse {
                path: name,
                source: Box::new(source),
            })?;
            merge(&mut table, layer);
        }
        let defaults: toml::Table = DEFAULTS.parse().expect("valid");
        seed_variables(&mut table, &defaults, &env)?;
        for (section, keys) in &defaults {
            let toml::Value::Table(keys) = keys else { continue };
            for (key, default) in keys {
                if default.is_table() {
                    continue;
                }
                if let Some(raw) = env(&env_name(section, key)) {
                    let value = env_value(&format!("{section}.{key}"), default, &raw)?;
                    if let Some(toml::Value::Table(t)) = table.get_mut(section) {
                        t.insert(key.clone(), value);
                    }
                }
            }
        }
        provider_variables(&mut table, &env);
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.worker.heartbeat >= self.worker.lease {
            return Err(ConfigError::Invalid(
                "worker.heartbeat must be shorter than worker.lease".into(),
            ));
        }
        if self.maintenance.stuck_after >= self.worker.lease {
            tracing::warn!(
                "maintenance.stuck_after is not shorter than worker.lease: tasks will be reclaimed before they are reported stuck"
            );
        }
        if self.node.report_interval < Duration::from_millis(100)
            || self.node.report_interval > Duration::from_secs(600)
        {
            return Err(ConfigError::Invalid(
                "node.report_interval must be between 100ms and 10m".into(),
            ));
        }
        courier_core::PriorityAgeing::new(self.store.priority_aging)
            .map_err(|e| ConfigError::Invalid(format!("store.priority_aging: {e}")))?;
        if self.store.pool_size == 0 {
            return Err(ConfigError::Invalid("store.pool_size must be at least 1".into()));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid("log.format must be \"text\" or \"json\"".into()));
        }
        let h = &self.http;
        for (name, value) in [
            ("max_streams", h.max_streams),
            ("max_waiters", h.max_waiters),
            ("max_ws_subscriptions", h.max_ws_subscriptions),
            ("max_event_bytes", h.max_event_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("http.{name} must be at least 1")));
            }
        }
        self.webhook_retry()?;
        self.webhook_allow_list()?;
        self.webhook_secret_keys()?;
        self.ingest_options()?;
        self.api_tokens()?;
        let n = &self.notifications;
        for (name, value) in [
            ("queued_ttl", n.queued_ttl),
            ("timeseries_ttl", n.timeseries_ttl),
            ("cleanup_interval", n.cleanup_interval),
            ("keepalive", n.keepalive),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "notifications.{name} must be longer than 0s"
                )));
            }
        }
        Ok(())
    }

    /// The API tokens, empty ones dropped (an empty token never matches anything,
    /// and a list of only empty ones is no tokens).
    pub fn api_tokens(&self) -> Result<Vec<ApiToken>, ConfigError> {
        let bad = |e: courier_http::TokenError| ConfigError::Invalid(format!("api.tokens: {e}"));
        let mut tokens = Vec::new();
        for entry in &self.api.tokens {
            let token = match entry {
                TokenEntry::Short(entry) => ApiToken::parse(entry).map_err(bad)?,
                TokenEntry::Scoped(ScopedToken { token, scopes }) => {
                    let scopes = scopes
                        .iter()
                        .map(|s| s.parse::<Scope>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(bad)?;
                    ApiToken::new(token.trim(), scopes).map_err(bad)?
                }
            };
            if !token.is_empty() {
                tokens.push(token);
            }
        }
        Ok(tokens)
    }

    /// Whether `http.addr` may serve the API as configured: a non-loopback address
    /// without tokens is refused unless `api.allow_unauthenticated` is set.
    pub fn exposure(&self) -> Result<Exposure, ConfigError> {
        if !self.api_tokens()?.is_empty() {
            return Ok(Exposure::Guarded);
        }
        let addr = self.http.addr.trim();
        if is_loopback(addr) {
            return Ok(Exposure::Loopback);
        }
        if self.api.allow_unauthenticated {
            return Ok(Exposure::OpenByChoice { addr: addr.to_string() });
        }
        Err(ConfigError::Unguarded { addr: addr.to_string() })
    }

    /// How notifications for people are kept.
    pub fn notification_options(&self) -> NotificationOptions {
        let n = &self.notifications;
        NotificationOptions {
            ttl: NotificationTtl {
                queued: n.queued_ttl,
                timeseries: n.timeseries_ttl,
            },
            cleanup_interval: n.cleanup_interval,
        }
    }

    fn webhook_allow_list(&self) -> Result<courier_webhooks::destination::AllowList, ConfigError> {
        courier_webhooks::destination::AllowList::parse(&self.webhooks.allow_private)
            .map_err(|e| ConfigError::Invalid(format!("webhooks.allow_private: {e}")))
    }

    /// `webhooks.secret_key` and `webhooks.retired_secret_keys`; the error names
    /// the setting, never the value.
    fn webhook_secret_keys(&self) -> Result<courier_webhooks::sealing::SecretKeys, ConfigError> {
        courier_webhooks::sealing::SecretKeys::parse(&self.webhooks.secret_key, &self.webhooks.retired_secret_keys)
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    fn webhook_retry(&self) -> Result<RetryPolicy, ConfigError> {
        let schedule = self
            .webhooks
            .schedule
            .iter()
            .map(|s| {
                courier_core::parse_duration(s).map_err(|e| ConfigError::Invalid(format!("webhooks.schedule: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RetryPolicy {
            schedule,
            ..RetryPolicy::webhook_schedule()
        })
    }

    /// Ingestion's options, with seed 001's rules for what turns an input on.
    pub fn ingest_options(&self) -> Result<IngestOptions, ConfigError> {
        let i = &self.ingest;
        let bad = |key: &str, what: String| ConfigError::Invalid(format!("ingest.{key}: {what}"));
        let named = |value: &str| match value.trim() {
            "" => None,
            "off" => Some(None),
            name => Some(Some(name.to_string())),
        };
        // With a Redis named, an input left empty runs under the seed's name;
        // without one, only an input named explicitly runs (on the seed's default Redis).
        let explicit_redis = Some(i.redis_url.trim().to_string()).filter(|u| !u.is_empty());
        let pick = |choice: Option<Option<String>>, seed: &str| match choice {
            Some(choice) => choice,
            None => explicit_redis.as_ref().map(|_| seed.to_string()),
        };
        let channel = pick(named(&i.channel), "NotifyChannel");
        let stream = pick(named(&i.stream), "NotifyWorkerStream");
        let redis_url = explicit_redis
            .clone()
            .or_else(|| (channel.is_some() || stream.is_some()).then(|| SEED_REDIS.to_string()));
        let tcp_addr = match i.tcp_addr.trim() {
            "" | "off" => None,
            addr => Some(
                addr.parse()
                    .or_else(|_| {
                        use std::net::ToSocketAddrs;
                        addr.to_socket_addrs()
                            .map_err(|e| e.to_string())
                            .and_then(|mut a| a.next().ok_or_else(|| "names no address".to_string()))
                    })
                    .map_err(|e| bad("tcp_addr", format!("{addr:?} is not host:port ({e})")))?,
            ),
        };
        let nonempty = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let mut providers = i.providers.clone();
        if providers.is_empty() {
            providers.insert("log".into(), ProviderConfig::default());
        }
        Ok(IngestOptions {
            tcp_addr,
            tcp_token: nonempty(&i.tcp_token),
            tcp_max_connections: i.tcp_max_connections,
            tcp_idle_timeout: i.tcp_idle_timeout,
            max_message_bytes: i.max_message_bytes,
            channel,
            stream,
            redis_url,
            group: i.group.clone(),
            queue_size: i.queue_size,
            reclaim_after: i.reclaim_after,
            max_deliveries: i.max_deliveries,
            stream_max_age: Some(i.stream_max_age).filter(|d| !d.is_zero()),
            stream_max_len: Some(i.stream_max_len).filter(|n| *n > 0),
            template_dir: nonempty(&i.template_dir).map(Into::into),
            providers,
            callback_url: nonempty(&i.callback_url),
            callback_secret: nonempty(&i.callback_secret),
            queue: i.queue.clone(),
        })
    }

    /// The in-process worker's options.
    pub fn worker_options(&self) -> WorkerOptions {
        let w = &self.worker;
        let mut options = WorkerOptions::default()
            .max_concurrency(w.max_concurrency)
            .lease(w.lease)
            .heartbeat(w.heartbeat)
            .poll(PollBackoff {
                min: w.poll_min,
                max: w.poll_max,
                factor: w.poll_factor,
            })
            .suspend_after(w.suspend_after);
        if !w.queues.is_empty() {
            // Webhook and ingestion deliveries must run somewhere: a node
            // restricted to some queues still takes theirs.
            let mut queues = w.queues.clone();
            for internal in [&self.webhooks.queue, &self.ingest.queue] {
                if !queues.contains(internal) {
                    queues.push(internal.clone());
                }
            }
            options = options.queues(queues);
        }
        if !w.tags.is_empty() {
            options = options.tags(w.tags.clone());
        }
        options.claim_batch = w.claim_batch;
        options.max_executions = w.max_executions;
        options.drain_timeout = w.drain_timeout;
        options.version_backoff = w.version_backoff;
        options
    }

    /// Housekeeping options.
    pub fn maintenance_options(&self) -> MaintenanceOptions {
        let m = &self.maintenance;
        MaintenanceOptions {
            interval: m.interval,
            stuck_after: m.stuck_after,
            cleanup_interval: m.cleanup_interval,
            retention: m.retention,
            event_retention: m.event_retention,
            idempotency_retention: m.idempotency_retention,
        }
    }

    /// The HTTP surface's options.
    pub fn http_options(&self) -> HttpOptions {
        HttpOptions {
            tokens: self.api_tokens().expect("checked at load"),
            metrics_require_token: self.metrics.require_token,
            body_limit: self.http.body_limit,
            cors_origins: self.http.cors_origins.clone(),
            max_wait: self.http.max_wait,
            max_streams: self.http.max_streams,
            max_waiters: self.http.max_waiters,
            max_ws_subscriptions: self.http.max_ws_subscriptions,
            max_event_bytes: self.http.max_event_bytes,
            sse_keepalive: self.streams.keepalive,
            ws_ping: self.streams.ws_ping,
            ws_timeout: self.streams.ws_timeout,
            session_mailbox: self.streams.session_mailbox,
            tail_poll: self.streams.poll,
            webhooks: WebhookOptions {
                timeout: self.webhooks.timeout,
                retry: self.webhook_retry().expect("checked at load"),
                queue: self.webhooks.queue.clone(),
                concurrency: self.webhooks.concurrency,
                poll: self.webhooks.poll,
                allow_private: self.webhook_allow_list().expect("checked at load"),
                max_endpoints: self.webhooks.max_endpoints,
                secret_keys: self.webhook_secret_keys().expect("checked at load"),
            },
            notifications: NotificationHttpOptions {
                token_secret: Some(self.notifications.token_secret.clone()).filter(|s| !s.is_empty()),
                webhook_secret: Some(self.notifications.webhook_secret.clone()).filter(|s| !s.is_empty()),
                webhook_failure_window: self.notifications.webhook_failure_window,
                keepalive: self.notifications.keepalive,
                identity: None,
            },
            ingest: self.ingest_options().expect("checked at load"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_defaults_are_the_default_file() {
        let config = Config::load(None, |_| None).unwrap();
        assert_eq!(config.store.url, "./courier.db");
        assert_eq!(config.http.addr, "127.0.0.1:8080");
        assert_eq!(config.notifier.url, "memory");
        assert!(config.api.tokens.is_empty());
        assert!(!config.api.allow_unauthenticated);
        assert!(!config.metrics.require_token);
        assert_eq!(config.exposure().unwrap(), Exposure::Loopback);
        assert_eq!(config.http_options().webhooks.retry.attempts(), 8);
        assert_eq!(config.store.settings(), courier_store::StoreSettings::default());
    }

    #[test]
    fn store_settings_come_from_the_environment() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("COURIER_STORE_STATEMENT_TIMEOUT", "5s"),
            ("COURIER_STORE_SQLITE_SYNCHRONOUS", "full"),
        ]);
        let config = Config::load(None, |k| env.get(k).map(|v| v.to_string())).unwrap();
        let settings = config.store.settings();
        assert_eq!(settings.statement_timeout, Some(Duration::from_secs(5)));
        assert!(settings.sqlite_synchronous_full);
        let off = Config::load(None, |k| (k == "COURIER_STORE_STATEMENT_TIMEOUT").then(|| "0s".into())).unwrap();
        let pooled = Config::load(None, |k| (k == "COURIER_STORE_POOL_SIZE").then(|| "6".into())).unwrap();
        assert_eq!(pooled.store.settings().pool_size, 6);
        let err = Config::load(None, |k| (k == "COURIER_STORE_POOL_SIZE").then(|| "0".into())).unwrap_err();
        assert!(err.to_string().contains("store.pool_size"), "{err}");
        let aged = Config::load(None, |k| (k == "COURIER_STORE_PRIORITY_AGING").then(|| "5s".into())).unwrap();
        assert_eq!(aged.store.settings().priority_ageing.duration(), Duration::from_secs(5));
        let err = Config::load(None, |k| (k == "COURIER_STORE_PRIORITY_AGING").then(|| "2h".into())).unwrap_err();
        assert!(err.to_string().contains("store.priority_aging"), "{err}");
        assert_eq!(off.store.settings().statement_timeout, None);
        assert!(
            Config::load(None, |k| (k == "COURIER_STORE_SQLITE_SYNCHRONOUS")
                .then(|| "off".into()))
            .is_err()
        );
    }

    #[test]
    fn environment_overrides_every_setting_with_its_type() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("COURIER_STORE_URL", "postgres://db/courier"),
            ("COURIER_HTTP_ADDR", "0.0.0.0:9000"),
            ("COURIER_API_TOKENS", "a, b"),
            ("COURIER_NODE_ID", "node-7"),
            ("COURIER_WORKER_MAX_CONCURRENCY", "12"),
            ("COURIER_WORKER_ENABLED", "false"),
            ("COURIER_WORKER_LEASE", "1m"),
            ("COURIER_WEBHOOKS_SCHEDULE", "1s,2s"),
        ]);
        let config = Config::load(None, |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(config.store.url, "postgres://db/courier");
        assert_eq!(config.http.addr, "0.0.0.0:9000");
        assert_eq!(
            config.api_tokens().unwrap(),
            vec![ApiToken::admin("a"), ApiToken::admin("b")]
        );
        assert_eq!(config.node.id, "node-7");
        assert_eq!(config.worker.max_concurrency, 12);
        assert!(!config.worker.enabled);
        assert_eq!(config.worker.lease, Duration::from_secs(60));
        assert_eq!(config.http_options().webhooks.retry.attempts(), 3);
    }

    #[test]
    fn webhook_destinations_and_endpoint_cap_come_from_the_environment() {
        let defaults = Config::load(None, |_| None).unwrap().http_options().webhooks;
        assert_eq!(
            defaults.allow_private,
            Default::default(),
            "only global destinations by default"
        );
        assert_eq!(defaults.max_endpoints, 1000);
        let env = HashMap::from([
            ("COURIER_WEBHOOKS_ALLOW_PRIVATE", "127.0.0.1/32, ::1/128"),
            ("COURIER_WEBHOOKS_MAX_ENDPOINTS", "5"),
        ]);
        let options = Config::load(None, |k| env.get(k).map(|v| v.to_string()))
            .unwrap()
            .http_options()
            .webhooks;
        assert_eq!(options.allow_private.to_string(), "127.0.0.1/32,::1/128");
        assert_eq!(options.max_endpoints, 5);
        let err = Config::load(None, |k| {
            (k == "COURIER_WEBHOOKS_ALLOW_PRIVATE").then(|| "localhost".into())
        })
        .unwrap_err();
        assert!(err.to_string().contains("webhooks.allow_private"), "{err}");
    }

    #[test]
    fn webhook_secret_keys_come_from_the_environment_and_must_be_32_bytes_of_base64() {
        const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        const OLD: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
        let defaults = Config::load(None, |_| None).unwrap().http_options().webhooks;
        assert!(defaults.secret_keys.current().is_none(), "no key by default");
        let env = HashMap::from([
            ("COURIER_WEBHOOKS_SECRET_KEY", KEY),
            ("COURIER_WEBHOOKS_RETIRED_SECRET_KEYS", OLD),
        ]);
        let keys = Config::load(None, |k| env.get(k).map(|v| v.to_string()))
            .unwrap()
            .http_options()
            .webhooks
            .secret_keys;
        let expected = courier_webhooks::sealing::SecretKeys::parse(KEY, &[OLD]).unwrap();
        assert_eq!(keys, expected);
        for (variable, bad, setting) in [
            ("COURIER_WEBHOOKS_SECRET_KEY", "hunter2hunter2", "webhooks.secret_key"),
            ("COURIER_WEBHOOKS_SECRET_KEY", "c2hvcnQ=", "webhooks.secret_key"),
            (
                "COURIER_WEBHOOKS_RETIRED_SECRET_KEYS",
                "c2hvcnQ=",
                "webhooks.retired_secret_keys[0]",
            ),
        ] {
            let err = Config::load(None, |k| (k == variable).then(|| bad.to_string())).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(setting), "{text}");
            assert!(text.contains("openssl rand -base64 32"), "{text}");
            assert!(!text.contains(bad), "the value is not repeated: {text}");
        }
    }

    #[test]
    fn a_file_overrides_the_defaults_and_the_environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("courier-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "[store]\nurl = \"from-file.db\"\n[worker]\nmax_concurrency = 3\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), |k| {
            (k == "COURIER_WORKER_MAX_CONCURRENCY").then(|| "4".into())
        })
        .unwrap();
        assert_eq!(config.store.url, "from-file.db");
        assert_eq!(config.worker.max_concurrency, 4);
    }

    #[test]
    fn the_production_example_loads_and_names_a_cluster() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/production.toml");
        let config = Config::load(Some(&path), |_| None).unwrap();
        assert!(config.store.url.starts_with("postgres://"));
        assert!(config.notifier.url.starts_with("redis://"));
        assert_eq!(config.http.addr, "0.0.0.0:8080");
        assert!(!config.testing.fixtures);
        // It listens on every interface: tokens must come from the environment.
        let err = config.exposure().unwrap_err();
        assert!(err.to_string().contains("COURIER_API_TOKENS"), "{err}");
        let config = Config::load(Some(&path), |k| (k == "COURIER_API_TOKENS").then(|| "t0ken".into())).unwrap();
        assert_eq!(config.exposure().unwrap(), Exposure::Guarded);
        // The webhook secret key comes from the environment, never the file.
        assert!(config.http_options().webhooks.secret_keys.current().is_none());
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let config = Config::load(Some(&path), |k| {
            (k == "COURIER_WEBHOOKS_SECRET_KEY").then(|| key.into())
        })
        .unwrap();
        assert!(config.http_options().webhooks.secret_keys.current().is_some());
    }

    #[test]
    fn tokens_come_plain_scoped_or_as_tables_and_bad_scopes_are_refused() {
        let from_env = |value: &str| Config::load(None, |k| (k == "COURIER_API_TOKENS").then(|| value.to_string()));
        let tokens = from_env("w0rk:worker+read, adm1n").unwrap().api_tokens().unwrap();
        assert_eq!(
            tokens,
            vec![
                ApiToken::new("w0rk", [Scope::Worker, Scope::Read]).unwrap(),
                ApiToken::admin("adm1n")
            ]
        );
        let err = from_env("w0rk:root").unwrap_err();
        assert!(
            err.to_string().contains("api.tokens") && err.to_string().contains("root"),
            "{err}"
        );
        let err = from_env("w0rk:").unwrap_err();
        assert!(err.to_string().contains("grants nothing"), "{err}");

        let dir = std::env::temp_dir().join(format!("courier-config-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "[api]\ntokens = [{token = \"r3ad\", scopes = [\"read\"]}, \"d1sp:dispatch\", \"\"]\n",
        )
        .unwrap();
        let tokens = Config::load(Some(&path), |_| None).unwrap().api_tokens().unwrap();
        assert_eq!(
            tokens,
            vec![
                ApiToken::new("r3ad", [Scope::Read]).unwrap(),
                ApiToken::new("d1sp", [Scope::Dispatch]).unwrap()
            ],
            "the empty entry is dropped"
        );
        std::fs::write(&path, "[api]\ntokens = [{token = \"r3ad\", scopes = []}]\n").unwrap();
        let err = Config::load(Some(&path), |_| None).unwrap_err();
        assert!(err.to_string().contains("grants nothing"), "{err}");
    }

    #[test]
    fn a_non_loopback_address_needs_tokens_or_the_operators_say_so() {
        let load = |vars: &[(&str, &str)]| {
            let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::load(None, |k| env.get(k).cloned()).unwrap().exposure()
        };
        for addr in ["0.0.0.0:8080", "[::]:8080", "192.0.2.7:80"] {
            let err = load(&[("COURIER_HTTP_ADDR", addr)]).unwrap_err();
            assert!(matches!(&err, ConfigError::Unguarded { addr: a } if a == addr), "{err}");
            let err = load(&[("COURIER_HTTP_ADDR", addr), ("COURIER_API_TOKENS", " , ")]).unwrap_err();
            assert!(
                matches!(err, ConfigError::Unguarded { .. }),
                "only empty tokens are no tokens"
            );
        }
        for addr in ["127.0.0.1:8080", "[::1]:8080", "localhost:8080"] {
            assert_eq!(
                load(&[("COURIER_HTTP_ADDR", addr)]).unwrap(),
                Exposure::Loopback,
                "{addr}"
            );
        }
        assert_eq!(
            load(&[("COURIER_HTTP_ADDR", "0.0.0.0:1"), ("COURIER_API_TOKENS", "t")]).unwrap(),
            Exposure::Guarded
        );
        assert_eq!(
            load(&[
                ("COURIER_HTTP_ADDR", "0.0.0.0:1"),
                ("COURIER_API_ALLOW_UNAUTHENTICATED", "true")
            ])
            .unwrap(),
            Exposure::OpenByChoice {
                addr: "0.0.0.0:1".into()
            }
        );
    }

    #[test]
    fn metrics_can_require_a_token() {
        let config = Config::load(None, |k| match k {
            "COURIER_METRICS_REQUIRE_TOKEN" => Some("true".into()),
            "COURIER_API_TOKENS" => Some("m:read".into()),
            _ => None,
        })
        .unwrap();
        assert!(config.http_options().metrics_require_token);
        assert!(
            !Config::load(None, |_| None)
                .unwrap()
                .http_options()
                .metrics_require_token
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_name() {
        let err = Config::load(None, |k| (k == "COURIER_WORKER_MAX_CONCURRENCY").then(|| "lots".into())).unwrap_err();
        assert!(err.to_string().contains("worker.max_concurrency"), "{err}");
        let err = Config::load(None, |k| (k == "COURIER_WORKER_LEASE").then(|| "soon".into())).unwrap_err();
        assert!(err.to_string().contains("invalid duration"), "{err}");
        let err = Config::load(None, |k| (k == "COURIER_WORKER_HEARTBEAT").then(|| "1h".into())).unwrap_err();
        assert!(err.to_string().contains("heartbeat"), "{err}");
    }

    #[test]
    fn ingestion_is_off_until_configured_but_http_and_the_log_provider_are_there() {
        let ingest = Config::load(None, |_| None).unwrap().ingest_options().unwrap();
        assert_eq!(
            (ingest.tcp_addr, ingest.redis_url, ingest.channel, ingest.stream),
            (None, None, None, None)
        );
        assert!(ingest.providers.contains_key("log"));
        assert_eq!(ingest.group, "NotifyWorkerGroup");
    }

    #[test]
    fn each_seed_variable_alone_turns_its_part_on() {
        let load = |vars: &[(&str, &str)]| {
            let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::load(None, |k| env.get(k).cloned())
                .unwrap()
                .ingest_options()
                .unwrap()
        };
        let redis = load(&[("NOTIFY_REDIS", "redis://cache:6379/5")]);
        assert_eq!(redis.redis_url.as_deref(), Some("redis://cache:6379/5"));
        assert_eq!(redis.channel.as_deref(), Some("NotifyChannel"));
        assert_eq!(redis.stream.as_deref(), Some("NotifyWorkerStream"));

        let channel = load(&[("NOTIFY_CHANNEL", "Alerts")]);
        assert_eq!(channel.channel.as_deref(), Some("Alerts"));
        assert_eq!(channel.stream, None, "only the part named turns on");
        assert_eq!(channel.redis_url.as_deref(), Some(SEED_REDIS));

        let stream = load(&[
            ("NOTIFY_WORKER_STREAM", "Jobs"),
            ("NOTIFY_WORKER_GROUP", "g1"),
            ("NOTIFY_QUEUE_SIZE", "16"),
        ]);
        assert_eq!(
            (stream.stream.as_deref(), stream.channel.as_deref()),
            (Some("Jobs"), None)
        );
        assert_eq!((stream.group.as_str(), stream.queue_size), ("g1", 16));

        let tcp = load(&[("NOTIFY_DEFAULT_PORT", "9001")]);
        assert_eq!(tcp.tcp_addr, Some("127.0.0.1:9001".parse().unwrap()));
        let tcp = load(&[("NOTIFY_DEFAULT_HOST", "127.0.0.2"), ("NOTIFY_DEFAULT_PORT", "8991")]);
        assert_eq!(tcp.tcp_addr, Some("127.0.0.2:8991".parse().unwrap()));

        let courier_wins = load(&[("NOTIFY_QUEUE_SIZE", "16"), ("COURIER_INGEST_QUEUE_SIZE", "32")]);
        assert_eq!(courier_wins.queue_size, 32);
        let off = load(&[("NOTIFY_REDIS", "redis://cache"), ("COURIER_INGEST_CHANNEL", "off")]);
        assert_eq!((off.channel, off.stream.as_deref()), (None, Some("NotifyWorkerStream")));
    }

    #[test]
    fn bad_ingest_settings_are_refused_with_their_name() {
        let err = Config::load(None, |k| (k == "NOTIFY_QUEUE_SIZE").then(|| "many".into())).unwrap_err();
        assert!(err.to_string().contains("NOTIFY_QUEUE_SIZE"), "{err}");
        let err = Config::load(None, |k| (k == "COURIER_INGEST_TCP_ADDR").then(|| "nowhere".into())).unwrap_err();
        assert!(err.to_string().contains("ingest.tcp_addr"), "{err}");
    }

    #[test]
    fn providers_come_from_the_file() {
        let dir = std::env::temp_dir().join(format!("courier-config-ingest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "[ingest.providers.email]\nsmtp_url = \"smtp://127.0.0.1:2525\"\nfrom = \"Courier <c@example.com>\"\n[ingest.providers.alerts]\nkind = \"slack\"\nwebhook_url = \"http://127.0.0.1:9/hook\"\nconcurrency = 4\n",
        )
        .unwrap();
        let ingest = Config::load(Some(&path), |_| None).unwrap().ingest_options().unwrap();
        assert_eq!(
            ingest.providers["email"].setting("smtp_url"),
            Some("smtp://127.0.0.1:2525")
        );
        assert_eq!(ingest.providers["alerts"].kind("alerts"), "slack");
        assert_eq!(ingest.providers["alerts"].concurrency, Some(4));
        assert!(ingest.providers.contains_key("log"), "the default log provider stays");
    }
}
