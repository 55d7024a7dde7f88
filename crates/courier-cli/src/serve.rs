//! `courier serve`: a node with its HTTP surface on one port.
//!
//! Zero configuration runs the embedded default (SQLite `./courier.db`, the
//! in-process notifier, a worker, the API and dashboard on 127.0.0.1:8080).
//! On SIGINT/SIGTERM it shuts down in order: `/readyz` turns 503 for
//! `http.drain_period` while the rest still answers, then long-polls are
//! answered, streams get a final event and close, workers drain and the
//! listener stops.
//!
//! It refuses to start when it would serve the API without tokens on an address
//! other machines can reach, unless `api.allow_unauthenticated` is set, and then
//! warns at every start (`Config::exposure`).

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::App;
use clap::Args;
use courier_core::{Clock, Notifier};
use courier_runtime::Courier;

use crate::config::{Config, Exposure};

/// `courier serve` arguments.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A TOML config file over the built-in defaults (see config/default.toml).
    #[arg(long, env = "COURIER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen here (`http.addr`), over the config file and COURIER_HTTP_ADDR.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// The store's URL (`store.url`): a SQLite path, `sqlite::memory:` or
    /// `postgres://...`; over the config file and COURIER_STORE_URL.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Opens the notifier `notifier.url` names ("memory", "redis://...", "postgres://...").
async fn notifier(config: &Config) -> Result<Arc<dyn Notifier>, Box<dyn std::error::Error>> {
    let url = match config.notifier.url.trim() {
        "" => "memory",
        url => url,
    };
    Ok(courier_notify::open(url, &config.notifier.prefix).await?)
}

/// This node's name: `node.id`, or a random one.
fn node_id(config: &Config) -> String {
    if config.node.id.is_empty() {
        format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
    } else {
        config.node.id.clone()
    }
}

/// Runs a node until a signal stops it.
pub async fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    // The flags are the last layer: what is typed on the command line wins.
    let config = Config::load(args.config.as_deref(), |k| match k {
        "COURIER_HTTP_ADDR" if args.addr.is_some() => args.addr.clone(),
        "COURIER_STORE_URL" if args.store.is_some() => args.store.clone(),
        _ => std::env::var(k).ok(),
    })?;
    // Before anything is opened: a refusal must leave no trace but its message.
    let exposure = config.exposure()?;
    init_logging(&config);
    if let Exposure::OpenByChoice { addr } = &exposure {
        tracing::warn!(
            %addr,
            "api.allow_unauthenticated: the API (/v1) and /metrics are open to ANYONE who can reach {addr}, \
             with no token; set api.tokens (COURIER_API_TOKENS) unless this network is trusted"
        );
    }
    let clock = Clock::shifted(config.testing.clock_offset, true);
    if clock.offset_ms() != 0 {
        tracing::warn!(
            offset_ms = clock.offset_ms(),
            "testing.clock_offset: this node's clock is shifted"
        );
    }
    let store = courier_store::open_with(&config.store.url, clock, &config.store.settings()).await?;
    let node = node_id(&config);
    let mut builder = Courier::builder()
        .store(store)
        .notifier(notifier(&config).await?)
        .clock(clock)
        .maintenance(config.maintenance_options())
        .notifications(config.notification_options())
        .node_id(node.clone())
        .report_every(config.node.report_interval);
    if config.testing.fixtures {
        tracing::warn!("testing.fixtures: registering the fixture.* test functions");
        builder = crate::fixtures::register(builder, &config.testing.effects_file, &node);
    }
    if config.worker.enabled {
        builder = builder.worker(config.worker_options());
    }
    let mut options = config.http_options();
    let budget = courier_http::descriptors::Budget::for_limit(descriptor_limit(), options.max_streams);
    if budget.streams < options.max_streams {
        tracing::warn!(
            http.max_streams = options.max_streams,
            streams = budget.streams,
            connections = budget.connections,
            "the file-descriptor limit (ulimit -n) allows fewer streams than http.max_streams; \
             raise the limit to carry more"
        );
        options.max_streams = budget.streams;
    }
    let http = courier_http::prepare(builder, options.clone()).start().await?;
    let for_app = http.clone();
    let addr = tokio::net::lookup_host(&config.http.addr)
        .await?
        .next()
        .ok_or_else(|| format!("http.addr {:?} resolves to no address", config.http.addr))?;
    let mut listen = courier_http::listener::Listen::new(addr);
    listen.workers = config.http.workers;
    listen.shutdown_timeout = config.http.shutdown_timeout;
    listen.max_connections = budget.connections;
    let server = courier_http::listener::listen(listen, move || {
        App::new()
            .wrap(courier_http::json_errors())
            .wrap(courier_http::cors(&options))
            // The path without its query: `?access_token=` must never reach a log.
            .wrap(
                actix_web::middleware::Logger::new("%a \"%{METHOD}xi %U\" %s %b %Dms")
                    .custom_request_replace("METHOD", |req| req.method().to_string())
                    .log_target("courier::http"),
            )
            .configure(|cfg| courier_http::configure(cfg, &for_app))
    })?
    .server;
    let handle = server.handle();
    tracing::info!(
        addr = %config.http.addr,
        node = http.courier().node_id(),
        store = http.courier().store().backend(),
        notifier = http.courier().notifier().backend(),
        prefix = %config.notifier.prefix,
        "courier serving"
    );
    let stopping = http.clone();
    let drain_period = config.http.drain_period;
    actix_rt::spawn(async move {
        wait_for_signal().await;
        // A load balancer polling /readyz needs a few of its intervals to see
        // the 503; until then it keeps sending here, so everything else answers.
        tracing::info!(drain_period = ?drain_period, "shutting down: /readyz answers 503 while draining");
        stopping.begin_drain();
        tokio::time::sleep(drain_period).await;
        tracing::info!("shutting down: answering long-polls, closing streams, draining workers");
        stopping.shutdown().await;
        handle.stop(true).await;
    });
    server.await?;
    tracing::info!("courier stopped");
    Ok(())
}

/// The process's file-descriptor limit, after raising the soft limit to the
/// hard one (as Go's runtime does at start): the soft default of 1024 is far
/// below what a node carrying thousands of streams needs, and raising it to the
/// hard limit needs no privilege.
#[cfg(unix)]
fn descriptor_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::debug!(limit, "file-descriptor limit");
            limit
        }
        Err(e) => {
            let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
            tracing::warn!(error = %e, limit = soft, "could not raise the file-descriptor limit");
            soft
        }
    }
}

#[cfg(not(unix))]
fn descriptor_limit() -> u64 {
    u64::MAX
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
