//! Courier's ingestion: messages taken in over TCP, HTTP, a Redis pub/sub
//! channel and a Redis Stream consumer group, each one delivered as a durable
//! execution through providers (email, Slack, Teams, webhooks, the log).
//!
//! The path of one message: an input reads it → the [`Intake`] checks it and
//! holds a place in the bounded queue (`ingest.queue_size`) → it is dispatched
//! as an execution of the built-in orchestrator `courier.ingest.deliver`
//! through the node's one write path → once committed, the input answers (TCP,
//! HTTP) or acknowledges (a stream entry) → the orchestrator calls its
//! provider's activity once per recipient → the execution's result lists one
//! [`RecipientResult`] per recipient, in order. Retries, fencing, dead letters,
//! replay, the event log and the dashboard come from the runtime.
//!
//! This crate holds no SQL and serves no HTTP (`courier-http` mounts
//! `POST /v1/notify` on an [`Ingest`]).
//!
//! ```no_run
//! # #[actix::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use courier_ingest::{IngestOptions, ProviderConfig};
//! use courier_runtime::{Courier, WorkerOptions};
//!
//! # let store: std::sync::Arc<dyn courier_core::Store> = unimplemented!();
//! let mut options = IngestOptions::default();
//! options.tcp_addr = Some("127.0.0.1:8991".parse()?);
//! let builder = Courier::builder().store(store).worker(WorkerOptions::default());
//! let (builder, ingest) = courier_ingest::install(builder, options)?;
//! let _courier = builder.start().await?;
//! ingest.start_inputs().await?; // binds the TCP port, starts the Redis consumers
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod client;
mod deliver;
mod intake;
mod message;
mod options;
pub mod provider;
mod redis_input;
mod tcp;
mod template;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use courier_runtime::{Courier, CourierBuilder, FunctionOptions};
use tokio::sync::watch;

pub use client::{ClientError, IngestClient};
pub use deliver::{CALLBACK, DELIVER, RecipientReport, RecipientResult, ResultHook, SendArgs, provider_activity};
pub use intake::{InputCounts, Intake, IntakeError, Origin};
pub use message::{Account, InvalidMessage, MAX_RECIPIENTS, Message, Recipient};
pub use options::{INGEST_QUEUE, IngestOptions};
pub use provider::{ProviderConfig, ProviderSetupError};
pub use template::{TemplateError, Templates};

/// Why ingestion could not be set up or started.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A provider's settings are wrong.
    #[error(transparent)]
    Provider(#[from] ProviderSetupError),
    /// An input's settings are wrong.
    #[error("ingest.{setting}: {detail}")]
    Setting {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// An input could not start (the TCP port is taken, ...).
    #[error("ingest {input}: {detail}")]
    Start {
        /// The input.
        input: &'static str,
        /// Why.
        detail: String,
    },
}

/// A node's ingestion: the intake every input feeds, and the inputs started
/// from the options. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

struct Inner {
    intake: Intake,
    options: IngestOptions,
    stop: watch::Sender<bool>,
    tcp_addr: Mutex<Option<std::net::SocketAddr>>,
    running: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// How long dialling one Redis node (and its handshake), or asking one sentinel,
/// may take.
const REDIS_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Registers the delivery functions on `builder`; [`Ingest::start_inputs`]
/// starts the configured inputs once the node runs.
pub fn install(builder: CourierBuilder, options: IngestOptions) -> Result<(CourierBuilder, Ingest), IngestError> {
    Ok(Setup::new(options, None)?.install(builder))
}

/// Checked settings and built providers, ready to [`install`](Setup::install)
/// on a node builder. Splitting the fallible part off lets a caller refuse bad
/// settings before it commits a builder.
pub struct Setup {
    options: IngestOptions,
    providers: Arc<BTreeMap<String, Arc<dyn provider::Provider>>>,
    hook: Option<ResultHook>,
}

impl Setup {
    /// Checks `options` and builds their providers; `hook` runs once per
    /// recipient result.
    pub fn new(options: IngestOptions, hook: Option<ResultHook>) -> Result<Setup, IngestError> {
        check(&options)?;
        let mut providers = BTreeMap::new();
        for (name, config) in &options.providers {
            providers.insert(name.clone(), provider::build(name, config)?);
        }
        Ok(Setup {
            options,
            providers: Arc::new(providers),
            hook,
        })
    }

    /// Registers the delivery orchestrator, one activity per provider and the
    /// result callback on `builder`.
    pub fn install(self, builder: CourierBuilder) -> (CourierBuilder, Ingest) {
        let Setup {
            options,
            providers,
            hook,
        } = self;
        let node: Arc<OnceLock<Courier>> = Arc::new(OnceLock::new());
        let intake = Intake::new(
            node.clone(),
            options.queue_size,
            providers.clone(),
            options.queue.clone(),
        );
        let callback = deliver::Callback {
            hook,
            url: options.callback_url.clone(),
            secret: options.callback_secret.clone(),
            client: options.callback_url.as_ref().map(|_| deliver::callback_client()),
        };
        let with_callback = callback.is_configured();
        let templates = Arc::new(Templates::new(options.template_dir.clone()));
        let mut builder = builder.orchestrator_with(
            DELIVER,
            deliver::orchestrator_options(&options.queue),
            move |ctx, message: Message| deliver::orchestrate(ctx, message, with_callback),
        );
        for (name, provider) in providers.iter() {
            let config = &options.providers[name];
            let mut function = FunctionOptions::default()
                .queue(options.queue.clone())
                .retry(config.retry.clone().unwrap_or_else(provider::default_retry));
            if let Some(concurrency) = config.concurrency {
                function = function.max_concurrent(concurrency);
            }
            if let Some(timeout) = config.timeout {
                function = function.timeout(timeout + std::time::Duration::from_secs(5));
            }
            let (name, provider, templates) = (name.clone(), provider.clone(), templates.clone());
            builder = builder.activity_with(&provider_activity(&name), function, move |ctx, args: SendArgs| {
                let (name, provider, templates) = (name.clone(), provider.clone(), templates.clone());
                async move { deliver::send(ctx, &name, provider.as_ref(), &templates, args).await }
            });
        }
        if with_callback {
            let function = FunctionOptions::default()
                .queue(options.queue.clone())
                .retry(provider::default_retry());
            builder = builder.activity_with(CALLBACK, function, move |ctx, report: RecipientReport| {
                let callback = callback.clone();
                async move { callback.run(ctx, report).await }
            });
        }
        let for_start = node.clone();
        let builder = builder.on_start(move |courier| {
            let _ = for_start.set(courier.clone());
        });
        let (stop, _) = watch::channel(false);
        let ingest = Ingest {
            inner: Arc::new(Inner {
                intake,
                options,
                stop,
                tcp_addr: Mutex::new(None),
                running: Mutex::new(Vec::new()),
            }),
        };
        (builder, ingest)
    }
}

/// Settings checked before anything starts.
fn check(options: &IngestOptions) -> Result<(), IngestError> {
    if let Some(addr) = options.tcp_addr
        && !addr.ip().is_loopback()
        && options.tcp_token.as_deref().is_none_or(str::is_empty)
    {
        return Err(IngestError::Setting {
            setting: "tcp_addr",
            detail: format!("{addr} is not a loopback address; set ingest.tcp_token to listen beyond this machine"),
        });
    }
    if (options.channel.is_some() || options.stream.is_some()) && options.redis_url.is_none() {
        return Err(IngestError::Setting {
            setting: "redis_url",
            detail: "a channel or stream is configured but no Redis to read it from".into(),
        });
    }
    if options.queue_size == 0 {
        return Err(IngestError::Setting {
            setting: "queue_size",
            detail: "must be at least 1".into(),
        });
    }
    Ok(())
}

impl Ingest {
    /// The intake every input feeds.
    pub fn intake(&self) -> &Intake {
        &self.inner.intake
    }

    /// The options in force.
    pub fn options(&self) -> &IngestOptions {
        &self.inner.options
    }

    /// Where the TCP input listens, once started (the actual port when the
    /// configured one was 0).
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        *self.inner.tcp_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts every configured input. Call once the node has started.
    pub async fn start_inputs(&self) -> Result<(), IngestError> {
        if let Some(addr) = self.inner.options.tcp_addr {
            let (bound, task) = tcp::start(
                addr,
                self.inner.intake.clone(),
                tcp::TcpOptions::from(&self.inner.options),
                self.inner.stop.subscribe(),
            )
            .await
            .map_err(|e| IngestError::Start {
                input: "tcp",
                detail: format!("cannot listen on {addr}: {e}"),
            })?;
            *self.inner.tcp_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(bound);
            self.keep(task);
            tracing::info!(addr = %bound, "ingest: TCP input listening");
        }
        let options = &self.inner.options;
        if let Some(url) = &options.redis_url
            && (options.stream.is_some() || options.channel.is_some())
        {
            let setting = |detail: String| IngestError::Setting {
                setting: "redis_url",
                detail,
            };
            let config = courier_notify::RedisConfig::parse(url).map_err(|e| setting(e.to_string()))?;
            // Redis being down is no reason not to start: the inputs connect
            // (and reconnect) by themselves.
            let connector = courier_notify::RedisConnector::new(config, REDIS_CONNECT_TIMEOUT).map_err(setting)?;
            if let Some(stream) = &options.stream {
                self.keep(redis_input::stream::start(
                    self.inner.intake.clone(),
                    connector.clone(),
                    redis_input::stream::StreamOptions::new(stream.clone(), options),
                    self.inner.stop.subscribe(),
                ));
            }
            if let Some(channel) = &options.channel {
                self.keep(redis_input::pubsub::start(
                    self.inner.intake.clone(),
                    connector,
                    channel.clone(),
                    options.max_message_bytes,
                    self.inner.stop.subscribe(),
                ));
            }
        }
        Ok(())
    }

    fn keep(&self, task: tokio::task::JoinHandle<()>) {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner()).push(task);
    }

    /// Stops every input: listeners close, consumers stop reading and leave
    /// their pending entries for other nodes to reclaim. Messages already
    /// accepted are committed first.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let tasks = std::mem::take(&mut *self.inner.running.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}
