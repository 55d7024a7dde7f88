//! `courier exec wait`: follows an execution over the SSE event stream and renders
//! it in the terminal (seed 002's progress renderer): `task.progress` events move
//! a progress bar and set its message, the other events print as lines above it,
//! and the terminal event finishes it with the result or the error.
//!
//! When the stream ends before a terminal event (a restart, a proxy's timeout, a
//! silent connection) it reconnects with `Last-Event-ID`, so nothing is missed or
//! shown twice; before each reconnect it also asks for the execution's state, in
//! case its terminal event is no longer in the log.

use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use courier_core::{ExecutionRecord, ExecutionState, parse_duration};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use reqwest::header::ACCEPT;
use serde_json::Value;

use super::exec::{ExecutionDetail, error_line, took};
use super::render::{self, scalar};
use super::{Client, ClientError, ClientResult, api_error, check_id, decode, print_json};

/// Exit code when the execution failed, timed out or was cancelled.
pub const EXIT_FAILED: i32 = 2;
/// Exit code when `--timeout` ran out first.
pub const EXIT_TIMEOUT: i32 = 3;

/// A stream silent for this long (the server sends keepalives every 15 s by
/// default) is taken as dead and reopened.
const IDLE: Duration = Duration::from_secs(75);
/// Consecutive failed connection attempts before giving up (about a minute).
const MAX_FAILURES: u32 = 15;

/// Follows execution `id` until it finishes (or `timeout` runs out).
pub async fn wait(client: &Client, id: &str, timeout: Option<&str>) -> ClientResult<()> {
    check_id("execution", id)?;
    let limit = timeout
        .map(|t| parse_duration(t).map_err(|e| ClientError::Other(format!("--timeout: {e}"))))
        .transpose()?;
    let mut view = View::new(id, client.json);
    let followed = match limit {
        Some(limit) => tokio::time::timeout(limit, follow(client, id, &mut view)).await.ok(),
        None => Some(follow(client, id, &mut view).await),
    };
    match followed {
        None => {
            view.give_up(timeout.unwrap_or_default());
            Err(ClientError::Exit(EXIT_TIMEOUT))
        }
        Some(Err(e)) => {
            view.abandon();
            Err(e)
        }
        Some(Ok((execution, raw))) => view.finish(&execution, &raw),
    }
}

/// The execution now, with its record as the server wrote it (for `--json`).
async fn fetch(client: &Client, id: &str) -> ClientResult<(ExecutionDetail, Value)> {
    let answer = client.get(&["v1", "executions", id], &[]).await?;
    let raw = answer.get("execution").cloned().unwrap_or(Value::Null);
    Ok((decode(answer)?, raw))
}

/// Streams events until the execution's terminal one, reconnecting as needed;
/// then returns the execution as it ended.
async fn follow(client: &Client, id: &str, view: &mut View) -> ClientResult<(ExecutionRecord, Value)> {
    let (detail, raw) = fetch(client, id).await?;
    view.start(&detail.execution);
    if detail.execution.state.is_terminal() {
        return Ok((detail.execution, raw));
    }
    let mut last_seq: Option<i64> = None;
    let mut failures = 0u32;
    loop {
        let mut connected = false;
        match stream_once(client, id, &mut last_seq, view, &mut connected).await {
            Ok(true) => {
                let (detail, raw) = fetch(client, id).await?;
                return Ok((detail.execution, raw));
            }
            Ok(false) => failures = 0,
            Err(e @ ClientError::Unreachable { .. }) => {
                failures = if connected { 0 } else { failures + 1 };
                if failures >= MAX_FAILURES {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        if failures == 0 {
            view.note("event stream closed; reconnecting");
        }
        tokio::time::sleep(backoff(failures)).await;
        match fetch(client, id).await {
            Ok((detail, raw)) if detail.execution.state.is_terminal() => {
                // It ended while we were away: show what we missed, if the log still has it.
                let _ = catch_up(client, id, last_seq, view).await;
                return Ok((detail.execution, raw));
            }
            Ok(_) => {}
            Err(ClientError::Unreachable { .. }) if failures + 1 < MAX_FAILURES => failures += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Shows the events after `last_seq` from the polling API (a few pages at most).
async fn catch_up(client: &Client, id: &str, last_seq: Option<i64>, view: &mut View) -> ClientResult<()> {
    let mut after = last_seq.unwrap_or(0);
    for _ in 0..10 {
        let page = client
            .get(
                &["v1", "events"],
                &[
                    ("execution_id", Some(id.to_string())),
                    ("after", Some(after.to_string())),
                    ("limit", Some("1000".into())),
                ],
            )
            .await?;
        let events: Vec<courier_core::Event> = decode(page.get("events").cloned().unwrap_or(Value::Null))?;
        for event in &events {
            let mut data = match &event.data {
                Value::Object(map) => map.clone(),
                _ => serde_json::Map::new(),
            };
            data.insert("seq".into(), event.seq.into());
            data.insert("timestamp".into(), Value::String(event.timestamp.to_rfc3339()));
            view.event(event.event_type.as_str(), &Value::Object(data));
            after = after.max(event.seq);
        }
        if events.is_empty() || page.get("has_more").and_then(Value::as_bool) != Some(true) {
            break;
        }
    }
    Ok(())
}

/// The pause before reconnecting after `failures` failed attempts in a row.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis((250u64 << failures.min(5)).min(5000))
}

/// Reads one connection of the stream. `Ok(true)` once a terminal event arrived,
/// `Ok(false)` when the stream ended without one.
async fn stream_once(
    client: &Client,
    id: &str,
    last_seq: &mut Option<i64>,
    view: &mut View,
    connected: &mut bool,
) -> ClientResult<bool> {
    let mut url = client.url(&["v1", "events", "stream"]);
    url.query_pairs_mut()
        .append_pair("execution_id", id)
        .append_pair("after", "0");
    let mut request = client.request(Method::GET, url).header(ACCEPT, "text/event-stream");
    if let Some(seq) = last_seq {
        request = request.header("Last-Event-ID", seq.to_string());
    }
    let mut response = client.send(request).await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        return Err(api_error(status, &body));
    }
    *connected = true;
    let mut parser = SseParser::default();
    loop {
        let chunk = match tokio::time::timeout(IDLE, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            // Ended, broke, or went silent: reconnect.
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return Ok(false),
        };
        for frame in parser.push(&chunk) {
            if let Some(seq) = frame.id.as_deref().and_then(|s| s.trim().parse::<i64>().ok()) {
                *last_seq = Some(seq);
            }
            match frame.event.as_deref() {
                // The server is going away; the stream closes after this.
                Some("shutdown") => return Ok(false),
                // The server caught us up from the log; nothing to show.
                Some("lagged") | None => {}
                Some(kind) => {
                    let data = serde_json::from_str(&frame.data).unwrap_or(Value::Null);
                    if view.event(kind, &data) {
                        return Ok(true);
                    }
                }
            }
        }
    }
}

/// One Server-Sent Events frame.
#[derive(Debug, Default, PartialEq)]
pub struct Frame {
    /// `id:`.
    pub id: Option<String>,
    /// `event:`.
    pub event: Option<String>,
    /// The `data:` lines, joined with newlines.
    pub data: String,
}

/// Splits a byte stream into SSE frames (blank-line separated; `\n` or `\r\n`).
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
}

impl SseParser {
    /// Feeds bytes; returns the frames completed by them (comments and empty frames skipped).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        self.buffer.extend(bytes.iter().copied().filter(|b| *b != b'\r'));
        let mut frames = Vec::new();
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block[..end]);
            let mut frame = Frame::default();
            let mut data: Vec<&str> = Vec::new();
            for line in text.split('\n') {
                if line.is_empty() || line.starts_with(':') {
                    continue;
                }
                let (field, value) = match line.split_once(':') {
                    Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                    None => (line, ""),
                };
                match field {
                    "id" => frame.id = Some(value.to_string()),
                    "event" => frame.event = Some(value.to_string()),
                    "data" => data.push(value),
                    _ => {}
                }
            }
            frame.data = data.join("\n");
            if frame.id.is_some() || frame.event.is_some() || !frame.data.is_empty() {
                frames.push(frame);
            }
        }
        frames
    }
}

/// What the user sees: a bar on stderr (drawn only on a terminal) and lines on
/// stdout; nothing but the final record with `--json`.
struct View {
    id: String,
    bar: Option<ProgressBar>,
    state: Option<ExecutionState>,
}

impl View {
    fn new(id: &str, json: bool) -> View {
        let bar = (!json).then(|| {
            let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner:.green} {prefix:.bold} [{elapsed_precise}] [{bar:40.cyan/blue}] {pos:>3}% {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        View {
            id: id.to_string(),
            bar,
            state: None,
        }
    }

    /// Prints a line above the bar.
    fn line(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.suspend(|| println!("{text}"));
        }
    }

    /// Prints a note (to stderr) above the bar.
    fn note(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.suspend(|| eprintln!("courier: {text}"));
        }
    }

    fn start(&mut self, execution: &ExecutionRecord) {
        self.state = Some(execution.state);
        if let Some(bar) = &self.bar {
            bar.set_prefix(execution.function.clone());
        }
        self.line(&format!(
            "execution {} ({}) is {}",
            self.id, execution.function, execution.state
        ));
    }

    /// Shows one event; true if it is the execution's terminal one.
    fn event(&mut self, kind: &str, data: &Value) -> bool {
        match kind {
            "execution.completed" => self.state = Some(ExecutionState::Completed),
            "execution.failed" => self.state = Some(ExecutionState::Failed),
            "execution.timed_out" => self.state = Some(ExecutionState::TimedOut),
            "execution.cancelled" => self.state = Some(ExecutionState::Cancelled),
            "execution.started" | "execution.resumed" => self.state = Some(ExecutionState::Running),
            _ => {}
        }
        let terminal = matches!(
            kind,
            "execution.completed" | "execution.failed" | "execution.timed_out" | "execution.cancelled"
        );
        let Some(bar) = &self.bar else {
            return terminal;
        };
        match kind {
            "task.heartbeat" => bar.tick(),
            "task.progress" => {
                if let Some(percent) = data.get("percent").and_then(Value::as_f64) {
                    bar.set_position(percent.clamp(0.0, 100.0).round() as u64);
                }
                if let Some(message) = data.get("message").and_then(Value::as_str) {
                    bar.set_message(message.to_string());
                }
                if bar.is_hidden() {
                    self.line(&event_line(kind, data));
                }
            }
            // The outcome is printed in full by `finish`.
            _ if terminal => {}
            _ => self.line(&event_line(kind, data)),
        }
        terminal
    }

    /// The execution finished: the result (exit 0) or the error (exit 2).
    fn finish(self, execution: &ExecutionRecord, raw: &Value) -> ClientResult<()> {
        let completed = execution.state == ExecutionState::Completed;
        match &self.bar {
            Some(bar) if completed => {
                bar.set_position(100);
                bar.finish_with_message("done");
            }
            Some(bar) => bar.abandon_with_message(execution.state.to_string()),
            None => print_json(raw),
        }
        self.end_bar_line();
        let took = match took(execution) {
            t if t.is_empty() => String::new(),
            t => format!(" in {t}"),
        };
        if completed {
            if self.bar.is_some() {
                println!("execution {} completed{took}", self.id);
                let result = execution.result.clone().unwrap_or(Value::Null);
                let compact = result.to_string();
                if compact.len() <= 100 {
                    println!("result: {compact}");
                } else {
                    println!("result:\n{}", render::pretty(&result));
                }
            }
            return Ok(());
        }
        let error = match &execution.error {
            Some(error) => format!(": {}", error_line(error)),
            None => String::new(),
        };
        eprintln!("courier: execution {} {}{took}{error}", self.id, execution.state);
        Err(ClientError::Exit(EXIT_FAILED))
    }

    /// `--timeout` ran out.
    fn give_up(self, timeout: &str) {
        if let Some(bar) = &self.bar {
            bar.abandon_with_message("gave up waiting");
        }
        self.end_bar_line();
        let state = self.state.map(|s| format!(" (it is {s})")).unwrap_or_default();
        eprintln!(
            "courier: gave up waiting for execution {} after {}{state}",
            self.id,
            timeout.trim()
        );
    }

    /// An error ends the wait.
    fn abandon(self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
        self.end_bar_line();
    }

    /// A bar left on screen keeps the cursor at its end: move to the next line
    /// so that what follows does not run on from it.
    fn end_bar_line(&self) {
        if let Some(bar) = &self.bar
            && !bar.is_hidden()
        {
            eprintln!();
        }
    }
}

/// One event as a line: local time, type, and what happened.
fn event_line(kind: &str, data: &Value) -> String {
    let at = data
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    format!(
        "{}  {kind:<19} {}",
        at.with_timezone(&Local).format("%H:%M:%S"),
        describe(kind, data)
    )
    .trim_end()
    .to_string()
}

/// What an event's data says, in a few words.
fn describe(kind: &str, data: &Value) -> String {
    let get = |key: &str| data.get(key).filter(|v| !v.is_null()).map(scalar).unwrap_or_default();
    let function = get("function");
    match kind {
        "task.created" => format!("{function} (step {}, {})", get("step"), get("kind")),
        "task.queued" => format!("{function} ({}, attempt {})", get("reason"), get("attempt")),
        "task.started" => format!("{function} (attempt {}, worker {})", get("attempt"), get("worker")),
        "task.progress" => {
            let mut parts = Vec::new();
            if let Some(percent) = data.get("percent").and_then(Value::as_f64) {
                parts.push(format!("{percent:.0}%"));
            }
            for key in ["step", "status", "message"] {
                let value = get(key);
                if !value.is_empty() {
                    parts.push(value);
                }
            }
            parts.join(" ")
        }
        "task.checkpoint" => "checkpoint saved".into(),
        "task.completed" => format!("{function} (attempt {})", get("attempt")),
        "task.failed" => {
            let message = data
                .get("error")
                .map(|e| e.get("message").map(scalar).unwrap_or_else(|| scalar(e)))
                .unwrap_or_default();
            let next = if data.get("will_retry").and_then(Value::as_bool) == Some(true) {
                match data.get("retry_in_ms").and_then(Value::as_i64) {
                    Some(ms) => format!("retrying in {}", render::elapsed(ms)),
                    None => "will retry".into(),
                }
            } else {
                "no retry".into()
            };
            format!("{function} (attempt {}): {message} ({next})", get("attempt"))
        }
        "task.stuck" => format!("{function}: no heartbeat since {}", get("heartbeat_at")),
        "task.cancelled" | "execution.cancelled" => format!("{function}: {}", get("reason")),
        "execution.created" => format!("{function} (queue {})", get("queue")),
        _ => function,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_parsed_across_chunks() {
        let mut parser = SseParser::default();
        assert!(
            parser
                .push(b": connected\n\nid: 7\nevent: task.progress\nda")
                .is_empty()
        );
        let frames = parser.push(b"ta: {\"percent\":50}\r\n\r\nevent: lagged\ndata: {}\n\n");
        assert_eq!(
            frames,
            vec![
                Frame {
                    id: Some("7".into()),
                    event: Some("task.progress".into()),
                    data: "{\"percent\":50}".into()
                },
                Frame {
                    id: None,
                    event: Some("lagged".into()),
                    data: "{}".into()
                },
            ]
        );
    }

    #[test]
    fn events_are_described() {
        let data = serde_json::json!({"percent": 50.0, "message": "half"});
        assert_eq!(describe("task.progress", &data), "50% half");
        let data = serde_json::json!({"function": "f", "attempt": 1, "error": {"kind": "error", "message": "boom"},
            "will_retry": true, "retry_in_ms": 1500});
        assert_eq!(describe("task.failed", &data), "f (attempt 1): boom (retrying in 1.5s)");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(1000));
        assert_eq!(backoff(10), Duration::from_millis(5000));
    }
}
