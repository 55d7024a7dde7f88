//! `courier queues`: work per queue, and pausing a queue for the whole cluster.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use courier_core::{PauseState, PausedQueue, QueueDepth};
use serde::Deserialize;

use super::render::{self, Table};
use super::{Client, ClientArgs, ClientResult, decode, print_json};

/// `courier queues`.
#[derive(Args, Debug)]
pub struct QueuesArgs {
    #[command(subcommand)]
    pub command: QueuesCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What `courier queues` does.
#[derive(Subcommand, Debug)]
pub enum QueuesCommand {
    /// Lists every queue with work or paused: ready, scheduled, running, paused since.
    List,
    /// Pauses a queue: no worker claims its tasks until it is resumed (running
    /// ones finish; dispatches are still taken and wait).
    Pause {
        /// The queue.
        name: String,
    },
    /// Resumes a paused queue.
    Resume {
        /// The queue.
        name: String,
    },
}

/// `GET /v1/queues` answer.
#[derive(Debug, Deserialize)]
struct QueueList {
    queues: Vec<QueueDepth>,
    #[serde(default)]
    paused: Vec<PausedQueue>,
}

/// Runs `courier queues ...`.
pub async fn run(args: QueuesArgs) -> ClientResult<()> {
    let client = Client::new(&args.client)?;
    match args.command {
        QueuesCommand::List => list(&client).await,
        QueuesCommand::Pause { name } => pause(&client, &name, true).await,
        QueuesCommand::Resume { name } => pause(&client, &name, false).await,
    }
}

async fn list(client: &Client) -> ClientResult<()> {
    let answer = client.get(&["v1", "queues"], &[]).await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let list: QueueList = decode(answer)?;
    // A paused queue with no work is still worth a row: its dispatches will wait.
    let mut rows: BTreeMap<String, (Option<QueueDepth>, Option<PausedQueue>)> = BTreeMap::new();
    for depth in list.queues {
        let queue = depth.queue.clone();
        rows.entry(queue).or_default().0 = Some(depth);
    }
    for paused in list.paused {
        let queue = paused.queue.clone();
        rows.entry(queue).or_default().1 = Some(paused);
    }
    if rows.is_empty() {
        println!("no queues with work");
        return Ok(());
    }
    let mut table = Table::new(&["QUEUE", "READY", "SCHEDULED", "RUNNING", "PAUSED SINCE"]);
    for (queue, (depth, paused)) in rows {
        let count = |f: fn(&QueueDepth) -> u64| depth.as_ref().map_or(0, f).to_string();
        table.row(vec![
            queue,
            count(|d| d.ready),
            count(|d| d.scheduled),
            count(|d| d.running),
            paused.map(|p| render::time(&p.paused_at)).unwrap_or_else(|| "-".into()),
        ]);
    }
    table.print();
    Ok(())
}

async fn pause(client: &Client, name: &str, paused: bool) -> ClientResult<()> {
    let verb = if paused { "pause" } else { "resume" };
    let answer = client.post(&["v1", "queues", name, verb], None).await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let state: PauseState = decode(answer)?;
    match (paused, state.changed) {
        (true, true) => println!("paused queue {name}: no worker claims its tasks until it is resumed"),
        (true, false) => println!(
            "queue {name} was already paused (since {})",
            render::opt_time(&state.paused_at)
        ),
        (false, true) => println!("resumed queue {name}"),
        (false, false) => println!("queue {name} was not paused"),
    }
    Ok(())
}
