//! Configuration: built-in defaults (exactly `config/default.toml`), then a
//! config file (`--config` or `COURIER_CONFIG`), then `COURIER_<SECTION>_<KEY>`
//! environment variables, each layer overriding the one before.

use std::path::Path;
use std::time::Duration;

use courier_core::{NotificationTtl, RetryPolicy, serde_duration};
use courier_http::{HttpOptions, NotificationHttpOptions, WebhookOptions};
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
    pub worker: Worker,
    pub maintenance: Maintenance,
    pub streams: Streams,
    pub webhooks: Webhooks,
    pub notifications: Notifications,
    pub log: Log,
    pub testing: Testing,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    pub url: String,
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
    pub workers: usize,
    #[serde(with = "serde_duration")]
    pub shutdown_timeout: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub tokens: Vec<String>,
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

/// The environment variable that overrides `section.key`.
pub fn env_name(section: &str, key: &str) -> String {
    format!("COURIER_{}_{}", section.to_uppercase(), key.to_uppercase())
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
        for (section, keys) in &defaults {
            let toml::Value::Table(keys) = keys else { continue };
            for (key, default) in keys {
                if let Some(raw) = env(&env_name(section, key)) {
                    let value = env_value(&format!("{section}.{key}"), default, &raw)?;
                    if let Some(toml::Value::Table(t)) = table.get_mut(section) {
                        t.insert(key.clone(), value);
                    }
                }
            }
        }
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
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid("log.format must be \"text\" or \"json\"".into()));
        }
        self.webhook_retry()?;
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
            // Webhook deliveries must run somewhere: a node restricted to some
            // queues still takes the webhook queue.
            let mut queues = w.queues.clone();
            if !queues.contains(&self.webhooks.queue) {
                queues.push(self.webhooks.queue.clone());
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
        }
    }

    /// The HTTP surface's options.
    pub fn http_options(&self) -> HttpOptions {
        HttpOptions {
            tokens: self.api.tokens.clone(),
            body_limit: self.http.body_limit,
            cors_origins: self.http.cors_origins.clone(),
            max_wait: self.http.max_wait,
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
            },
            notifications: NotificationHttpOptions {
                token_secret: Some(self.notifications.token_secret.clone()).filter(|s| !s.is_empty()),
                webhook_secret: Some(self.notifications.webhook_secret.clone()).filter(|s| !s.is_empty()),
                webhook_failure_window: self.notifications.webhook_failure_window,
                keepalive: self.notifications.keepalive,
                identity: None,
            },
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
        assert_eq!(config.http_options().webhooks.retry.attempts(), 8);
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
        assert_eq!(config.api.tokens, vec!["a", "b"]);
        assert_eq!(config.node.id, "node-7");
        assert_eq!(config.worker.max_concurrency, 12);
        assert!(!config.worker.enabled);
        assert_eq!(config.worker.lease, Duration::from_secs(60));
        assert_eq!(config.http_options().webhooks.retry.attempts(), 3);
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
}
