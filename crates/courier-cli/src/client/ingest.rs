//! Messages for ingestion's providers from the command line: `courier notify
//! send --provider ...` (over the API, or over TCP with `--tcp`), `courier
//! notify publish` (Redis pub/sub) and `courier notify stream` (Redis Streams).

use clap::Args;
use courier_ingest::IngestClient;
use serde_json::{Map, Value, json};

use super::{ClientError, ClientResult};

/// Who receives a provider's message, and what it says besides the body.
#[derive(Args, Debug, Clone, Default)]
pub struct MessageArgs {
    /// A recipient (repeatable): an address, or a JSON recipient such as
    /// '{"name": "Ada", "account": {"address": "ada@example.com"}}' or '{"channel_id": "C1"}'.
    #[arg(long = "to", value_name = "RECIPIENT")]
    pub to: Vec<String>,
    /// The subject (a template), for providers that have one.
    #[arg(long)]
    pub subject: Option<String>,
    /// A named template in the node's `ingest.template_dir`, used for the body.
    #[arg(long)]
    pub template: Option<String>,
    /// A template variable (repeatable), NAME=VALUE; VALUE is read as JSON when it is JSON.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// An idempotency key: sending the same id twice delivers once.
    #[arg(long = "id")]
    pub id: Option<String>,
}

/// What `courier notify publish` and `courier notify stream` share.
#[derive(Args, Debug)]
pub struct RedisSendArgs {
    /// The provider that delivers it (a name under `[ingest.providers]`).
    #[arg(long)]
    pub provider: String,
    /// The body (a template).
    #[arg(long)]
    pub message: Option<String>,
    #[command(flatten)]
    pub fields: MessageArgs,
    /// The Redis the node's ingestion reads.
    #[arg(long, env = "COURIER_INGEST_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
}

/// `courier notify publish`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    pub send: RedisSendArgs,
    /// The pub/sub channel the nodes read (`ingest.channel`).
    #[arg(long, env = "COURIER_INGEST_CHANNEL", default_value = "NotifyChannel")]
    pub channel: String,
}

/// `courier notify stream`.
#[derive(Args, Debug)]
pub struct StreamArgs {
    #[command(flatten)]
    pub send: RedisSendArgs,
    /// The stream the nodes' consumer group reads (`ingest.stream`).
    #[arg(long, env = "COURIER_INGEST_STREAM", default_value = "NotifyWorkerStream")]
    pub stream: String,
}

/// The message the arguments describe.
pub fn message_of(provider: &str, message: Option<&str>, fields: &MessageArgs) -> ClientResult<Value> {
    if fields.to.is_empty() {
        return Err(ClientError::Other("--to: at least one recipient".into()));
    }
    let recipients = fields
        .to
        .iter()
        .map(|to| match to.trim_start().starts_with('{') {
            true => serde_json::from_str::<Value>(to)
                .map_err(|e| ClientError::Other(format!("--to {to:?} is not valid JSON: {e}"))),
            false => Ok(json!(to)),
        })
        .collect::<ClientResult<Vec<_>>>()?;
    let mut body = Map::new();
    for var in &fields.vars {
        let (name, value) = var
            .split_once('=')
            .ok_or_else(|| ClientError::Other(format!("--var {var:?}: write NAME=VALUE")))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        body.insert(name.trim().to_string(), value);
    }
    body.insert("provider".into(), json!(provider));
    body.insert("recipient".into(), Value::Array(recipients));
    if let Some(message) = message {
        body.insert("message".into(), json!(message));
    }
    for (key, value) in [
        ("subject", &fields.subject),
        ("template", &fields.template),
        ("id", &fields.id),
    ] {
        if let Some(value) = value {
            body.insert(key.into(), json!(value));
        }
    }
    Ok(Value::Object(body))
}

/// Sends over the TCP input and prints its answer; a refusal is an error.
pub async fn send_tcp(addr: &str, token: Option<&str>, message: &Value, as_json: bool) -> ClientResult<()> {
    let mut client = IngestClient::new().tcp(addr);
    if let Some(token) = token {
        client = client.token(token);
    }
    let url = format!("tcp://{addr}");
    let answer = client.send(message).await.map_err(unreachable(&url))?;
    report(answer, as_json)
}

/// Prints an answer of the intake (TCP or `POST /v1/notify`).
pub fn report(answer: Value, as_json: bool) -> ClientResult<()> {
    if let Some(error) = answer.get("error").and_then(Value::as_str) {
        let mut detail = answer.get("detail").cloned().unwrap_or(Value::Null);
        if let Some(after) = answer.get("retry_after_ms") {
            detail = json!({"retry_after_ms": after});
        }
        return Err(ClientError::Api {
            error: error.to_string(),
            detail,
        });
    }
    if as_json {
        super::print_json(&answer);
    } else {
        println!(
            "queued: execution {} (its result lists one outcome per recipient)",
            answer["id"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// The error for a Redis (or TCP input) the client could not use.
fn unreachable(url: &str) -> impl FnOnce(courier_ingest::ClientError) -> ClientError + '_ {
    move |e| ClientError::Unreachable {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

/// `courier notify publish`: best effort, to whichever nodes are subscribed now.
pub async fn publish(PublishArgs { send: args, channel }: PublishArgs, as_json: bool) -> ClientResult<()> {
    let message = message_of(&args.provider, args.message.as_deref(), &args.fields)?;
    let receivers = IngestClient::new()
        .redis(&args.redis)
        .publish(&message, &channel)
        .await
        .map_err(unreachable(&args.redis))?;
    if as_json {
        super::print_json(&json!({"channel": channel, "receivers": receivers}));
    } else if receivers == 0 {
        println!("published on {channel}, but no node is subscribed: the message is gone (pub/sub keeps nothing)");
    } else {
        println!("published on {channel} to {receivers} subscriber(s)");
    }
    Ok(())
}

/// `courier notify stream`: appended to the stream, consumed by a node of the group.
pub async fn stream(StreamArgs { send: args, stream }: StreamArgs, as_json: bool) -> ClientResult<()> {
    let message = message_of(&args.provider, args.message.as_deref(), &args.fields)?;
    let entry = IngestClient::new()
        .redis(&args.redis)
        .stream(&message, &stream)
        .await
        .map_err(unreachable(&args.redis))?;
    if as_json {
        super::print_json(&json!({"stream": stream, "entry": entry}));
    } else {
        println!("appended to {stream} as entry {entry}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_carries_recipients_vars_and_options() {
        let fields = MessageArgs {
            to: vec!["ada@example.com".into(), r#"{"channel_id": "C1"}"#.into()],
            subject: Some("Hi {{ name }}".into()),
            template: None,
            vars: vec!["order=42".into(), "who=Ada".into()],
            id: Some("k1".into()),
        };
        let m = message_of("email", Some("Order {{ order }}"), &fields).unwrap();
        assert_eq!(
            m,
            json!({"provider": "email", "recipient": ["ada@example.com", {"channel_id": "C1"}], "message": "Order {{ order }}",
                   "subject": "Hi {{ name }}", "id": "k1", "order": 42, "who": "Ada"})
        );
        assert!(message_of("email", Some("x"), &MessageArgs::default()).is_err());
        let bad = MessageArgs {
            to: vec!["{nope".into()],
            ..MessageArgs::default()
        };
        assert!(message_of("email", Some("x"), &bad).is_err());
    }
}
