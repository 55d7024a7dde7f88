//! Parameters and fields shared by several resources: parsing path and query
//! parameters into typed values (with 400s that say which), the checks of names
//! and durations, and the schemas of request fields a derive cannot say.

use std::time::Duration;

use courier_core::openapi::schema;
use courier_core::{ExecutionId, TaskId, format_duration};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// Most items a list returns at once.
pub(crate) const MAX_PAGE: u32 = 1000;
/// Items a list returns by default.
pub(crate) const DEFAULT_PAGE: u32 = 50;
/// Most items a list skips: the store reads every skipped row, so a deep
/// offset costs as much as a scan. Past it, narrow the list with its filters.
pub(crate) const MAX_OFFSET: u32 = 100_000;
/// Longest duration a request body may give (delays, expiries, retry-afters,
/// cleanup ages): 100 years, so every time computed from one is a real timestamp.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

const _: () = assert!(DEFAULT_PAGE == 50 && MAX_PAGE == 1000 && MAX_NAME == 200 && MAX_OFFSET == 100_000);

/// Refuses a duration longer than [`MAX_DURATION`].
pub(crate) fn check_duration(field: &str, value: Option<Duration>) -> ApiResult<()> {
    match value {
        Some(d) if d > MAX_DURATION => Err(ApiError::bad_request(
            format!("{field} must be at most {}", format_duration(MAX_DURATION)),
            json!({ "field": field, "value": format_duration(d) }),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn uuid(what: &str, text: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| ApiError::bad_request(format!("invalid {what} id"), json!({ "id": text })))
}

pub(crate) fn execution_id(text: &str) -> ApiResult<ExecutionId> {
    uuid("execution", text).map(ExecutionId)
}

pub(crate) fn task_id(text: &str) -> ApiResult<TaskId> {
    uuid("task", text).map(TaskId)
}

/// A page size: default 50, at most 1000, at least 1.
pub(crate) fn page_limit(limit: Option<u32>) -> ApiResult<u32> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        0 => Err(ApiError::bad_request("limit must be at least 1", json!({"limit": 0}))),
        n if n > MAX_PAGE => Err(ApiError::bad_request(
            format!("limit must be at most {MAX_PAGE}"),
            json!({ "limit": n }),
        )),
        n => Ok(n),
    }
}

/// An optional JSON body: none (or `null`) is `None`; one that is there must
/// be a valid `T` (400 otherwise).
pub(crate) fn optional_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<Option<T>> {
    if body.is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid JSON body", json!(e.to_string())))?;
    // Checked before decoding: serde would read a struct from an array too,
    // field by field in order, so `[]` would pass for an empty object.
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Object(_) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| ApiError::bad_request("invalid JSON body", json!(e.to_string()))),
        other => Err(ApiError::bad_request(
            "the body must be a JSON object (or null, or nothing)",
            json!({ "got": json_type(&other) }),
        )),
    }
}

/// The JSON type of `value`, as error details name it.
fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// A request body that must be a JSON object, decoded into `T`.
///
/// `web::Json<T>` alone would also take an array for a struct (serde reads its
/// fields in order from one), so `["charge"]` would pass for
/// `{"function": "charge"}`. This reads the body as JSON under the app's
/// `JsonConfig` (its size limit and error answers), refuses anything but an
/// object, then decodes.
pub(crate) struct JsonObject<T>(pub T);

impl<T> JsonObject<T> {
    /// The decoded body.
    pub(crate) fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for JsonObject<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &actix_web::HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let json = actix_web::web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = json.await?.into_inner();
            if !value.is_object() {
                return Err(ApiError::bad_request(
                    "the body must be a JSON object",
                    json!({ "got": json_type(&value) }),
                )
                .into());
            }
            serde_json::from_value(value)
                .map(JsonObject)
                .map_err(|e| ApiError::bad_request("invalid JSON body", json!(e.to_string())).into())
        })
    }
}

/// Items to skip: default 0, at most [`MAX_OFFSET`].
pub(crate) fn page_offset(offset: Option<u32>) -> ApiResult<u32> {
    match offset.unwrap_or(0) {
        n if n > MAX_OFFSET => Err(ApiError::bad_request(
            format!("offset must be at most {MAX_OFFSET}"),
            json!({ "offset": n, "hint": "narrow the list with its filters instead of paging this deep" }),
        )),
        n => Ok(n),
    }
}

/// Longest names accepted for functions, queues, tags, keys.
pub(crate) const MAX_NAME: usize = 200;

/// Refuses a blank name or one longer than [`MAX_NAME`].
pub(crate) fn check_name(field: &str, value: &str) -> ApiResult<()> {
    if value.trim().is_empty() || value.len() > MAX_NAME {
        return Err(ApiError::bad_request(
            format!("{field} must be 1 to {MAX_NAME} characters"),
            json!({ "field": field }),
        ));
    }
    // A NUL is stored by one store and refused by the other: refuse it here.
    if value.contains('\0') {
        return Err(ApiError::bad_request(
            format!("{field} must not contain a NUL character"),
            json!({ "field": field }),
        ));
    }
    Ok(())
}

/// [`check_name`], and not under `courier.`: Courier's own functions
/// (webhook deliveries, ingested messages) and their idempotency keys are
/// reserved, so no caller can start, or collide with, internal work.
pub(crate) fn check_public_name(field: &str, value: &str) -> ApiResult<()> {
    check_name(field, value)?;
    if value.starts_with(courier_core::INTERNAL_PREFIX) {
        return Err(ApiError::bad_request(
            format!(
                "{field} must not start with `{}`: that namespace is Courier's own",
                courier_core::INTERNAL_PREFIX
            ),
            json!({ "field": field, "value": value }),
        ));
    }
    Ok(())
}

/// A page of a list: `?limit=&offset=`.
///
/// The document spells the defaults and bounds as literals (an attribute takes no
/// constant); the assertion below keeps them equal to the constants.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Page {
    /// Most items returned.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000, default = 50)]
    pub limit: Option<u32>,
    /// Items skipped.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 100000, default = 0)]
    pub offset: Option<u32>,
}

// Schemas of request fields that a derive cannot say (`#[schema(schema_with = ..)]`).

/// A duration in a request body: a duration string, or a number of seconds from
/// `min` to `max` (the string's bounds are the same, but JSON Schema cannot say so).
pub(crate) fn duration_input(description: &str, min: u64, max: Option<u64>) -> RefOr<Schema> {
    let mut seconds =
        json!({ "type": "number", "minimum": min, "description": "A number of seconds (fractions allowed)." });
    if let Some(max) = max {
        seconds["maximum"] = json!(max);
    }
    schema(json!({
        "anyOf": [{ "$ref": "#/components/schemas/Duration" }, seconds],
        "description": description,
    }))
}

/// The same, or `null`.
pub(crate) fn nullable(schema: RefOr<Schema>) -> RefOr<Schema> {
    let schema = serde_json::to_value(schema).unwrap_or_default();
    courier_core::openapi::schema(json!({ "anyOf": [schema, { "type": "null" }] }))
}

/// Any duration a request body may give: at most [`MAX_DURATION`] (`null`: none).
pub(crate) fn optional_duration() -> RefOr<Schema> {
    nullable(bounded_duration())
}

/// Any duration a request body may give: at most [`MAX_DURATION`].
pub(crate) fn bounded_duration() -> RefOr<Schema> {
    duration_input(
        &format!(
            "A duration: a string such as `\"500ms\"`, `\"30s\"`, `\"1h30m\"`, `\"2d\"`, or a number of seconds; at most `{}` (100 years).",
            format_duration(MAX_DURATION)
        ),
        0,
        Some(MAX_DURATION.as_secs()),
    )
}

fn names(description: &str) -> RefOr<Schema> {
    schema(json!({
        "type": ["array", "null"],
        "items": { "type": "string", "minLength": 1, "maxLength": MAX_NAME,
                   "description": format!("A name. 1 to {MAX_NAME} bytes, not blank.") },
        "description": description,
    }))
}

/// `tags` of a new execution.
pub(crate) fn tag_names() -> RefOr<Schema> {
    names("Tags.")
}

/// `queues` of a claim.
pub(crate) fn queue_names() -> RefOr<Schema> {
    names("Only these queues (default: every queue).")
}

/// `functions` of a claim.
pub(crate) fn function_names() -> RefOr<Schema> {
    names("Only these functions.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        reason: Option<String>,
    }

    #[test]
    fn an_optional_body_is_nothing_null_or_an_object() {
        assert!(optional_body::<Body>(b"").unwrap().is_none());
        assert!(optional_body::<Body>(b"null").unwrap().is_none());
        assert!(optional_body::<Body>(br#"{"reason": "x"}"#).unwrap().is_some());
        // Serde alone reads a struct from an array; these must be refused.
        for bad in [&b"[]"[..], br#"["x"]"#, b"3", br#""x""#, b"{"] {
            assert!(optional_body::<Body>(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
