//! `courier functions`: what new tasks of each function get (retry policy,
//! timeout, queue, tags, priority, concurrency cap), set for the whole cluster.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::render::{self, Table};
use super::{Client, ClientArgs, ClientError, ClientResult, print_json};

/// `courier functions`.
#[derive(Args, Debug)]
pub struct FunctionsArgs {
    #[command(subcommand)]
    pub command: FunctionsCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What `courier functions` does.
#[derive(Subcommand, Debug)]
pub enum FunctionsCommand {
    /// Lists functions with stored settings and those the node runs, by name.
    List {
        /// Also Courier's own functions (`courier.*`).
        #[arg(long)]
        internal: bool,
    },
    /// Shows what is stored for a function and what its new tasks get.
    Show {
        /// The function.
        name: String,
    },
    /// Stores a function's settings for every node, replacing what was stored
    /// (what is not given falls back to the code's options or the defaults).
    Set {
        /// The function.
        name: String,
        /// The queue its tasks go to.
        #[arg(long)]
        queue: Option<String>,
        /// Higher runs first.
        #[arg(long, allow_hyphen_values = true)]
        priority: Option<i32>,
        /// A routing tag (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Per-attempt time limit, e.g. 30s.
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// Cluster-wide cap on running tasks.
        #[arg(long, value_name = "N")]
        max_concurrent: Option<u32>,
        /// Total attempts, the first included.
        #[arg(long, value_name = "N")]
        max_attempts: Option<u32>,
        /// Cluster-wide cap on task starts per second (tasks over it wait).
        #[arg(long, value_name = "PER_SECOND")]
        rate_limit: Option<f64>,
        /// How many may start at once after a quiet spell (with --rate-limit).
        #[arg(long, value_name = "N", requires = "rate_limit")]
        rate_burst: Option<u32>,
        /// A JSON pointer into the args, one bucket per value, e.g. /customer_id (with --rate-limit).
        #[arg(long, value_name = "POINTER", requires = "rate_limit")]
        rate_key: Option<String>,
        /// A JSON pointer into the args whose tasks of one value run at most --key-max at once.
        #[arg(long, value_name = "POINTER", requires = "key_max")]
        concurrency_key: Option<String>,
        /// How many tasks of one --concurrency-key value may run at once.
        #[arg(long, value_name = "N", requires = "concurrency_key")]
        key_max: Option<u32>,
        /// The whole retry policy as JSON, e.g. '{"max_attempts": 5, "initial_delay": "2s"}'
        /// (`--max-attempts` is applied over it).
        #[arg(long, value_name = "JSON")]
        retry: Option<String>,
    },
    /// Pauses a function for the whole cluster: no node or outside worker
    /// claims its tasks until it is resumed (its other settings are kept).
    Pause {
        /// The function.
        name: String,
    },
    /// Resumes a paused function.
    Resume {
        /// The function.
        name: String,
    },
    /// Forgets a function's settings: its new tasks get the code's options again.
    Delete {
        /// The function.
        name: String,
    },
}

/// Runs `courier functions`.
pub async fn run(args: FunctionsArgs) -> ClientResult<()> {
    let client = Client::new(&args.client)?;
    match args.command {
        FunctionsCommand::List { internal } => list(&client, internal).await,
        FunctionsCommand::Show { name } => {
            let answer = client.get(&["v1", "functions", &name], &[]).await?;
            print_function(&client, &answer);
            Ok(())
        }
        FunctionsCommand::Set {
            name,
            queue,
            priority,
            tags,
            timeout,
            max_concurrent,
            max_attempts,
            retry,
            rate_limit,
            rate_burst,
            rate_key,
            concurrency_key,
            key_max,
        } => {
            let mut body = Map::new();
            if let Some(queue) = queue {
                body.insert("queue".into(), json!(queue));
            }
            if let Some(priority) = priority {
                body.insert("priority".into(), json!(priority));
            }
            if !tags.is_empty() {
                body.insert("tags".into(), json!(tags));
            }
            if let Some(timeout) = timeout {
                body.insert("timeout".into(), json!(timeout));
            }
            if let Some(max) = max_concurrent {
                body.insert("max_concurrent".into(), json!(max));
            }
            if let Some(per_second) = rate_limit {
                let mut limit = json!({ "per_second": per_second });
                if let Some(burst) = rate_burst {
                    limit["burst"] = json!(burst);
                }
                if let Some(key) = rate_key {
                    limit["key"] = json!(key);
                }
                body.insert("rate_limit".into(), limit);
            }
            if let (Some(key), Some(max)) = (concurrency_key, key_max) {
                body.insert("concurrency_key".into(), json!({ "key": key, "max": max }));
            }
            let mut policy = match retry {
                Some(text) => Some(
                    serde_json::from_str::<Value>(&text)
                        .ok()
                        .filter(Value::is_object)
                        .ok_or_else(|| ClientError::Other(format!("--retry must be a JSON object, got {text:?}")))?,
                ),
                None => None,
            };
            if let Some(attempts) = max_attempts {
                policy.get_or_insert_with(|| json!({}))["max_attempts"] = json!(attempts);
            }
            if let Some(policy) = policy {
                body.insert("retry".into(), policy);
            }
            let url = client.url(&["v1", "functions", &name]);
            let answer = client.call(Method::PUT, url, Some(&Value::Object(body))).await?;
            print_function(&client, &answer);
            Ok(())
        }
        FunctionsCommand::Pause { name } => set_paused(&client, &name, true).await,
        FunctionsCommand::Resume { name } => set_paused(&client, &name, false).await,
        FunctionsCommand::Delete { name } => {
            client.delete(&["v1", "functions", &name]).await?;
            if !client.json {
                println!("function {name}: settings forgotten");
            }
            Ok(())
        }
    }
}

/// Keeps the stored settings and sets `paused` (a function with none stored
/// answers 404 to the read: it starts from none).
async fn set_paused(client: &Client, name: &str, paused: bool) -> ClientResult<()> {
    let mut settings = match client.get(&["v1", "functions", name], &[]).await {
        Ok(current) => current["settings"].as_object().cloned().unwrap_or_default(),
        Err(ClientError::Api { error, .. }) if error == "function not found" => Map::new(),
        Err(e) => return Err(e),
    };
    settings.insert("paused".into(), json!(paused));
    let url = client.url(&["v1", "functions", name]);
    let answer = client.call(Method::PUT, url, Some(&Value::Object(settings))).await?;
    if client.json {
        print_json(&answer);
    } else {
        println!("function {name} {}", if paused { "paused" } else { "resumed" });
    }
    Ok(())
}

async fn list(client: &Client, internal: bool) -> ClientResult<()> {
    let answer = client
        .get(
            &["v1", "functions"],
            &[("internal", internal.then(|| "true".to_string()))],
        )
        .await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let mut table = Table::new(&[
        "NAME",
        "STORED",
        "QUEUE",
        "PRIORITY",
        "MAX RUNNING",
        "ATTEMPTS",
        "TIMEOUT",
    ]);
    for f in answer["functions"].as_array().into_iter().flatten() {
        let applied = &f["applied"];
        table.row(vec![
            render::scalar(&f["name"]),
            if f["settings"].is_null() {
                "-".into()
            } else {
                format!("rev {}", f["revision"])
            },
            render::scalar(&applied["queue"]),
            render::scalar(&applied["priority"]),
            render::or_dash(&applied["max_concurrent"]),
            render::scalar(&applied["retry"]["max_attempts"]),
            render::or_dash(&applied["timeout"]),
        ]);
    }
    table.print();
    Ok(())
}

fn print_function(client: &Client, f: &Value) {
    if client.json {
        print_json(f);
        return;
    }
    let applied = &f["applied"];
    render::print_fields(&[
        ("name", render::scalar(&f["name"])),
        (
            "stored",
            if f["settings"].is_null() {
                "nothing (the code's options or the defaults apply)".into()
            } else {
                format!(
                    "{} (revision {}, {})",
                    f["settings"],
                    f["revision"],
                    render::scalar(&f["updated_at"])
                )
            },
        ),
        ("queue", render::scalar(&applied["queue"])),
        ("priority", render::scalar(&applied["priority"])),
        ("tags", render::pretty(&applied["tags"])),
        ("max running", render::or_dash(&applied["max_concurrent"])),
        ("rate limit", rate_limit_line(&f["settings"]["rate_limit"])),
        ("per key", key_line(&f["settings"]["concurrency_key"])),
        ("timeout", render::or_dash(&applied["timeout"])),
        ("retry", applied["retry"].to_string()),
        ("runs here", render::or_dash(&applied["registered"])),
    ]);
}

/// A stored rate limit as `10/s (burst 20, per /customer_id)`, or `-`.
fn rate_limit_line(limit: &Value) -> String {
    if limit.is_null() {
        return "-".into();
    }
    let mut line = format!("{}/s", render::scalar(&limit["per_second"]));
    let mut extras = Vec::new();
    if !limit["burst"].is_null() {
        extras.push(format!("burst {}", render::scalar(&limit["burst"])));
    }
    if !limit["key"].is_null() {
        extras.push(format!("per {}", render::scalar(&limit["key"])));
    }
    if !extras.is_empty() {
        line.push_str(&format!(" ({})", extras.join(", ")));
    }
    line
}

/// A stored concurrency key as `2 at once per /customer_id`, or `-`.
fn key_line(key: &Value) -> String {
    if key.is_null() {
        return "-".into();
    }
    format!(
        "{} at once per {}",
        render::scalar(&key["max"]),
        render::scalar(&key["key"])
    )
}
