//! `/v1/schedules`: functions started on a cron expression or at a fixed
//! interval, once per slot for the whole cluster: create, list, read, edit
//! (a JSON merge patch), delete, pause, resume, trigger, and each slot's run.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use courier_core::{Overlap, ScheduleDefinition, ScheduleRecord, ScheduleRun, serde_duration};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::Http;
use crate::error::{
    ApiError, ApiResult, BadRequest, Conflict, NotFound, PayloadTooLarge, StoreError, Unavailable, UnsupportedMediaType,
};
use crate::params::JsonObject;
use crate::params::{MAX_DURATION, Page, check_name, page_limit, page_offset};
use crate::routes::Routes;

/// Upcoming slots shown with a schedule.
const UPCOMING: usize = 5;

/// Adds the schedules' routes.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes
        .add(__path_create, create)
        .add(__path_list, list)
        .add(__path_get, get)
        .add(__path_patch, patch)
        .add(__path_delete, delete)
        .add(__path_pause, pause)
        .add(__path_resume, resume)
        .add(__path_trigger, trigger)
        .add(__path_backfill, backfill)
        .add(__path_runs, runs)
}

/// `POST /v1/schedules` body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "A new schedule: exactly one of `cron` and `every`.")]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSchedule {
    /// Its id (1 to 200 bytes; default: a new one).
    #[serde(default)]
    pub id: Option<String>,
    /// The function each slot starts.
    pub function: String,
    /// Its arguments (the same for every slot).
    #[serde(default)]
    pub args: Value,
    /// A cron expression: 5 fields, or 6 with seconds first (`*/10 * * * * *`).
    #[serde(default)]
    pub cron: Option<String>,
    /// A fixed interval instead (at least 1s).
    #[serde(default, with = "serde_duration::option")]
    #[schema(value_type = Option<courier_core::openapi::DurationText>)]
    pub every: Option<Duration>,
    /// The IANA time zone `cron` is read in (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// While the previous execution runs: `skip` (default), `buffer_one` or `allow`.
    #[serde(default)]
    pub overlap: Option<Overlap>,
    /// Slots missed within this long before now still fire after downtime (default 1m).
    #[serde(default, with = "serde_duration::option")]
    #[schema(value_type = Option<courier_core::openapi::DurationText>)]
    pub catchup_window: Option<Duration>,
    /// Each slot fires up to this much late (default 0s).
    #[serde(default, with = "serde_duration::option")]
    #[schema(value_type = Option<courier_core::openapi::DurationText>)]
    pub jitter: Option<Duration>,
    /// The queue of the executions it starts (default: the function's).
    #[serde(default)]
    pub queue: Option<String>,
    /// Their priority (default: the function's).
    #[serde(default)]
    pub priority: Option<i32>,
    /// Created paused (default false).
    #[serde(default)]
    pub paused: bool,
}

/// A schedule with its next slots.
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    description = "A schedule as stored, with its next slots.",
    example = json!({
        "id": "nightly-rollup", "function": "rollup", "args": {"days": 1}, "cron": "0 30 2 * * *",
        "timezone": "Europe/Paris", "overlap": "skip", "catchup_window": "1m", "jitter": "0s", "paused": false,
        "anchor_at": "2026-12-05T09:00:00Z", "next_slot": "2026-12-06T01:30:00Z", "buffered_slot": null,
        "last_slot": "2026-12-05T01:30:00Z", "last_execution_id": "01a2457e-1d80-7713-afa6-77363ca3b2b7",
        "created_at": "2026-12-01T09:00:00Z", "updated_at": "2026-12-05T01:30:00.012Z", "revision": 12,
        "upcoming": ["2026-12-06T01:30:00Z", "2026-12-07T01:30:00Z"]
    })
)]
pub(crate) struct ScheduleView {
    /// The schedule.
    #[serde(flatten)]
    pub schedule: ScheduleRecord,
    /// Its next slots (up to five; none while paused).
    pub upcoming: Vec<DateTime<Utc>>,
}

fn view(schedule: ScheduleRecord) -> ScheduleView {
    let mut upcoming = Vec::new();
    if let (false, Ok(spec)) = (schedule.paused, schedule.spec()) {
        let mut next = schedule.next_slot;
        while let Some(slot) = next {
            upcoming.push(slot);
            if upcoming.len() == UPCOMING {
                break;
            }
            next = spec.next_after(slot);
        }
    }
    ScheduleView { schedule, upcoming }
}

/// `GET /v1/schedules` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ScheduleList {
    /// The schedules, by id.
    pub schedules: Vec<ScheduleView>,
}

/// `GET /v1/schedules/{id}/runs` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunList {
    /// The runs, newest slot first.
    pub runs: Vec<ScheduleRun>,
}

/// The definition's fields checked as the API bounds them.
fn check(definition: &ScheduleDefinition) -> ApiResult<()> {
    check_name("function", &definition.function)?;
    if let Some(queue) = &definition.queue {
        check_name("queue", queue)?;
    }
    for (field, value) in [
        ("catchup_window", definition.catchup_window),
        ("jitter", definition.jitter),
    ] {
        if value > MAX_DURATION {
            return Err(ApiError::bad_request(
                format!("{field} must be at most 100 years"),
                json!({ "field": field }),
            ));
        }
    }
    if let Some(every) = definition.every
        && every > MAX_DURATION
    {
        return Err(ApiError::bad_request(
            "every must be at most 100 years",
            json!({"field": "every"}),
        ));
    }
    if courier_core::value_has_nul(&definition.args) {
        return Err(ApiError::bad_request(
            "args must not contain a NUL character",
            json!({"field": "args"}),
        ));
    }
    Ok(())
}

fn check_id(id: &str) -> ApiResult<()> {
    check_name("id", id)
}

fn runtime_invalid(e: courier_runtime::RuntimeError) -> ApiError {
    match e {
        courier_runtime::RuntimeError::Invalid(detail) => ApiError::bad_request("invalid schedule", json!(detail)),
        other => other.into(),
    }
}

/// Creates a schedule.
#[utoipa::path(
    post, path = "/v1/schedules", operation_id = "createSchedule", tag = "schedules",
    summary = "Create a schedule: a function started on a cron expression or at a fixed interval.",
    description = "Its first slot is the first its expression names after now (an interval counts from now). Each slot starts one execution for the whole cluster (its idempotency key is the schedule and the slot), logged as `schedule.fired`; a slot skipped (overlap, or missed past the catch-up window after downtime) is logged as `schedule.skipped`. 409 if the id is taken.",
    request_body(content = CreateSchedule, example = json!({
        "id": "nightly-rollup", "function": "rollup", "args": {"days": 1},
        "cron": "0 30 2 * * *", "timezone": "Europe/Paris", "overlap": "skip", "catchup_window": "10m"
    })),
    responses(
        (status = 201, description = "Created.", body = ScheduleView, links(
            ("Runs" = (operation_id = "listScheduleRuns", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn create(http: web::Data<Http>, body: web::Json<Value>) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "invalid JSON body",
            json!("the schedule must be a JSON object"),
        ));
    }
    let body: CreateSchedule =
        serde_json::from_value(body).map_err(|e| ApiError::bad_request("invalid JSON body", json!(e.to_string())))?;
    if let Some(id) = &body.id {
        check_id(id)?;
    }
    let definition = ScheduleDefinition {
        function: body.function,
        args: body.args,
        cron: body.cron,
        every: body.every,
        timezone: body.timezone.unwrap_or_else(|| "UTC".into()),
        overlap: body.overlap.unwrap_or(Overlap::Skip),
        catchup_window: body.catchup_window.unwrap_or(Duration::from_secs(60)),
        jitter: body.jitter.unwrap_or_default(),
        queue: body.queue,
        priority: body.priority,
    };
    check(&definition)?;
    let created = http
        .courier()
        .create_schedule(body.id, definition, body.paused)
        .await
        .map_err(runtime_invalid)?;
    Ok(HttpResponse::Created().json(view(created)))
}

/// Schedules by id.
#[utoipa::path(
    get, path = "/v1/schedules", operation_id = "listSchedules", tag = "schedules",
    summary = "Schedules by id, each with its next slots.",
    params(Page),
    responses(
        (status = 200, description = "The schedules.", body = ScheduleList, example = json!({"schedules": [{
            "id": "every-5m", "function": "sync", "args": null, "every": "5m", "timezone": "UTC", "overlap": "buffer_one",
            "catchup_window": "1m", "jitter": "10s", "paused": false, "anchor_at": "2026-12-05T09:00:00Z",
            "next_slot": "2026-12-05T09:05:00Z", "buffered_slot": null, "last_slot": null, "last_execution_id": null,
            "created_at": "2026-12-05T09:00:00Z", "updated_at": "2026-12-05T09:00:00Z", "revision": 1,
            "upcoming": ["2026-12-05T09:05:00Z", "2026-12-05T09:10:00Z"]
        }]})),
        (status = 400, response = BadRequest),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list(http: web::Data<Http>, page: web::Query<Page>) -> ApiResult<HttpResponse> {
    let (limit, offset) = (page_limit(page.limit)?, page_offset(page.offset)?);
    let schedules = http.courier().schedules(limit, offset).await?;
    Ok(HttpResponse::Ok().json(ScheduleList {
        schedules: schedules.into_iter().map(view).collect(),
    }))
}

/// One schedule.
#[utoipa::path(
    get, path = "/v1/schedules/{id}", operation_id = "getSchedule", tag = "schedules",
    summary = "One schedule, with its next slots.",
    params(("id" = String, Path, description = "The schedule's id.")),
    responses(
        (status = 200, description = "The schedule.", body = ScheduleView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn get(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    check_id(&id)?;
    Ok(HttpResponse::Ok().json(view(http.courier().schedule(&id).await?)))
}

/// The fields a patch may change.
const PATCHABLE: &[&str] = &[
    "function",
    "args",
    "cron",
    "every",
    "timezone",
    "overlap",
    "catchup_window",
    "jitter",
    "queue",
    "priority",
    "paused",
];

/// Changes a schedule (a JSON merge patch: fields given replace, `null` removes).
#[utoipa::path(
    patch, path = "/v1/schedules/{id}", operation_id = "patchSchedule", tag = "schedules",
    summary = "Change a schedule: the fields given replace its own, `null` removes one (a JSON merge patch).",
    description = "Switching from `cron` to `every` takes `{\"cron\": null, \"every\": \"5m\"}`. If its timing changes (cron, every, time zone), its next slot is the first the new timing names after now. `paused` pauses or resumes it (a resumed schedule does not catch up the slots it missed while paused).",
    params(("id" = String, Path, description = "The schedule's id.")),
    request_body(content = Object, example = json!({"cron": "0 0 3 * * *", "overlap": "buffer_one"})),
    responses(
        (status = 200, description = "Changed.", body = ScheduleView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn patch(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    check_id(&id)?;
    let Value::Object(patch) = body.into_inner() else {
        return Err(ApiError::bad_request(
            "invalid JSON body",
            json!("the patch must be a JSON object"),
        ));
    };
    if let Some(unknown) = patch.keys().find(|k| !PATCHABLE.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            format!("unknown field `{unknown}`"),
            json!({ "field": unknown, "expected": PATCHABLE }),
        ));
    }
    let courier = http.courier();
    let current = courier.schedule(&id).await?;
    let mut merged = match serde_json::to_value(&current.definition) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let mut paused = None;
    for (key, value) in patch {
        if key == "paused" {
            paused =
                Some(value.as_bool().ok_or_else(|| {
                    ApiError::bad_request("paused must be true or false", json!({"field": "paused"}))
                })?);
        } else if value.is_null() {
            merged.remove(&key);
        } else {
            merged.insert(key, value);
        }
    }
    let definition: ScheduleDefinition = serde_json::from_value(Value::Object(merged))
        .map_err(|e| ApiError::bad_request("invalid JSON body", json!(e.to_string())))?;
    check(&definition)?;
    let mut record = if definition != current.definition {
        courier
            .replace_schedule(&id, definition)
            .await
            .map_err(runtime_invalid)?
    } else {
        current
    };
    match paused {
        Some(true) if !record.paused => record = courier.pause_schedule(&id).await?,
        Some(false) if record.paused => record = courier.resume_schedule(&id).await?,
        _ => {}
    }
    Ok(HttpResponse::Ok().json(view(record)))
}

/// Deletes a schedule and its runs.
#[utoipa::path(
    delete, path = "/v1/schedules/{id}", operation_id = "deleteSchedule", tag = "schedules",
    summary = "Delete a schedule and its runs (the executions it started are left alone).",
    params(("id" = String, Path, description = "The schedule's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn delete(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    check_id(&id)?;
    if http.courier().delete_schedule(&id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found("schedule", id.as_str()))
    }
}

/// Pauses a schedule.
#[utoipa::path(
    post, path = "/v1/schedules/{id}/pause", operation_id = "pauseSchedule", tag = "schedules",
    summary = "Pause a schedule: no slot fires until it is resumed.",
    params(("id" = String, Path, description = "The schedule's id.")),
    responses(
        (status = 200, description = "Paused.", body = ScheduleView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn pause(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    check_id(&id)?;
    Ok(HttpResponse::Ok().json(view(http.courier().pause_schedule(&id).await?)))
}

/// Resumes a schedule.
#[utoipa::path(
    post, path = "/v1/schedules/{id}/resume", operation_id = "resumeSchedule", tag = "schedules",
    summary = "Resume a paused schedule from its first slot after now (slots missed while paused are not caught up).",
    params(("id" = String, Path, description = "The schedule's id.")),
    responses(
        (status = 200, description = "Resumed.", body = ScheduleView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn resume(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    check_id(&id)?;
    Ok(HttpResponse::Ok().json(view(http.courier().resume_schedule(&id).await?)))
}

/// Starts a schedule's function now.
#[utoipa::path(
    post, path = "/v1/schedules/{id}/trigger", operation_id = "triggerSchedule", tag = "schedules",
    summary = "Start the schedule's function now, outside its slots (paused or not).",
    description = "The run is recorded with `reason: \"trigger\"` and logged as `schedule.fired`, like a slot's; the schedule's own slots are unchanged.",
    params(("id" = String, Path, description = "The schedule's id.")),
    responses(
        (status = 201, description = "Started.", body = ScheduleRun, links(
            ("Execution" = (operation_id = "getExecution", parameters(("id" = "$response.body#/execution_id")))),
        ), example = json!({
            "schedule_id": "nightly-rollup", "slot": "2026-12-05T10:12:03.120Z", "outcome": "fired", "count": 1,
            "execution_id": "01a2457e-1d80-7713-afa6-77363ca3b2b7", "reason": "trigger", "recorded_at": "2026-12-05T10:12:03.121Z"
        })),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn trigger(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    check_id(&id)?;
    Ok(HttpResponse::Created().json(http.courier().trigger_schedule(&id).await?))
}

/// `POST /v1/schedules/{id}/backfill` body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "The past range whose slots to start.")]
#[serde(deny_unknown_fields)]
pub(crate) struct BackfillBody {
    /// The first instant (RFC 3339), included.
    pub from: DateTime<Utc>,
    /// The last instant (RFC 3339), included.
    pub to: DateTime<Utc>,
}

/// Starts the slots of a past range.
#[utoipa::path(
    post, path = "/v1/schedules/{id}/backfill", operation_id = "backfillSchedule", tag = "schedules",
    summary = "Start the schedule's slots from `from` to `to` (both included, at most 1000), as if they had fired.",
    description = "Recorded with `reason: \"backfill\"` and logged as `schedule.fired`, paused or not and whatever the catch-up window. Each slot's execution has the idempotency key its firing uses, so a slot that already fired keeps its one execution.",
    params(("id" = String, Path, description = "The schedule's id.")),
    request_body(content = BackfillBody, example = json!({"from": "2026-12-01T00:00:00Z", "to": "2026-12-03T23:59:59Z"})),
    responses(
        (status = 201, description = "Started.", body = RunList, example = json!({"runs": [
            {"schedule_id": "nightly-rollup", "slot": "2026-12-03T01:30:00Z", "outcome": "fired", "count": 1,
             "execution_id": "01a2457e-1d80-7713-afa6-77363ca3b2b7", "reason": "backfill", "recorded_at": "2026-12-05T10:02:00.120Z"}
        ]})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn backfill(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: JsonObject<BackfillBody>,
) -> ApiResult<HttpResponse> {
    check_id(&id)?;
    let runs = http
        .courier()
        .backfill_schedule(&id, body.from, body.to)
        .await
        .map_err(runtime_invalid)?;
    Ok(HttpResponse::Created().json(RunList { runs }))
}

/// `GET /v1/schedules/{id}/runs` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunsQuery {
    /// Most runs returned (1 to 1000, default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Runs skipped.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 100000)]
    pub offset: Option<u32>,
}

/// What became of a schedule's slots.
#[utoipa::path(
    get, path = "/v1/schedules/{id}/runs", operation_id = "listScheduleRuns", tag = "schedules",
    summary = "What became of a schedule's slots, newest first: fired (with the execution), skipped (and why), buffered.",
    params(("id" = String, Path, description = "The schedule's id."), RunsQuery),
    responses(
        (status = 200, description = "The runs.", body = RunList, example = json!({"runs": [
            {"schedule_id": "nightly-rollup", "slot": "2026-12-05T01:30:00Z", "outcome": "fired", "count": 1,
             "execution_id": "01a2457e-1d80-7713-afa6-77363ca3b2b7", "reason": "schedule", "recorded_at": "2026-12-05T01:30:00.011Z"},
            {"schedule_id": "nightly-rollup", "slot": "2026-12-01T01:30:00Z", "outcome": "skipped", "count": 3,
             "execution_id": null, "reason": "catchup_window", "recorded_at": "2026-12-04T08:12:40.002Z"}
        ]})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn runs(
    http: web::Data<Http>,
    id: web::Path<String>,
    query: web::Query<RunsQuery>,
) -> ApiResult<HttpResponse> {
    check_id(&id)?;
    let (limit, offset) = (page_limit(query.limit)?, page_offset(query.offset)?);
    let runs = http.courier().schedule_runs(&id, limit, offset).await?;
    Ok(HttpResponse::Ok().json(RunList { runs }))
}
