//! OpenAPI schemas of Courier's records (feature `openapi`), for `courier-http`'s
//! document. Records derive utoipa's `ToSchema` where they are declared; this
//! module holds what a derive cannot say: the schemas of the wire spellings
//! (string enums, ids, durations) that serde writes by hand.

use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

/// `format_duration`'s output: units `d h m s ms`, largest first, each at most once; `0` for zero.
pub const DURATION_PATTERN: &str = "^(0|[0-9]+d([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?|[0-9]+h([0-9]+m)?([0-9]+s)?([0-9]+ms)?|[0-9]+m([0-9]+s)?([0-9]+ms)?|[0-9]+s([0-9]+ms)?|[0-9]+ms)$";

/// A schema written as JSON (for shapes serde writes by hand). Only this crate's
/// and courier-http's constant fragments come here, so a malformed one is a bug
/// caught by the first test that builds the document.
pub fn schema(value: Value) -> RefOr<Schema> {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("a well-formed schema fragment: {e}"))
}

/// The first paragraph of a doc comment (a schema's description).
pub fn first_paragraph(doc: &str) -> String {
    doc.split("\n\n")
        .next()
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A duration as serde writes it (`"30s"`): the schema `Duration`. (Not named
/// `Duration`: utoipa's derive takes any type of that name for a plain string.)
pub struct DurationText;

impl utoipa::PartialSchema for DurationText {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as `\"500ms\"`, `\"30s\"`, `\"1h30m\"`, `\"2d\"` (units `d h m s ms`, largest first, each once; `0` is zero).",
        }))
    }
}

impl utoipa::ToSchema for DurationText {
    fn name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
}

/// The kind of a [`Target`](crate::Target) (`NotificationTargetKind`).
pub struct NotificationTargetKind;

impl utoipa::PartialSchema for NotificationTargetKind {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "string",
            "enum": ["session", "user", "source", "broadcast"],
            "description": "Who a notification is for: one browser `session`, every session of one `user`, every subscriber of a `source`, or every open connection (`broadcast`).",
        }))
    }
}

impl utoipa::ToSchema for NotificationTargetKind {}

/// The ids (UUIDs on the wire) name their schemas after themselves.
macro_rules! uuid_schema {
    ($($name:ident: $description:literal),* $(,)?) => {
        $(
            impl utoipa::PartialSchema for crate::$name {
                fn schema() -> RefOr<Schema> {
                    schema(json!({ "type": "string", "format": "uuid", "description": $description }))
                }
            }
            impl utoipa::ToSchema for crate::$name {}
        )*
    };
}

uuid_schema! {
    ExecutionId: "An execution's id.",
    TaskId: "A task's id.",
    LeaseToken: "The token of one claim of a task (a stale one gets 409).",
}

impl utoipa::PartialSchema for crate::Target {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "object",
            "required": ["kind", "key"],
            "properties": {
                "kind": { "$ref": "#/components/schemas/NotificationTargetKind" },
                "key": { "type": "string", "description": "The session id, user id or source name (empty for a broadcast)." },
            },
            "description": "Whom a notification is for.",
        }))
    }
}

impl utoipa::ToSchema for crate::Target {
    fn name() -> std::borrow::Cow<'static, str> {
        "NotificationTarget".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        use utoipa::PartialSchema;
        schemas.push(("NotificationTargetKind".into(), NotificationTargetKind::schema()));
    }
}

/// The text of doc attributes as `stringify!` writes them (`doc = " A line."`),
/// one line each.
pub fn doc_text(attributes: &[&str]) -> String {
    attributes
        .iter()
        .filter_map(|a| a.strip_prefix("doc"))
        .filter_map(|a| Some(&a[a.find('"')? + 1..a.rfind('"')?]))
        .map(|line| line.replace("\\\"", "\"").replace("\\\\", "\\"))
        .collect::<Vec<_>>()
        .join("\n")
}
