//! The message every input path takes in (seed 001's shape) and its checks.
//!
//! A message names a provider, one or more recipients and the text to send:
//!
//! ```json
//! {"provider": "email", "recipient": [{"name": "Ada", "account": {"address": "ada@example.com"}}],
//!  "subject": "Hello {{ recipient.name }}", "message": "Your order {{ order }} shipped."}
//! ```
//!
//! Recipients take the seed's forms: an actor `{name, account: {address | number |
//! userid}}`, a chat `{chat_id}`, a channel `{channel_id}`, a team `{team_id}`, or a
//! bare string (an address). Every other top-level field is a template variable.
//! Checking happens once, at the door, so a bad message is refused with the
//! field it concerns before anything is stored.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most recipients one message may name.
pub const MAX_RECIPIENTS: usize = 1000;

/// Fields of the message itself; everything else is a template variable.
const KNOWN: &[&str] = &["provider", "recipient", "message", "subject", "template", "id", "auth"];

/// A checked message, as an execution of the delivery orchestrator carries it.
///
/// ```
/// use courier_ingest::Message;
/// let message = Message::parse(serde_json::json!({
///     "provider": "log", "recipient": ["ops@example.com"], "message": "disk at {{ pct }}%", "pct": 91
/// })).unwrap();
/// assert_eq!(message.recipient[0].address(), Some("ops@example.com"));
/// assert_eq!(message.vars["pct"], 91);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The provider that delivers it (a name under `[ingest.providers]`).
    pub provider: String,
    /// Who receives it, in order; results come back in this order.
    pub recipient: Vec<Recipient>,
    /// The body (a template), or empty when `template` names one.
    #[serde(default)]
    pub message: String,
    /// The subject (a template), for providers that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A named template in `ingest.template_dir`, used for the body instead of `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The sender's idempotency key: the same id twice is one execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Every other field of the message, offered to templates.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub vars: Map<String, Value>,
}

/// One recipient, in any of the seed's forms (a bare string becomes `account.address`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where an actor is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    /// A chat (Telegram-style chat id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_id: Option<Value>,
    /// A channel (Slack or Teams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<Value>,
    /// A team (Teams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<Value>,
    /// Anything else the sender attached, offered to templates.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How an actor is reached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// An email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// A user id on a chat service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userid: Option<String>,
}

impl Recipient {
    /// A recipient reached at `address`.
    pub fn at(address: impl Into<String>) -> Recipient {
        Recipient {
            account: Some(Account {
                address: Some(address.into()),
                ..Account::default()
            }),
            ..Recipient::default()
        }
    }

    /// The address (`account.address`, e.g. an email address), when there is one.
    pub fn address(&self) -> Option<&str> {
        self.account.as_ref().and_then(|a| a.address.as_deref())
    }

    /// The recipient as JSON, the way results and templates show it.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A short label for logs: the name, the address, or the first id present.
    pub fn label(&self) -> String {
        let id = |v: &Option<Value>| {
            v.as_ref()
                .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
        };
        self.address()
            .map(str::to_string)
            .or_else(|| {
                self.account
                    .as_ref()
                    .and_then(|a| a.number.clone().or(a.userid.clone()))
            })
            .or_else(|| id(&self.chat_id))
            .or_else(|| id(&self.channel_id))
            .or_else(|| id(&self.team_id))
            .or_else(|| self.name.clone())
            .unwrap_or_else(|| "recipient".into())
    }
}

/// Why a message was refused: the field, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct InvalidMessage {
    /// The field, as a path (`recipient[2].account.address`).
    pub field: String,
    /// What is wrong.
    pub detail: String,
}

impl InvalidMessage {
    /// `field` is wrong because of `detail`.
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        InvalidMessage {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

impl Message {
    /// Checks a message as received. An `auth` field is dropped (it is checked
    /// by the input path and never stored).
    pub fn parse(value: Value) -> Result<Message, InvalidMessage> {
        let Value::Object(mut fields) = value else {
            return Err(InvalidMessage::new("message", "a message is a JSON object"));
        };
        fields.remove("auth");
        let provider = match fields.remove("provider") {
            Some(Value::String(p)) if !p.trim().is_empty() => p.trim().to_string(),
            Some(Value::String(_)) | None => {
                return Err(InvalidMessage::new(
                    "provider",
                    "required: the provider that delivers the message",
                ));
            }
            Some(other) => {
                return Err(InvalidMessage::new(
                    "provider",
                    format!("a string, not {}", kind(&other)),
                ));
            }
        };
        let recipients = match fields.remove("recipient") {
            Some(Value::Array(list)) => list,
            Some(single @ (Value::Object(_) | Value::String(_))) => vec![single],
            None | Some(Value::Null) => {
                return Err(InvalidMessage::new(
                    "recipient",
                    "required: one recipient or a list of them",
                ));
            }
            Some(other) => {
                return Err(InvalidMessage::new(
                    "recipient",
                    format!("a list of recipients, not {}", kind(&other)),
                ));
            }
        };
        if recipients.is_empty() {
            return Err(InvalidMessage::new("recipient", "the list is empty"));
        }
        if recipients.len() > MAX_RECIPIENTS {
            return Err(InvalidMessage::new(
                "recipient",
                format!("{} recipients; at most {MAX_RECIPIENTS} per message", recipients.len()),
            ));
        }
        let recipient = recipients
            .into_iter()
            .enumerate()
            .map(|(i, r)| parse_recipient(i, r))
            .collect::<Result<Vec<_>, _>>()?;
        let message = optional_string(&mut fields, "message")?.unwrap_or_default();
        let subject = optional_string(&mut fields, "subject")?;
        let template = optional_string(&mut fields, "template")?;
        let id = match fields.remove("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 200 => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => return Err(InvalidMessage::new("id", "a string of 1 to 200 bytes")),
        };
        if message.trim().is_empty() && template.is_none() {
            return Err(InvalidMessage::new(
                "message",
                "required (or a `template` to render instead)",
            ));
        }
        if let Some(name) = &template {
            check_template_name(name)?;
        }
        debug_assert!(KNOWN.iter().all(|k| !fields.contains_key(*k)));
        Ok(Message {
            provider,
            recipient,
            message,
            subject,
            template,
            id,
            vars: fields,
        })
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn optional_string(fields: &mut Map<String, Value>, name: &str) -> Result<Option<String>, InvalidMessage> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(InvalidMessage::new(name, format!("a string, not {}", kind(&other)))),
    }
}

fn parse_recipient(index: usize, value: Value) -> Result<Recipient, InvalidMessage> {
    let field = format!("recipient[{index}]");
    let recipient = match value {
        Value::String(address) if !address.trim().is_empty() => Recipient::at(address.trim()),
        Value::String(_) => return Err(InvalidMessage::new(field, "an empty string")),
        Value::Object(_) => {
            serde_json::from_value::<Recipient>(value).map_err(|e| InvalidMessage::new(field.clone(), e.to_string()))?
        }
        other => {
            return Err(InvalidMessage::new(
                field,
                format!("a recipient object or address, not {}", kind(&other)),
            ));
        }
    };
    let reachable = recipient
        .account
        .as_ref()
        .is_some_and(|a| a.address.is_some() || a.number.is_some() || a.userid.is_some())
        || recipient.chat_id.is_some()
        || recipient.channel_id.is_some()
        || recipient.team_id.is_some();
    if !reachable {
        return Err(InvalidMessage::new(
            field,
            "names no way to reach it: give account.address, account.number, account.userid, chat_id, channel_id or team_id",
        ));
    }
    Ok(recipient)
}

/// A template name is a plain relative path inside `ingest.template_dir`.
fn check_template_name(name: &str) -> Result<(), InvalidMessage> {
    let bad = name.is_empty()
        || name.len() > 200
        || name.starts_with('/')
        || name.contains('\\')
        || name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(InvalidMessage::new(
            "template",
            "a file name inside the template directory (no `..`, no absolute path)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_seed_forms_parse() {
        let m = Message::parse(json!({
            "provider": "email",
            "recipient": [
                "a@example.com",
                {"name": "Ada", "account": {"address": "ada@example.com"}},
                {"chat_id": 42},
                {"channel_id": "C1", "team_id": "T1"}
            ],
            "message": "hi", "auth": "secret", "order": 7
        }))
        .unwrap();
        assert_eq!(m.recipient.len(), 4);
        assert_eq!(m.recipient[0].address(), Some("a@example.com"));
        assert_eq!(m.recipient[1].name.as_deref(), Some("Ada"));
        assert_eq!(m.vars.get("order"), Some(&json!(7)));
        assert!(!m.vars.contains_key("auth"), "the token is never kept");
    }

    #[test]
    fn a_single_recipient_need_not_be_a_list() {
        let m = Message::parse(json!({"provider": "log", "recipient": {"chat_id": 1}, "message": "x"})).unwrap();
        assert_eq!(m.recipient.len(), 1);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (json!([1]), "message"),
            (json!({"recipient": ["a@b"], "message": "x"}), "provider"),
            (json!({"provider": 3, "recipient": ["a@b"], "message": "x"}), "provider"),
            (json!({"provider": "log", "message": "x"}), "recipient"),
            (json!({"provider": "log", "recipient": [], "message": "x"}), "recipient"),
            (
                json!({"provider": "log", "recipient": ["a@b", {"name": "no way"}], "message": "x"}),
                "recipient[1]",
            ),
            (
                json!({"provider": "log", "recipient": ["a@b", 7], "message": "x"}),
                "recipient[1]",
            ),
            (json!({"provider": "log", "recipient": ["a@b"]}), "message"),
            (
                json!({"provider": "log", "recipient": ["a@b"], "message": "x", "subject": 4}),
                "subject",
            ),
            (
                json!({"provider": "log", "recipient": ["a@b"], "template": "../etc/passwd"}),
                "template",
            ),
            (
                json!({"provider": "log", "recipient": ["a@b"], "message": "x", "id": {}}),
                "id",
            ),
        ];
        for (input, field) in cases {
            let err = Message::parse(input.clone()).unwrap_err();
            assert_eq!(err.field, field, "{input}: {err}");
        }
    }
}
