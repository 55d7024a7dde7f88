//! Options: per function, per dispatch, per worker, per runtime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use courier_core::{
    ConcurrencyKey, DEFAULT_QUEUE, FunctionRecord, FunctionSettings, RateLimit, RetryPolicy, TaskKind, TaskSpec,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Computes an idempotency key from a call's arguments.
pub type KeyFn = Arc<dyn Fn(&Value) -> String + Send + Sync>;

/// How a registered function's tasks are routed, retried and limited.
///
/// ```
/// use std::time::Duration;
/// use courier_runtime::FunctionOptions;
/// let opts = FunctionOptions::default()
///     .queue("payments")
///     .max_attempts(5)
///     .max_concurrent(2)
///     .cached(Some(Duration::from_secs(60)))
///     .idempotent(|args| args["order_id"].to_string());
/// assert_eq!(opts.max_concurrent, Some(2));
/// ```
#[derive(Clone, Default)]
pub struct FunctionOptions {
    /// Retry policy (persisted with each task). Defaults: activities
    /// [`RetryPolicy::default`], orchestrators [`RetryPolicy::no_retry`].
    pub retry: Option<RetryPolicy>,
    /// Queue (default `default`).
    pub queue: Option<String>,
    /// Routing tags.
    pub tags: Vec<String>,
    /// Priority (higher first, each level worth the store's priority ageing
    /// of waiting: see [`courier_core::PriorityAgeing`]).
    pub priority: i32,
    /// Cluster-wide cap on running tasks of this function.
    pub max_concurrent: Option<u32>,
    /// Cache results by arguments; `Some(None)` caches forever.
    pub cache: Option<Option<Duration>>,
    /// Run once per key: a second call with the same key returns the first result.
    pub idempotency_key: Option<KeyFn>,
    /// Per-attempt time limit of an activity.
    pub timeout: Option<Duration>,
    /// Version recorded with each task. An orchestrator's execution is only
    /// replayed by nodes registering the version it started under (when both name one).
    pub version: Option<String>,
}

impl std::fmt::Debug for FunctionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionOptions")
            .field("retry", &self.retry)
            .field("queue", &self.queue)
            .field("tags", &self.tags)
            .field("priority", &self.priority)
            .field("max_concurrent", &self.max_concurrent)
            .field("cache", &self.cache)
            .field("idempotent", &self.idempotency_key.is_some())
            .field("timeout", &self.timeout)
            .field("version", &self.version)
            .finish()
    }
}

impl FunctionOptions {
    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sets the total number of attempts (keeping the rest of the policy).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        let mut retry = self.retry.unwrap_or_default();
        retry.max_attempts = attempts;
        self.retry = Some(retry);
        self
    }

    /// Routes to `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets routing tags.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Caps running tasks of this function across the cluster.
    pub fn max_concurrent(mut self, max: u32) -> Self {
        self.max_concurrent = Some(max);
        self
    }

    /// Caches results by arguments for `ttl` (forever if `None`).
    pub fn cached(mut self, ttl: Option<Duration>) -> Self {
        self.cache = Some(ttl);
        self
    }

    /// Makes calls idempotent under the key `key` computes from the arguments.
    pub fn idempotent(mut self, key: impl Fn(&Value) -> String + Send + Sync + 'static) -> Self {
        self.idempotency_key = Some(Arc::new(key));
        self
    }

    /// Limits each attempt to `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Records `version` with each task.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The spec of a task of this function with `args`.
    pub(crate) fn spec(&self, kind: TaskKind, function: &str, args: Value) -> TaskSpec {
        let retry = self.retry.clone().unwrap_or_else(|| match kind {
            TaskKind::Orchestrator => RetryPolicy::no_retry(),
            _ => RetryPolicy::default(),
        });
        TaskSpec {
            kind,
            function: function.to_string(),
            version: self.version.clone(),
            args,
            queue: self.queue.clone().unwrap_or_else(|| DEFAULT_QUEUE.to_string()),
            tags: self.tags.clone(),
            priority: self.priority,
            retry,
            delay: None,
            timeout: self.timeout,
        }
    }
}

/// Per-dispatch overrides of a function's options.
///
/// ```
/// use std::time::Duration;
/// use courier_runtime::DispatchOptions;
/// let opts = DispatchOptions::default()
///     .delay(Duration::from_secs(5))
///     .expiry(Duration::from_secs(3600))
///     .idempotency_key("signup-42");
/// assert_eq!(opts.idempotency_key.as_deref(), Some("signup-42"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DispatchOptions {
    /// Start no earlier than this from now.
    #[serde(default, with = "courier_core::serde_duration::option")]
    pub delay: Option<Duration>,
    /// Time the execution out this long after dispatch.
    #[serde(default, with = "courier_core::serde_duration::option")]
    pub expiry: Option<Duration>,
    /// Queue instead of the function's.
    #[serde(default)]
    pub queue: Option<String>,
    /// Tags instead of the function's.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Priority instead of the function's.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Deduplicates dispatches.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl DispatchOptions {
    /// Lays these options over a function's spec (the expiry and idempotency key
    /// belong to the execution, not the spec).
    pub(crate) fn apply(&self, spec: &mut TaskSpec) {
        if let Some(queue) = &self.queue {
            spec.queue = queue.clone();
        }
        if let Some(tags) = &self.tags {
            spec.tags = tags.clone();
        }
        if let Some(priority) = self.priority {
            spec.priority = priority;
        }
        spec.delay = self.delay;
    }

    /// Delays the start.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets the expiry.
    pub fn expiry(mut self, expiry: Duration) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// Routes to `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets tags.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// How an idle waiter or worker backs off between polls (seed 000: 0.1 s doubling to 5 s).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollBackoff {
    /// First interval.
    #[serde(with = "courier_core::serde_duration")]
    pub min: Duration,
    /// Largest interval.
    #[serde(with = "courier_core::serde_duration")]
    pub max: Duration,
    /// Growth per idle poll.
    pub factor: f64,
}

impl Default for PollBackoff {
    fn default() -> Self {
        PollBackoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(5),
            factor: 2.0,
        }
    }
}

impl PollBackoff {
    /// The interval after `current`.
    pub fn next(&self, current: Duration) -> Duration {
        let grown = current.as_secs_f64() * self.factor.max(1.0);
        Duration::from_secs_f64(grown.min(self.max.as_secs_f64()).max(self.min.as_secs_f64()))
    }
}

/// What a node's in-process worker claims and how.
///
/// ```
/// use std::time::Duration;
/// use courier_runtime::WorkerOptions;
/// let opts = WorkerOptions::default().queues(["default", "images"]).max_concurrency(32);
/// assert_eq!(opts.lease, Duration::from_secs(30));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerOptions {
    /// Queues to claim from (`None`: every queue).
    pub queues: Option<Vec<String>>,
    /// The worker's tags (`None`: claim regardless of tags).
    pub tags: Option<Vec<String>>,
    /// Activities running at once.
    pub max_concurrency: usize,
    /// Most tasks claimed in one query.
    pub claim_batch: u32,
    /// Lease length.
    pub lease: Duration,
    /// How often held leases are renewed.
    pub heartbeat: Duration,
    /// Idle polling.
    pub poll: PollBackoff,
    /// Most orchestrators held in memory at once.
    pub max_executions: usize,
    /// An orchestrator idle this long gives its slot back (durable state stays in the store).
    pub suspend_after: Duration,
    /// How long shutdown waits for running activities before releasing their leases.
    pub drain_timeout: Duration,
    /// An orchestrator claimed here but recorded under another version of its code
    /// is handed back, claimable again after this long (by a node with that version).
    pub version_backoff: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            queues: None,
            tags: None,
            max_concurrency: 256,
            claim_batch: 256,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            poll: PollBackoff::default(),
            max_executions: 10_000,
            suspend_after: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            version_backoff: Duration::from_secs(10),
        }
    }
}

impl WorkerOptions {
    /// Claims only from `queues`.
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the worker's tags.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Sets how many activities run at once.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// Sets the lease length (and a heartbeat of a third of it).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.heartbeat = lease / 3;
        self
    }

    /// Sets the heartbeat interval.
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sets idle polling.
    pub fn poll(mut self, poll: PollBackoff) -> Self {
        self.poll = poll;
        self
    }

    /// Sets when idle orchestrators are suspended.
    pub fn suspend_after(mut self, after: Duration) -> Self {
        self.suspend_after = after;
        self
    }
}

/// Background housekeeping, run by one node of the cluster at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct MaintenanceOptions {
    /// How often expiry and stuck-task checks run.
    pub interval: Duration,
    /// A running task whose heartbeat is older than this is reported stuck.
    pub stuck_after: Duration,
    /// How often old rows are cleaned up.
    pub cleanup_interval: Duration,
    /// Finished executions (and dead letters) older than this are deleted.
    pub retention: Duration,
    /// Events older than this are trimmed.
    pub event_retention: Duration,
    /// Finished idempotency keys older than this are trimmed.
    pub idempotency_retention: Duration,
}

impl Default for MaintenanceOptions {
    fn default() -> Self {
        MaintenanceOptions {
            interval: Duration::from_secs(1),
            stuck_after: Duration::from_secs(60),
            cleanup_interval: Duration::from_secs(600),
            retention: Duration::from_secs(7 * 86_400),
            event_retention: Duration::from_secs(7 * 86_400),
            idempotency_retention: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Per-function limits handed to claims.
pub(crate) type Limits = HashMap<String, u32>;

/// What applies to new tasks of a function on this node: its registration here
/// (if any), overridden field by field by the settings stored for it.
///
/// ```
/// # async fn run(courier: courier_runtime::Courier) -> Result<(), courier_runtime::RuntimeError> {
/// let applied = courier.applied_options("charge_card");
/// println!("{} on queue {} (at most {:?} at once)", applied.name, applied.queue, applied.max_concurrent);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AppliedOptions {
    /// The function.
    pub name: String,
    /// Its kind, if this node registered it (`None`: only outside workers serve it here).
    pub registered: Option<TaskKind>,
    /// Retry policy of its tasks.
    pub retry: RetryPolicy,
    /// Per-attempt time limit.
    #[serde(with = "courier_core::serde_duration::option")]
    pub timeout: Option<Duration>,
    /// Queue of its tasks.
    pub queue: String,
    /// Routing tags.
    pub tags: Vec<String>,
    /// Priority.
    pub priority: i32,
    /// Cluster-wide cap on its running tasks.
    pub max_concurrent: Option<u32>,
}

/// Every registered function's kind and options, by name, with the settings
/// stored for functions over the API laid over them: what a task of each looks
/// like. Cheap to clone (shared). The registrations are frozen when the node
/// starts; the stored settings are replaced as the node reads them again (see
/// [`crate::function_settings`]).
#[derive(Clone, Default)]
pub(crate) struct FunctionTable {
    functions: Arc<HashMap<String, (TaskKind, FunctionOptions)>>,
    stored: Arc<StoredSettings>,
}

/// The stored settings as this node last read or wrote them.
#[derive(Default)]
struct StoredSettings {
    by_name: RwLock<Arc<HashMap<String, FunctionSettings>>>,
    /// Bumped by every write this node makes, so that a reload which began
    /// before it does not put back what it replaced.
    writes: AtomicU64,
}

impl FunctionTable {
    pub(crate) fn new(functions: HashMap<String, (TaskKind, FunctionOptions)>) -> Self {
        FunctionTable {
            functions: Arc::new(functions),
            stored: Arc::default(),
        }
    }

    fn settings(&self) -> Arc<HashMap<String, FunctionSettings>> {
        self.stored.by_name.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The spec of a task of `function` with `args`: from its registration, or
    /// defaults (an activity for an external worker) if it is not registered here,
    /// with its stored settings laid over.
    pub(crate) fn spec(&self, function: &str, args: Value) -> TaskSpec {
        let mut spec = match self.functions.get(function) {
            Some((kind, options)) => options.spec(*kind, function, args),
            None => FunctionOptions::default().spec(TaskKind::Activity, function, args),
        };
        if let Some(set) = self.settings().get(function) {
            if let Some(retry) = &set.retry {
                spec.retry = retry.clone();
            }
            if set.timeout.is_some() {
                spec.timeout = set.timeout;
            }
            if let Some(queue) = &set.queue {
                spec.queue = queue.clone();
            }
            if let Some(tags) = &set.tags {
                spec.tags = tags.clone();
            }
            if let Some(priority) = set.priority {
                spec.priority = priority;
            }
        }
        spec
    }

    /// Per-function concurrency caps, for claims: the stored ones, and the
    /// registered ones where none is stored.
    pub(crate) fn limits(&self) -> Limits {
        let mut limits: Limits = self
            .functions
            .iter()
            .filter_map(|(name, (_, options))| options.max_concurrent.map(|m| (name.clone(), m)))
            .collect();
        for (name, set) in self.settings().iter() {
            if let Some(max) = set.max_concurrent {
                limits.insert(name.clone(), max);
            }
        }
        limits
    }

    /// Per-function rate limits, from the stored settings.
    pub(crate) fn rate_limits(&self) -> HashMap<String, RateLimit> {
        self.settings()
            .iter()
            .filter_map(|(name, set)| set.rate_limit.clone().map(|limit| (name.clone(), limit)))
            .collect()
    }

    /// Per-function concurrency keys, from the stored settings.
    pub(crate) fn concurrency_keys(&self) -> HashMap<String, ConcurrencyKey> {
        self.settings()
            .iter()
            .filter_map(|(name, set)| set.concurrency_key.clone().map(|key| (name.clone(), key)))
            .collect()
    }

    /// The functions paused by their stored settings: claims leave their tasks.
    pub(crate) fn paused(&self) -> Vec<String> {
        let mut paused: Vec<String> = self
            .settings()
            .iter()
            .filter(|(_, set)| set.paused == Some(true))
            .map(|(name, _)| name.clone())
            .collect();
        paused.sort();
        paused
    }

    /// What applies to new tasks of `function` here.
    pub(crate) fn applied(&self, function: &str) -> AppliedOptions {
        let spec = self.spec(function, Value::Null);
        AppliedOptions {
            name: function.to_string(),
            registered: self.functions.get(function).map(|(kind, _)| *kind),
            retry: spec.retry,
            timeout: spec.timeout,
            queue: spec.queue,
            tags: spec.tags,
            priority: spec.priority,
            max_concurrent: self.limits().remove(function),
        }
    }

    /// The functions registered here, by name.
    pub(crate) fn registered(&self) -> Vec<String> {
        let mut names: Vec<String> = self.functions.keys().cloned().collect();
        names.sort();
        names
    }

    /// How many writes of settings this node has made (see [`reload`](Self::reload)).
    pub(crate) fn writes_seen(&self) -> u64 {
        self.stored.writes.load(Ordering::SeqCst)
    }

    /// Replaces the stored settings with `records`, read from the store after
    /// `writes_seen` was [`writes_seen`](Self::writes_seen); ignored if this node
    /// wrote settings since (the read may predate that write; the next reload
    /// brings both).
    pub(crate) fn reload(&self, records: Vec<FunctionRecord>, writes_seen: u64) {
        let mut by_name = self.stored.by_name.write().unwrap_or_else(|e| e.into_inner());
        if self.stored.writes.load(Ordering::SeqCst) != writes_seen {
            return;
        }
        *by_name = Arc::new(records.into_iter().map(|r| (r.name, r.settings)).collect());
    }

    /// Applies a write this node made: `settings` now stored for `name`, or
    /// (`None`) none.
    pub(crate) fn wrote(&self, name: &str, settings: Option<FunctionSettings>) {
        let mut by_name = self.stored.by_name.write().unwrap_or_else(|e| e.into_inner());
        self.stored.writes.fetch_add(1, Ordering::SeqCst);
        let mut next = HashMap::clone(&by_name);
        match settings {
            Some(settings) => next.insert(name.to_string(), settings),
            None => next.remove(name),
        };
        *by_name = Arc::new(next);
    }
}
