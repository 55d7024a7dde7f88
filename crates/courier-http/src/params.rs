//! Parsing path and query parameters into typed values, with 400s that say which.

use std::time::Duration;

use courier_core::{ExecutionId, TaskId, format_duration};
use serde_json::json;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// Most items a list returns at once.
pub(crate) const MAX_PAGE: u32 = 1000;
/// Items a list returns by default.
pub(crate) const DEFAULT_PAGE: u32 = 50;
/// Longest duration a request body may give (delays, expiries, retry-afters,
/// cleanup ages): 100 years, so every time computed from one is a real timestamp.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

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
