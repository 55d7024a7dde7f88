//! How an event looks on each wire: SSE frames (seed 002: `id:` the sequence,
//! `event:` the type, `data:` the event's data with `seq`, `timestamp`,
//! `execution_id` and `task_id` added) and the WebSocket envelope.

use bytes::Bytes;
use courier_core::Event;
use serde_json::{Value, json};

/// Replaces the data of every event whose data is larger than `max` bytes of
/// JSON with `{"truncated": true, "bytes": n}`: a stream holds up to a few
/// hundred frames per client, so one frame's size is bounded
/// (`http.max_event_bytes`); `GET /v1/events` still has the whole event.
pub(crate) fn trim(events: &mut [Event], max: usize) {
    for event in events {
        if matches!(&event.data, Value::Null | Value::Bool(_) | Value::Number(_)) {
            continue;
        }
        let bytes = serde_json::to_vec(&event.data).map_or(0, |v| v.len());
        if bytes > max {
            event.data = json!({"truncated": true, "bytes": bytes});
            crate::caps::refused("event_bytes");
        }
    }
}

/// The SSE frame of an event.
pub(crate) fn sse(event: &Event) -> Bytes {
    let mut data = match &event.data {
        Value::Object(map) => map.clone(),
        other => {
            let mut map = serde_json::Map::new();
            map.insert("value".into(), other.clone());
            map
        }
    };
    data.insert("seq".into(), json!(event.seq));
    data.insert("timestamp".into(), json!(event.timestamp));
    if let Some(id) = event.execution_id {
        data.insert("execution_id".into(), json!(id));
    }
    if let Some(id) = event.task_id {
        data.insert("task_id".into(), json!(id));
    }
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.seq,
        event.event_type,
        Value::Object(data)
    ))
}

/// The WebSocket envelope of an event matched by `subscription` (seed 002's
/// `{type, task_id, timestamp, data}` plus `seq`, `execution_id`, `subscription`).
pub(crate) fn ws(subscription: &str, event: &Event) -> String {
    json!({
        "type": event.event_type,
        "seq": event.seq,
        "subscription": subscription,
        "execution_id": event.execution_id,
        "task_id": event.task_id,
        "timestamp": event.timestamp,
        "data": event.data,
    })
    .to_string()
}
