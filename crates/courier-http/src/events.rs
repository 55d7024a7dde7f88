//! `GET /v1/events`: the event log by polling, with an `after` cursor, filters
//! and `has_more`. The filter parsing here is shared with the SSE stream.

use actix_web::{HttpResponse, web};
use courier_core::{EventFilter, EventType};
use serde_json::json;

use crate::Http;
use crate::error::{ApiError, ApiResult};
use crate::params::MAX_PAGE;
use crate::wire::{EventsPage, EventsQuery};

/// Events a poll returns by default.
const DEFAULT_EVENTS: u32 = 100;

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

/// The filter a query asks for (limit and cursor aside).
pub(crate) fn filter_of(query: &EventsQuery) -> ApiResult<EventFilter> {
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
    })
}

/// Events after the cursor, oldest first.
pub(crate) async fn poll(http: web::Data<Http>, query: web::Query<EventsQuery>) -> ApiResult<HttpResponse> {
    let mut filter = filter_of(&query)?;
    let limit = query.limit.unwrap_or(DEFAULT_EVENTS);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            format!("limit must be 1 to {MAX_PAGE}"),
            json!({ "limit": limit }),
        ));
    }
    filter.limit = limit + 1;
    let mut events = http.courier().store().read_events(&filter).await?;
    let has_more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next = events.last().map_or(filter.after, |e| e.seq);
    Ok(HttpResponse::Ok().json(EventsPage { events, next, has_more }))
}
