//! `GET /v1/events`: the event log by polling, with an `after` cursor, filters
//! and `has_more`. The filters ([`EventFilters`]) are shared with the SSE stream.

use actix_web::{HttpResponse, web};
use courier_core::{Event, EventFilter, EventType, ExecutionId, TaskId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::Http;
use crate::error::{ApiError, ApiResult, BadRequest, StoreError, Unavailable};
use crate::params::MAX_PAGE;
use crate::routes::Routes;

/// Events a poll returns by default (spelled in [`EventsLimit`]'s attribute too).
const DEFAULT_EVENTS: u32 = 100;
const _: () = assert!(DEFAULT_EVENTS == 100);

/// Adds the polling route.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes.add(__path_poll, poll)
}

/// Which events a poll or a stream wants (the query of `GET /v1/events` and
/// `GET /v1/events/stream`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventFilters {
    /// Only events of this execution.
    pub execution_id: Option<ExecutionId>,
    /// Only events of this task.
    pub task_id: Option<TaskId>,
    /// Only these event types, comma-separated.
    #[serde(rename = "type")]
    #[param(value_type = Option<Vec<EventType>>, style = Form, explode = false)]
    pub types: Option<String>,
    /// Only events after this sequence number.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Include events of Courier's own executions (`courier.*`: webhook
    /// deliveries, ingested messages); default false, unless `execution_id` or
    /// `task_id` names what to show.
    pub internal: Option<bool>,
}

/// The page size of a poll (`?limit=`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsLimit {
    /// Most items returned.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<u32>,
}

/// `GET /v1/events` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "A page of events, oldest first.")]
pub(crate) struct EventsPage {
    /// The events.
    pub events: Vec<Event>,
    /// The cursor to pass as `after` next time. A read by type, or one leaving
    /// internal events out, looks at most 10,000 sequence numbers past its
    /// cursor, so a page may be empty and still move the cursor.
    pub next: i64,
    /// Whether more events follow at once (more matches, or more of the log
    /// to look through).
    pub has_more: bool,
}

/// Parses `type=a,b` into event types (400 naming an unknown one).
pub(crate) fn parse_types(types: Option<&str>) -> ApiResult<Vec<EventType>> {
    types
        .into_iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<EventType>()
                .map_err(|e| ApiError::bad_request("unknown event type", json!(e.to_string())))
        })
        .collect()
}

/// The filter the filters ask for (limit aside).
pub(crate) fn filter_of(query: &EventFilters) -> ApiResult<EventFilter> {
    if query.after.is_some_and(|a| a < 0) {
        return Err(ApiError::bad_request(
            "after must not be negative",
            json!({"after": query.after}),
        ));
    }
    Ok(EventFilter {
        execution_id: query.execution_id,
        task_id: query.task_id,
        types: parse_types(query.types.as_deref())?,
        after: query.after.unwrap_or(0),
        limit: DEFAULT_EVENTS,
        // Naming an execution or task is asking to see it, as `function` does
        // for `GET /v1/executions`.
        include_internal: query
            .internal
            .unwrap_or(query.execution_id.is_some() || query.task_id.is_some()),
    })
}

/// Events after the cursor, oldest first.
#[utoipa::path(
    get, path = "/v1/events", operation_id = "pollEvents", tag = "events",
    summary = "Events after the cursor, oldest first.",
    params(EventFilters, EventsLimit),
    responses(
        (status = 200, description = "A page of events.", body = EventsPage, example = json!({"events": [{"seq": 1, "type": "execution.created", "execution_id": "01a243aa-8957-70b4-86ac-69cf99e8a9f6", "timestamp": "2026-12-05T00:46:19.479900Z", "data": {"function": "resize", "queue": "images"}}], "next": 2, "has_more": true})),
        (status = 400, response = BadRequest),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn poll(
    http: web::Data<Http>,
    query: web::Query<EventFilters>,
    limit: web::Query<EventsLimit>,
) -> ApiResult<HttpResponse> {
    let mut filter = filter_of(&query)?;
    let limit = limit.limit.unwrap_or(DEFAULT_EVENTS);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            format!("limit must be 1 to {MAX_PAGE}"),
            json!({ "limit": limit }),
        ));
    }
    filter.limit = limit + 1;
    let page = http.courier().store().read_events(&filter).await?;
    let mut events = page.events;
    // One more than asked tells whether more follow; a short page may still have
    // stopped short of the head (a read by type looks a stretch at a time).
    let (next, has_more) = if events.len() > limit as usize {
        events.truncate(limit as usize);
        (events.last().map_or(filter.after, |e| e.seq), true)
    } else {
        (page.through, page.through < page.head)
    };
    Ok(HttpResponse::Ok().json(EventsPage { events, next, has_more }))
}
