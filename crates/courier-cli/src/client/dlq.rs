//! `courier dlq`: dead letters (tasks that failed for good): list, replay, discard.

use clap::{Args, Subcommand};
use courier_core::{DeadLetterRecord, Replayed};
use serde::Deserialize;
use serde_json::json;

use super::render::{self, Table};
use super::{Client, ClientArgs, ClientResult, check_id, decode, print_json};

/// `courier dlq`.
#[derive(Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What `courier dlq` does.
#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Lists dead letters, newest first.
    List {
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Runs a dead letter's task again (attempts reset); its execution resumes if it had failed.
    Replay {
        /// The task's id.
        task_id: String,
    },
    /// Deletes a dead letter without running it again.
    Discard {
        /// The task's id.
        task_id: String,
    },
}

/// `GET /v1/dead-letters` answer.
#[derive(Debug, Deserialize)]
struct DeadLetters {
    dead_letters: Vec<DeadLetterRecord>,
    #[serde(default)]
    total: Option<u64>,
    offset: u32,
}

/// Runs `courier dlq ...`.
pub async fn run(args: DlqArgs) -> ClientResult<()> {
    let client = Client::new(&args.client)?;
    match args.command {
        DlqCommand::List { limit, offset } => list(&client, limit, offset).await,
        DlqCommand::Replay { task_id } => replay(&client, &task_id).await,
        DlqCommand::Discard { task_id } => discard(&client, &task_id).await,
    }
}

async fn list(client: &Client, limit: u32, offset: u32) -> ClientResult<()> {
    let answer = client
        .get(
            &["v1", "dead-letters"],
            &[("limit", Some(limit.to_string())), ("offset", Some(offset.to_string()))],
        )
        .await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let page: DeadLetters = decode(answer)?;
    if page.dead_letters.is_empty() {
        println!("no dead letters");
        return Ok(());
    }
    let mut table = Table::new(&["TASK", "EXECUTION", "FUNCTION", "ATTEMPTS", "FAILED", "ERROR", "REASON"]);
    for d in &page.dead_letters {
        table.row(vec![
            d.task_id.0.to_string(),
            d.execution_id.0.to_string(),
            d.task.function.clone(),
            d.task.attempt.to_string(),
            render::time(&d.failed_at),
            d.task.error.as_ref().map(super::exec::error_line).unwrap_or_default(),
            d.reason.clone(),
        ]);
    }
    table.print();
    if let Some(total) = page.total {
        let shown = page.dead_letters.len() as u64;
        if total > u64::from(page.offset) + shown {
            println!(
                "({shown} of {total}; more with --offset {})",
                u64::from(page.offset) + shown
            );
        }
    }
    Ok(())
}

async fn replay(client: &Client, task_id: &str) -> ClientResult<()> {
    check_id("task", task_id)?;
    let answer = client.post(&["v1", "dead-letters", task_id, "replay"], None).await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let replayed: Replayed = decode(answer)?;
    println!(
        "replayed task {} of execution {}{}",
        replayed.task_id,
        replayed.execution_id,
        if replayed.execution_resumed {
            " (execution resumed)"
        } else {
            ""
        }
    );
    Ok(())
}

async fn discard(client: &Client, task_id: &str) -> ClientResult<()> {
    check_id("task", task_id)?;
    client.delete(&["v1", "dead-letters", task_id]).await?;
    if client.json {
        print_json(&json!({"task_id": task_id, "discarded": true}));
    } else {
        println!("discarded dead letter {task_id}");
    }
    Ok(())
}
