//! `GET /openapi.json`: the OpenAPI 3.1 document, derived from the code.
//!
//! Its operations are the route table's ([`Routes::all`], the same table
//! [`configure`](crate::configure) mounts), each as its handler's
//! `#[utoipa::path]` says; its schemas are the `ToSchema` derives of the shapes
//! those operations name. This file adds what belongs to the whole document:
//! the info, the tags, the security schemes (with the API token's security, naming
//! the scope it needs, and the 401 and 403 answers on every operation under `/v1`
//! and on `/metrics`), the shared error answers, and a
//! few readings of serde that utoipa does not make (see [`serde_readings`]).

use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::schema::Schema;
use utoipa::{PartialSchema, ToSchema};

use crate::auth::Scope;
use crate::error::ErrorBody;
use crate::routes::{Route, Routes};

/// Adds this document's route.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes.add(__path_document, document)
}

/// The body served (built once).
static DOCUMENT: OnceLock<String> = OnceLock::new();

/// What `GET /openapi.json` answers: an OpenAPI document.
pub(crate) struct OpenApiDocument;

impl PartialSchema for OpenApiDocument {
    fn schema() -> RefOr<Schema> {
        courier_core::openapi::schema(json!({ "type": "object", "required": ["openapi", "info", "paths"] }))
    }
}

impl ToSchema for OpenApiDocument {}

/// The OpenAPI document.
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapi", tag = "node",
    summary = "This document.",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = inline(OpenApiDocument)))
)]
pub(crate) async fn document() -> HttpResponse {
    let body = DOCUMENT.get_or_init(|| spec().to_string());
    HttpResponse::Ok().content_type("application/json").body(body.as_str())
}

fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Put => "put",
        HttpMethod::Delete => "delete",
        HttpMethod::Options => "options",
        HttpMethod::Head => "head",
        HttpMethod::Patch => "patch",
        HttpMethod::Trace => "trace",
    }
}

/// One operation as the document writes it: with a scope (under `/v1`, and
/// `/metrics`), the API token's security naming that scope as its role (the query
/// form only where a browser cannot set headers), its 401 and its 403.
fn operation(route: &Route) -> Value {
    let mut operation = serde_json::to_value(&route.operation).unwrap_or_default();
    if let Some(scope) = route.scope {
        operation["responses"]["401"] = json!({ "$ref": "#/components/responses/Unauthorized" });
        operation["responses"]["403"] = json!({ "$ref": "#/components/responses/Forbidden" });
        operation["security"] = api_security(&route.path, scope);
    }
    operation
}

/// The security of an operation needing `scope`: none when no tokens are
/// configured, else the bearer token (OpenAPI 3.1 lets a non-OAuth scheme name
/// the role it needs; an `admin` token has every role).
fn api_security(path: &str, scope: Scope) -> Value {
    if crate::auth::takes_query_token(path) {
        json!([{}, { "bearer": [scope.name()] }, { "access_token": [scope.name()] }])
    } else {
        json!([{}, { "bearer": [scope.name()] }])
    }
}

/// The whole document, as JSON.
pub(crate) fn spec() -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    // Named by the shared error answers and the hand-written duration fragments
    // (`params.rs`), which no derive collects.
    schemas.insert("Error".into(), to_json(ErrorBody::schema()));
    schemas.insert(
        "Duration".into(),
        to_json(courier_core::openapi::DurationText::schema()),
    );
    for route in Routes::all().iter() {
        let item = paths.entry(route.path.clone()).or_insert_with(|| json!({}));
        item[method_name(&route.method)] = operation(route);
        for (name, schema) in &route.schemas {
            schemas.entry(name.clone()).or_insert_with(|| to_json(schema.clone()));
        }
    }
    let responses: Map<String, Value> = crate::error::error_answers()
        .into_iter()
        .map(|(name, response)| (name.to_string(), serde_json::to_value(response).unwrap_or_default()))
        .collect();
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Courier",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Courier's HTTP API: dispatch and inspect durable executions, run activities from external workers, follow the event log, register webhooks, send notifications to people and messages through providers. Every error is `{\"error\": string, \"detail\": any}`. Durations are written `\"500ms\"`, `\"30s\"`, `\"1h30m\"`, `\"2d\"` (request bodies also take a number of seconds).",
            "license": { "name": env!("CARGO_PKG_LICENSE"), "identifier": env!("CARGO_PKG_LICENSE") },
        },
        "tags": [
            { "name": "executions", "description": "Dispatch, inspect, wait for, cancel and signal executions." },
            { "name": "tasks", "description": "Tasks and queues." },
            { "name": "workers", "description": "External workers: claim activities, then heartbeat, checkpoint, report progress, complete or fail them, fenced by the claim's lease token." },
            { "name": "functions", "description": "What new tasks of each function get (retry policy, timeout, queue, tags, priority, concurrency cap), set for the whole cluster." },
            { "name": "schedules", "description": "Functions started on a cron expression or at a fixed interval, once per slot for the whole cluster." },
            { "name": "dead letters", "description": "Failures kept for inspection and replay, and cleanup." },
            { "name": "events", "description": "The event log: polling, Server-Sent Events, WebSocket." },
            { "name": "webhooks", "description": "Webhook registrations and their deliveries." },
            { "name": "notifications", "description": "Notifications for people: send (API or inbound webhook), list, connection tokens, source subscriptions; the browser's stream and dismissals." },
            { "name": "ingestion", "description": "Messages taken in for delivery by providers (email, Slack, Teams, webhooks, the log), each one a durable execution with one result per recipient." },
            { "name": "node", "description": "Dashboard, metrics, health, this document." },
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": security_schemes(),
        },
    });
    serde_readings(&mut document);
    document
}

fn to_json(schema: RefOr<Schema>) -> Value {
    serde_json::to_value(schema).unwrap_or_default()
}

/// How a client proves who it is: API tokens on `/v1`; a connection token, a
/// bearer token or the anonymous-session cookie on the browser's
/// `/notifications/...`; the webhook secret on `POST /notifications/webhook`.
fn security_schemes() -> Value {
    json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <token>`; required on `/v1` only when tokens are configured (`api.tokens`), and on `/metrics` only with `metrics.require_token`. Each token has scopes, and each operation names the one it needs as its role: `admin` (every operation), `worker` (claim, heartbeat, checkpoint, progress, complete, fail), `read` (every `GET`, the streams included, and `/metrics`), `dispatch` (create, cancel and signal executions, send notifications and messages). Without it: 403.",
        },
        "access_token": {
            "type": "apiKey",
            "in": "query",
            "name": "access_token",
            "description": "The token as a query parameter, for clients that cannot set headers: accepted on `/v1/events/stream` (`EventSource`) and `/v1/ws` (WebSocket) only.",
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
    })
}

/// Readings of serde that utoipa does not make, applied to the whole document:
///
/// * `#[serde(flatten)]`: utoipa writes `allOf` of the parts; serde writes one
///   object, so the parts' properties are joined into one.
/// * serde writes exactly a struct's fields (and request bodies refuse unknown
///   ones), so every component object is closed (`additionalProperties: false`).
/// * utoipa writes `Option<T>` as `oneOf` with `null`; a `T` that admits `null`
///   itself (any JSON value) would then match twice and fail `oneOf`, so the
///   alternatives are `anyOf`.
/// * A container's `#[serde(default)]` makes utoipa write each field's default
///   with `serde_json` of the field's type, not through the field's serde `with`
///   (a `Duration` comes out as `{"secs", "nanos"}`); those are dropped, and
///   descriptions say the defaults.
fn serde_readings(document: &mut Value) {
    let components = document["components"]["schemas"].clone();
    if let Some(schemas) = document["components"]["schemas"].as_object_mut() {
        for schema in schemas.values_mut() {
            join_all_of(schema, &components);
            for property in schema
                .get_mut("properties")
                .and_then(Value::as_object_mut)
                .into_iter()
                .flat_map(|p| p.values_mut())
            {
                if let Some(property) = property.as_object_mut() {
                    property.remove("default");
                }
            }
            if schema.get("properties").is_some() && schema.get("additionalProperties").is_none() {
                schema["additionalProperties"] = json!(false);
            }
        }
    }
    any_of_null(document);
}

/// Joins `allOf` parts (objects, or references to them) into one object.
fn join_all_of(schema: &mut Value, components: &Value) {
    let Some(parts) = schema.get("allOf").and_then(Value::as_array).cloned() else {
        return;
    };
    let mut properties = Map::new();
    let mut required = Vec::new();
    for part in parts {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(target) => {
                let name = target.rsplit('/').next().unwrap_or_default();
                let mut resolved = components[name].clone();
                join_all_of(&mut resolved, components);
                resolved
            }
            None => part,
        };
        if let Some(p) = part.get("properties").and_then(Value::as_object) {
            properties.extend(p.clone());
        }
        if let Some(r) = part.get("required").and_then(Value::as_array) {
            required.extend(r.iter().cloned());
        }
    }
    let object = schema.as_object_mut().expect("a schema with allOf is an object");
    object.remove("allOf");
    object.insert("type".into(), json!("object"));
    object.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        object.insert("required".into(), Value::Array(required));
    }
}

fn any_of_null(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let with_null = map
                .get("oneOf")
                .and_then(Value::as_array)
                .is_some_and(|alternatives| alternatives.iter().any(|a| a == &json!({ "type": "null" })));
            if with_null && let Some(alternatives) = map.remove("oneOf") {
                map.insert("anyOf".into(), alternatives);
            }
            map.values_mut().for_each(any_of_null);
        }
        Value::Array(items) => items.iter_mut().for_each(any_of_null),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use actix_web::http::{Method, StatusCode};
    use actix_web::{App, test as actix_test};

    use super::*;
    use crate::routes::{METRICS, is_api};

    /// Operations the document has; a route added or removed changes it on purpose.
    const OPERATIONS: usize = 71;

    fn operations(document: &Value) -> Vec<(String, String, Value)> {
        let mut all = Vec::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                all.push((method.clone(), path.clone(), op.clone()));
            }
        }
        all
    }

    /// A request to `path` with its `{name}` segments filled in.
    fn concrete(path: &str) -> String {
        path.split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "00000000-0000-0000-0000-000000000000"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[actix_rt::test]
    async fn the_routing_serves_exactly_the_documented_operations() {
        // The app as `configure` builds it (without a node: a handler that is
        // reached answers whatever it answers without one, never 404 or 405).
        let app = actix_test::init_service(App::new().configure(|cfg| Routes::all().mount(cfg))).await;
        let document = spec();
        let operations = operations(&document);
        assert_eq!(operations.len(), OPERATIONS);
        let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (method, path, _) in &operations {
            documented
                .entry(path.clone())
                .or_default()
                .insert(method.to_uppercase());
        }
        let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
        for (path, served) in &documented {
            for method in methods {
                let request = actix_test::TestRequest::default()
                    .method(Method::from_bytes(method.as_bytes()).expect("a method"))
                    .uri(&concrete(path))
                    .to_request();
                let status = actix_test::call_service(&app, request).await.status();
                if served.contains(method) {
                    assert!(
                        status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                        "{method} {path} is documented but answers {status}"
                    );
                } else {
                    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                }
            }
        }
        let request = actix_test::TestRequest::get().uri("/v1/nowhere").to_request();
        assert_eq!(
            actix_test::call_service(&app, request).await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[actix_rt::test]
    async fn the_served_body_is_the_document() {
        let response = document().await;
        let body = actix_web::body::to_bytes(response.into_body()).await.expect("a body");
        let served: Value = serde_json::from_slice(&body).expect("the served body is JSON");
        assert_eq!(served, spec());
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
        let mut by_id = BTreeMap::new();
        for (_, _, op) in operations(&document) {
            by_id.insert(op["operationId"].as_str().expect("an operationId").to_string(), op);
        }
        assert_eq!(by_id.len(), OPERATIONS, "operationIds are unique");
        let mut links = 0;
        for op in by_id.values() {
            for response in op["responses"].as_object().expect("responses").values() {
                for link in response
                    .get("links")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|l| l.values())
                {
                    let target = &by_id[link["operationId"].as_str().expect("an operationId")];
                    for name in link
                        .get("parameters")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flat_map(|p| p.keys())
                    {
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
    fn every_operation_under_v1_and_metrics_has_the_token_security_401_and_403_and_no_other_does() {
        for route in Routes::all().iter() {
            let (method, path) = (method_name(&route.method), route.path.as_str());
            let op = operation(route);
            let unauthorized = &op["responses"]["401"]["$ref"];
            let forbidden = &op["responses"]["403"]["$ref"];
            if is_api(path) || path == METRICS {
                let scope = route.scope.unwrap_or_else(|| panic!("{method} {path} has no scope"));
                assert_eq!(op["security"], api_security(path, scope), "{method} {path}");
                assert_eq!(op["security"][1]["bearer"], json!([scope.name()]), "{method} {path}");
                assert_eq!(unauthorized, "#/components/responses/Unauthorized", "{method} {path}");
                assert_eq!(forbidden, "#/components/responses/Forbidden", "{method} {path}");
            } else {
                assert!(route.scope.is_none(), "{method} {path}");
                let names_a_role = op["security"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_object)
                    .flat_map(|requirement| requirement.values())
                    .any(|roles| roles.as_array().is_some_and(|r| !r.is_empty()));
                assert!(!names_a_role, "{method} {path} names a scope");
                assert_ne!(unauthorized, "#/components/responses/Unauthorized", "{method} {path}");
            }
        }
        // The browser's routes keep their own security.
        let document = spec();
        let viewer = json!([{ "connection_token": [] }, { "bearer": [] }, { "anonymous_session": [] }]);
        for (method, path) in [
            ("get", "/notifications/stream"),
            ("delete", "/notifications/{id}"),
            ("delete", "/notifications/group/{group}"),
        ] {
            assert_eq!(document["paths"][path][method]["security"], viewer, "{method} {path}");
        }
        assert_eq!(
            document["paths"]["/notifications/webhook"]["post"]["security"],
            json!([{ "webhook_secret": [] }])
        );
    }

    /// A newcomer reads a request's example before its schema: every JSON
    /// request body has one (Schemathesis also sends each, so each is accepted).
    #[test]
    fn every_json_request_body_has_an_example() {
        let document = spec();
        let mut missing = Vec::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("an item") {
                let Some(body) = operation["requestBody"]["content"]["application/json"].as_object() else {
                    continue;
                };
                // On the body, or on the schema it names.
                let schema = body["schema"]["$ref"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    .map(|name| &document["components"]["schemas"][name]);
                let has = body.contains_key("example")
                    || body.contains_key("examples")
                    || schema.is_some_and(|s| s.get("example").is_some() || s.get("examples").is_some());
                if !has {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        assert!(missing.is_empty(), "request bodies without an example: {missing:?}");
    }

    #[test]
    fn every_error_answer_is_a_shared_error_response() {
        let document = spec();
        for (method, path, op) in operations(&document) {
            for (status, response) in op["responses"].as_object().expect("responses") {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                let target = response["$ref"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} {status} is not shared"));
                let name = target
                    .strip_prefix("#/components/responses/")
                    .unwrap_or_else(|| panic!("{method} {path} {status}: {target}"));
                let shared = &document["components"]["responses"][name];
                assert_eq!(
                    shared["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                    "{name}"
                );
            }
        }
        let error = &document["components"]["schemas"]["Error"];
        assert_eq!(error["required"], json!(["error", "detail"]));
        assert_eq!(error["additionalProperties"], json!(false));
    }

    /// Checks that `value` fits the component schema `name` by its property names:
    /// every property it writes is documented (the object is closed), and every
    /// required one is there.
    fn check(document: &Value, name: &str, value: Value) {
        let schema = &document["components"]["schemas"][name];
        let props = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has properties"));
        assert_eq!(schema["additionalProperties"], json!(false), "{name} is closed");
        let object = value.as_object().expect("an object");
        for key in object.keys() {
            assert!(props.contains_key(key), "{name} lacks {key}");
        }
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().expect("a name");
            assert!(object.contains_key(key), "{name} requires {key}, which is not written");
        }
    }

    /// Every example given with a response or a request body writes only
    /// properties its schema documents, and every one it requires.
    /// Every answer a client reads (JSON, the streams, the metrics) carries an
    /// example; only the pages and scripts a browser loads, and this document
    /// itself, go without.
    #[test]
    fn every_answer_a_client_reads_has_an_example() {
        let document = spec();
        let schemas = &document["components"]["schemas"];
        let mut missing = Vec::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            if path == "/openapi.json" {
                continue;
            }
            for (method, operation) in item.as_object().expect("an item") {
                for (status, answer) in operation["responses"].as_object().expect("responses") {
                    for (kind, media) in answer["content"].as_object().into_iter().flatten() {
                        if kind.starts_with("text/html") || kind.starts_with("text/javascript") {
                            continue;
                        }
                        let named = media["schema"]["$ref"]
                            .as_str()
                            .and_then(|r| r.strip_prefix("#/components/schemas/"))
                            .is_some_and(|name| schemas[name].get("example").is_some());
                        if media.get("example").is_none() && !named {
                            missing.push(format!("{method} {path} {status} {kind}"));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "answers without an example: {missing:?}");
    }

    #[test]
    fn examples_fit_their_schemas_property_names() {
        let document = spec();
        let mut checked = 0;
        for item in document["paths"].as_object().expect("paths").values() {
            for operation in item.as_object().expect("an item").values() {
                let bodies = operation["responses"]
                    .as_object()
                    .into_iter()
                    .flat_map(|r| r.values())
                    .chain(std::iter::once(&operation["requestBody"]));
                for body in bodies {
                    let media = &body["content"]["application/json"];
                    let Some(example) = media.get("example") else { continue };
                    let (schema, example) = match (&media["schema"]["$ref"], &media["schema"]["items"]["$ref"]) {
                        (Value::String(r), _) => (r, example.clone()),
                        (_, Value::String(r)) => (r, example[0].clone()),
                        _ => continue,
                    };
                    let name = schema.trim_start_matches("#/components/schemas/");
                    if document["components"]["schemas"][name]["properties"].is_object() {
                        check(&document, name, example);
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 15, "only {checked} examples checked");
    }

    #[test]
    fn records_match_their_schemas_property_names() {
        use courier_core::{ExecutionId, TaskError};
        // The fullest forms of a few records: every property they write is documented.
        let document = spec();
        let mut error = TaskError::non_retryable("k", "m").with_details(json!(1));
        error.retry_after_ms = Some(5);
        check(
            &document,
            "TaskError",
            serde_json::to_value(&error).expect("serializes"),
        );
        check(
            &document,
            "RetryPolicy",
            serde_json::to_value(courier_core::RetryPolicy {
                retry_on: Some(vec!["a".into()]),
                non_retryable: vec!["b".into()],
                ..courier_core::RetryPolicy::webhook_schedule()
            })
            .expect("serializes"),
        );
        let result = crate::executions::ResultBody {
            execution_id: ExecutionId::new(),
            state: courier_core::ExecutionState::Failed,
            result: Some(json!(null)),
            error: Some(error),
        };
        check(
            &document,
            "ResultBody",
            serde_json::to_value(&result).expect("serializes"),
        );
        check(
            &document,
            "CleanupReport",
            serde_json::to_value(courier_runtime::CleanupReport::default()).expect("serializes"),
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
        check(
            &document,
            "Notification",
            serde_json::to_value(&sent).expect("serializes"),
        );
        check(
            &document,
            "NotificationTarget",
            serde_json::to_value(&sent.target).expect("serializes"),
        );
        let progress = courier_core::ProgressEntry {
            execution_id: ExecutionId::new(),
            task_id: Some(courier_core::TaskId(uuid::Uuid::now_v7())),
            progress: courier_core::Progress {
                step: Some("s".into()),
                status: Some("ok".into()),
                percent: Some(5.0),
                message: Some("m".into()),
                detail: Some(json!(1)),
            },
            created_at: chrono::Utc::now(),
        };
        check(
            &document,
            "ProgressEntry",
            serde_json::to_value(&progress).expect("serializes"),
        );
    }
}
