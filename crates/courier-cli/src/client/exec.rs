//! `courier exec`: list, show, cancel, pause, resume and wait for executions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use courier_core::{Cancelled, ExecutionRecord, ExecutionState, PauseState, ProgressEntry, TaskRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use super::render::{self, Table};
use super::{Client, ClientArgs, ClientError, ClientResult, check_id, decode, print_json};

/// `courier exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(subcommand)]
    pub command: ExecCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What `courier exec` does.
#[derive(Subcommand, Debug)]
pub enum ExecCommand {
    /// Lists executions, newest first.
    List {
        /// Only executions in this state (pending, running, completed, failed, timed_out, cancelled...).
        #[arg(long)]
        state: Option<String>,
        /// Only executions of this function.
        #[arg(long)]
        function: Option<String>,
        /// Only the child executions this execution started.
        #[arg(long, value_name = "EXECUTION_ID")]
        parent: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Shows one execution: its state, result or error, counters, values, progress and steps.
    Show {
        /// The execution's id.
        id: String,
    },
    /// Cancels an execution and its unfinished tasks.
    Cancel {
        /// The execution's id.
        id: String,
        /// Why (recorded with the cancellation).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Pauses an execution for the whole cluster: no worker claims its tasks
    /// until it is resumed (running ones finish).
    Pause {
        /// The execution's id.
        id: String,
    },
    /// Resumes a paused execution.
    Resume {
        /// The execution's id.
        id: String,
    },
    /// Follows an execution live with a progress bar until it finishes.
    ///
    /// Exits 0 when it completed, 2 when it failed, timed out or was cancelled,
    /// 3 when --timeout ran out first, 1 on any other error.
    Wait {
        /// The execution's id.
        id: String,
        /// Give up after this long ("30s", "5m"); default: wait for as long as it takes.
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
    },
}

/// `GET /v1/executions` answer.
#[derive(Debug, Deserialize)]
struct ExecutionList {
    executions: Vec<ExecutionRecord>,
    limit: u32,
    offset: u32,
}

/// `GET /v1/executions/{id}` answer.
#[derive(Debug, Deserialize)]
pub struct ExecutionDetail {
    pub execution: ExecutionRecord,
    #[serde(default)]
    pub counters: BTreeMap<String, f64>,
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
    #[serde(default)]
    pub progress: Vec<ProgressEntry>,
    #[serde(default)]
    pub steps: Vec<TaskRecord>,
    #[serde(default)]
    pub steps_truncated: bool,
    #[serde(default)]
    pub paused_at: Option<DateTime<Utc>>,
}

/// Runs `courier exec ...`.
pub async fn run(args: ExecArgs) -> ClientResult<()> {
    let client = Client::new(&args.client)?;
    match args.command {
        ExecCommand::List {
            state,
            function,
            parent,
            limit,
            offset,
        } => list(&client, state, function, parent, limit, offset).await,
        ExecCommand::Show { id } => show(&client, &id).await,
        ExecCommand::Cancel { id, reason } => cancel(&client, &id, reason).await,
        ExecCommand::Pause { id } => pause(&client, &id, true).await,
        ExecCommand::Resume { id } => pause(&client, &id, false).await,
        ExecCommand::Wait { id, timeout } => super::progress::wait(&client, &id, timeout.as_deref()).await,
    }
}

/// How long an execution ran (or has been running, or waited).
pub fn took(e: &ExecutionRecord) -> String {
    let start = e.started_at.unwrap_or(e.created_at);
    match e.completed_at {
        Some(end) => render::elapsed((end - start).num_milliseconds()),
        None => String::new(),
    }
}

async fn list(
    client: &Client,
    state: Option<String>,
    function: Option<String>,
    parent: Option<String>,
    limit: u32,
    offset: u32,
) -> ClientResult<()> {
    if let Some(state) = &state {
        state.parse::<ExecutionState>().map_err(|_| {
            let known: Vec<&str> = ExecutionState::ALL.iter().map(|s| s.as_str()).collect();
            ClientError::Other(format!("unknown state {state:?} (one of {})", known.join(", ")))
        })?;
    }
    let answer = client
        .get(
            &["v1", "executions"],
            &[
                ("state", state),
                ("function", function),
                ("parent", parent),
                ("limit", Some(limit.to_string())),
                ("offset", Some(offset.to_string())),
            ],
        )
        .await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let page: ExecutionList = decode(answer)?;
    if page.executions.is_empty() {
        println!("no executions");
        return Ok(());
    }
    let mut table = Table::new(&["ID", "FUNCTION", "STATE", "QUEUE", "CREATED", "TOOK"]);
    for e in &page.executions {
        table.row(vec![
            e.id.0.to_string(),
            e.function.clone(),
            e.state.to_string(),
            e.queue.clone(),
            render::time(&e.created_at),
            took(e),
        ]);
    }
    table.print();
    if page.executions.len() as u32 >= page.limit {
        println!("(more with --offset {})", page.offset + page.limit);
    }
    Ok(())
}

/// The error of a record as one line: `message (kind)`.
pub fn error_line(error: &courier_core::TaskError) -> String {
    format!("{} ({})", error.message, error.kind)
}

async fn show(client: &Client, id: &str) -> ClientResult<()> {
    check_id("execution", id)?;
    let answer = client.get(&["v1", "executions", id], &[]).await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let detail: ExecutionDetail = decode(answer)?;
    let e = &detail.execution;
    render::print_fields(&[
        ("id", e.id.0.to_string()),
        ("function", e.function.clone()),
        ("version", e.version.clone().unwrap_or_default()),
        ("state", e.state.to_string()),
        ("paused since", render::opt_time(&detail.paused_at)),
        ("queue", e.queue.clone()),
        ("priority", e.priority.to_string()),
        ("tags", render::list(&e.tags)),
        ("idempotency key", e.idempotency_key.clone().unwrap_or_default()),
        (
            "parent",
            e.parent
                .map(|p| format!("{} (step {}, {} when it ends)", p.execution_id, p.step, p.close))
                .unwrap_or_default(),
        ),
        ("created", render::time(&e.created_at)),
        ("started", render::opt_time(&e.started_at)),
        ("finished", render::opt_time(&e.completed_at)),
        ("took", took(e)),
        ("deadline", render::opt_time(&e.deadline)),
        ("args", render::pretty(&e.args)),
        ("result", e.result.as_ref().map(render::pretty).unwrap_or_default()),
        ("error", e.error.as_ref().map(error_line).unwrap_or_default()),
    ]);
    if !detail.counters.is_empty() {
        println!("\ncounters:");
        let mut table = Table::new(&["  NAME", "VALUE"]);
        for (name, value) in &detail.counters {
            table.row(vec![format!("  {name}"), value.to_string()]);
        }
        table.print();
    }
    if !detail.values.is_empty() {
        println!("\nvalues:");
        let mut table = Table::new(&["  KEY", "VALUE"]);
        for (key, value) in &detail.values {
            table.row(vec![format!("  {key}"), value.to_string()]);
        }
        table.print();
    }
    if !detail.progress.is_empty() {
        println!("\nprogress:");
        let mut table = Table::new(&["  AT", "STEP", "PERCENT", "STATUS", "MESSAGE"]);
        for p in &detail.progress {
            let progress = &p.progress;
            table.row(vec![
                format!("  {}", render::time(&p.created_at)),
                progress.step.clone().unwrap_or_default(),
                progress.percent.map(|p| format!("{p:.0}%")).unwrap_or_default(),
                progress.status.clone().unwrap_or_default(),
                progress.message.clone().unwrap_or_default(),
            ]);
        }
        table.print();
    }
    if !detail.steps.is_empty() {
        println!("\nsteps:");
        let mut table = Table::new(&["  STEP", "KIND", "FUNCTION", "STATE", "ATTEMPT", "TASK", "ERROR"]);
        for t in &detail.steps {
            table.row(vec![
                format!("  {}", t.step),
                t.kind.to_string(),
                t.function.clone(),
                t.state.to_string(),
                t.attempt.to_string(),
                t.id.0.to_string(),
                t.error.as_ref().map(error_line).unwrap_or_default(),
            ]);
        }
        table.print();
        if detail.steps_truncated {
            println!("  (more steps not shown)");
        }
    }
    Ok(())
}

async fn cancel(client: &Client, id: &str, reason: Option<String>) -> ClientResult<()> {
    check_id("execution", id)?;
    let body = match reason {
        Some(reason) => json!({ "reason": reason }),
        None => json!({}),
    };
    let answer = client.post(&["v1", "executions", id, "cancel"], Some(&body)).await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let cancelled: Cancelled = decode(answer)?;
    if cancelled.previous == ExecutionState::Cancelled {
        println!("execution {id} was already cancelled");
    } else {
        println!(
            "cancelled execution {id} (was {}; {} task(s) cancelled)",
            cancelled.previous,
            cancelled.tasks.len()
        );
    }
    Ok(())
}

async fn pause(client: &Client, id: &str, paused: bool) -> ClientResult<()> {
    check_id("execution", id)?;
    let verb = if paused { "pause" } else { "resume" };
    let answer = client.post(&["v1", "executions", id, verb], None).await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let state: PauseState = decode(answer)?;
    match (paused, state.changed) {
        (true, true) => println!("paused execution {id}: no worker claims its tasks until it is resumed"),
        (true, false) => println!(
            "execution {id} was already paused (since {})",
            render::opt_time(&state.paused_at)
        ),
        (false, true) => println!("resumed execution {id}"),
        (false, false) => println!("execution {id} was not paused"),
    }
    Ok(())
}
