//! `GET /openapi.json`: the OpenAPI 3.1 document of every endpoint [`configure`](crate::configure)
//! mounts.
//!
//! It is written by hand as JSON fragments, mirroring the serde form of what the
//! handlers answer (core records and the envelopes of `wire.rs`), and parsed once
//! into utoipa's `OpenApi`, which checks its structure. The tests check that it
//! survives that parse unchanged and that it names exactly the routes `configure`
//! mounts; `scripts/schemathesis` checks it against a running server.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::{Map, Value, json};
use utoipa::openapi::OpenApi;

/// The document, parsed by utoipa, and the body served.
struct Document {
    #[cfg_attr(not(test), allow(dead_code))]
    api: OpenApi,
    body: String,
}

static DOCUMENT: OnceLock<Document> = OnceLock::new();

fn loaded() -> &'static Document {
    DOCUMENT.get_or_init(|| {
        let api: OpenApi = serde_json::from_value(spec()).expect("the OpenAPI document is well-formed");
        let body = serde_json::to_string(&api).expect("the OpenAPI document serializes");
        Document { api, body }
    })
}

/// The OpenAPI document.
pub(crate) async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(loaded().body.as_str())
}

// ---------------------------------------------------------------------------
// Fragments.

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn response(name: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{name}") })
}

/// Any JSON value (OpenAPI's `{}`, which utoipa cannot read, spelled out).
fn any(description: &str) -> Value {
    json!({
        "type": ["object", "array", "string", "number", "boolean", "null"],
        "description": description,
    })
}

fn nullable(schema: Value) -> Value {
    json!({ "anyOf": [schema, { "type": "null" }] })
}

fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn uuid(description: &str) -> Value {
    json!({ "type": "string", "format": "uuid", "description": description })
}

fn date_time(description: &str) -> Value {
    json!({ "type": "string", "format": "date-time", "description": description })
}

fn boolean(description: &str) -> Value {
    json!({ "type": "boolean", "description": description })
}

fn strings(description: &str) -> Value {
    json!({ "type": "array", "items": { "type": "string" }, "description": description })
}

/// A Rust `u32`.
fn u32_(description: &str) -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX, "description": description })
}

/// A Rust `u64` (beyond `i64` in theory, never in practice).
fn u64_(description: &str) -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": 0, "description": description })
}

fn i64_(description: &str) -> Value {
    json!({ "type": "integer", "format": "int64", "description": description })
}

fn i32_(description: &str) -> Value {
    json!({ "type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX, "description": description })
}

/// An object with exactly these properties (serde's output, or a request body that
/// refuses unknown fields).
fn object(required: &[&str], properties: Value) -> Value {
    let mut o = json!({ "type": "object", "additionalProperties": false, "properties": properties });
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

/// The entries of several objects in one.
fn joined<const N: usize>(parts: [Value; N]) -> Value {
    let mut all = Map::new();
    for part in parts {
        let Value::Object(part) = part else {
            unreachable!("parts are objects")
        };
        all.extend(part);
    }
    Value::Object(all)
}

fn merged(a: Value, b: Value) -> Value {
    let (Value::Object(mut a), Value::Object(b)) = (a, b) else {
        unreachable!("properties are objects")
    };
    a.extend(b);
    Value::Object(a)
}

/// `format_duration`'s output: units `d h m s ms`, largest first, each at most once; `0` for zero.
const DURATION_PATTERN: &str = "^(0|[0-9]+d([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?|[0-9]+h([0-9]+m)?([0-9]+s)?([0-9]+ms)?|[0-9]+m([0-9]+s)?([0-9]+ms)?|[0-9]+s([0-9]+ms)?|[0-9]+ms)$";

/// A duration in a request body: a duration string, or a number of seconds from
/// `min` to `max` (the string's bounds are the same, but JSON Schema cannot say so).
fn duration_input(description: &str, min: u64, max: Option<u64>) -> Value {
    let mut seconds =
        json!({ "type": "number", "minimum": min, "description": "A number of seconds (fractions allowed)." });
    if let Some(max) = max {
        seconds["maximum"] = json!(max);
    }
    json!({ "anyOf": [schema("Duration"), seconds], "description": description })
}

/// A response whose body is text of `media` type.
fn text(description: &str, media: &str) -> Value {
    json!({ "description": description, "content": { media: { "schema": { "type": "string" } } } })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": json_content(schema) })
}

/// A response with OpenAPI links: how its values feed other operations (what
/// Schemathesis's stateful tests follow).
fn linked(mut response: Value, links: Value) -> Value {
    response["links"] = links;
    response
}

fn link(operation: &str, parameters: Value) -> Value {
    json!({ "operationId": operation, "parameters": parameters })
}

fn path_id(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description,
            "schema": { "type": "string", "format": "uuid" } })
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn limit_param(default: u32) -> Value {
    query(
        "limit",
        "Most items returned.",
        json!({ "type": "integer", "format": "int64", "minimum": 1, "maximum": crate::params::MAX_PAGE, "default": default }),
    )
}

fn offset_param() -> Value {
    query(
        "offset",
        "Items skipped.",
        json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX, "default": 0 }),
    )
}

fn json_body(required: bool, schema: Value) -> Value {
    json!({ "required": required, "content": json_content(schema) })
}

/// Which error statuses an operation can answer (each `{"error","detail"}`).
#[derive(Clone, Copy)]
enum Failure {
    /// 400: a malformed id, query or body.
    Bad,
    /// 404: nothing has the id.
    NotFound,
    /// 409: the state forbids it (a lost lease, a finished execution).
    Conflict,
    /// 413 and 415: a JSON body over the limit, or not `application/json`.
    Body,
    /// 413 alone: a raw body over the limit.
    TooLarge,
    /// 500 and 503: the store failed, is unreachable, or the node is shutting down.
    Store,
    /// 422: a well-formed body that names no valid target.
    Unprocessable,
    /// 401 on `/notifications/...`: the connection's identity is missing or invalid.
    NotSignedIn,
}

struct Op<'a> {
    id: &'a str,
    tag: &'a str,
    summary: &'a str,
    description: &'a str,
    parameters: Vec<Value>,
    body: Option<Value>,
    responses: Vec<(&'a str, Value)>,
    errors: &'a [Failure],
    /// Under `/v1`: the bearer token applies (401 when tokens are configured).
    api: bool,
}

impl Op<'_> {
    fn build(self) -> Value {
        let mut responses = Map::new();
        for (status, r) in self.responses {
            responses.insert(status.into(), r);
        }
        let mut add = |status: &str, name: &str| {
            responses.insert(status.into(), response(name));
        };
        for e in self.errors {
            match e {
                Failure::Bad => add("400", "BadRequest"),
                Failure::NotFound => add("404", "NotFound"),
                Failure::Conflict => add("409", "Conflict"),
                Failure::Body => {
                    add("413", "PayloadTooLarge");
                    add("415", "UnsupportedMediaType");
                }
                Failure::TooLarge => add("413", "PayloadTooLarge"),
                Failure::Store => {
                    add("500", "StoreError");
                    add("503", "Unavailable");
                }
                Failure::Unprocessable => add("422", "Unprocessable"),
                Failure::NotSignedIn => add("401", "NotSignedIn"),
            }
        }
        if self.api {
            add("401", "Unauthorized");
        }
        let mut op = json!({
            "operationId": self.id,
            "tags": [self.tag],
            "summary": self.summary,
            "responses": responses,
        });
        if !self.description.is_empty() {
            op["description"] = json!(self.description);
        }
        if !self.parameters.is_empty() {
            op["parameters"] = json!(self.parameters);
        }
        if let Some(body) = self.body {
            op["requestBody"] = body;
        }
        if self.api {
            op["security"] = json!([{}, { "bearer": [] }, { "access_token": [] }]);
        }
        op
    }
}

// ---------------------------------------------------------------------------
// Component schemas.

fn enum_schema(description: &str, values: Vec<&'static str>) -> Value {
    json!({ "type": "string", "enum": values, "description": description })
}

fn webhook_properties() -> Value {
    json!({
        "id": uuid("Its id."),
        "url": string("Where deliveries are POSTed."),
        "event_types": { "type": "array", "items": schema("EventType"), "description": "Only these event types (empty: every type)." },
        "execution_id": uuid("Only events of this execution."),
        "task_id": uuid("Only events of this task."),
        "headers": { "type": "object", "additionalProperties": { "type": "string" }, "description": "Extra headers sent with every delivery." },
        "description": string("A human description."),
        "enabled": boolean("Whether deliveries are made (a `410 Gone` answer disables it)."),
        "disabled_reason": string("Why it was disabled."),
        "created_at": date_time("When it was registered (store clock)."),
        "updated_at": date_time("When it last changed."),
    })
}

const WEBHOOK_REQUIRED: &[&str] = &[
    "id",
    "url",
    "event_types",
    "headers",
    "enabled",
    "created_at",
    "updated_at",
];

fn delivery_properties() -> Value {
    json!({
        "id": uuid("Its id (also the `webhook-id` header, stable across retries)."),
        "webhook_id": uuid("The webhook."),
        "event_seq": i64_("The event's sequence number."),
        "event_type": schema("EventType"),
        "execution_id": uuid("The durable execution that makes the attempts."),
        "state": schema("DeliveryState"),
        "attempts": u32_("Attempts made so far."),
        "last_status": { "type": "integer", "format": "int32", "minimum": 0, "maximum": 65535, "description": "The last HTTP status received." },
        "last_error": string("The last error (transport failure or non-2xx summary)."),
        "created_at": date_time("When it was enqueued."),
        "updated_at": date_time("When it last changed."),
    })
}

fn schemas() -> Value {
    use courier_core::{DeliveryState, EventType, ExecutionState, TaskKind, TaskState};
    let task_properties = json!({
        "id": uuid("Its id."),
        "execution_id": uuid("The execution it belongs to."),
        "parent_id": uuid("The orchestrator task that started it (absent for a root task)."),
        "step": i64_("Its position in the execution's history: 0 for the root."),
        "kind": schema("TaskKind"),
        "function": string("The function it calls."),
        "version": string("The function's version."),
        "queue": string("Its queue."),
        "tags": strings("Its tags."),
        "priority": i32_("Its priority (higher runs first)."),
        "state": schema("TaskState"),
        "args": any("Arguments."),
        "result": any("Result once completed (`null` is a real result)."),
        "error": schema("TaskError"),
        "checkpoint": any("The last checkpoint an attempt saved."),
        "attempt": u32_("How many times it has been claimed."),
        "retry": schema("RetryPolicy"),
        "timeout": schema("Duration"),
        "lease_owner": string("The worker holding (or that last held) its lease."),
        "lease_token": uuid("The token of the current claim."),
        "lease_expires_at": date_time("When the current lease runs out."),
        "heartbeat_at": date_time("The last heartbeat (or the claim, if none since)."),
        "stuck_at": date_time("When it was reported stuck during the current attempt."),
        "wake_gen": i64_("Bumped each time one of its children settles."),
        "scheduled_for": date_time("Not claimable before this."),
        "created_at": date_time("When it was created."),
        "started_at": date_time("When its latest attempt started."),
        "completed_at": date_time("When it reached a terminal state."),
    });
    let max = crate::params::MAX_DURATION;
    let bounded_duration = duration_input(
        &format!(
            "A duration: a string such as `\"500ms\"`, `\"30s\"`, `\"1h30m\"`, `\"2d\"`, or a number of seconds; at most `{}` (100 years).",
            courier_core::format_duration(max)
        ),
        0,
        Some(max.as_secs()),
    );
    let name = |description: &str| {
        json!({ "type": "string", "minLength": 1, "maxLength": crate::executions::MAX_NAME,
                "description": format!("{description} 1 to {} bytes, not blank.", crate::executions::MAX_NAME) })
    };
    let names =
        |description: &str| nullable(json!({ "type": "array", "items": name("A name."), "description": description }));
    let lease_token = uuid("The `lease_token` of the claim (a stale one gets 409).");
    let fail_error = json!({
        "anyOf": [
            { "type": "string", "description": "A message (kind `error`)." },
            {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "kind": nullable(string("A short machine-readable class that retry policies match on (default `error`).")),
                    "message": string("A human-readable explanation."),
                    "details": any("Anything else worth keeping."),
                },
            },
        ],
        "description": "The error: a message, or a full error.",
    });

    joined([
        json!({
            "Error": {
                "type": "object",
                "additionalProperties": false,
                "required": ["error", "detail"],
                "properties": {
                    "error": string("A short sentence saying what went wrong."),
                    "detail": any("Anything that helps: the id concerned, the field, the state."),
                },
                "description": "Every error answer.",
            },
            "Duration": {
                "type": "string",
                "pattern": DURATION_PATTERN,
                "description": "A duration such as `\"500ms\"`, `\"30s\"`, `\"1h30m\"`, `\"2d\"` (units `d h m s ms`, largest first, each once; `0` is zero).",
            },
            "DurationInput": bounded_duration,
            "ExecutionState": enum_schema("Where an execution is in its life.", ExecutionState::ALL.iter().map(|s| s.as_str()).collect()),
        }),
        json!({
            "TaskState": enum_schema("Where a task is in its life.", TaskState::ALL.iter().map(|s| s.as_str()).collect()),
            "TaskKind": enum_schema("What a task is.", TaskKind::ALL.iter().map(|s| s.as_str()).collect()),
            "EventType": enum_schema("What an event records.", EventType::ALL.iter().map(|s| s.as_str()).collect()),
            "DeliveryState": enum_schema("Where a webhook delivery is.", DeliveryState::ALL.iter().map(|s| s.as_str()).collect()),
            "TaskError": object(&["kind", "message"], json!({
                "kind": string("A short machine-readable class, e.g. `timeout` or `http_503`."),
                "message": string("A human-readable explanation."),
                "details": any("Anything else worth keeping."),
                "non_retryable": boolean("Never retry this error (present only when true)."),
                "retry_after_ms": u64_("Retry no sooner than this many milliseconds."),
            })),
        }),
        json!({
            "RetryPolicy": object(&["max_attempts", "initial_delay", "backoff_factor", "max_delay", "jitter"], json!({
                "max_attempts": u32_("Total attempts including the first."),
                "initial_delay": schema("Duration"),
                "backoff_factor": { "type": "number", "description": "Each further retry waits this many times longer." },
                "max_delay": schema("Duration"),
                "jitter": { "type": "number", "description": "Random spread of each delay, as a fraction of it." },
                "retry_on": strings("If present, only these error kinds retry."),
                "non_retryable": strings("These error kinds never retry."),
                "schedule": { "type": "array", "items": schema("Duration"), "description": "Explicit delays before each retry, instead of exponential backoff." },
            })),
            "Execution": object(
                &["id", "function", "state", "args", "queue", "tags", "priority", "created_at", "updated_at"],
                json!({
                    "id": uuid("Its id."),
                    "function": string("The function dispatched."),
                    "version": string("The function's registered version at dispatch."),
                    "state": schema("ExecutionState"),
                    "args": any("The arguments it was dispatched with."),
                    "result": any("The root task's result, once completed."),
                    "error": schema("TaskError"),
                    "queue": string("The queue of its root task."),
                    "tags": strings("Tags of its root task."),
                    "priority": i32_("Priority of its root task."),
                    "idempotency_key": string("The caller's deduplication key."),
                    "created_at": date_time("When it was dispatched (store clock)."),
                    "updated_at": date_time("When its state last changed."),
                    "started_at": date_time("When its root task first started."),
                    "completed_at": date_time("When it reached a terminal state."),
                    "deadline": date_time("When it times out if still unfinished."),
                }),
            ),
            "ExecutionList": object(&["executions", "limit", "offset"], json!({
                "executions": { "type": "array", "items": schema("Execution") },
                "limit": u32_("The page size used."),
                "offset": u32_("Items skipped."),
            })),
            "ProgressEntry": object(&["execution_id", "created_at"], json!({
                "execution_id": uuid("The execution."),
                "task_id": uuid("The task that reported it."),
                "step": string("The step it concerns, by name."),
                "status": string("A short status word."),
                "percent": { "type": "number", "description": "How far along, 0 to 100." },
                "message": string("A human-readable message."),
                "detail": any("Anything else."),
                "created_at": date_time("When it was recorded (store clock)."),
            })),
            "Task": object(
                &["id", "execution_id", "step", "kind", "function", "queue", "tags", "priority", "state", "args",
                  "attempt", "retry", "wake_gen", "scheduled_for", "created_at"],
                task_properties,
            ),
        }),
        json!({
            "ExecutionDetail": object(&["execution", "counters", "values", "progress", "steps", "steps_truncated"], json!({
                "execution": schema("Execution"),
                "counters": { "type": "object", "additionalProperties": { "type": "number" }, "description": "Its counters." },
                "values": { "type": "object", "additionalProperties": any("A state value."), "description": "Its custom state values." },
                "progress": { "type": "array", "items": schema("ProgressEntry"), "description": "Its latest progress reports, oldest first." },
                "steps": { "type": "array", "items": schema("Task"), "description": "Its tasks by step (the first 1000)." },
                "steps_truncated": boolean("Whether it has more steps than listed."),
            })),
            "ResultBody": object(&["execution_id", "state"], json!({
                "execution_id": uuid("The execution."),
                "state": schema("ExecutionState"),
                "result": any("Its result, if it completed."),
                "error": schema("TaskError"),
            })),
            "Cancelled": object(&["execution_id", "previous", "tasks"], json!({
                "execution_id": uuid("The execution."),
                "previous": schema("ExecutionState"),
                "tasks": { "type": "array", "items": { "type": "string", "format": "uuid" }, "description": "Tasks cancelled with it." },
            })),
            "SignalSent": object(&["signal_id", "delivered_to", "parent_id"], json!({
                "signal_id": uuid("The stored signal."),
                "delivered_to": nullable(uuid("The waiting task it completed at once, if one was waiting.")),
                "parent_id": nullable(uuid("That task's orchestrator.")),
            })),
            "QueueDepth": object(&["queue", "ready", "scheduled", "running"], json!({
                "queue": string("The queue."),
                "ready": u64_("Pending and due now."),
                "scheduled": u64_("Pending but not due yet."),
                "running": u64_("Running."),
            })),
        }),
        json!({
            "QueueList": object(&["queues"], json!({
                "queues": { "type": "array", "items": schema("QueueDepth") },
            })),
            "ClaimedTask": object(
                &["task_id", "execution_id", "function", "args", "attempt", "lease_token", "lease_expires_at", "queue"],
                json!({
                    "task_id": uuid("The task."),
                    "execution_id": uuid("Its execution."),
                    "function": string("The activity to run."),
                    "args": any("Its arguments."),
                    "attempt": u32_("Which attempt this claim is (1-based)."),
                    "lease_token": uuid("Present it on every write of this claim."),
                    "lease_expires_at": date_time("When the lease runs out unless renewed."),
                    "queue": string("Its queue."),
                    "checkpoint": any("The checkpoint an earlier attempt saved."),
                }),
            ),
            "Renewed": object(&["task_id", "expires_at"], json!({
                "task_id": uuid("The task."),
                "expires_at": date_time("The lease's new end."),
            })),
            "TaskAck": object(&["task_id"], json!({ "task_id": uuid("The task.") })),
            "Completed": object(&["task_id", "execution_id", "state", "parent_id", "execution_state"], json!({
                "task_id": uuid("The task."),
                "execution_id": uuid("Its execution."),
                "state": schema("TaskState"),
                "parent_id": nullable(uuid("The orchestrator woken, if any.")),
                "execution_state": nullable(schema("ExecutionState")),
            })),
        }),
        json!({
            "DeadLetter": object(&["task_id", "execution_id", "reason", "failed_at", "task"], json!({
                "task_id": uuid("The task (one dead letter per task)."),
                "execution_id": uuid("Its execution."),
                "reason": string("Why it was given up on."),
                "failed_at": date_time("When it was moved here (store clock)."),
                "task": schema("Task"),
            })),
            "DeadLetterList": object(&["dead_letters", "total", "limit", "offset"], json!({
                "dead_letters": { "type": "array", "items": schema("DeadLetter") },
                "total": u64_("Dead letters in all."),
                "limit": u32_("The page size used."),
                "offset": u32_("Items skipped."),
            })),
            "Replayed": object(&["task_id", "execution_id", "execution_resumed"], json!({
                "task_id": uuid("The task, pending again with its attempts reset."),
                "execution_id": uuid("Its execution."),
                "execution_resumed": boolean("Whether the execution was reopened."),
            })),
            "CleanupReport": object(&["executions", "dead_letters", "events", "cache_entries"], json!({
                "executions": u64_("Finished executions deleted (with all their rows)."),
                "dead_letters": u64_("Dead letters deleted."),
                "events": u64_("Events trimmed from the log."),
                "cache_entries": u64_("Expired cache entries purged."),
            })),
            "Event": object(&["seq", "type", "timestamp", "data"], json!({
                "seq": i64_("Its position in the log."),
                "type": schema("EventType"),
                "execution_id": uuid("The execution it concerns."),
                "task_id": uuid("The task it concerns."),
                "timestamp": date_time("When it was appended (store clock)."),
                "data": any("Details, shaped by the event type."),
            })),
        }),
        json!({
            "EventsPage": object(&["events", "next", "has_more"], json!({
                "events": { "type": "array", "items": schema("Event") },
                "next": i64_("The cursor to pass as `after` next time."),
                "has_more": boolean("Whether more events follow at once."),
            })),
            "Webhook": object(WEBHOOK_REQUIRED, webhook_properties()),
            "WebhookWithSecret": object(
                &[WEBHOOK_REQUIRED, &["secret"]].concat(),
                merged(webhook_properties(), json!({
                    "secret": string("The signing secret (`whsec_` + base64); shown only here."),
                })),
            ),
            "WebhookList": object(&["webhooks", "limit", "offset"], json!({
                "webhooks": { "type": "array", "items": schema("Webhook") },
                "limit": u32_("The page size used."),
                "offset": u32_("Items skipped."),
            })),
            "DeliveryAttempt": object(&["delivery_id", "attempt", "latency_ms", "at"], json!({
                "delivery_id": uuid("The delivery."),
                "attempt": u32_("Which attempt (1-based)."),
                "status": { "type": "integer", "format": "int32", "minimum": 0, "maximum": 65535, "description": "The HTTP status, if a response arrived." },
                "latency_ms": u64_("How long the request took."),
                "response": string("The start of the response body (at most 1 KiB)."),
                "error": string("What went wrong, if anything."),
                "at": date_time("When it was made."),
            })),
        }),
        json!({
            "Delivery": object(
                &["id", "webhook_id", "event_seq", "event_type", "execution_id", "state", "attempts", "created_at",
                  "updated_at", "attempt_log"],
                merged(delivery_properties(), json!({
                    "attempt_log": { "type": "array", "items": schema("DeliveryAttempt"), "description": "Its attempts." },
                })),
            ),
            "DeliveryList": object(&["deliveries", "limit", "offset"], json!({
                "deliveries": { "type": "array", "items": schema("Delivery") },
                "limit": u32_("The page size used."),
                "offset": u32_("Items skipped."),
            })),
            "Health": object(&["status", "node"], json!({
                "status": { "type": "string", "enum": ["ok"] },
                "node": string("This node's id."),
            })),
            "Ready": object(&["status", "node", "store", "notifier", "store_time"], json!({
                "status": { "type": "string", "enum": ["ready"] },
                "node": string("This node's id."),
                "store": string("The store backend."),
                "notifier": string("The notifier backend."),
                "store_time": date_time("The store's clock."),
            })),

            // Request bodies.
        }),
        json!({
            "CreateExecution": object(&["function"], json!({
                "function": name("The function to run."),
                "args": any("Its arguments (default `null`)."),
                "delay": nullable(schema("DurationInput")),
                "expiry": nullable(schema("DurationInput")),
                "queue": nullable(name("The queue (default `default`).")),
                "tags": names("Tags."),
                "priority": nullable(i32_("Higher runs first (default 0).")),
                "idempotency_key": nullable(name("Dispatching again with this key answers the first execution (200).")),
            })),
            "CancelBody": object(&[], json!({
                "reason": nullable(string("Why (default `cancelled over the API`).")),
            })),
            "CleanupBody": object(&["older_than"], json!({
                "older_than": schema("DurationInput"),
            })),
            "ClaimBody": object(&["worker_id"], json!({
                "worker_id": name("Who claims (recorded as the lease owner)."),
                "queues": names("Only these queues (default: every queue)."),
                "tags": nullable(strings("The worker's tags: a tagged task is claimed only if they overlap.")),
                "functions": names("Only these functions."),
                "max": nullable(json!({ "type": "integer", "format": "int64", "minimum": 1, "maximum": 1000, "description": "At most this many (default 1)." })),
                "lease": nullable(duration_input("Lease length, 1s to 1d (default 30s).", 1, Some(86_400))),
                "wait": nullable(duration_input("Long-poll up to this long (capped by the server's `http.max_wait`; default 0).", 0, None)),
            })),
            "HeartbeatBody": object(&["lease_token"], json!({
                "lease_token": lease_token,
                "details": any("Recorded with the `task.heartbeat` event."),
            })),
        }),
        json!({
            "CheckpointBody": object(&["lease_token", "checkpoint"], json!({
                "lease_token": lease_token,
                "checkpoint": any("Offered to the next attempt."),
            })),
            "ProgressBody": object(&["lease_token"], json!({
                "lease_token": lease_token,
                "percent": nullable(json!({ "type": "number", "minimum": 0, "maximum": 100, "description": "How far along." })),
                "message": nullable(string("A human-readable message.")),
                "step": nullable(string("The step it concerns.")),
                "status": nullable(string("A short status word.")),
                "detail": any("Anything else."),
            })),
            "CompleteBody": object(&["lease_token"], json!({
                "lease_token": lease_token,
                "result": any("The result (default `null`)."),
            })),
            "FailBody": object(&["lease_token", "error"], json!({
                "lease_token": lease_token,
                "error": fail_error,
                "retryable": nullable(boolean("`false`: never retry, whatever the policy says.")),
                "retry_after": nullable(schema("DurationInput")),
            })),
            "CreateWebhook": object(&["url"], json!({
                "url": { "type": "string", "format": "uri", "maxLength": 2048, "description": "An http(s) URL with a host, at most 2048 characters." },
                "event_types": { "type": "array", "items": schema("EventType"), "description": "Only these event types (default: every type)." },
                "execution_id": nullable(uuid("Only events of this execution.")),
                "task_id": nullable(uuid("Only events of this task.")),
                "headers": {
                    "type": "object",
                    "propertyNames": { "type": "string", "pattern": "^[A-Za-z0-9_-]+$" },
                    "additionalProperties": { "type": "string", "maxLength": 4096, "pattern": "^[^\\r\\n]*$" },
                    "description": "Extra headers sent with every delivery (names of letters, digits, `-`, `_`; values without line breaks, at most 4096 bytes).",
                },
                "description": nullable(string("A human description.")),
            })),
        }),
        notification_schemas(),
    ])
}

/// The schemas of notifications for people (`/v1/notifications...`, `/notifications/...`).
fn notification_schemas() -> Value {
    let key = |description: &str| {
        json!({ "type": "string", "minLength": 1, "maxLength": courier_core::MAX_NOTIFICATION_KEY,
                "description": format!("{description} 1 to {} bytes, not blank, no control characters.", courier_core::MAX_NOTIFICATION_KEY) })
    };
    let seq =
        |description: &str| json!({ "type": "integer", "format": "int64", "minimum": 0, "description": description });
    let epoch = |description: &str| json!({ "type": "number", "minimum": 0, "description": description });
    let target_kind = || schema("NotificationTargetKind");
    json!({
        "NotificationTargetKind": enum_schema(
            "Who a notification is for: one browser `session`, every session of one `user`, every subscriber of a `source`, or every open connection (`broadcast`).",
            vec!["session", "user", "source", "broadcast"],
        ),
        "NotificationMode": enum_schema(
            "`queued`: stored, replayed on every connect until dismissed. `timeseries`: stored, replayed only after the client's cursor, not dismissible. `ephemeral`: never stored (broadcasts always are).",
            vec!["queued", "timeseries", "ephemeral"],
        ),
        "NotificationTarget": object(&["kind", "key"], json!({
            "kind": target_kind(),
            "key": string("The session id, user id or source name (empty for a broadcast)."),
        })),
        "SendNotification": object(&["target", "type", "payload"], json!({
            "target": target_kind(),
            "session_id": nullable(key("The session, for `target: session`.")),
            "user_id": nullable(key("The user, for `target: user`.")),
            "source": nullable(key("The source, for `target: source`.")),
            "type": key("The notification's type (the browser client toasts `generic`)."),
            "mode": nullable(schema("NotificationMode")),
            "group": nullable(key("A group key: a newer notification of the same target and group replaces this one.")),
            "payload": {
                "type": "object",
                "description": format!("What the browser receives (seed 004's `title`, `message`, `level`, `link`, ...); at most {} bytes as JSON.", courier_runtime::MAX_NOTIFICATION_PAYLOAD),
            },
        })),
        "NotificationSent": object(&["id", "type", "mode", "created_at", "seq"], json!({
            "id": uuid("The notification's id."),
            "type": string("Its type."),
            "mode": schema("NotificationMode"),
            "created_at": epoch("When it was sent (Unix seconds, with microseconds)."),
            "seq": seq("Its place in the notification sequence (0 for an ephemeral one)."),
        })),
        "NotificationSuppressed": object(&["suppressed"], json!({
            "suppressed": { "type": "boolean", "enum": [true], "description": "A hook suppressed the notification: nothing was sent." },
        })),
        "Notification": object(&["id", "seq", "target", "type", "mode", "payload", "created_at"], json!({
            "id": uuid("Its id."),
            "seq": seq("Its place in the notification sequence."),
            "target": schema("NotificationTarget"),
            "type": string("Its type."),
            "mode": schema("NotificationMode"),
            "group": string("Its group key."),
            "payload": { "type": "object", "description": "What the browser receives." },
            "created_at": date_time("When it was sent."),
            "expires_at": date_time("When it stops being replayed (its TTL)."),
        })),
        "NotificationList": object(&["notifications", "limit", "next_before"], json!({
            "notifications": { "type": "array", "items": schema("Notification"), "description": "Newest first." },
            "limit": u32_("The page size used."),
            "next_before": nullable(seq("Pass as `before` for the next page (`null`: this page is empty).")),
        })),
        "CreateConnectionToken": object(&["session_id"], json!({
            "session_id": key("The browser session the token is for."),
            "user_id": nullable(key("The signed-in user, if any: the stream also carries the user's notifications and subscriptions.")),
            "sources": { "type": "array", "items": key("A source."), "description": "Sources the connection may read without a subscription." },
            "ttl": nullable(duration_input("How long the token is valid, 1s to 30d (default 1h).", 1, Some(crate::notifications::token::MAX_TTL.as_secs()))),
        })),
        "ConnectionToken": object(&["token", "expires_at"], json!({
            "token": string("An HS256 JWT for `/notifications/stream` and dismissals (`?token=`, `Authorization: Bearer`, or the `courier_token` cookie)."),
            "expires_at": nullable(date_time("When it expires.")),
        })),
        "SourceSubscription": object(&["user_id", "source"], json!({
            "user_id": key("The user."),
            "source": key("The source."),
        })),
        "SourceSubscriptionState": object(&["user_id", "source", "subscribed"], json!({
            "user_id": string("The user."),
            "source": string("The source."),
            "subscribed": boolean("Whether the user is now subscribed."),
        })),
        "SourceSubscriptions": object(&["user_id", "sources"], json!({
            "user_id": string("The user."),
            "sources": strings("The sources the user is subscribed to, in byte order."),
        })),
        "NotificationDismissed": object(&["dismissed"], json!({
            "dismissed": uuid("The notification dismissed for the caller."),
        })),
        "NotificationGroupDismissed": object(&["dismissed_group", "dismissed"], json!({
            "dismissed_group": string("The group."),
            "dismissed": { "type": "array", "items": { "type": "string", "format": "uuid" }, "description": "The notifications it dismissed for the caller (empty if none)." },
        })),
        "NotificationAccepted": object(&["id"], json!({
            "id": nullable(uuid("The notification's id (`null` when a hook suppressed it).")),
            "type": string("Its type."),
            "suppressed": { "type": "boolean", "enum": [true], "description": "Present when a hook suppressed it." },
        })),
    })
}

fn components() -> Value {
    let error = |description: &str| json!({ "description": description, "content": json_content(schema("Error")) });
    json!({
        "schemas": schemas(),
        "responses": {
            "BadRequest": error("A malformed id, query parameter or body."),
            "Unauthorized": error("A missing or unknown bearer token (only when `api.tokens` is set)."),
            "NotFound": error("Nothing has this id."),
            "Conflict": error("The resource's state forbids it (a lost lease, a finished execution)."),
            "PayloadTooLarge": error("The body is larger than `http.body_limit`."),
            "UnsupportedMediaType": error("The body is not `application/json`."),
            "StoreError": error("The store failed."),
            "Unavailable": error("The store is unreachable, or the node is shutting down."),
            "Unprocessable": error("The body names no valid target (an unknown `target`, or its id missing or invalid)."),
            "NotSignedIn": error("The connection has no valid identity: a missing, invalid or expired connection token, or (without tokens) no anonymous session yet."),
            "TooManyRequests": {
                "description": "Authentication failed from this client within `notifications.webhook_failure_window`.",
                "headers": { "Retry-After": { "description": "Seconds to wait.", "schema": { "type": "integer", "minimum": 1 } } },
                "content": json_content(schema("Error")),
            },
        },
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer <token>`; required on `/v1` only when tokens are configured (`api.tokens`).",
            },
            "access_token": {
                "type": "apiKey",
                "in": "query",
                "name": "access_token",
                "description": "The token as a query parameter, for clients that cannot set headers (`EventSource`, WebSocket).",
            },
            "connection_token": {
                "type": "apiKey",
                "in": "query",
                "name": "token",
                "description": "A connection token (HS256 JWT signed with `notifications.token_secret`; `sid`, optional `sub`, `sources`, `exp`) for `/notifications/...`. Also accepted as `Authorization: Bearer` or the `courier_token` cookie.",
            },
            "anonymous_session": {
                "type": "apiKey",
                "in": "cookie",
                "name": crate::notifications::identity::SESSION_COOKIE,
                "description": "Without `notifications.token_secret`: the signed anonymous-session cookie the stream sets on first connect.",
            },
            "webhook_secret": {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer <notifications.webhook_secret>`.",
            },
        },
    })
}

// ---------------------------------------------------------------------------
// Paths.

fn paths() -> Value {
    use Failure::*;
    let execution_id = || path_id("id", "The execution's id.");
    let task_id = || path_id("id", "The task's id.");
    let webhook_id = || path_id("id", "The webhook's id.");
    let dead_letter_id = || path_id("id", "The dead letter's task id.");
    let event_filters = || {
        vec![
            query(
                "execution_id",
                "Only events of this execution.",
                json!({ "type": "string", "format": "uuid" }),
            ),
            query(
                "task_id",
                "Only events of this task.",
                json!({ "type": "string", "format": "uuid" }),
            ),
            json!({
                "name": "type", "in": "query", "required": false,
                "description": "Only these event types, comma-separated.",
                "style": "form", "explode": false,
                "schema": { "type": "array", "items": schema("EventType") },
            }),
            query(
                "after",
                "Only events after this sequence number.",
                json!({ "type": "integer", "format": "int64", "minimum": 0 }),
            ),
        ]
    };
    let no_content = |description: &str| json!({ "description": description });
    let by_id = |pointer: &str| json!({ "id": format!("$response.body#{pointer}") });
    let execution_links = || {
        json!({
            "GetExecution": link("getExecution", by_id("/id")),
            "GetResult": link("getExecutionResult", by_id("/id")),
            "Cancel": link("cancelExecution", by_id("/id")),
            "Signal": link("sendSignal", by_id("/id")),
            "Events": link("pollEvents", json!({ "execution_id": "$response.body#/id" })),
            // utoipa reads a link only with `parameters` (and writes none when empty).
            "Claim": {
                "operationId": "claimTasks",
                "parameters": {},
                "requestBody": { "functions": ["$response.body#/function"], "queues": ["$response.body#/queue"], "tags": null },
            },
        })
    };
    let lease_link = |operation: &str| {
        json!({
            "operationId": operation,
            "parameters": by_id("/0/task_id"),
            "requestBody": { "lease_token": "$response.body#/0/lease_token" },
        })
    };
    let dead_letter_links = |pointer: &str| {
        json!({
            "GetDeadLetter": link("getDeadLetter", by_id(pointer)),
            "Replay": link("replayDeadLetter", by_id(pointer)),
            "Discard": link("discardDeadLetter", by_id(pointer)),
        })
    };
    let webhook_links = json!({
        "GetWebhook": link("getWebhook", by_id("/id")),
        "Enable": link("enableWebhook", by_id("/id")),
        "Disable": link("disableWebhook", by_id("/id")),
        "Deliveries": link("listDeliveries", by_id("/id")),
        "Delete": link("deleteWebhook", by_id("/id")),
    });

    let ops: Vec<(&str, &str, Value)> = vec![
        ("/", "get", Op {
            id: "dashboard", tag: "node", summary: "The dashboard page.", description: "",
            parameters: vec![], body: None,
            responses: vec![("200", text("The dashboard.", "text/html"))],
            errors: &[], api: false,
        }.build()),
        ("/metrics", "get", Op {
            id: "metrics", tag: "node", summary: "Prometheus metrics.", description: "",
            parameters: vec![], body: None,
            responses: vec![("200", text("Prometheus text exposition (version 0.0.4).", "text/plain"))],
            errors: &[Store], api: false,
        }.build()),
        ("/healthz", "get", Op {
            id: "healthz", tag: "node", summary: "Whether the process answers.", description: "",
            parameters: vec![], body: None,
            responses: vec![("200", ok("Alive.", schema("Health")))],
            errors: &[], api: false,
        }.build()),
        ("/readyz", "get", Op {
            id: "readyz", tag: "node", summary: "Whether the node can serve.",
            description: "503 when the store does not answer or the node is shutting down.",
            parameters: vec![], body: None,
            responses: vec![
                ("200", ok("Ready.", schema("Ready"))),
                ("503", response("Unavailable")),
            ],
            errors: &[], api: false,
        }.build()),
        ("/openapi.json", "get", Op {
            id: "openapi", tag: "node", summary: "This document.", description: "",
            parameters: vec![], body: None,
            responses: vec![("200", ok("The OpenAPI 3.1 document.", json!({ "type": "object", "required": ["openapi", "info", "paths"] })))],
            errors: &[], api: false,
        }.build()),

        ("/v1/executions", "post", Op {
            id: "createExecution", tag: "executions", summary: "Dispatch an execution.",
            description: "201 with the new execution, or 200 with the existing one when `idempotency_key` was used before.",
            parameters: vec![], body: Some(json_body(true, schema("CreateExecution"))),
            responses: vec![
                ("201", linked(ok("Created.", schema("Execution")), execution_links())),
                ("200", linked(ok("The execution dispatched earlier with this idempotency key.", schema("Execution")), execution_links())),
            ],
            errors: &[Bad, Conflict, Body, Store], api: true,
        }.build()),
        ("/v1/executions", "get", Op {
            id: "listExecutions", tag: "executions", summary: "List executions, newest first.", description: "",
            parameters: vec![
                query("state", "Only executions in this state.", schema("ExecutionState")),
                query("function", "Only executions of this function.", json!({ "type": "string" })),
                limit_param(crate::params::DEFAULT_PAGE),
                offset_param(),
            ],
            body: None,
            responses: vec![("200", ok("A page of executions.", schema("ExecutionList")))],
            errors: &[Bad, Store], api: true,
        }.build()),
        ("/v1/executions/{id}", "get", Op {
            id: "getExecution", tag: "executions",
            summary: "One execution: state, result or error, progress, counters, state values, steps.", description: "",
            parameters: vec![execution_id()], body: None,
            responses: vec![("200", linked(ok("The execution.", schema("ExecutionDetail")), json!({
                "GetRootTask": link("getTask", by_id("/steps/0/id")),
            })))],
            errors: &[Bad, NotFound, Store], api: true,
        }.build()),
        ("/v1/executions/{id}/result", "get", Op {
            id: "getExecutionResult", tag: "executions", summary: "Its result, waiting up to `wait` for it.",
            description: "200 once finished (`result` if it completed, `error` otherwise); 202 with the state if still unfinished after the wait.",
            parameters: vec![
                execution_id(),
                query("wait", "How long to wait for the end (capped by the server's `http.max_wait`; default 0).", schema("Duration")),
            ],
            body: None,
            responses: vec![
                ("200", ok("Finished.", schema("ResultBody"))),
                ("202", ok("Still unfinished after the wait (`execution_id` and `state` only).", schema("ResultBody"))),
            ],
            errors: &[Bad, NotFound, Store], api: true,
        }.build()),
        ("/v1/executions/{id}/cancel", "post", Op {
            id: "cancelExecution", tag: "executions", summary: "Cancel an execution and its unfinished tasks.",
            description: "Cancelling a cancelled execution succeeds again; one that finished otherwise gets 409.",
            parameters: vec![execution_id()], body: Some(json_body(false, nullable(schema("CancelBody")))),
            responses: vec![("200", ok("Cancelled.", schema("Cancelled")))],
            errors: &[Bad, NotFound, Conflict, TooLarge, Store], api: true,
        }.build()),
        ("/v1/executions/{id}/signals/{name}", "post", Op {
            id: "sendSignal", tag: "executions", summary: "Send a named signal; the body (any JSON, or none) is its payload.",
            description: "",
            parameters: vec![
                execution_id(),
                json!({ "name": "name", "in": "path", "required": true, "description": "The signal's name.",
                        "schema": { "type": "string", "minLength": 1, "maxLength": crate::executions::MAX_NAME } }),
            ],
            body: Some(json_body(false, any("The payload (none: `null`)."))),
            responses: vec![("202", ok("Sent (kept until a wait consumes it).", schema("SignalSent")))],
            errors: &[Bad, NotFound, Conflict, TooLarge, Store], api: true,
        }.build()),

        ("/v1/tasks/{id}", "get", Op {
            id: "getTask", tag: "tasks", summary: "One task.", description: "",
            parameters: vec![task_id()], body: None,
            responses: vec![("200", ok("The task.", schema("Task")))],
            errors: &[Bad, NotFound, Store], api: true,
        }.build()),
        ("/v1/queues", "get", Op {
            id: "listQueues", tag: "tasks", summary: "Work per queue: ready, scheduled, running.", description: "",
            parameters: vec![], body: None,
            responses: vec![("200", ok("Queue depths.", schema("QueueList")))],
            errors: &[Store], api: true,
        }.build()),

        ("/v1/workers/claim", "post", Op {
            id: "claimTasks", tag: "workers", summary: "Claim activities for an external worker.",
            description: "Long-polls up to `wait` for work; an empty array if none came.",
            parameters: vec![], body: Some(json_body(true, schema("ClaimBody"))),
            responses: vec![("200", linked(ok("The claimed tasks.", json!({ "type": "array", "items": schema("ClaimedTask") })), json!({
                "GetTask": link("getTask", by_id("/0/task_id")),
                "Heartbeat": lease_link("heartbeatTask"),
                "Checkpoint": lease_link("checkpointTask"),
                "Progress": lease_link("reportProgress"),
                "Complete": lease_link("completeTask"),
                "Fail": lease_link("failTask"),
            })))],
            errors: &[Bad, Body, Store], api: true,
        }.build()),
        ("/v1/tasks/{id}/heartbeat", "post", Op {
            id: "heartbeatTask", tag: "workers", summary: "Renew the lease and record a heartbeat.", description: "",
            parameters: vec![task_id()], body: Some(json_body(true, schema("HeartbeatBody"))),
            responses: vec![("200", ok("Renewed.", schema("Renewed")))],
            errors: &[Bad, NotFound, Conflict, Body, Store], api: true,
        }.build()),
        ("/v1/tasks/{id}/checkpoint", "post", Op {
            id: "checkpointTask", tag: "workers", summary: "Save a checkpoint for the next attempt.", description: "",
            parameters: vec![task_id()], body: Some(json_body(true, schema("CheckpointBody"))),
            responses: vec![("200", ok("Saved.", schema("TaskAck")))],
            errors: &[Bad, NotFound, Conflict, Body, Store], api: true,
        }.build()),
        ("/v1/tasks/{id}/progress", "post", Op {
            id: "reportProgress", tag: "workers", summary: "Report progress.", description: "",
            parameters: vec![task_id()], body: Some(json_body(true, schema("ProgressBody"))),
            responses: vec![("200", ok("Recorded.", schema("TaskAck")))],
            errors: &[Bad, NotFound, Conflict, Body, Store], api: true,
        }.build()),
        ("/v1/tasks/{id}/complete", "post", Op {
            id: "completeTask", tag: "workers", summary: "Complete the task with its result.", description: "",
            parameters: vec![task_id()], body: Some(json_body(true, schema("CompleteBody"))),
            responses: vec![("200", linked(ok("Completed.", schema("Completed")), json!({
                "GetResult": link("getExecutionResult", by_id("/execution_id")),
            })))],
            errors: &[Bad, NotFound, Conflict, Body, Store], api: true,
        }.build()),
        ("/v1/tasks/{id}/fail", "post", Op {
            id: "failTask", tag: "workers", summary: "Fail the attempt.",
            description: "Retried by the task's policy unless `retryable` is false.",
            parameters: vec![task_id()], body: Some(json_body(true, schema("FailBody"))),
            responses: vec![("200", linked(ok("Recorded (`state` is `pending` for a retry).", schema("Completed")), dead_letter_links("/task_id")))],
            errors: &[Bad, NotFound, Conflict, Body, Store], api: true,
        }.build()),

        ("/v1/dead-letters", "get", Op {
            id: "listDeadLetters", tag: "dead letters", summary: "Dead letters, newest first.", description: "",
            parameters: vec![limit_param(crate::params::DEFAULT_PAGE), offset_param()], body: None,
            responses: vec![("200", linked(ok("A page of dead letters.", schema("DeadLetterList")), dead_letter_links("/dead_letters/0/task_id")))],
            errors: &[Bad, Store], api: true,
        }.build()),
        ("/v1/dead-letters/{id}", "get", Op {
            id: "getDeadLetter", tag: "dead letters", summary: "One dead letter, by its task's id.", description: "",
            parameters: vec![dead_letter_id()], body: None,
            responses: vec![("200", ok("The dead letter.", schema("DeadLetter")))],
            errors: &[Bad, NotFound, Store], api: true,
        }.build()),
        ("/v1/dead-letters/{id}", "delete", Op {
            id: "discardDeadLetter", tag: "dead letters", summary: "Discard a dead letter.", description: "",
            parameters: vec![dead_letter_id()], body: None,
            responses: vec![("204", no_content("Discarded."))],
            errors: &[Bad, NotFound, Store], api: true,
        }.build()),
        ("/v1/dead-letters/{id}/replay", "post", Op {
            id: "replayDeadLetter", tag: "dead letters", summary: "Replay a dead letter: the task runs again and its execution resumes.",
            description: "",
            parameters: vec![dead_letter_id()], body: None,
            responses: vec![("200", ok("Replayed.", schema("Replayed")))],
            errors: &[Bad, NotFound, Conflict, Store], api: true,
        }.build()),
        ("/v1/cleanup", "post", Op {
            id: "cleanup", tag: "dead letters", summary: "Delete finished executions and dead letters older than `older_than`.",
            description: "",
            parameters: vec![], body: Some(json_body(true, schema("CleanupBody"))),
            responses: vec![("200", ok("What was deleted.", schema("CleanupReport")))],
            errors: &[Bad, Body, Store], api: true,
        }.build()),

        ("/v1/events", "get", Op {
            id: "pollEvents", tag: "events", summary: "Events after the cursor, oldest first.", description: "",
            parameters: [event_filters(), vec![limit_param(100)]].concat(), body: None,
            responses: vec![("200", ok("A page of events.", schema("EventsPage")))],
            errors: &[Bad, Store], api: true,
        }.build()),
        ("/v1/events/stream", "get", Op {
            id: "streamEvents", tag: "events", summary: "The event log as Server-Sent Events.",
            description: "Frames: `id:` the sequence number, `event:` the type, `data:` the event's data with `seq`, `timestamp`, `execution_id`, `task_id` added. `Last-Event-ID` (or `after`) replays what was missed first; without either the stream starts live. Also `event: lagged` (the client fell behind and is caught up from the log) and `event: shutdown`.",
            parameters: [event_filters(), vec![json!({
                "name": "Last-Event-ID", "in": "header", "required": false,
                "description": "Resume after this sequence number (overrides `after`).",
                "schema": { "type": "integer", "format": "int64", "minimum": 0 },
            })]].concat(),
            body: None,
            responses: vec![("200", text("The stream.", "text/event-stream"))],
            errors: &[Bad], api: true,
        }.build()),
        ("/v1/ws", "get", Op {
            id: "eventsWebSocket", tag: "events", summary: "The event log over a WebSocket.",
            description: "Client messages: `{\"type\":\"subscribe\",\"id\"?,\"execution_id\"?,\"task_id\"?,\"types\"?,\"after\"?}`, `{\"type\":\"unsubscribe\",\"id\"}`, `{\"type\":\"ping\"}`. Server messages: events (`type`, `seq`, `execution_id`, `task_id`, `timestamp`, `data`, `subscription`), `pong`, `lagged`, `shutdown`, `error`.",
            parameters: vec![], body: None,
            responses: vec![("101", no_content("Switching to the WebSocket protocol."))],
            errors: &[Bad], api: true,
        }.build()),

        ("/v1/webhooks", "post", Op {
            id: "createWebhook", tag: "webhooks", summary: "Register a webhook.",
            description: "The answer is the only time its signing secret is shown.",
            parameters: vec![], body: Some(json_body(true, schema("CreateWebhook"))),
            responses: vec![("201", linked(ok("Registered.", schema("WebhookWithSecret")), webhook_links))],
            errors: &[Bad, Conflict, Body, Store], api: true,
        }.build()),
        ("/v1/webhooks", "get", Op {
            id: "listWebhooks", tag: "webhooks", summary: "Webhooks, oldest first (without secrets).", description: "",
            parameters: vec![limit_param(crate::params::DEFAULT_PAGE), offset_param()], body: None,
            responses: vec![("200", ok("A page of webhooks.", schema("WebhookList")))],
            errors: &[Bad, Store], api: true,
        }.build()),
        ("/v1/webhooks/{id}", "get", Op {
            id: "getWebhook", tag: "webhooks", summary: "One webhook (without its secret).", description: "",
            parameters: vec![webhook_id()], body: None,
            responses: vec![("200", ok("The webhook.", schema("Webhook")))],
            errors: &[Bad, NotFound, Store], api: true,
        }.build()),
        ("/v1/webhooks/{id}", "delete", Op {
            id: "deleteWebhook", tag: "webhooks", summary: "Delete a webhook with its deliveries.", description: "",
            parameters: vec![webhook_id()], body: None,
            responses: vec![("204", no_content("Deleted."))],
            errors: &[Bad, NotFound, Store], api: true,
        }.build()),
        ("/v1/webhooks/{id}/enable", "post", Op {
            id: "enableWebhook", tag: "webhooks", summary: "Enable a webhook.", description: "",
            parameters: vec![webhook_id()], body: None,
            responses: vec![("200", ok("The webhook.", schema("Webhook")))],
            errors: &[Bad, NotFound, Store], api: true,
        }.build()),
        ("/v1/webhooks/{id}/disable", "post", Op {
            id: "disableWebhook", tag: "webhooks", summary: "Disable a webhook.", description: "",
            parameters: vec![webhook_id()], body: None,
            responses: vec![("200", ok("The webhook.", schema("Webhook")))],
            errors: &[Bad, NotFound, Store], api: true,
        }.build()),
        ("/v1/webhooks/{id}/deliveries", "get", Op {
            id: "listDeliveries", tag: "webhooks", summary: "A webhook's deliveries, newest first, each with its attempts.",
            description: "",
            parameters: vec![webhook_id(), limit_param(crate::params::DEFAULT_PAGE), offset_param()], body: None,
            responses: vec![("200", ok("A page of deliveries.", schema("DeliveryList")))],
            errors: &[Bad, NotFound, Store], api: true,
        }.build()),
    ];

    let mut paths = Map::new();
    for (path, method, op) in ops.into_iter().chain(notification_paths()) {
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[method] = op;
    }
    Value::Object(paths)
}

/// The operations of notifications for people.
fn notification_paths() -> Vec<(&'static str, &'static str, Value)> {
    use Failure::*;
    // What the browser presents on `/notifications/...` (instead of `/v1`'s API tokens).
    let viewer = |op: Value| {
        let mut op = op;
        op["security"] = json!([{ "connection_token": [] }, { "bearer": [] }, { "anonymous_session": [] }]);
        op
    };
    let token_param = || {
        query(
            "token",
            "The connection token, for clients that cannot set headers.",
            json!({ "type": "string" }),
        )
    };
    let key_param = |name: &str, description: &str, required: bool| {
        json!({ "name": name, "in": "query", "required": required, "description": description,
                "schema": { "type": "string", "minLength": 1, "maxLength": courier_core::MAX_NOTIFICATION_KEY } })
    };
    vec![
        ("/v1/notifications", "post", Op {
            id: "sendNotification", tag: "notifications", summary: "Send a notification.",
            description: "Stored (unless ephemeral), then pushed to every open stream of its target on every node. A newer notification with the same target and `group` replaces the earlier one (connected subscribers get a `dismissed` event for it). A broadcast is always ephemeral; the answer says so in `mode`.",
            parameters: vec![], body: Some(json_body(true, schema("SendNotification"))),
            responses: vec![
                ("201", ok("Sent.", schema("NotificationSent"))),
                ("200", ok("A hook suppressed it: nothing was sent.", schema("NotificationSuppressed"))),
            ],
            errors: &[Bad, Body, Unprocessable, Store], api: true,
        }.build()),
        ("/v1/notifications", "get", Op {
            id: "listNotifications", tag: "notifications", summary: "Stored notifications, newest first.", description: "",
            parameters: vec![
                query("target", "Only notifications for this target kind (with its id below).", schema("NotificationTargetKind")),
                key_param("session_id", "The session, with `target=session`.", false),
                key_param("user_id", "The user, with `target=user`.", false),
                key_param("source", "The source, with `target=source`.", false),
                query("mode", "Only this mode.", schema("NotificationMode")),
                query("before", "Only notifications before this sequence number (the last page's `next_before`).",
                      json!({ "type": "integer", "format": "int64" })),
                limit_param(crate::params::DEFAULT_PAGE),
            ],
            body: None,
            responses: vec![("200", ok("A page of notifications.", schema("NotificationList")))],
            errors: &[Bad, Store], api: true,
        }.build()),
        ("/v1/notifications/tokens", "post", Op {
            id: "createConnectionToken", tag: "notifications", summary: "Mint a connection token for a browser.",
            description: "For applications that would rather not sign JWTs themselves. 409 when `notifications.token_secret` is not set.",
            parameters: vec![], body: Some(json_body(true, schema("CreateConnectionToken"))),
            responses: vec![("201", ok("The token.", schema("ConnectionToken")))],
            errors: &[Bad, Conflict, Body], api: true,
        }.build()),
        ("/v1/notifications/subscriptions", "post", Op {
            id: "subscribeSource", tag: "notifications", summary: "Subscribe a user to a source.",
            description: "201 when the subscription is new, 200 when it already existed. Every stream of the user receives the source's notifications from then on.",
            parameters: vec![], body: Some(json_body(true, schema("SourceSubscription"))),
            responses: vec![
                ("201", ok("Subscribed.", schema("SourceSubscriptionState"))),
                ("200", ok("Already subscribed.", schema("SourceSubscriptionState"))),
            ],
            errors: &[Bad, Body, Store], api: true,
        }.build()),
        ("/v1/notifications/subscriptions", "get", Op {
            id: "listSourceSubscriptions", tag: "notifications", summary: "The sources a user is subscribed to.", description: "",
            parameters: vec![key_param("user_id", "The user.", true)], body: None,
            responses: vec![("200", ok("The user's sources.", schema("SourceSubscriptions")))],
            errors: &[Bad, Store], api: true,
        }.build()),
        ("/v1/notifications/subscriptions", "delete", Op {
            id: "unsubscribeSource", tag: "notifications", summary: "Unsubscribe a user from a source.", description: "",
            parameters: vec![key_param("user_id", "The user.", true), key_param("source", "The source.", true)], body: None,
            responses: vec![("200", ok("Unsubscribed.", schema("SourceSubscriptionState")))],
            errors: &[Bad, NotFound, Store], api: true,
        }.build()),
        ("/notifications/stream", "get", viewer(Op {
            id: "notificationStream", tag: "notifications", summary: "The caller's notifications as Server-Sent Events.",
            description: "Replays what the caller can see (queued notifications not dismissed; timeseries ones after the cursor: `Last-Event-ID` or `?since=`), sends `event: sync` (data: the caller's `session_id` and `user_id`), then streams live: `event: notification` frames whose data is the envelope (`type`, `id`, `mode`, `created_at`, `payload`, `group`) and whose `id:` is the sequence number, `type: \"dismissed\"` envelopes, `event: reset` when notifications after the cursor expired, `event: reconnect` and `event: shutdown`. Without tokens, the first connect sets an anonymous-session cookie.",
            parameters: vec![
                token_param(),
                query("since", "Replay timeseries notifications created after this (Unix seconds).",
                      json!({ "type": "number", "minimum": 0, "maximum": 100_000_000_000i64 })),
                json!({ "name": "Last-Event-ID", "in": "header", "required": false,
                        "description": "The last sequence number received (what `EventSource` sends when it reconnects).",
                        "schema": { "type": "integer", "format": "int64", "minimum": 0 } }),
            ],
            body: None,
            responses: vec![("200", text("The stream.", "text/event-stream"))],
            errors: &[Bad, NotSignedIn, Store], api: false,
        }.build())),
        ("/notifications/{id}", "delete", viewer(Op {
            id: "dismissNotification", tag: "notifications", summary: "Dismiss a notification for the caller.",
            description: "Hides it from the caller (the user when the connection has one, else the session) on every connection and device, and pushes a `dismissed` event to them. 404 for an unknown id, an ephemeral one, or one the caller cannot see; 409 for a timeseries one.",
            parameters: vec![path_id("id", "The notification's id."), token_param()], body: None,
            responses: vec![("200", ok("Dismissed.", schema("NotificationDismissed")))],
            errors: &[NotSignedIn, NotFound, Conflict, Store], api: false,
        }.build())),
        ("/notifications/group/{group}", "delete", viewer(Op {
            id: "dismissNotificationGroup", tag: "notifications", summary: "Dismiss a group's notifications for the caller.", description: "",
            parameters: vec![
                json!({ "name": "group", "in": "path", "required": true, "description": "The group key.",
                        "schema": { "type": "string", "minLength": 1, "maxLength": courier_core::MAX_NOTIFICATION_KEY } }),
                token_param(),
            ],
            body: None,
            responses: vec![("200", ok("What was dismissed.", schema("NotificationGroupDismissed")))],
            errors: &[Bad, NotSignedIn, Store], api: false,
        }.build())),
        ("/notifications/webhook", "post", {
            let mut op = Op {
                id: "notificationWebhook", tag: "notifications", summary: "Send a notification from a backend holding the webhook secret.",
                description: "Seed 004's inbound webhook: the same body as `POST /v1/notifications`. 404 when `notifications.webhook_secret` is not set; after a failed authentication the client gets 429 for `notifications.webhook_failure_window`.",
                parameters: vec![], body: Some(json_body(true, schema("SendNotification"))),
                responses: vec![
                    ("202", ok("Accepted.", schema("NotificationAccepted"))),
                    ("401", json!({ "description": "A missing or wrong webhook secret.", "content": json_content(schema("Error")) })),
                    ("429", response("TooManyRequests")),
                ],
                errors: &[Bad, NotFound, TooLarge, Unprocessable, Store], api: false,
            }.build();
            op["security"] = json!([{ "webhook_secret": [] }]);
            op
        }),
        ("/notifications.js", "get", Op {
            id: "notificationsScript", tag: "notifications", summary: "The browser client, as a classic script.",
            description: "Defines `window.Courier.notifications(options)`; a script tag with `data-courier-auto` starts a client at once (`data-token`, `data-url`) as `window.courierNotifications`. Sent with an `ETag` (a matching `If-None-Match` gets 304) and `Cache-Control`.",
            parameters: vec![], body: None,
            responses: vec![("200", text("The script.", "text/javascript")), ("304", json!({ "description": "The copy the browser holds is current." }))],
            errors: &[], api: false,
        }.build()),
        ("/notifications.mjs", "get", Op {
            id: "notificationsModule", tag: "notifications", summary: "The browser client, as an ES module.",
            description: "Exports `notifications(options)` (also the default export); it loads `/notifications.js` beside it. Sent with an `ETag` and `Cache-Control`.",
            parameters: vec![], body: None,
            responses: vec![("200", text("The module.", "text/javascript")), ("304", json!({ "description": "The copy the browser holds is current." }))],
            errors: &[], api: false,
        }.build()),
        ("/notifications/demo", "get", Op {
            id: "notificationsDemo", tag: "notifications", summary: "A page to send yourself notifications and watch the toasts.", description: "",
            parameters: vec![], body: None,
            responses: vec![("200", text("The demo page.", "text/html")), ("304", json!({ "description": "The copy the browser holds is current." }))],
            errors: &[], api: false,
        }.build()),
    ]
}

/// The whole document, as JSON.
fn spec() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Courier",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Courier's HTTP API: dispatch and inspect durable executions, run activities from external workers, follow the event log, register webhooks. Every error is `{\"error\": string, \"detail\": any}`. Durations are written `\"500ms\"`, `\"30s\"`, `\"1h30m\"`, `\"2d\"` (request bodies also take a number of seconds).",
            "license": { "name": env!("CARGO_PKG_LICENSE"), "identifier": env!("CARGO_PKG_LICENSE") },
        },
        "tags": [
            { "name": "executions", "description": "Dispatch, inspect, wait for, cancel and signal executions." },
            { "name": "tasks", "description": "Tasks and queues." },
            { "name": "workers", "description": "External workers: claim activities, then heartbeat, checkpoint, report progress, complete or fail them, fenced by the claim's lease token." },
            { "name": "dead letters", "description": "Failures kept for inspection and replay, and cleanup." },
            { "name": "events", "description": "The event log: polling, Server-Sent Events, WebSocket." },
            { "name": "webhooks", "description": "Webhook registrations and their deliveries." },
            { "name": "notifications", "description": "Notifications for people: send (API or inbound webhook), list, connection tokens, source subscriptions; the browser's stream and dismissals." },
            { "name": "node", "description": "Dashboard, metrics, health, this document." },
        ],
        "paths": paths(),
        "components": components(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The routes `configure` mounts, read from its source, as `(method, path)`:
    /// `web::scope("..")` sets the prefix, `web::resource("..")` the path its
    /// `.route(web::<method>()..)` calls mount; `.route("..", web::<method>()..)`
    /// mounts a path directly.
    fn configured_routes() -> BTreeSet<(String, String)> {
        fn literal(text: &str) -> &str {
            &text[..text.find('"').expect("a closing quote")]
        }
        fn method(text: &str) -> String {
            let text = &text[text.find("web::").expect("a method guard") + 5..];
            text[..text.find("()").expect("a method guard call")].to_string()
        }
        let source = include_str!("lib.rs");
        let body = &source[source.find("pub fn configure(").expect("configure is in lib.rs")..];
        let body = &body[..body.find("\n}\n").expect("configure ends")];
        let (mut prefix, mut resource) = (String::new(), String::new());
        let mut routes = BTreeSet::new();
        let mut rest = body;
        let markers = ["web::scope(\"", "web::resource(\"", ".route(\"", ".route(web::"];
        while let Some((at, marker)) = markers
            .iter()
            .filter_map(|m| rest.find(m).map(|at| (at, *m)))
            .min_by_key(|(at, _)| *at)
        {
            rest = &rest[at + marker.len()..];
            match marker {
                "web::scope(\"" => prefix = literal(rest).to_string(),
                "web::resource(\"" => resource = format!("{prefix}{}", literal(rest)),
                ".route(\"" => {
                    routes.insert((method(rest), format!("{prefix}{}", literal(rest))));
                }
                _ => {
                    routes.insert((method(&format!("web::{rest}")), resource.clone()));
                }
            }
        }
        routes
    }

    fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
        let mut routes = BTreeSet::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                routes.insert((method.clone(), path.clone()));
            }
        }
        routes
    }

    #[test]
    fn utoipa_reads_the_document_without_losing_anything() {
        let mut original = spec();
        let api: OpenApi = serde_json::from_value(original.clone()).expect("utoipa parses the document");
        let back = serde_json::to_value(&api).expect("serializes");
        // utoipa writes no `parameters` for a link that has none; the same thing.
        for item in original["paths"].as_object_mut().expect("paths").values_mut() {
            for op in item.as_object_mut().expect("a path item").values_mut() {
                for response in op["responses"].as_object_mut().expect("responses").values_mut() {
                    for link in response
                        .get_mut("links")
                        .and_then(Value::as_object_mut)
                        .into_iter()
                        .flat_map(|l| l.values_mut())
                    {
                        let link = link.as_object_mut().expect("a link");
                        if link.get("parameters").is_some_and(|p| p == &json!({})) {
                            link.remove("parameters");
                        }
                    }
                }
            }
        }
        fn diff(a: &Value, b: &Value, at: &str) {
            match (a, b) {
                (Value::Object(x), Value::Object(y)) => {
                    for k in x.keys().chain(y.keys()) {
                        diff(
                            x.get(k).unwrap_or(&Value::Null),
                            y.get(k).unwrap_or(&Value::Null),
                            &format!("{at}/{k}"),
                        );
                    }
                }
                _ if a != b => eprintln!("DIFF {at}: {a} vs {b}"),
                _ => {}
            }
        }
        diff(&back, &original, "");
        assert_eq!(back, original, "utoipa dropped or changed something");
        let served: Value = serde_json::from_str(&loaded().body).expect("the served body is JSON");
        assert_eq!(served, original);
        assert!(loaded().api == api);
    }

    #[test]
    fn every_configured_route_is_documented_and_nothing_else() {
        let configured = configured_routes();
        assert!(
            configured.len() >= 30,
            "parsed {} routes from configure",
            configured.len()
        );
        assert!(configured.contains(&("post".into(), "/v1/executions".into())));
        assert!(configured.contains(&("get".into(), "/openapi.json".into())));
        assert_eq!(documented_routes(&spec()), configured);
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(value: &Value, document: &Value, seen: &mut usize) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        let pointer = target.strip_prefix('#').expect("a local reference");
                        assert!(document.pointer(pointer).is_some(), "dangling {target}");
                        *seen += 1;
                    }
                    map.values().for_each(|v| walk(v, document, seen));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, document, seen)),
                _ => {}
            }
        }
        let document = spec();
        let mut seen = 0;
        walk(&document, &document, &mut seen);
        assert!(seen > 50);
    }

    #[test]
    fn links_name_real_operations_and_parameters() {
        let document = spec();
        let mut operations = std::collections::BTreeMap::new();
        for item in document["paths"].as_object().expect("paths").values() {
            for op in item.as_object().expect("a path item").values() {
                operations.insert(
                    op["operationId"].as_str().expect("an operationId").to_string(),
                    op.clone(),
                );
            }
        }
        assert_eq!(operations.len(), configured_routes().len(), "operationIds are unique");
        let mut links = 0;
        for op in operations.values() {
            for response in op["responses"].as_object().expect("responses").values() {
                for link in response
                    .get("links")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|l| l.values())
                {
                    let target = &operations[link["operationId"].as_str().expect("an operationId")];
                    for name in link["parameters"].as_object().expect("parameters").keys() {
                        let known = target["parameters"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|p| &p["name"] == name);
                        assert!(known, "{} has no parameter {name}", target["operationId"]);
                    }
                    if link.get("requestBody").is_some() {
                        assert!(
                            target.get("requestBody").is_some(),
                            "{} takes no body",
                            target["operationId"]
                        );
                    }
                    links += 1;
                }
            }
        }
        assert!(links >= 20, "{links} links");
    }

    #[test]
    fn records_match_their_schemas_property_names() {
        use courier_core::{ExecutionId, TaskError};
        // The fullest forms of a few records: every property they write is documented.
        let document = spec();
        let check = |name: &str, value: Value| {
            let props = document["components"]["schemas"][name]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{name} has properties"));
            for key in value.as_object().expect("an object").keys() {
                assert!(props.contains_key(key), "{name} lacks {key}");
            }
        };
        let mut error = TaskError::non_retryable("k", "m").with_details(json!(1));
        error.retry_after_ms = Some(5);
        check("TaskError", serde_json::to_value(&error).unwrap());
        check(
            "RetryPolicy",
            serde_json::to_value(courier_core::RetryPolicy {
                retry_on: Some(vec!["a".into()]),
                non_retryable: vec!["b".into()],
                ..courier_core::RetryPolicy::webhook_schedule()
            })
            .unwrap(),
        );
        let result = crate::wire::ResultBody {
            execution_id: ExecutionId::new(),
            state: courier_core::ExecutionState::Failed,
            result: Some(json!(null)),
            error: Some(error),
        };
        check("ResultBody", serde_json::to_value(&result).unwrap());
        check(
            "CleanupReport",
            serde_json::to_value(courier_runtime::CleanupReport::default()).unwrap(),
        );
        let sent = courier_core::NotificationRecord {
            id: uuid::Uuid::now_v7(),
            seq: 1,
            target: courier_core::Target::User("u".into()),
            kind: "generic".into(),
            mode: courier_core::NotificationMode::Queued,
            group: Some("g".into()),
            payload: json!({}),
            created_at: chrono::Utc::now(),
            expires_at: Some(chrono::Utc::now()),
        };
        check("Notification", serde_json::to_value(&sent).unwrap());
    }
}
