//! `courier schedules`: functions started on a cron expression or at a fixed
//! interval, once per slot for the whole cluster.

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::render::{self, Table};
use super::{Client, ClientArgs, ClientError, ClientResult, print_json};

/// `courier schedules`.
#[derive(Args, Debug)]
pub struct SchedulesArgs {
    #[command(subcommand)]
    pub command: SchedulesCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What `courier schedules` does.
#[derive(Subcommand, Debug)]
pub enum SchedulesCommand {
    /// Lists the schedules with their next slot.
    List,
    /// Shows a schedule and its next slots.
    Show {
        /// The schedule's id.
        id: String,
    },
    /// Creates a schedule (give --cron or --every).
    Create {
        /// The function each slot starts.
        function: String,
        /// Its id (default: a new one).
        #[arg(long)]
        id: Option<String>,
        /// A cron expression: 5 fields, or 6 with seconds first.
        #[arg(long)]
        cron: Option<String>,
        /// A fixed interval instead, e.g. 5m.
        #[arg(long, value_name = "DURATION")]
        every: Option<String>,
        /// The IANA time zone the cron expression is read in (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// The arguments, as JSON.
        #[arg(long, value_name = "JSON")]
        args: Option<String>,
        /// skip (default), buffer_one or allow: what a slot does while the previous execution runs.
        #[arg(long)]
        overlap: Option<String>,
        /// Slots missed within this long still fire after downtime (default 1m).
        #[arg(long, value_name = "DURATION")]
        catchup_window: Option<String>,
        /// Each slot fires up to this much late.
        #[arg(long, value_name = "DURATION")]
        jitter: Option<String>,
        /// Created paused.
        #[arg(long)]
        paused: bool,
    },
    /// Pauses a schedule.
    Pause {
        /// The schedule's id.
        id: String,
    },
    /// Resumes a schedule from its first slot after now.
    Resume {
        /// The schedule's id.
        id: String,
    },
    /// Starts a schedule's function now, outside its slots.
    Trigger {
        /// The schedule's id.
        id: String,
    },
    /// Starts a schedule's slots of a past range (both ends included).
    Backfill {
        /// The schedule's id.
        id: String,
        /// The first instant (RFC 3339).
        #[arg(long, value_name = "TIME")]
        from: String,
        /// The last instant (RFC 3339).
        #[arg(long, value_name = "TIME")]
        to: String,
    },
    /// What became of a schedule's slots, newest first.
    Runs {
        /// The schedule's id.
        id: String,
        /// Most runs shown.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Deletes a schedule and its runs.
    Delete {
        /// The schedule's id.
        id: String,
    },
}

/// Runs `courier schedules`.
pub async fn run(args: SchedulesArgs) -> ClientResult<()> {
    let client = Client::new(&args.client)?;
    match args.command {
        SchedulesCommand::List => list(&client).await,
        SchedulesCommand::Show { id } => {
            let answer = client.get(&["v1", "schedules", &id], &[]).await?;
            print_schedule(&client, &answer);
            Ok(())
        }
        SchedulesCommand::Create {
            function,
            id,
            cron,
            every,
            timezone,
            args,
            overlap,
            catchup_window,
            jitter,
            paused,
        } => {
            let mut body = Map::new();
            body.insert("function".into(), json!(function));
            let fields = [
                ("id", id),
                ("cron", cron),
                ("every", every),
                ("timezone", timezone),
                ("overlap", overlap),
                ("catchup_window", catchup_window),
                ("jitter", jitter),
            ];
            for (key, value) in fields {
                if let Some(value) = value {
                    body.insert(key.into(), json!(value));
                }
            }
            if let Some(text) = args {
                let value: Value = serde_json::from_str(&text)
                    .map_err(|e| ClientError::Other(format!("--args must be JSON ({e}), got {text:?}")))?;
                body.insert("args".into(), value);
            }
            if paused {
                body.insert("paused".into(), json!(true));
            }
            let answer = client.post(&["v1", "schedules"], Some(&Value::Object(body))).await?;
            print_schedule(&client, &answer);
            Ok(())
        }
        SchedulesCommand::Pause { id } => act(&client, &id, "pause", "paused").await,
        SchedulesCommand::Resume { id } => act(&client, &id, "resume", "resumed").await,
        SchedulesCommand::Trigger { id } => {
            let answer = client.post(&["v1", "schedules", &id, "trigger"], None).await?;
            if client.json {
                print_json(&answer);
            } else {
                println!(
                    "schedule {id}: started execution {}",
                    render::scalar(&answer["execution_id"])
                );
            }
            Ok(())
        }
        SchedulesCommand::Backfill { id, from, to } => {
            let body = json!({ "from": from, "to": to });
            let answer = client.post(&["v1", "schedules", &id, "backfill"], Some(&body)).await?;
            if client.json {
                print_json(&answer);
            } else {
                let n = answer["runs"].as_array().map_or(0, Vec::len);
                println!("schedule {id}: started {n} slots");
            }
            Ok(())
        }
        SchedulesCommand::Runs { id, limit } => runs(&client, &id, limit).await,
        SchedulesCommand::Delete { id } => {
            client.delete(&["v1", "schedules", &id]).await?;
            if !client.json {
                println!("deleted schedule {id}");
            }
            Ok(())
        }
    }
}

async fn act(client: &Client, id: &str, action: &str, done: &str) -> ClientResult<()> {
    let answer = client.post(&["v1", "schedules", id, action], None).await?;
    if client.json {
        print_json(&answer);
    } else {
        println!(
            "schedule {id} {done}; next slot: {}",
            render::or_dash(&answer["next_slot"])
        );
    }
    Ok(())
}

fn timing(s: &Value) -> String {
    if s["cron"].is_string() {
        format!(
            "cron {} ({})",
            render::scalar(&s["cron"]),
            render::scalar(&s["timezone"])
        )
    } else {
        format!("every {}", render::scalar(&s["every"]))
    }
}

async fn list(client: &Client) -> ClientResult<()> {
    let answer = client
        .get(&["v1", "schedules"], &[("limit", Some("1000".into()))])
        .await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let mut table = Table::new(&[
        "ID",
        "FUNCTION",
        "WHEN",
        "OVERLAP",
        "STATE",
        "NEXT SLOT",
        "LAST EXECUTION",
    ]);
    for s in answer["schedules"].as_array().into_iter().flatten() {
        table.row(vec![
            render::scalar(&s["id"]),
            render::scalar(&s["function"]),
            timing(s),
            render::scalar(&s["overlap"]),
            if s["paused"] == true { "paused" } else { "active" }.into(),
            render::or_dash(&s["next_slot"]),
            render::or_dash(&s["last_execution_id"]),
        ]);
    }
    table.print();
    Ok(())
}

async fn runs(client: &Client, id: &str, limit: u32) -> ClientResult<()> {
    let answer = client
        .get(&["v1", "schedules", id, "runs"], &[("limit", Some(limit.to_string()))])
        .await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let mut table = Table::new(&["SLOT", "OUTCOME", "COUNT", "REASON", "EXECUTION"]);
    for r in answer["runs"].as_array().into_iter().flatten() {
        table.row(vec![
            render::scalar(&r["slot"]),
            render::scalar(&r["outcome"]),
            render::scalar(&r["count"]),
            render::scalar(&r["reason"]),
            render::or_dash(&r["execution_id"]),
        ]);
    }
    table.print();
    Ok(())
}

fn print_schedule(client: &Client, s: &Value) {
    if client.json {
        print_json(s);
        return;
    }
    let upcoming: Vec<String> = s["upcoming"]
        .as_array()
        .into_iter()
        .flatten()
        .map(render::scalar)
        .collect();
    render::print_fields(&[
        ("id", render::scalar(&s["id"])),
        ("function", render::scalar(&s["function"])),
        ("args", s["args"].to_string()),
        ("when", timing(s)),
        ("overlap", render::scalar(&s["overlap"])),
        ("catch-up window", render::scalar(&s["catchup_window"])),
        ("jitter", render::scalar(&s["jitter"])),
        ("state", if s["paused"] == true { "paused" } else { "active" }.into()),
        (
            "next slots",
            if upcoming.is_empty() {
                "-".into()
            } else {
                upcoming.join(", ")
            },
        ),
        ("last execution", render::or_dash(&s["last_execution_id"])),
    ]);
}
