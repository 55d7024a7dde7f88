//! `GET /v1/stats`: the last hour of the cluster, minute by minute, as the
//! dashboard's overview draws it: executions dispatched, completed and failed,
//! dispatch→start latency, each queue's depth, and who holds running tasks.
//!
//! The node keeps it in memory rather than querying the store for it: the
//! node's `LogTail` already reads every event the cluster appends, so it hands
//! each batch to [`Stats::record`], and a `QueueSampler` reads the queues'
//! depths every [`SAMPLE`]. What happened before the node started is not there
//! (the answer's `since` says from when it counts). Courier's own executions
//! (`courier.*`) are left out, as the public feeds leave them out.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use courier_core::{Event, EventType, ExecutionId, QueueDepth, Store, TaskFilter, TaskRecord, TaskState};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Http;
use crate::error::{ApiResult, StoreError, Unavailable};
use crate::routes::Routes;

/// Minutes kept.
const WINDOW: usize = 60;
/// How often the queues' depths are read.
pub(crate) const SAMPLE: Duration = Duration::from_secs(10);
/// Executions whose start is still awaited, remembered to time their latency;
/// past this the oldest are forgotten (their latency is not measured).
const AWAITED: usize = 100_000;
/// Running tasks read to tell who holds what.
const HELD_READ: u32 = 1000;
/// Latencies kept per minute for its percentiles (a uniform sample past it).
const LATENCIES_PER_MINUTE: usize = 2_000;

/// Adds the route.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes.add(__path_get, get)
}

/// The node's counts; shared by the tail (which records), the sampler and the handler.
#[derive(Default)]
pub(crate) struct Stats {
    inner: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    since: Option<DateTime<Utc>>,
    minutes: VecDeque<Minute>,
    /// Creation time of executions not started yet, oldest first.
    awaited: HashMap<ExecutionId, DateTime<Utc>>,
    awaited_order: VecDeque<ExecutionId>,
    /// Latencies seen, for the reservoir sample of each minute.
    rng: u64,
}

struct Minute {
    at: DateTime<Utc>,
    dispatched: u64,
    completed: u64,
    failed: u64,
    /// Dispatch→start latencies (ms) of executions that started in this minute.
    latencies: Vec<u32>,
    started: u64,
    /// The last depth read in this minute, per queue.
    queues: BTreeMap<String, QueueDepth>,
}

impl Minute {
    fn new(at: DateTime<Utc>) -> Self {
        Minute {
            at,
            dispatched: 0,
            completed: 0,
            failed: 0,
            latencies: Vec::new(),
            started: 0,
            queues: BTreeMap::new(),
        }
    }
}

fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

impl Window {
    /// The bucket of `at`, made (with empty ones for any minutes between) if it
    /// is newer than the newest; `None` if it is older than the window.
    fn bucket(&mut self, at: DateTime<Utc>) -> Option<&mut Minute> {
        let at = minute_of(at);
        self.since.get_or_insert(at);
        let newest = self.minutes.back().map(|m| m.at);
        match newest {
            Some(newest) if at <= newest => {
                let back = ((newest - at).num_minutes()) as usize;
                let len = self.minutes.len();
                (back < len).then(|| &mut self.minutes[len - 1 - back])
            }
            _ => {
                let mut next = newest.map_or(at, |n| n + TimeDelta::minutes(1));
                // A long quiet spell: only the last window's minutes matter.
                if (at - next).num_minutes() >= WINDOW as i64 {
                    next = at - TimeDelta::minutes(WINDOW as i64 - 1);
                }
                while next <= at {
                    self.minutes.push_back(Minute::new(next));
                    next += TimeDelta::minutes(1);
                }
                while self.minutes.len() > WINDOW {
                    self.minutes.pop_front();
                }
                self.minutes.back_mut()
            }
        }
    }

    fn remember(&mut self, id: ExecutionId, at: DateTime<Utc>) {
        if self.awaited.insert(id, at).is_none() {
            self.awaited_order.push_back(id);
        }
        while self.awaited.len() > AWAITED {
            if let Some(old) = self.awaited_order.pop_front() {
                self.awaited.remove(&old);
            }
        }
        // Ids started since are dropped from the map but not the queue: keep
        // the queue from growing past twice the map.
        if self.awaited_order.len() > 2 * AWAITED {
            let awaited = &self.awaited;
            self.awaited_order.retain(|id| awaited.contains_key(id));
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift: a reservoir sample needs no more.
        let mut x = self.rng.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

impl Stats {
    /// Counts a batch of the log.
    pub(crate) fn record(&self, events: &[Event]) {
        let mut window = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for event in events.iter().filter(|e| !e.internal) {
            let (Some(id), at) = (event.execution_id, event.timestamp) else {
                continue;
            };
            match event.event_type {
                EventType::ExecutionCreated => {
                    window.remember(id, at);
                    if let Some(m) = window.bucket(at) {
                        m.dispatched += 1;
                    }
                }
                EventType::ExecutionCompleted => {
                    if let Some(m) = window.bucket(at) {
                        m.completed += 1;
                    }
                }
                EventType::ExecutionFailed | EventType::ExecutionTimedOut => {
                    window.remember_gone(id);
                    if let Some(m) = window.bucket(at) {
                        m.failed += 1;
                    }
                }
                EventType::ExecutionCancelled => window.remember_gone(id),
                EventType::TaskStarted => {
                    let Some(created) = window.awaited.remove(&id) else {
                        continue;
                    };
                    let ms = (at - created).num_milliseconds().clamp(0, i64::from(u32::MAX)) as u32;
                    let r = window.next_random();
                    if let Some(m) = window.bucket(at) {
                        m.started += 1;
                        if m.latencies.len() < LATENCIES_PER_MINUTE {
                            m.latencies.push(ms);
                        } else {
                            let slot = (r % m.started) as usize;
                            if slot < LATENCIES_PER_MINUTE {
                                m.latencies[slot] = ms;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Records the queues' depths read at `at`.
    pub(crate) fn sample_queues(&self, at: DateTime<Utc>, depths: Vec<QueueDepth>) {
        let mut window = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = window.bucket(at) {
            m.queues = depths
                .into_iter()
                .filter(|d| !d.queue.starts_with(courier_core::INTERNAL_PREFIX))
                .map(|d| (d.queue.clone(), d))
                .collect();
        }
    }

    fn report(&self, now: DateTime<Utc>) -> StatsReport {
        let mut window = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // The window ends now, even if nothing happened lately.
        window.bucket(now);
        let since = window.since;
        let minutes: Vec<&Minute> = window.minutes.iter().collect();
        let mut queue_names: Vec<String> = minutes.iter().flat_map(|m| m.queues.keys().cloned()).collect();
        queue_names.sort();
        queue_names.dedup();
        let queues = queue_names
            .into_iter()
            .map(|name| {
                let points = minutes
                    .iter()
                    .map(|m| {
                        m.queues.get(&name).map(|d| QueuePoint {
                            ready: d.ready,
                            scheduled: d.scheduled,
                            running: d.running,
                        })
                    })
                    .collect();
                (name, points)
            })
            .collect();
        let recent: Vec<u32> = minutes
            .iter()
            .rev()
            .take(5)
            .flat_map(|m| m.latencies.iter().copied())
            .collect();
        let hour: Vec<u32> = minutes.iter().flat_map(|m| m.latencies.iter().copied()).collect();
        StatsReport {
            since,
            minutes: minutes.iter().map(|m| m.at).collect(),
            dispatched: minutes.iter().map(|m| m.dispatched).collect(),
            completed: minutes.iter().map(|m| m.completed).collect(),
            failed: minutes.iter().map(|m| m.failed).collect(),
            start_latency_ms: Percentiles {
                last_5m: percentiles(recent),
                last_hour: percentiles(hour),
            },
            queues,
            dead_letters: 0,
            holders: Vec::new(),
            streams: StreamCounts::default(),
            ingest: None,
        }
    }
}

impl Window {
    fn remember_gone(&mut self, id: ExecutionId) {
        self.awaited.remove(&id);
    }
}

fn percentiles(mut ms: Vec<u32>) -> Option<LatencyPercentiles> {
    if ms.is_empty() {
        return None;
    }
    ms.sort_unstable();
    // Nearest rank: the smallest value at or above a share q of them.
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    Some(LatencyPercentiles {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: ms[ms.len() - 1],
        count: ms.len() as u64,
    })
}

/// `GET /v1/stats` answer: parallel arrays, one entry per minute, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    description = "The last hour of the cluster as this node counted it, one entry per minute, oldest first (the last is the minute now running).",
    example = json!({
        "since": "2026-12-05T00:40:00Z",
        "minutes": ["2026-12-05T00:41:00Z", "2026-12-05T00:42:00Z"],
        "dispatched": [120, 96], "completed": [118, 90], "failed": [2, 1],
        "start_latency_ms": {"last_5m": {"p50": 3, "p90": 9, "p99": 41, "max": 60, "count": 210}, "last_hour": null},
        "queues": {"images": [{"ready": 4, "scheduled": 0, "running": 2}, null]},
        "dead_letters": 3,
        "holders": [{"owner": "external:py-worker-1", "running": 2, "functions": ["resize"]}],
        "streams": {"events": 12, "notifications": 340},
        "ingest": {"in_flight": 3, "capacity": 1024, "dead_lettered": 1,
                   "inputs": [{"input": "http", "accepted": 1200, "refused": 4}, {"input": "stream", "accepted": 88000, "refused": 1}]}
    })
)]
pub(crate) struct StatsReport {
    /// The minute the node began counting (nothing before it is known here).
    pub since: Option<DateTime<Utc>>,
    /// The minutes, oldest first.
    pub minutes: Vec<DateTime<Utc>>,
    /// Executions dispatched in each minute.
    pub dispatched: Vec<u64>,
    /// Executions completed in each minute.
    pub completed: Vec<u64>,
    /// Executions failed or timed out in each minute.
    pub failed: Vec<u64>,
    /// Dispatch→start latency of executions that started in the last five
    /// minutes and in the last hour.
    pub start_latency_ms: Percentiles,
    /// Each queue's depth as last read in each minute (`null`: not read then).
    pub queues: BTreeMap<String, Vec<Option<QueuePoint>>>,
    /// Dead letters waiting now.
    pub dead_letters: u64,
    /// Who holds running tasks now (nodes by their id, outside workers as
    /// `external:<worker id>`), most first; from at most [`HELD_READ`] running tasks.
    pub holders: Vec<Holder>,
    /// Streams open on this node now.
    pub streams: StreamCounts,
    /// Ingestion on this node since it started (`null`: not configured here).
    pub ingest: Option<IngestReport>,
}

/// Streams open on this node.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct StreamCounts {
    /// Event streams (SSE and WebSocket).
    pub events: u64,
    /// Notification streams (browsers).
    pub notifications: u64,
}

/// What this node's ingestion did since it started.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IngestReport {
    /// Messages taken in whose delivery execution is not committed yet.
    pub in_flight: u64,
    /// The most that may wait (`ingest.queue_size`); past it inputs are refused or slowed.
    pub capacity: u64,
    /// Stream entries moved to the dead-letter stream (`<stream>:dead`).
    pub dead_lettered: u64,
    /// Each input that has seen a message, by name.
    pub inputs: Vec<InputReport>,
}

/// One ingestion input's counts since the node started.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InputReport {
    /// `http`, `tcp`, `stream` or `pubsub`.
    pub input: String,
    /// Messages whose delivery execution was committed.
    pub accepted: u64,
    /// Messages refused (invalid, too large, queue full, ...).
    pub refused: u64,
}

/// A node or worker holding running tasks.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Holder {
    /// The lease owner: a node's id, or `external:<worker id>`.
    pub owner: String,
    /// Running tasks it holds.
    pub running: u64,
    /// The functions of those tasks, by name.
    pub functions: Vec<String>,
}

/// Latency percentiles over two spans.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Percentiles {
    /// Over the last five minutes (`null`: nothing started).
    pub last_5m: Option<LatencyPercentiles>,
    /// Over the last hour (`null`: nothing started).
    pub last_hour: Option<LatencyPercentiles>,
}

/// Percentiles of a latency, in milliseconds.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LatencyPercentiles {
    /// Median.
    pub p50: u32,
    /// 90th percentile.
    pub p90: u32,
    /// 99th percentile.
    pub p99: u32,
    /// Longest.
    pub max: u32,
    /// How many were measured.
    pub count: u64,
}

/// A queue's depth at one reading.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueuePoint {
    /// Pending and due.
    pub ready: u64,
    /// Pending, not due yet.
    pub scheduled: u64,
    /// Running.
    pub running: u64,
}

/// The last hour of the cluster, minute by minute.
#[utoipa::path(
    get, path = "/v1/stats", operation_id = "getStats", tag = "node",
    summary = "The last hour of the cluster, minute by minute: executions dispatched, completed and failed, dispatch→start latency, queue depths, dead letters.",
    description = "Counted in memory by the answering node from the event log it follows, since it started (`since`); the dashboard's overview draws it.",
    responses(
        (status = 200, description = "The counts.", body = StatsReport),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn get(http: web::Data<Http>) -> ApiResult<HttpResponse> {
    let store = http.courier().store();
    let now = store.now().await?;
    let mut report = http.stats().report(now);
    report.dead_letters = store.count_dead_letters().await?;
    let running = store
        .list_tasks(&TaskFilter {
            state: Some(TaskState::Running),
            limit: HELD_READ,
            ..TaskFilter::default()
        })
        .await?;
    report.holders = holders(running);
    report.streams = StreamCounts {
        events: http.event_streams().await as u64,
        notifications: http.notification_streams().await as u64,
    };
    report.ingest = http.ingest().map(|ingest| {
        let intake = ingest.intake();
        IngestReport {
            in_flight: intake.in_flight() as u64,
            capacity: intake.capacity() as u64,
            dead_lettered: intake.dead_letter_count(),
            inputs: intake
                .counts()
                .into_iter()
                .map(|(input, c)| InputReport {
                    input: input.to_string(),
                    accepted: c.accepted,
                    refused: c.refused,
                })
                .collect(),
        }
    });
    Ok(HttpResponse::Ok().json(report))
}

/// Running tasks grouped by their lease owner, most first.
fn holders(running: Vec<TaskRecord>) -> Vec<Holder> {
    let mut by_owner: BTreeMap<String, (u64, BTreeSet<String>)> = BTreeMap::new();
    for task in running {
        let Some(owner) = task.lease_owner else { continue };
        let entry = by_owner.entry(owner).or_default();
        entry.0 += 1;
        entry.1.insert(task.function);
    }
    let mut holders: Vec<Holder> = by_owner
        .into_iter()
        .map(|(owner, (running, functions))| Holder {
            owner,
            running,
            functions: functions.into_iter().collect(),
        })
        .collect();
    holders.sort_by(|a, b| b.running.cmp(&a.running).then_with(|| a.owner.cmp(&b.owner)));
    holders
}

/// Reads the queues' depths every [`SAMPLE`] into the node's [`Stats`].
pub(crate) struct QueueSampler {
    store: Arc<dyn Store>,
    stats: Arc<Stats>,
    reading: bool,
}

impl QueueSampler {
    pub(crate) fn new(store: Arc<dyn Store>, stats: Arc<Stats>) -> Self {
        QueueSampler {
            store,
            stats,
            reading: false,
        }
    }

    fn sample(&mut self, ctx: &mut Context<Self>) {
        if self.reading {
            return;
        }
        self.reading = true;
        let store = self.store.clone();
        async move { Ok::<_, courier_core::StoreError>((store.now().await?, store.queue_depths().await?)) }
            .into_actor(self)
            .map(|read, act, _| {
                act.reading = false;
                match read {
                    Ok((now, depths)) => act.stats.sample_queues(now, depths),
                    Err(e) => tracing::debug!(error = %e, "could not read the queues' depths for /v1/stats"),
                }
            })
            .spawn(ctx);
    }
}

impl Actor for QueueSampler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sample(ctx);
        ctx.run_interval(SAMPLE, |act, ctx| act.sample(ctx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: EventType, id: ExecutionId, at: DateTime<Utc>) -> Event {
        Event {
            seq: 0,
            event_type: kind,
            execution_id: Some(id),
            task_id: None,
            timestamp: at,
            data: json!({}),
            internal: false,
        }
    }

    #[test]
    fn counts_land_in_their_minutes_and_latency_is_dispatch_to_first_start() {
        let stats = Stats::default();
        let t0 = "2026-12-05T10:00:10Z".parse::<DateTime<Utc>>().unwrap();
        let (a, b, c) = (ExecutionId::new(), ExecutionId::new(), ExecutionId::new());
        let mut internal = event(EventType::ExecutionCreated, ExecutionId::new(), t0);
        internal.internal = true;
        stats.record(&[
            event(EventType::ExecutionCreated, a, t0),
            event(EventType::ExecutionCreated, b, t0),
            internal,
            event(EventType::TaskStarted, a, t0 + TimeDelta::milliseconds(40)),
            // A second start (a retry) is not a second latency.
            event(EventType::TaskStarted, a, t0 + TimeDelta::seconds(5)),
        ]);
        stats.record(&[
            event(EventType::ExecutionCompleted, a, t0 + TimeDelta::seconds(70)),
            event(EventType::TaskStarted, b, t0 + TimeDelta::seconds(62)),
            event(EventType::ExecutionFailed, b, t0 + TimeDelta::seconds(80)),
            event(EventType::ExecutionCreated, c, t0 + TimeDelta::minutes(3)),
        ]);
        let report = stats.report(t0 + TimeDelta::minutes(3));
        assert_eq!(report.minutes.len(), 4);
        assert_eq!(report.dispatched, [2, 0, 0, 1]);
        assert_eq!(report.completed, [0, 1, 0, 0]);
        assert_eq!(report.failed, [0, 1, 0, 0]);
        let hour = report.start_latency_ms.last_hour.expect("two measured");
        assert_eq!((hour.count, hour.p50, hour.max), (2, 40, 62_000));
    }

    #[test]
    fn the_window_keeps_the_last_hour_and_queues_per_minute() {
        let stats = Stats::default();
        let t0 = "2026-12-05T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let depth = |ready| QueueDepth {
            queue: "images".into(),
            ready,
            scheduled: 0,
            running: 1,
        };
        stats.sample_queues(t0, vec![depth(5)]);
        stats.sample_queues(t0 + TimeDelta::seconds(30), vec![depth(7)]);
        let later = t0 + TimeDelta::minutes(90);
        stats.sample_queues(later, vec![depth(1)]);
        let report = stats.report(later);
        assert_eq!(report.minutes.len(), WINDOW);
        assert_eq!(report.minutes[WINDOW - 1], later);
        let images = &report.queues["images"];
        assert_eq!(images.len(), WINDOW);
        assert!(
            images[..WINDOW - 1].iter().all(Option::is_none),
            "the first minutes fell out"
        );
        assert_eq!(images[WINDOW - 1].as_ref().map(|p| p.ready), Some(1));
        assert_eq!(report.since, Some(t0));
    }
}
