//! `courier notify`: notifications for people through a node's API: send one to
//! a session, a user, a source or everyone; mint a connection token for a
//! browser; subscribe a user to a source. And messages for ingestion's
//! providers (`send --provider`, `publish`, `stream`; see `ingest.rs`).

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use super::ingest::{MessageArgs, PublishArgs, StreamArgs};
use super::{Client, ClientArgs, ClientError, ClientResult, print_json};

/// `courier notify`.
#[derive(Args, Debug)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub command: NotifyCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What `courier notify` does.
#[derive(Subcommand, Debug)]
pub enum NotifyCommand {
    /// Sends a notification (a toast in the browsers of its target), or with
    /// --provider a message through a provider (email, slack, teams, webhook, log).
    Send(SendArgs),
    /// Publishes a provider's message on the ingestion pub/sub channel (best effort).
    Publish(PublishArgs),
    /// Appends a provider's message to the ingestion stream (consumed by one node, durably).
    Stream(StreamArgs),
    /// Mints a connection token a browser opens its notification stream with.
    Token(TokenArgs),
    /// Subscribes a user to a source (their sessions receive its notifications).
    Subscribe {
        /// The user.
        #[arg(long)]
        user: String,
        /// The source (e.g. blog:tech).
        #[arg(long)]
        source: String,
    },
    /// Unsubscribes a user from a source.
    Unsubscribe {
        /// The user.
        #[arg(long)]
        user: String,
        /// The source.
        #[arg(long)]
        source: String,
    },
}

/// How a notification is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Replayed on every connect until dismissed.
    Queued,
    /// Replayed only after a client's cursor; not dismissible.
    Timeseries,
    /// Never stored.
    Ephemeral,
}

/// `courier notify send`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").required(true).args(["user", "session", "source", "broadcast", "provider"])))]
pub struct SendArgs {
    /// Every session of this user.
    #[arg(long)]
    pub user: Option<String>,
    /// One browser session.
    #[arg(long)]
    pub session: Option<String>,
    /// Every user subscribed to this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Every open connection (always ephemeral).
    #[arg(long)]
    pub broadcast: bool,
    /// The notification's type (`generic` shows a toast).
    #[arg(long = "type", default_value = "generic")]
    pub kind: String,
    /// The toast's title.
    #[arg(long)]
    pub title: Option<String>,
    /// The toast's message.
    #[arg(long)]
    pub message: Option<String>,
    /// More payload, as a JSON object (merged under title and message).
    #[arg(long, value_name = "JSON")]
    pub payload: Option<String>,
    /// How it is kept.
    #[arg(long, value_enum, default_value = "queued")]
    pub mode: Mode,
    /// Replaces the live notification of the same target and group.
    #[arg(long)]
    pub group: Option<String>,
    /// Not a toast: a message delivered by this ingestion provider to --to recipients.
    #[arg(long)]
    pub provider: Option<String>,
    #[command(flatten)]
    pub fields: MessageArgs,
    /// With --provider: send over the node's TCP input at this address instead of the API.
    #[arg(long, value_name = "HOST:PORT")]
    pub tcp: Option<String>,
    /// With --tcp: the input's token (`ingest.tcp_token`).
    #[arg(long, env = "COURIER_INGEST_TCP_TOKEN", hide_env_values = true)]
    pub tcp_token: Option<String>,
}

/// `courier notify token`.
#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The browser session.
    #[arg(long)]
    pub session: String,
    /// The signed-in user.
    #[arg(long)]
    pub user: Option<String>,
    /// A source the connection may read besides the user's subscriptions (repeatable).
    #[arg(long = "source")]
    pub sources: Vec<String>,
    /// How long the token is valid ("1h", "30m"; at most 30d).
    #[arg(long, default_value = "1h")]
    pub ttl: String,
}

/// Runs `courier notify ...`.
pub async fn run(args: NotifyArgs) -> ClientResult<()> {
    let client = Client::new(&args.client)?;
    match args.command {
        NotifyCommand::Send(send) if send.provider.is_some() => send_message(&client, send).await,
        NotifyCommand::Send(send) => send_notification(&client, send).await,
        NotifyCommand::Publish(args) => super::ingest::publish(args, client.json).await,
        NotifyCommand::Stream(args) => super::ingest::stream(args, client.json).await,
        NotifyCommand::Token(token) => mint(&client, token).await,
        NotifyCommand::Subscribe { user, source } => {
            let answer = client
                .post(
                    &["v1", "notifications", "subscriptions"],
                    Some(&json!({"user_id": user, "source": source})),
                )
                .await?;
            if client.json {
                print_json(&answer);
            } else {
                println!("{user} is subscribed to {source}");
            }
            Ok(())
        }
        NotifyCommand::Unsubscribe { user, source } => {
            let mut url = client.url(&["v1", "notifications", "subscriptions"]);
            url.query_pairs_mut()
                .append_pair("user_id", &user)
                .append_pair("source", &source);
            let answer = client.call(reqwest::Method::DELETE, url, None).await?;
            if client.json {
                print_json(&answer);
            } else {
                println!("{user} is no longer subscribed to {source}");
            }
            Ok(())
        }
    }
}

/// The request body of a send.
fn body_of(args: &SendArgs) -> ClientResult<Value> {
    let mut payload = match &args.payload {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(ClientError::Other("--payload must be a JSON object".into())),
            Err(e) => return Err(ClientError::Other(format!("--payload is not valid JSON: {e}"))),
        },
        None => Map::new(),
    };
    if let Some(title) = &args.title {
        payload.insert("title".into(), json!(title));
    }
    if let Some(message) = &args.message {
        payload.insert("message".into(), json!(message));
    }
    let (target, key_field, key) = match (&args.user, &args.session, &args.source) {
        (Some(user), _, _) => ("user", "user_id", Some(user)),
        (_, Some(session), _) => ("session", "session_id", Some(session)),
        (_, _, Some(source)) => ("source", "source", Some(source)),
        _ => ("broadcast", "", None),
    };
    let mode = match args.mode {
        Mode::Queued => "queued",
        Mode::Timeseries => "timeseries",
        Mode::Ephemeral => "ephemeral",
    };
    let mut body = json!({"target": target, "type": args.kind, "mode": mode, "payload": payload});
    if let Some(key) = key {
        body[key_field] = json!(key);
    }
    if let Some(group) = &args.group {
        body["group"] = json!(group);
    }
    Ok(body)
}

async fn send_notification(client: &Client, args: SendArgs) -> ClientResult<()> {
    let body = body_of(&args)?;
    let answer = client.post(&["v1", "notifications"], Some(&body)).await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    if answer["suppressed"] == json!(true) {
        println!("not sent: a hook on the node suppressed it");
    } else {
        println!(
            "sent {} notification {} ({})",
            answer["mode"].as_str().unwrap_or("?"),
            answer["id"].as_str().unwrap_or("?"),
            body["target"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// `courier notify send --provider`: over the API (`POST /v1/notify`) or the TCP input.
async fn send_message(client: &Client, args: SendArgs) -> ClientResult<()> {
    let provider = args.provider.as_deref().unwrap_or_default();
    let message = super::ingest::message_of(provider, args.message.as_deref(), &args.fields)?;
    match &args.tcp {
        Some(addr) => super::ingest::send_tcp(addr, args.tcp_token.as_deref(), &message, client.json).await,
        None => {
            let answer = client.post(&["v1", "notify"], Some(&message)).await?;
            super::ingest::report(answer, client.json)
        }
    }
}

async fn mint(client: &Client, args: TokenArgs) -> ClientResult<()> {
    courier_core::parse_duration(&args.ttl).map_err(|e| ClientError::Other(format!("--ttl: {e}")))?;
    let mut body = json!({"session_id": args.session, "sources": args.sources, "ttl": args.ttl});
    if let Some(user) = &args.user {
        body["user_id"] = json!(user);
    }
    let answer = client.post(&["v1", "notifications", "tokens"], Some(&body)).await?;
    if client.json {
        print_json(&answer);
    } else {
        println!("{}", answer["token"].as_str().unwrap_or_default());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SendArgs {
        SendArgs {
            user: None,
            session: Some("s1".into()),
            source: None,
            broadcast: false,
            kind: "generic".into(),
            title: Some("Saved".into()),
            message: Some("Your draft was saved.".into()),
            payload: Some(r#"{"href": "/drafts/1"}"#.into()),
            mode: Mode::Timeseries,
            group: Some("drafts".into()),
            provider: None,
            fields: MessageArgs::default(),
            tcp: None,
            tcp_token: None,
        }
    }

    #[test]
    fn a_send_body_carries_the_target_the_mode_and_the_merged_payload() {
        let body = body_of(&args()).unwrap();
        assert_eq!(
            body,
            json!({"target": "session", "session_id": "s1", "type": "generic", "mode": "timeseries", "group": "drafts",
                   "payload": {"href": "/drafts/1", "title": "Saved", "message": "Your draft was saved."}})
        );
        let broadcast = SendArgs {
            session: None,
            broadcast: true,
            payload: None,
            ..args()
        };
        assert_eq!(body_of(&broadcast).unwrap()["target"], "broadcast");
        let bad = SendArgs {
            payload: Some("[1]".into()),
            ..args()
        };
        assert!(body_of(&bad).is_err());
    }
}
