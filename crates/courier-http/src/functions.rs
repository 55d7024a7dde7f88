//! `/v1/functions`: what new tasks of each function get (retry policy, timeout,
//! queue, tags, priority, concurrency cap), set over HTTP for every node of the
//! cluster, so functions served by outside workers need no Rust to configure.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use courier_core::{FunctionRecord, FunctionSettings, RetryPolicy, TaskKind, serde_duration};
use courier_runtime::AppliedOptions;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::Http;
use crate::error::{
    ApiError, ApiResult, BadRequest, NotFound, PayloadTooLarge, StoreError, Unavailable, UnsupportedMediaType,
};
use crate::params::{MAX_DURATION, check_name, check_public_name};
use crate::routes::Routes;

/// Adds the functions' routes.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes
        .add(__path_list, list)
        .add(__path_get, get)
        .add(__path_put, put)
        .add(__path_delete, delete)
}

/// Most tags a function's settings may give its tasks.
const MAX_TAGS: usize = 64;
/// Most steps of an explicit retry schedule.
const MAX_SCHEDULE: usize = 100;
/// The highest cap on running tasks (the schema says the same).
const MAX_CONCURRENT: u32 = 1_000_000;
/// Most attempts a retry policy may allow.
const MAX_ATTEMPTS: u32 = 10_000;

/// A function: what is stored for it and what its new tasks get.
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    description = "A function: the settings stored for it (if any) and what new tasks of it dispatched through this node get.",
    example = json!({
        "name": "charge_card",
        "settings": {"queue": "payments", "max_concurrent": 4, "timeout": "30s"},
        "revision": 3,
        "updated_at": "2026-12-04T10:00:00Z",
        "applied": {
            "registered": null, "queue": "payments", "tags": [], "priority": 0, "max_concurrent": 4, "timeout": "30s",
            "retry": {"max_attempts": 3, "initial_delay": "1s", "backoff_factor": 2.0, "max_delay": "5m", "jitter": 0.1}
        }
    })
)]
pub(crate) struct FunctionView {
    /// The function.
    pub name: String,
    /// What is stored for it (`null`: nothing; its registration's options or the defaults apply).
    pub settings: Option<FunctionSettings>,
    /// Counts the writes of its settings (`null` when nothing is stored).
    pub revision: Option<i64>,
    /// When its settings were last written (`null` when nothing is stored).
    pub updated_at: Option<DateTime<Utc>>,
    /// What new tasks of it dispatched through this node get.
    pub applied: Applied,
}

/// What new tasks of a function get on the answering node (see [`AppliedOptions`]).
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    description = "What new tasks of a function get: its registration on this node (if any), with the stored settings laid over it field by field."
)]
pub(crate) struct Applied {
    /// Its kind, if this node runs it itself (`null`: outside workers serve it).
    pub registered: Option<TaskKind>,
    /// Retry policy of its tasks.
    pub retry: RetryPolicy,
    /// Per-attempt time limit (`null`: none).
    #[serde(with = "serde_duration::option")]
    #[schema(value_type = Option<courier_core::openapi::DurationText>)]
    pub timeout: Option<Duration>,
    /// Queue of its tasks.
    pub queue: String,
    /// Routing tags of its tasks.
    pub tags: Vec<String>,
    /// Priority of its tasks.
    pub priority: i32,
    /// Cluster-wide cap on its running tasks (`null`: none).
    pub max_concurrent: Option<u32>,
}

impl From<AppliedOptions> for Applied {
    fn from(a: AppliedOptions) -> Self {
        Applied {
            registered: a.registered,
            retry: a.retry,
            timeout: a.timeout,
            queue: a.queue,
            tags: a.tags,
            priority: a.priority,
            max_concurrent: a.max_concurrent,
        }
    }
}

/// `GET /v1/functions` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "Every function with stored settings, and every function this node registered, by name.")]
pub(crate) struct FunctionList {
    /// The functions, by name.
    pub functions: Vec<FunctionView>,
}

fn view(http: &Http, name: &str, record: Option<FunctionRecord>) -> FunctionView {
    let applied = http.courier().applied_options(name).into();
    match record {
        Some(r) => FunctionView {
            name: r.name,
            settings: Some(r.settings),
            revision: Some(r.revision),
            updated_at: Some(r.updated_at),
            applied,
        },
        None => FunctionView {
            name: name.to_string(),
            settings: None,
            revision: None,
            updated_at: None,
            applied,
        },
    }
}

/// `GET /v1/functions` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListFunctions {
    /// Include Courier's own functions (`courier.*`: webhook deliveries,
    /// ingested messages); default false.
    pub internal: Option<bool>,
}

/// Functions with stored settings, and those this node runs, by name.
#[utoipa::path(
    get, path = "/v1/functions", operation_id = "listFunctions", tag = "functions",
    summary = "Functions with stored settings, and those this node runs, by name.",
    params(ListFunctions),
    responses(
        (status = 200, description = "The functions.", body = FunctionList, example = json!({"functions": [{"name": "resize", "settings": {"timeout": "30s", "queue": "images", "max_concurrent": 4}, "revision": 1, "updated_at": "2026-12-05T00:46:21.002994Z", "applied": {"registered": null, "retry": {"max_attempts": 3, "initial_delay": "1s", "backoff_factor": 2.0, "max_delay": "5m", "jitter": 0.1}, "timeout": "30s", "queue": "images", "tags": [], "priority": 0, "max_concurrent": 4}}]})),
        (status = 400, response = BadRequest),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list(http: web::Data<Http>, query: web::Query<ListFunctions>) -> ApiResult<HttpResponse> {
    let mut stored = http.courier().list_function_settings().await?;
    let mut names: Vec<String> = stored.iter().map(|r| r.name.clone()).collect();
    names.extend(http.courier().registered_functions());
    names.sort();
    names.dedup();
    if !query.internal.unwrap_or(false) {
        names.retain(|name| !courier_core::is_internal(name));
    }
    // Both lists are in name order; take each name's record as it comes.
    stored.reverse();
    let functions = names
        .iter()
        .map(|name| {
            let record = match stored.last() {
                Some(r) if &r.name == name => stored.pop(),
                _ => None,
            };
            view(&http, name, record)
        })
        .collect();
    Ok(HttpResponse::Ok().json(FunctionList { functions }))
}

/// One function: what is stored for it and what its new tasks get.
#[utoipa::path(
    get, path = "/v1/functions/{name}", operation_id = "getFunction", tag = "functions",
    summary = "One function: what is stored for it and what its new tasks get.",
    description = "404 when nothing is stored for it and the answering node does not run it (new tasks of such a function, served by outside workers, get the defaults).",
    params(("name" = String, Path, description = "The function.")),
    responses(
        (status = 200, description = "The function.", body = FunctionView, links(
            ("Set" = (operation_id = "putFunction", parameters(("name" = "$response.body#/name")))),
        )),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn get(http: web::Data<Http>, name: web::Path<String>) -> ApiResult<HttpResponse> {
    check_name("name", &name)?;
    let record = http.courier().function_settings(&name).await?;
    if record.is_none() && !http.courier().registered_functions().contains(&name) {
        return Err(ApiError::not_found("function", name.as_str()));
    }
    Ok(HttpResponse::Ok().json(view(&http, &name, record)))
}

/// Sets a function's settings for every node (replacing what was set).
#[utoipa::path(
    put, path = "/v1/functions/{name}", operation_id = "putFunction", tag = "functions",
    summary = "Set a function's settings for every node, replacing what was set.",
    description = "New tasks of the function take each field given instead of what its registration (or Courier's default) says; fields left out keep that value. Tasks already dispatched keep what they were given. The answering node applies the settings at once, the others within a second. Courier's own functions (`courier.*`) cannot be set.",
    params(("name" = String, Path, description = "The function.")),
    request_body(content = FunctionSettings, example = json!({
        "queue": "payments", "priority": 5, "max_concurrent": 4, "timeout": "30s",
        "retry": {"max_attempts": 5, "initial_delay": "2s", "non_retryable": ["card_declined"]}
    })),
    responses(
        (status = 200, description = "Stored.", body = FunctionView),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn put(
    http: web::Data<Http>,
    name: web::Path<String>,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    check_public_name("name", &name)?;
    // Read from an object only: serde would also take the fields, in order,
    // from an array (`[null, null]`), which no client means.
    let body = body.into_inner();
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "invalid JSON body",
            json!("the settings must be a JSON object"),
        ));
    }
    let settings: FunctionSettings =
        serde_json::from_value(body).map_err(|e| ApiError::bad_request("invalid JSON body", json!(e.to_string())))?;
    check_settings(&settings)?;
    let record = http.courier().set_function_settings(&name, settings).await?;
    Ok(HttpResponse::Ok().json(view(&http, &name, Some(record))))
}

/// Forgets a function's settings: its new tasks get its registration's options again.
#[utoipa::path(
    delete, path = "/v1/functions/{name}", operation_id = "deleteFunction", tag = "functions",
    summary = "Forget a function's settings: its new tasks get its registration's options (or the defaults) again.",
    params(("name" = String, Path, description = "The function.")),
    responses(
        (status = 204, description = "Forgotten."),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn delete(http: web::Data<Http>, name: web::Path<String>) -> ApiResult<HttpResponse> {
    check_public_name("name", &name)?;
    if http.courier().delete_function_settings(&name).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found("function settings", name.as_str()))
    }
}

fn invalid(field: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("{field} {why}"), json!({ "field": field }))
}

/// Refuses settings no task could run under.
fn check_settings(settings: &FunctionSettings) -> ApiResult<()> {
    if let Some(queue) = &settings.queue {
        check_name("queue", queue)?;
    }
    if let Some(tags) = &settings.tags {
        if tags.len() > MAX_TAGS {
            return Err(invalid("tags", &format!("must be at most {MAX_TAGS}")));
        }
        for tag in tags {
            check_name("tags", tag)?;
        }
    }
    if let Some(max) = settings.max_concurrent
        && !(1..=MAX_CONCURRENT).contains(&max)
    {
        return Err(invalid(
            "max_concurrent",
            &format!("must be at least 1 and at most {MAX_CONCURRENT} (leave it out for no cap)"),
        ));
    }
    if let Some(timeout) = settings.timeout
        && (timeout.is_zero() || timeout > MAX_DURATION)
    {
        return Err(invalid("timeout", "must be more than zero and at most 36500d"));
    }
    if let Some(retry) = &settings.retry {
        check_retry(retry)?;
    }
    if let Some(problem) = settings.rate_limit.as_ref().and_then(|r| r.problem()) {
        return Err(invalid("rate_limit", &problem));
    }
    if let Some(problem) = settings.concurrency_key.as_ref().and_then(|k| k.problem()) {
        return Err(invalid("concurrency_key", &problem));
    }
    Ok(())
}

fn check_retry(retry: &RetryPolicy) -> ApiResult<()> {
    if retry.max_attempts == 0 || retry.max_attempts > MAX_ATTEMPTS {
        return Err(invalid("retry.max_attempts", &format!("must be 1 to {MAX_ATTEMPTS}")));
    }
    if !retry.backoff_factor.is_finite() || retry.backoff_factor < 1.0 {
        return Err(invalid("retry.backoff_factor", "must be a number of at least 1"));
    }
    if !retry.jitter.is_finite() || !(0.0..=1.0).contains(&retry.jitter) {
        return Err(invalid("retry.jitter", "must be between 0 and 1"));
    }
    if retry.initial_delay > MAX_DURATION || retry.max_delay > MAX_DURATION {
        return Err(invalid("retry", "delays must be at most 36500d"));
    }
    if retry.max_delay < retry.initial_delay {
        return Err(invalid("retry.max_delay", "must be at least retry.initial_delay"));
    }
    if retry.schedule.len() > MAX_SCHEDULE || retry.schedule.iter().any(|d| *d > MAX_DURATION) {
        return Err(invalid(
            "retry.schedule",
            &format!("must have at most {MAX_SCHEDULE} steps of at most 36500d"),
        ));
    }
    for kind in retry.retry_on.iter().flatten().chain(&retry.non_retryable) {
        check_name("retry error kinds", kind)?;
    }
    Ok(())
}
