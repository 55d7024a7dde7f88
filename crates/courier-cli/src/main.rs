//! The `courier` binary.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// jemalloc instead of the system allocator: the store's writer thread allocates
/// what the runtime's thread frees, and glibc's per-thread arenas made that cost
/// a quarter of SQLite throughput (README, Dependencies).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod bench;
mod client;
mod config;
mod fixtures;
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
    /// Executions on a node: list, show, cancel, pause, resume, wait (with a progress bar).
    Exec(client::exec::ExecArgs),
    /// Send a signal to an execution.
    Signal(client::SignalArgs),
    /// Queues: work per queue; pause and resume a queue for the whole cluster.
    Queues(client::queues::QueuesArgs),
    /// Dead letters on a node: list, replay, discard.
    Dlq(client::dlq::DlqArgs),
    /// Delete finished executions and dead letters older than a duration.
    Cleanup(client::CleanupArgs),
    /// Function settings for the whole cluster: list, show, set, pause, resume, delete.
    Functions(client::functions::FunctionsArgs),
    /// Schedules for the whole cluster: list, show, create, pause, resume, trigger, backfill, runs, delete.
    Schedules(client::schedules::SchedulesArgs),
    /// Webhooks on a node: create, list, show, delete, deliveries, enable, disable, replay.
    Webhooks(client::webhooks::WebhooksArgs),
    /// Notifications for people (send, mint a browser's connection token, subscribe
    /// to sources), and messages through providers (send --provider, publish, stream).
    Notify(Box<client::notify::NotifyArgs>),
}

/// Runs a client command; its error printed, and the exit code it asks for.
async fn client_command(command: Command) -> i32 {
    let result = match command {
        Command::Exec(args) => client::exec::run(args).await,
        Command::Signal(args) => client::signal(args).await,
        Command::Queues(args) => client::queues::run(args).await,
        Command::Dlq(args) => client::dlq::run(args).await,
        Command::Cleanup(args) => client::cleanup(args).await,
        Command::Functions(args) => client::functions::run(args).await,
        Command::Schedules(args) => client::schedules::run(args).await,
        Command::Webhooks(args) => client::webhooks::run(args).await,
        Command::Notify(args) => client::notify::run(*args).await,
        Command::Serve(_) | Command::Bench(_) => unreachable!("not a client command"),
    };
    match result {
        Ok(()) => 0,
        Err(client::ClientError::Exit(code)) => code,
        Err(e) => {
            eprintln!("courier: {e}");
            e.exit_code()
        }
    }
}

fn main() {
    // `serve --help` lists every setting's environment variable, read from the
    // built-in defaults so the list can't drift from what `serve` reads.
    let command = Cli::command().mut_subcommand("serve", |serve| serve.after_long_help(config::variables_help()));
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
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
            command => {
                let code = client_command(command).await;
                if code != 0 {
                    std::process::exit(code);
                }
                Ok(())
            }
        }
    });
    if let Err(e) = result {
        eprintln!("courier: {e}");
        std::process::exit(1);
    }
}
