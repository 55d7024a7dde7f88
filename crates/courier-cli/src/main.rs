//! The `courier` binary.

use clap::{Parser, Subcommand};

mod bench;
mod config;
mod serve;

/// Courier: durable task execution with real-time notification delivery.
#[derive(Parser, Debug)]
#[command(name = "courier", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node: the API, event streams, webhooks, dashboard and metrics on one port.
    Serve(serve::ServeArgs),
    /// Measure throughput and latency; prints one JSON line per run.
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // `serve` configures logging from its config; the others log warnings only.
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("COURIER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .with_writer(std::io::stderr)
            .init();
    }
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    if let Err(e) = result {
        eprintln!("courier: {e}");
        std::process::exit(1);
    }
}
