//! Parsing path and query parameters into typed values, with 400s that say which.

use courier_core::{ExecutionId, TaskId};
use serde_json::json;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// Most items a list returns at once.
pub(crate) const MAX_PAGE: u32 = 1000;
/// Items a list returns by default.
pub(crate) const DEFAULT_PAGE: u32 = 50;

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
