//! `POST /v1/cleanup`: deleting old history.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use courier_core::serde_duration;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Http;
use crate::error::{ApiResult, BadRequest, PayloadTooLarge, StoreError, Unavailable, UnsupportedMediaType};
use crate::params::JsonObject;
use crate::params::check_duration;
use crate::routes::Routes;

/// Adds the cleanup route.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes.add(__path_cleanup, cleanup)
}

/// `POST /v1/cleanup`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "How old history must be to go.")]
#[serde(deny_unknown_fields)]
pub(crate) struct CleanupBody {
    /// Finished executions, dead letters, events and finished idempotency keys
    /// older than this go.
    #[serde(with = "serde_duration")]
    #[schema(schema_with = crate::params::bounded_duration)]
    pub older_than: Duration,
}

/// What a cleanup deleted: the schema of `courier_runtime::CleanupReport`, which
/// is answered as it is. The runtime cannot carry the schema derive, so this
/// mirror says its fields, and a test keeps the two in step.
#[derive(Debug, Default, Serialize, ToSchema)]
#[schema(description = "What a cleanup deleted.")]
pub(crate) struct CleanupReport {
    /// Finished executions deleted (with all their rows).
    pub executions: u64,
    /// Dead letters deleted.
    pub dead_letters: u64,
    /// Events trimmed from the log.
    pub events: u64,
    /// Expired cache entries purged.
    pub cache_entries: u64,
    /// Finished idempotency keys trimmed.
    pub idempotency_keys: u64,
}

/// Deletes finished executions, dead letters, events and finished idempotency
/// keys older than `older_than` (events a webhook has not been sent yet stay),
/// and expired cache entries.
#[utoipa::path(
    post, path = "/v1/cleanup", operation_id = "cleanup", tag = "dead letters",
    summary = "Delete history older than `older_than`.",
    description = "Finished executions (with all their rows), dead letters, events and finished idempotency keys older than `older_than`, and expired cache entries. Events a webhook endpoint has not been sent yet are kept.",
    request_body(content = CleanupBody, example = json!({"older_than": "30d"})),
    responses(
        (status = 200, description = "What was deleted.", body = CleanupReport, example = json!({"executions": 0, "dead_letters": 0, "events": 0, "cache_entries": 0, "idempotency_keys": 0})),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn cleanup(http: web::Data<Http>, body: JsonObject<CleanupBody>) -> ApiResult<HttpResponse> {
    check_duration("older_than", Some(body.older_than))?;
    let report = http.courier().cleanup(body.older_than).await?;
    Ok(HttpResponse::Ok().json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_has_the_runtime_reports_fields() {
        let mirror = serde_json::to_value(CleanupReport::default()).expect("serializes");
        let report = serde_json::to_value(courier_runtime::CleanupReport::default()).expect("serializes");
        let keys = |v: &serde_json::Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
        assert_eq!(keys(&mirror), keys(&report));
    }
}
