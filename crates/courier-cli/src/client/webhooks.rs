//! `courier webhooks`: register, list, inspect, pause and remove webhooks, rotate
//! their signing secrets, and see their deliveries.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use courier_core::{DeliveryAttempt, DeliveryRecord, EventType};
use serde::Deserialize;
use serde_json::json;

use super::render::{self, Table};
use super::{Client, ClientArgs, ClientError, ClientResult, check_id, decode, print_json};

/// `courier webhooks`.
#[derive(Args, Debug)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    pub command: WebhooksCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What `courier webhooks` does.
#[derive(Subcommand, Debug)]
pub enum WebhooksCommand {
    /// Registers a webhook; prints its signing secret (shown this once only).
    Create {
        /// Where deliveries are POSTed (http or https).
        #[arg(id = "endpoint", value_name = "URL")]
        url: String,
        /// Only events of this type (repeatable; none: every type), e.g. execution.completed.
        #[arg(long = "event", value_name = "TYPE")]
        events: Vec<String>,
        /// Only events of this execution.
        #[arg(long = "execution", value_name = "ID")]
        execution_id: Option<String>,
        /// Only events of this task.
        #[arg(long = "task", value_name = "ID")]
        task_id: Option<String>,
        /// An extra header sent with every delivery (repeatable).
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// A description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Lists webhooks, oldest first.
    List {
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Shows one webhook.
    Show {
        /// The webhook's id.
        id: String,
    },
    /// Deletes a webhook with its deliveries.
    Delete {
        /// The webhook's id.
        id: String,
    },
    /// Lists a webhook's deliveries, newest first.
    Deliveries {
        /// The webhook's id.
        id: String,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Enables a webhook (deliveries resume).
    Enable {
        /// The webhook's id.
        id: String,
    },
    /// Disables a webhook (its events are recorded as skipped deliveries until enabled).
    Disable {
        /// The webhook's id.
        id: String,
    },
    /// Replays the deliveries skipped while a webhook was disabled (enable it first).
    Replay {
        /// The webhook's id.
        id: String,
        /// Only those recorded at or after this instant (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<DateTime<Utc>>,
    },
    /// Tries a webhook's failed deliveries (every attempt used) again, as after
    /// an outage of its endpoint.
    Recover {
        /// The webhook's id.
        id: String,
        /// Only those recorded at or after this instant (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<DateTime<Utc>>,
    },
    /// Gives a webhook a new signing secret; prints it (shown this once only).
    /// The old secret goes on signing deliveries beside the new one for the
    /// grace period.
    RotateSecret {
        /// The webhook's id.
        id: String,
        /// How long the old secret still signs, e.g. 1h (default 24h, at most 7d, 0: not at all).
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
}

/// A webhook as the API shows it (the secret only when it is created).
#[derive(Debug, Deserialize)]
struct Webhook {
    id: uuid::Uuid,
    url: String,
    #[serde(default)]
    event_types: Vec<EventType>,
    #[serde(default)]
    execution_id: Option<String>,
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    description: Option<String>,
    enabled: bool,
    #[serde(default)]
    disabled_reason: Option<String>,
    #[serde(default)]
    previous_secret_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Webhook {
    fn events(&self) -> String {
        if self.event_types.is_empty() {
            "all".into()
        } else {
            self.event_types
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(",")
        }
    }

    fn print(&self) {
        let headers = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n");
        render::print_fields(&[
            ("id", self.id.to_string()),
            ("url", self.url.clone()),
            ("events", self.events()),
            ("execution", self.execution_id.clone().unwrap_or_default()),
            ("task", self.task_id.clone().unwrap_or_default()),
            ("headers", headers),
            ("description", self.description.clone().unwrap_or_default()),
            ("enabled", if self.enabled { "yes".into() } else { "no".into() }),
            ("disabled because", self.disabled_reason.clone().unwrap_or_default()),
            (
                "old secret signs until",
                self.previous_secret_until
                    .as_ref()
                    .map(render::time)
                    .unwrap_or_default(),
            ),
            ("created", render::time(&self.created_at)),
            ("updated", render::time(&self.updated_at)),
        ]);
    }
}

/// `GET /v1/webhooks` answer.
#[derive(Debug, Deserialize)]
struct Webhooks {
    webhooks: Vec<Webhook>,
    limit: u32,
    offset: u32,
}

/// One delivery with its attempts.
#[derive(Debug, Deserialize)]
struct Delivery {
    #[serde(flatten)]
    delivery: DeliveryRecord,
    #[serde(default)]
    attempt_log: Vec<DeliveryAttempt>,
}

/// `GET /v1/webhooks/{id}/deliveries` answer.
#[derive(Debug, Deserialize)]
struct Deliveries {
    deliveries: Vec<Delivery>,
    limit: u32,
    offset: u32,
}

/// Runs `courier webhooks ...`.
pub async fn run(args: WebhooksArgs) -> ClientResult<()> {
    let client = Client::new(&args.client)?;
    match args.command {
        WebhooksCommand::Create {
            url,
            events,
            execution_id,
            task_id,
            headers,
            description,
        } => create(&client, url, events, execution_id, task_id, headers, description).await,
        WebhooksCommand::List { limit, offset } => list(&client, limit, offset).await,
        WebhooksCommand::Show { id } => show(&client, &id).await,
        WebhooksCommand::Delete { id } => delete(&client, &id).await,
        WebhooksCommand::Deliveries { id, limit, offset } => deliveries(&client, &id, limit, offset).await,
        WebhooksCommand::Enable { id } => set_enabled(&client, &id, true).await,
        WebhooksCommand::Disable { id } => set_enabled(&client, &id, false).await,
        WebhooksCommand::Replay { id, since } => replay(&client, &id, "replay", since).await,
        WebhooksCommand::Recover { id, since } => replay(&client, &id, "recover", since).await,
        WebhooksCommand::RotateSecret { id, grace } => rotate_secret(&client, &id, grace).await,
    }
}

/// `POST /v1/webhooks/{id}/replay` and `/recover` answer.
#[derive(Debug, Deserialize)]
struct Replayed {
    replayed: Vec<uuid::Uuid>,
    more: bool,
}

/// Replays skipped deliveries (`action` "replay") or recovers failed ones ("recover").
async fn replay(client: &Client, id: &str, action: &str, since: Option<DateTime<Utc>>) -> ClientResult<()> {
    check_id("webhook", id)?;
    let body = since.map(|since| json!({ "since": since }));
    let answer = client.post(&["v1", "webhooks", id, action], body.as_ref()).await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let report: Replayed = decode(answer)?;
    let what = if action == "recover" {
        "retrying failed"
    } else {
        "replayed skipped"
    };
    println!("{what} deliveries of webhook {id}: {}", report.replayed.len());
    if report.more {
        println!("(more are waiting: run it again)");
    }
    Ok(())
}

async fn create(
    client: &Client,
    url: String,
    events: Vec<String>,
    execution_id: Option<String>,
    task_id: Option<String>,
    headers: Vec<String>,
    description: Option<String>,
) -> ClientResult<()> {
    for event in &events {
        event.parse::<EventType>().map_err(|_| {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            ClientError::Other(format!("unknown event type {event:?} (one of {})", known.join(", ")))
        })?;
    }
    if let Some(id) = &execution_id {
        check_id("execution", id)?;
    }
    if let Some(id) = &task_id {
        check_id("task", id)?;
    }
    let mut header_map = BTreeMap::new();
    for header in &headers {
        let (name, value) = header
            .split_once('=')
            .filter(|(name, _)| !name.trim().is_empty())
            .ok_or_else(|| ClientError::Other(format!("--header {header:?}: expected NAME=VALUE")))?;
        header_map.insert(name.trim().to_string(), value.to_string());
    }
    let mut body = json!({"url": url, "event_types": events, "headers": header_map});
    if let Some(id) = execution_id {
        body["execution_id"] = json!(id);
    }
    if let Some(id) = task_id {
        body["task_id"] = json!(id);
    }
    if let Some(description) = description {
        body["description"] = json!(description);
    }
    let answer = client.post(&["v1", "webhooks"], Some(&body)).await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let hook: Webhook = decode(answer)?;
    println!("created webhook {}", hook.id);
    hook.print();
    if let Some(secret) = &hook.secret {
        println!();
        println!("secret: {secret}");
        println!("(shown only now: keep it to verify the webhook-signature header of deliveries)");
    }
    Ok(())
}

async fn list(client: &Client, limit: u32, offset: u32) -> ClientResult<()> {
    let answer = client
        .get(
            &["v1", "webhooks"],
            &[("limit", Some(limit.to_string())), ("offset", Some(offset.to_string()))],
        )
        .await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let page: Webhooks = decode(answer)?;
    if page.webhooks.is_empty() {
        println!("no webhooks");
        return Ok(());
    }
    let mut table = Table::new(&["ID", "URL", "EVENTS", "ENABLED", "DESCRIPTION"]);
    for hook in &page.webhooks {
        table.row(vec![
            hook.id.to_string(),
            hook.url.clone(),
            hook.events(),
            if hook.enabled { "yes".into() } else { "no".into() },
            hook.description.clone().unwrap_or_default(),
        ]);
    }
    table.print();
    if page.webhooks.len() as u32 >= page.limit {
        println!("(more with --offset {})", page.offset + page.limit);
    }
    Ok(())
}

async fn show(client: &Client, id: &str) -> ClientResult<()> {
    check_id("webhook", id)?;
    let answer = client.get(&["v1", "webhooks", id], &[]).await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    decode::<Webhook>(answer)?.print();
    Ok(())
}

async fn delete(client: &Client, id: &str) -> ClientResult<()> {
    check_id("webhook", id)?;
    client.delete(&["v1", "webhooks", id]).await?;
    if client.json {
        print_json(&json!({"id": id, "deleted": true}));
    } else {
        println!("deleted webhook {id}");
    }
    Ok(())
}

async fn set_enabled(client: &Client, id: &str, enabled: bool) -> ClientResult<()> {
    check_id("webhook", id)?;
    let action = if enabled { "enable" } else { "disable" };
    let answer = client.post(&["v1", "webhooks", id, action], None).await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let hook: Webhook = decode(answer)?;
    if hook.enabled {
        println!("webhook {} enabled", hook.id);
    } else {
        println!("webhook {} disabled", hook.id);
    }
    Ok(())
}

async fn rotate_secret(client: &Client, id: &str, grace: Option<String>) -> ClientResult<()> {
    check_id("webhook", id)?;
    if let Some(grace) = &grace {
        courier_core::parse_duration(grace).map_err(|e| ClientError::Other(format!("--grace: {e}")))?;
    }
    let body = grace.map(|grace| json!({ "grace_period": grace }));
    let answer = client
        .post(&["v1", "webhooks", id, "rotate-secret"], body.as_ref())
        .await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let hook: Webhook = decode(answer)?;
    println!("rotated the secret of webhook {}", hook.id);
    if let Some(secret) = &hook.secret {
        println!("secret: {secret}");
        println!("(shown only now: keep it to verify the webhook-signature header of deliveries)");
    }
    match hook.previous_secret_until {
        Some(until) if until > Utc::now() => println!(
            "the old secret signs deliveries too (a second v1 signature) until {}",
            render::time(&until)
        ),
        _ => println!("the old secret no longer signs deliveries"),
    }
    Ok(())
}

async fn deliveries(client: &Client, id: &str, limit: u32, offset: u32) -> ClientResult<()> {
    check_id("webhook", id)?;
    let answer = client
        .get(
            &["v1", "webhooks", id, "deliveries"],
            &[("limit", Some(limit.to_string())), ("offset", Some(offset.to_string()))],
        )
        .await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let page: Deliveries = decode(answer)?;
    if page.deliveries.is_empty() {
        println!("no deliveries");
        return Ok(());
    }
    let mut table = Table::new(&[
        "DELIVERY", "EVENT", "SEQ", "STATE", "ATTEMPTS", "STATUS", "LATENCY", "CREATED", "ERROR",
    ]);
    for d in &page.deliveries {
        let record = &d.delivery;
        let latency = d
            .attempt_log
            .iter()
            .max_by_key(|a| a.attempt)
            .map(|a| format!("{}ms", a.latency_ms))
            .unwrap_or_default();
        table.row(vec![
            record.id.to_string(),
            record.event_type.to_string(),
            record.event_seq.to_string(),
            record.state.to_string(),
            record.attempts.to_string(),
            record.last_status.map(|s| s.to_string()).unwrap_or_default(),
            latency,
            render::time(&record.created_at),
            record.last_error.clone().unwrap_or_default(),
        ]);
    }
    table.print();
    if page.deliveries.len() as u32 >= page.limit {
        println!("(more with --offset {})", page.offset + page.limit);
    }
    Ok(())
}
