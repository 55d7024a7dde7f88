//! `StoreActor`: the one door through which this node writes to the store.
//!
//! Every write is a named message here; nothing else in the node (or above it:
//! HTTP, webhooks, ingestion) writes to the store. Each write reports what it
//! changed, and [`wake`](crate::wake) publishes whom those changes wake, so the
//! places that write never decide who hears of it.
//!
//! Three lanes, so that no write waits behind one it need not:
//!
//! * **Group commit** (`Dispatch`, `CreateChildren`, `ApplyEffect`,
//!   `ReleaseLeases`, `Complete` with the delivery attempts its activity attached):
//!   the writes that come many times a second queue up; whenever no commit is in
//!   flight, everything queued goes into one [`WriteBatch`] (one transaction), so
//!   a busy node commits thousands at once and an idle one commits each at once.
//!   After the commit, settled children go straight to orchestrators live on this
//!   node. When the worker waits for work, its claim rides the first commit
//!   that makes some for it ([`ClaimOffer`]). Callers take [`Admitted`]
//!   permits before they send, so what waits here (queue, overflow, the
//!   commit in flight) never exceeds
//!   [`MAX_PENDING_WRITES`](crate::admission::MAX_PENDING_WRITES): past it,
//!   callers wait. A commit that *panics* answers its callers with an error,
//!   marks the node not ready (`/readyz` 503) and stops the actor, which its
//!   supervisor restarts; the first group committed after that (a caller's, or
//!   a probe's if none comes) makes the node ready again.
//! * **Claims and renewals** (`Claim`, `Renew`): a claim runs at once; renewals
//!   batch among themselves. Neither waits behind a big commit. A claim or a
//!   renewal that panics is answered with an error and marks the node not
//!   ready until a claim (or renewal) succeeds again, a caller's or a probe's.
//! * **Everything else** (cancel, signals, heartbeats, checkpoints, progress,
//!   suspensions, dead letters, housekeeping, idempotency keys, the
//!   rest of webhooks): one store call each, run at once.
//!
//! A panic in a group commit, a claim or a renewal counts wherever it happens:
//! in the runtime's code around the store call, or in the store's own (the
//! SQLite writer thread catches it and answers [`StoreError::Panicked`]). See
//! [`readiness`](crate::readiness).
//!
//! Talks to: the store; the notifier (through `wake`); live `ExecutionActor`s
//! (`ChildrenSettled`, through the [`Live`] registry).

use std::collections::BTreeSet;
use std::future::Future;
use std::mem;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use courier_core::metric;
use courier_core::{
    AttemptWrite, Cancelled, ChildCreated, ChildGroup, ClaimRequest, Claimed, Committed, Completed, Completion,
    DeliveryReplay, Dismissal, Dispatched, EffectApplied, EffectWrite, ExecutionId, Firing, FunctionRecord,
    FunctionSettings, LeaseKey, LeaseToken, NewDelivery, NewExecution, NewNotification, NodeRecord, NodeReport,
    NotificationSent, NotificationTtl, Notifier, Outcome, PauseState, Progress, Release, Renewed, Replayed,
    Reservation, ScheduleRecord, SignalSent, Store, StoreError, StoreResult, TaskError, TaskId, TaskKind, Viewer,
    WebhookRecord, WriteBatch, WriteResults,
};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::admission::{Admission, Admitted};
use crate::claim_offer::ClaimOffer;
use crate::live::Live;
use crate::readiness::{Lane, Readiness};
use crate::wake;

/// Most operations in one transaction; the rest wait for the next commit.
pub(crate) const MAX_BATCH: usize = 4096;

/// How often a store actor with a failing lane checks whether a caller's call
/// proved it works, and if not, probes it itself (an idle node must not stay
/// not-ready for want of traffic, which `/readyz` keeps away).
const PROBE_AFTER: Duration = Duration::from_secs(2);

/// A test's way to make the next store call of a lane panic (see
/// `Courier::panic_on_next_group_commit` and its siblings). Cheap to clone;
/// nothing else sets it.
#[derive(Clone, Default)]
pub(crate) struct StoreFault(Arc<[AtomicBool; 3]>);

impl StoreFault {
    /// Makes the next call of `lane` panic.
    pub(crate) fn arm(&self, lane: Lane) {
        self.0[Self::index(lane)].store(true, Ordering::SeqCst);
    }

    /// Whether this call of `lane` must panic (and disarms).
    fn fire(&self, lane: Lane) -> bool {
        self.0[Self::index(lane)].swap(false, Ordering::SeqCst)
    }

    fn index(lane: Lane) -> usize {
        match lane {
            Lane::Commit => 0,
            Lane::Claim => 1,
            Lane::Renewal => 2,
        }
    }
}

/// Runs a store call of `lane` with its panics caught: a panic must not unwind
/// through the actor's task (that would end it where its supervisor cannot see,
/// leaving the node green and the caller unanswered), so it becomes
/// [`StoreError::Panicked`], which is also what a store answers for a panic it
/// caught itself.
async fn guarded<T>(lane: Lane, fault: StoreFault, call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let caught = AssertUnwindSafe(async move {
        if fault.fire(lane) {
            panic!("a test made this {lane} panic");
        }
        call.await
    })
    .catch_unwind()
    .await;
    caught.unwrap_or_else(|panic| Err(StoreError::from_panic(panic.as_ref())))
}

/// Marks `lane` failing if `result` is a panic's, or working again if it is a
/// success: what a claim or a renewal tells the node's readiness.
fn note_outcome<T>(readiness: &Readiness, lane: Lane, result: &StoreResult<T>) {
    match result {
        Err(StoreError::Panicked(said)) => {
            metrics::counter!(metric::STORE_PANICS, "operation" => lane.as_str()).increment(1);
            tracing::error!(panic = %said, operation = %lane, "a store call panicked; the node is not ready until one succeeds");
            readiness.fail(lane, format!("a {lane} panicked ({said})"));
        }
        Ok(_) => {
            if readiness.recover(lane) {
                tracing::info!(operation = %lane, "a store call succeeded after a panic; that lane works again");
            }
        }
        Err(_) => {}
    }
}

// ----- group commit ----------------------------------------------------------

/// Creates executions with their root tasks (or finds those their idempotency
/// keys name). Admitted for one write per execution.
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<Dispatched>>")]
pub(crate) struct Dispatch(pub Vec<NewExecution>, pub Admitted);

/// Creates an orchestrator's children under its lease. Admitted for one write
/// per child.
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<ChildCreated>>")]
pub(crate) struct CreateChildren(pub ChildGroup, pub Admitted);

/// Records an orchestrator side effect once. Admitted for one write.
#[derive(Message)]
#[rtype(result = "StoreResult<EffectApplied>")]
pub(crate) struct ApplyEffect(pub EffectWrite, pub Admitted);

/// Finishes an attempt, fenced by its lease, and records the delivery attempts
/// its code attached in the same commit. Admitted for one write per item.
#[derive(Message)]
#[rtype(result = "StoreResult<Completed>")]
pub(crate) struct Complete {
    pub completion: Completion,
    /// The queue of a concurrency-limited function whose cluster-wide slot this
    /// frees: the commit announces work there, so any node's worker takes the
    /// next task at once instead of at the end of its backoff.
    pub frees_slot_on: Option<String>,
    /// Written even if the completion is refused: the attempts happened.
    pub attempts: Vec<AttemptWrite>,
    pub admitted: Admitted,
}

impl Complete {
    /// A completion that frees no limited slot and carries no attempts.
    pub(crate) fn plain(completion: Completion, admitted: Admitted) -> Self {
        Complete {
            completion,
            frees_slot_on: None,
            attempts: Vec::new(),
            admitted,
        }
    }
}

// ----- claims and renewals -----------------------------------------------------

/// Claims tasks (own lane, not batched).
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<Claimed>>")]
pub(crate) struct Claim(pub ClaimRequest);

/// Renews one lease by `extend` (renewals are batched among themselves).
#[derive(Message)]
#[rtype(result = "StoreResult<Renewed>")]
pub(crate) struct Renew {
    pub lease: LeaseKey,
    pub extend: Duration,
}

// ----- everything else ---------------------------------------------------------

/// A heartbeat from a task's own code: renews its lease, records `task.heartbeat`.
#[derive(Message)]
#[rtype(result = "StoreResult<Renewed>")]
pub(crate) struct Heartbeat {
    pub lease: LeaseKey,
    pub extend: Duration,
    pub details: Option<Value>,
}

/// Saves a checkpoint for the task's next attempt.
#[derive(Message)]
#[rtype(result = "StoreResult<()>")]
pub(crate) struct Checkpoint {
    pub lease: LeaseKey,
    pub data: Value,
}

/// Records a progress report of a task (of the root task if none), fenced by a
/// claim if one is given.
#[derive(Message)]
#[rtype(result = "StoreResult<()>")]
pub(crate) struct ReportProgress {
    pub execution: ExecutionId,
    pub task: Option<TaskId>,
    pub progress: Progress,
    pub fence: Option<LeaseKey>,
}

/// Gives claims back without using their attempts, each claimable again after
/// its delay, in the next group commit; one result per release, in order.
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<StoreResult<()>>>")]
pub(crate) struct ReleaseLeases {
    pub releases: Vec<Release>,
    pub admitted: Admitted,
}

impl ReleaseLeases {
    /// Gives `releases` back through `store` once `admission` admits them; a
    /// release that fails leaves its lease to expire, so its task is claimed
    /// again then, never lost.
    pub(crate) async fn send(
        store: &Addr<StoreActor>,
        admission: &Admission,
        releases: Vec<Release>,
    ) -> StoreResult<Vec<StoreResult<()>>> {
        let admitted = admission.admit(releases.len()).await?;
        store
            .send(ReleaseLeases { releases, admitted })
            .await
            .unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())))
    }
}

/// Parks an orchestrator unless a child settled since `seen_wake_gen`.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct SuspendTask {
    pub lease: LeaseKey,
    pub seen_wake_gen: i64,
}

/// Cancels an execution and its unfinished tasks.
#[derive(Message)]
#[rtype(result = "StoreResult<Cancelled>")]
pub(crate) struct CancelExecution {
    pub execution: ExecutionId,
    pub reason: String,
}

/// Pauses (or resumes) an execution: claims leave its tasks while it is paused.
#[derive(Message)]
#[rtype(result = "StoreResult<PauseState>")]
pub(crate) struct PauseExecution {
    pub execution: ExecutionId,
    pub paused: bool,
}

/// Pauses (or resumes) a queue: claims leave its tasks while it is paused.
#[derive(Message)]
#[rtype(result = "StoreResult<PauseState>")]
pub(crate) struct PauseQueue {
    pub queue: String,
    pub paused: bool,
}

/// Sends a signal to an execution.
#[derive(Message)]
#[rtype(result = "StoreResult<SignalSent>")]
pub(crate) struct SendSignal {
    pub execution: ExecutionId,
    pub name: String,
    pub payload: Value,
}

/// Replays a dead letter.
#[derive(Message)]
#[rtype(result = "StoreResult<Replayed>")]
pub(crate) struct ReplayDeadLetter(pub TaskId);

/// Discards a dead letter; whether there was one.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct DiscardDeadLetter(pub TaskId);

/// Times out executions past their deadline (housekeeping).
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<Cancelled>>")]
pub(crate) struct TimeOutExecutions {
    pub limit: u32,
}

/// Reports running tasks whose heartbeat is late (housekeeping).
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<TaskId>>")]
pub(crate) struct DetectStuckTasks {
    pub heartbeat_timeout: Duration,
    pub limit: u32,
}

/// Deletes old history: what `before` names, each part only if given.
#[derive(Message, Clone, Copy, Debug, Default)]
#[rtype(result = "StoreResult<CleanupReport>")]
pub(crate) struct Cleanup {
    /// Finished executions (with all their rows) that finished before this.
    pub executions_before: Option<DateTime<Utc>>,
    /// Dead letters that failed before this.
    pub dead_letters_before: Option<DateTime<Utc>>,
    /// Events appended before this.
    pub events_before: Option<DateTime<Utc>>,
    /// Expired cache entries.
    pub expired_cache: bool,
    /// Idempotency keys finished before this.
    pub idempotency_before: Option<DateTime<Utc>>,
}

/// What a cleanup deleted.
///
/// ```
/// let report = courier_runtime::CleanupReport::default();
/// assert_eq!(report.executions + report.dead_letters + report.events + report.cache_entries, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// Finished executions (with all their rows).
    pub executions: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Events trimmed from the log.
    #[serde(default)]
    pub events: u64,
    /// Expired cache entries purged.
    #[serde(default)]
    pub cache_entries: u64,
    /// Finished idempotency keys trimmed.
    #[serde(default)]
    pub idempotency_keys: u64,
}

/// Takes or keeps a cluster-wide role for `ttl`; whether `owner` holds it.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct AcquireRole {
    pub name: &'static str,
    pub owner: String,
    pub ttl: Duration,
}

/// Reserves an idempotency key for a task about to run its work.
#[derive(Message)]
#[rtype(result = "StoreResult<Reservation>")]
pub(crate) struct ReserveKey {
    pub key: String,
    pub owner: TaskId,
}

/// Drops a task's reservation of a key whose work failed.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct ReleaseKey {
    pub key: String,
    pub owner: TaskId,
}

/// Registers a webhook.
#[derive(Message)]
#[rtype(result = "StoreResult<()>")]
pub(crate) struct CreateWebhook(pub WebhookRecord);

/// Writes this node's row afresh: it started now.
#[derive(Message)]
#[rtype(result = "StoreResult<NodeRecord>")]
pub(crate) struct JoinNode {
    pub id: String,
    pub report: NodeReport,
}

/// Records this node's latest report; false if it has no row (join again).
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct ReportNode {
    pub id: String,
    pub report: NodeReport,
}

/// Removes this node's row: it is shutting down.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct LeaveNode(pub String);

/// Stores a new schedule.
#[derive(Message)]
#[rtype(result = "StoreResult<ScheduleRecord>")]
pub(crate) struct CreateSchedule(pub ScheduleRecord);

/// Replaces a schedule at the revision read.
#[derive(Message)]
#[rtype(result = "StoreResult<Option<ScheduleRecord>>")]
pub(crate) struct UpdateSchedule {
    pub schedule: ScheduleRecord,
    pub expected_revision: i64,
}

/// Deletes a schedule and its runs.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct DeleteSchedule(pub String);

/// Fires slots of schedules, each at the revision read (dispatching their
/// executions), in one transaction; one answer per firing.
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<Option<ScheduleRecord>>>")]
pub(crate) struct FireSchedules(pub Vec<Firing>);

/// Forgets the nodes not seen for this long; how many.
#[derive(Message)]
#[rtype(result = "StoreResult<u64>")]
pub(crate) struct ForgetNodes(pub Duration);

/// Stores a function's settings (replacing what was set).
#[derive(Message)]
#[rtype(result = "StoreResult<FunctionRecord>")]
pub(crate) struct PutFunctionSettings {
    pub name: String,
    pub settings: FunctionSettings,
}

/// Forgets a function's settings; whether there were any.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct DeleteFunctionSettings(pub String);

/// Deletes a webhook with its deliveries; whether it existed.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct DeleteWebhook(pub Uuid);

/// Enables or disables a webhook; whether it exists.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct SetWebhookEnabled {
    pub id: Uuid,
    pub enabled: bool,
    pub reason: Option<String>,
}

/// Rotates a webhook's signing secret (the current one signs on for `grace`);
/// the webhook as the rotation left it.
#[derive(Message)]
#[rtype(result = "StoreResult<Option<WebhookRecord>>")]
pub(crate) struct RotateWebhookSecret {
    pub id: Uuid,
    pub secret: String,
    pub grace: Duration,
}

/// Replaces a webhook's stored secret value `from` with `to` (sealing or
/// re-sealing it), if the webhook still holds it; whether it did.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct ReplaceWebhookSecret {
    pub id: Uuid,
    pub from: String,
    pub to: String,
}

/// Enqueues webhook deliveries for events `(from, to]`, if the cursor is still at `from`.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct EnqueueDeliveries {
    pub from: i64,
    pub to: i64,
    pub deliveries: Vec<NewDelivery>,
}

/// Marks a pending delivery skipped; whether it was pending.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct SkipDelivery(pub Uuid);

/// Replays skipped deliveries, dispatching their executions; the ids replayed.
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<Uuid>>")]
pub(crate) struct ReplayDeliveries(pub Vec<DeliveryReplay>);

/// Sends a notification for people.
#[derive(Message)]
#[rtype(result = "StoreResult<NotificationSent>")]
pub(crate) struct SendNotification {
    pub notification: NewNotification,
    pub ttl: NotificationTtl,
}

/// Dismisses a notification for a viewer's subscriber.
#[derive(Message)]
#[rtype(result = "StoreResult<Dismissal>")]
pub(crate) struct DismissNotification {
    pub viewer: Viewer,
    pub id: Uuid,
}

/// Dismisses a group of notifications for a viewer's subscriber.
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<Uuid>>")]
pub(crate) struct DismissGroup {
    pub viewer: Viewer,
    pub group: String,
}

/// Subscribes a user to a source (or unsubscribes); whether anything changed.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct SetSourceSubscription {
    pub user: String,
    pub source: String,
    pub subscribed: bool,
}

/// Deletes expired notifications (housekeeping); how many.
#[derive(Message)]
#[rtype(result = "StoreResult<u64>")]
pub(crate) struct SweepNotifications {
    pub limit: u32,
}

// ----- the actor ------------------------------------------------------------------

type Reply<T> = oneshot::Sender<StoreResult<T>>;
type RenewGroup = Vec<(LeaseKey, Reply<Renewed>)>;

/// Whom to answer for a queued completion, and the limited queue it frees.
struct CompletionReply {
    reply: Reply<Completed>,
    frees_slot_on: Option<String>,
}

/// Writes waiting for the next commit, with whom to answer.
#[derive(Default)]
struct Queue {
    batch: WriteBatch,
    dispatches: Vec<Reply<Dispatched>>,
    children: Vec<Reply<Vec<ChildCreated>>>,
    effects: Vec<Reply<EffectApplied>>,
    delivery_attempts: Vec<Reply<()>>,
    releases: Vec<Reply<()>>,
    completions: Vec<CompletionReply>,
    /// The worker whose offered claim rides this commit (see [`ClaimOffer`]).
    claim: Option<Reply<Vec<Claimed>>>,
    /// Operations counted toward MAX_BATCH (a child group counts its tasks).
    weight: usize,
}

/// One write waiting for a commit.
enum Queued {
    Dispatch(NewExecution, Reply<Dispatched>),
    Children(ChildGroup, Reply<Vec<ChildCreated>>),
    Effect(EffectWrite, Reply<EffectApplied>),
    Attempt(AttemptWrite, Reply<()>),
    Release(Release, Reply<()>),
    /// With the delivery attempts that ride it: one item, so one commit.
    Completion(Completion, Vec<(AttemptWrite, Reply<()>)>, CompletionReply),
}

impl Queued {
    fn weight(&self) -> usize {
        match self {
            Queued::Children(group, _) => group.tasks.len().max(1),
            Queued::Completion(_, attempts, _) => 1 + attempts.len(),
            _ => 1,
        }
    }
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    fn push(&mut self, item: Queued) {
        self.weight += item.weight();
        match item {
            Queued::Dispatch(new, reply) => {
                self.batch.dispatches.push(new);
                self.dispatches.push(reply);
            }
            Queued::Children(group, reply) => {
                self.batch.children.push(group);
                self.children.push(reply);
            }
            Queued::Effect(effect, reply) => {
                self.batch.effects.push(effect);
                self.effects.push(reply);
            }
            Queued::Attempt(write, reply) => {
                self.batch.delivery_attempts.push(write);
                self.delivery_attempts.push(reply);
            }
            Queued::Release(release, reply) => {
                self.batch.releases.push(release);
                self.releases.push(reply);
            }
            Queued::Completion(completion, attempts, reply) => {
                for (write, attempt_reply) in attempts {
                    self.batch.delivery_attempts.push(write);
                    self.delivery_attempts.push(attempt_reply);
                }
                self.batch.completions.push(completion);
                self.completions.push(reply);
            }
        }
    }

    /// Answers every caller with `e`.
    fn fail(self, e: StoreError) {
        for r in self.dispatches {
            let _ = r.send(Err(e.clone()));
        }
        for r in self.children {
            let _ = r.send(Err(e.clone()));
        }
        for r in self.effects {
            let _ = r.send(Err(e.clone()));
        }
        for r in self.delivery_attempts {
            let _ = r.send(Err(e.clone()));
        }
        for r in self.releases {
            let _ = r.send(Err(e.clone()));
        }
        for r in self.completions {
            let _ = r.reply.send(Err(e.clone()));
        }
        if let Some(r) = self.claim {
            let _ = r.send(Err(e));
        }
    }

    /// Splits the queue back into single writes (to retry them one by one).
    fn into_items(self, batch: WriteBatch) -> Vec<Queued> {
        let mut items = Vec::with_capacity(batch.len());
        items.extend(
            batch
                .dispatches
                .into_iter()
                .zip(self.dispatches)
                .map(|(n, r)| Queued::Dispatch(n, r)),
        );
        items.extend(
            batch
                .children
                .into_iter()
                .zip(self.children)
                .map(|(g, r)| Queued::Children(g, r)),
        );
        items.extend(
            batch
                .effects
                .into_iter()
                .zip(self.effects)
                .map(|(e, r)| Queued::Effect(e, r)),
        );
        items.extend(
            batch
                .delivery_attempts
                .into_iter()
                .zip(self.delivery_attempts)
                .map(|(a, r)| Queued::Attempt(a, r)),
        );
        items.extend(
            batch
                .releases
                .into_iter()
                .zip(self.releases)
                .map(|(release, r)| Queued::Release(release, r)),
        );
        items.extend(
            batch
                .completions
                .into_iter()
                .zip(self.completions)
                .map(|(c, r)| Queued::Completion(c, Vec::new(), r)),
        );
        items
    }
}

/// The actor. See the module documentation.
pub(crate) struct StoreActor {
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    live: Live,
    queue: Queue,
    /// Writes that did not fit the current commit, in arrival order. Bounded by
    /// admission: callers hold permits for everything here.
    overflow: Vec<Queued>,
    /// The weight of `overflow`.
    overflow_weight: usize,
    committing: bool,
    /// The weight of the commit in flight (0 when none is).
    committing_weight: usize,
    /// The most writes ever waiting here at once (queue, overflow, in flight):
    /// never more than the admission's bound. Read by a test.
    peak_pending: usize,
    renewals: Vec<(Renew, Reply<Renewed>)>,
    renewing: bool,
    /// A readiness probe is in flight.
    probing: bool,
    admission: Admission,
    readiness: Readiness,
    fault: StoreFault,
    /// The worker's standing claim, put on the next commit that makes work for it.
    offer: ClaimOffer,
}

/// What a `StoreActor` is built from, besides the store.
pub(crate) struct StoreActorParts {
    pub notifier: Arc<dyn Notifier>,
    pub live: Live,
    pub admission: Admission,
    pub readiness: Readiness,
    pub fault: StoreFault,
    pub offer: ClaimOffer,
}

impl StoreActor {
    pub(crate) fn new(store: Arc<dyn Store>, parts: StoreActorParts) -> Self {
        StoreActor {
            store,
            notifier: parts.notifier,
            live: parts.live,
            queue: Queue::default(),
            overflow: Vec::new(),
            overflow_weight: 0,
            committing: false,
            committing_weight: 0,
            peak_pending: 0,
            renewals: Vec::new(),
            renewing: false,
            probing: false,
            admission: parts.admission,
            readiness: parts.readiness,
            fault: parts.fault,
            offer: parts.offer,
        }
    }

    /// Queues each of `items` as `queued` makes it; the receivers answer them in order.
    fn enqueue_each<T, R>(
        &mut self,
        items: Vec<T>,
        queued: impl Fn(T, Reply<R>) -> Queued,
        ctx: &mut Context<Self>,
    ) -> Vec<oneshot::Receiver<StoreResult<R>>> {
        items
            .into_iter()
            .map(|item| {
                let (tx, rx) = oneshot::channel();
                self.enqueue(queued(item, tx), ctx);
                rx
            })
            .collect()
    }

    fn enqueue(&mut self, item: Queued, ctx: &mut Context<Self>) {
        if self.queue.weight > 0 && (self.queue.weight + item.weight() > MAX_BATCH || !self.overflow.is_empty()) {
            self.overflow_weight += item.weight();
            self.overflow.push(item);
        } else {
            self.queue.push(item);
        }
        let pending = self.queue.weight + self.overflow_weight + self.committing_weight;
        self.peak_pending = self.peak_pending.max(pending);
        metrics::gauge!(metric::PENDING_WRITES).set(self.admission.pending() as f64);
        self.commit(ctx);
    }

    /// Starts a commit of everything queued, unless one is in flight (then the
    /// queue grows and goes in the next one).
    fn commit(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.queue.is_empty() {
            return;
        }
        self.committing = true;
        let mut queue = mem::take(&mut self.queue);
        self.committing_weight = queue.weight;
        // Refill from the overflow for the commit after this one.
        let overflow = mem::take(&mut self.overflow);
        let mut rest = Vec::new();
        for item in overflow {
            if rest.is_empty() && self.queue.weight + item.weight() <= MAX_BATCH {
                self.overflow_weight -= item.weight();
                self.queue.push(item);
            } else {
                rest.push(item);
            }
        }
        self.overflow = rest;
        if let Some((claim, answer)) = self.offer.take_for(&queue.batch) {
            queue.batch.claim = Some(claim);
            queue.claim = Some(answer);
        }

        let batch = Arc::new(mem::take(&mut queue.batch));
        let store = self.store.clone();
        let fault = self.fault.clone();
        let ops = queue.weight;
        let started = Instant::now();
        let fut = {
            let batch = batch.clone();
            guarded(Lane::Commit, fault, async move { store.commit(batch).await })
        };
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            metrics::histogram!(metric::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
            act.committing_weight = 0;
            if let Err(StoreError::Panicked(said)) = result {
                act.commit_panicked(queue, ops, said, ctx);
                return;
            }
            metrics::counter!(metric::COMMIT_OPERATIONS).increment(ops as u64);
            if result.is_ok() && act.readiness.recover(Lane::Commit) {
                tracing::info!("a group commit succeeded after the store actor restarted; the node is ready again");
            }
            match result {
                Ok(results) => {
                    let (live, notifier) = (act.live.clone(), act.notifier.clone());
                    // Publishing never holds up the next commit.
                    actix::spawn(async move { answer(&live, &notifier, queue, &batch, results).await });
                }
                // A lone write fails with its commit, unless a claim rode it
                // and may be what failed: then it is retried without.
                Err(e) if e.is_transient() || (queue.weight <= 1 && queue.claim.is_none()) => queue.fail(e),
                // One bad write must not sink its neighbours: retry each alone.
                Err(e) => {
                    tracing::warn!(error = %e, ops, "group commit failed; retrying its writes one by one");
                    act.retry_one_by_one(queue, batch, ctx);
                }
            }
            act.committing = false;
            act.commit(ctx);
        }));
    }

    /// A commit panicked: its callers get an error now (they must not hang on a
    /// commit that will never answer), the node stops saying it is ready, and
    /// the actor stops so that its supervisor restarts it with a clean context.
    /// Writes still queued stay queued for the restarted actor.
    fn commit_panicked(&mut self, queue: Queue, ops: usize, panic: String, ctx: &mut Context<Self>) {
        count_commit_panic();
        tracing::error!(ops, panic = %panic, "a group commit panicked; answering its callers with an error and restarting the store actor");
        let detail = format!("a group commit panicked ({panic}); the store actor is restarting");
        self.readiness.fail(Lane::Commit, detail.clone());
        queue.fail(StoreError::Unavailable(detail));
        self.committing = false;
        ctx.stop();
    }

    /// Every [`PROBE_AFTER`]: probes each lane that has been failing for at
    /// least that long (a caller's call that succeeded would have recovered
    /// it already; one that failed a moment ago is left for its callers, so
    /// that `/readyz` shows the failure rather than a probe clearing it at
    /// once). Each probe is a call that every store answers without writing
    /// anything: a group commit completing a task that does not exist (refused
    /// as an item, so a whole group-commit transaction runs and leaves nothing
    /// behind), a claim no task can match, the renewal of a lease nobody holds.
    fn probe(&mut self, ctx: &mut Context<Self>) {
        if self.probing {
            return;
        }
        let lanes = self.readiness.failing_for(PROBE_AFTER, Instant::now());
        if lanes.is_empty() {
            return;
        }
        self.probing = true;
        let (store, fault, readiness) = (self.store.clone(), self.fault.clone(), self.readiness.clone());
        let probing = async move {
            for lane in lanes {
                let store = store.clone();
                let result = match lane {
                    Lane::Commit => guarded(lane, fault.clone(), async move { store.commit(probe_batch()).await })
                        .await
                        .map(drop),
                    Lane::Claim => guarded(
                        lane,
                        fault.clone(),
                        async move { store.claim_tasks(&probe_claim()).await },
                    )
                    .await
                    .map(drop),
                    Lane::Renewal => guarded(lane, fault.clone(), async move {
                        store.renew_leases(&[probe_lease()], Duration::from_secs(1)).await
                    })
                    .await
                    .map(drop),
                };
                if let Err(e) = &result {
                    tracing::warn!(error = %e, operation = %lane, "a readiness probe failed; trying again");
                }
                note_outcome(&readiness, lane, &result);
            }
        };
        ctx.spawn(probing.into_actor(self).map(|(), act, _| act.probing = false));
    }

    fn retry_one_by_one(&mut self, mut queue: Queue, batch: Arc<WriteBatch>, ctx: &mut Context<Self>) {
        if let Some(claim) = queue.claim.take() {
            // The writes are retried one by one without it (`into_items` leaves
            // it out): the worker claims for itself.
            let _ = claim.send(Err(StoreError::Unavailable(
                "the group commit this claim rode failed".into(),
            )));
        }
        let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
        let singles = queue.into_items(batch);
        let (store, live, notifier) = (self.store.clone(), self.live.clone(), self.notifier.clone());
        let (readiness, fault) = (self.readiness.clone(), self.fault.clone());
        ctx.spawn(
            async move {
                let mut panicked = false;
                for item in singles {
                    let mut queue = Queue::default();
                    queue.push(item);
                    let batch = Arc::new(mem::take(&mut queue.batch));
                    let store = store.clone();
                    let single = batch.clone();
                    match guarded(Lane::Commit, fault.clone(), async move { store.commit(single).await }).await {
                        Ok(results) => answer(&live, &notifier, queue, &batch, results).await,
                        Err(StoreError::Panicked(panic)) => {
                            count_commit_panic();
                            tracing::error!(panic = %panic, "a write retried alone panicked; restarting the store actor");
                            let detail = format!("a group commit panicked ({panic}); the store actor is restarting");
                            readiness.fail(Lane::Commit, detail.clone());
                            queue.fail(StoreError::Unavailable(detail));
                            panicked = true;
                        }
                        Err(e) => queue.fail(e),
                    }
                }
                panicked
            }
            .into_actor(self)
            .map(|panicked, _, ctx| {
                if panicked {
                    ctx.stop();
                }
            }),
        );
    }

    fn renew(&mut self, ctx: &mut Context<Self>) {
        if self.renewing || self.renewals.is_empty() {
            return;
        }
        self.renewing = true;
        let pending = mem::take(&mut self.renewals);
        let (store, fault, readiness) = (self.store.clone(), self.fault.clone(), self.readiness.clone());
        ctx.spawn(
            async move {
                // Group by extension so each group is one statement.
                let mut groups: Vec<(Duration, RenewGroup)> = Vec::new();
                for (msg, reply) in pending {
                    match groups.iter_mut().find(|(d, _)| *d == msg.extend) {
                        Some((_, g)) => g.push((msg.lease, reply)),
                        None => groups.push((msg.extend, vec![(msg.lease, reply)])),
                    }
                }
                for (extend, group) in groups {
                    let keys: Vec<LeaseKey> = group.iter().map(|(k, _)| *k).collect();
                    let renewed = guarded(Lane::Renewal, fault.clone(), store.renew_leases(&keys, extend)).await;
                    note_outcome(&readiness, Lane::Renewal, &renewed);
                    match renewed {
                        Ok(results) => {
                            for ((_, reply), result) in group.into_iter().zip(results) {
                                let _ = reply.send(result);
                            }
                        }
                        Err(e) => {
                            for (_, reply) in group {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                act.renewing = false;
                act.renew(ctx);
            }),
        );
    }

    /// Runs a write that reports its changes, then publishes whom they wake.
    fn logged<T, F, Fut>(&self, write: F) -> ResponseFuture<StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: Future<Output = StoreResult<Committed<T>>> + 'static,
    {
        let notifier = self.notifier.clone();
        let fut = write(self.store.clone());
        Box::pin(async move {
            let committed = fut.await?;
            let notices = wake::notices(&committed.changes);
            // The writer's answer never waits for the notifier.
            actix::spawn(async move { wake::publish(&notifier, notices).await });
            Ok(committed.value)
        })
    }

    /// Runs a write that changes nothing anyone waits for.
    fn quiet<T, F, Fut>(&self, write: F) -> ResponseFuture<StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: Future<Output = StoreResult<T>> + 'static,
    {
        Box::pin(write(self.store.clone()))
    }
}

/// The error of a message the store actor could not take (it stopped).
pub(crate) fn unreachable(e: MailboxError) -> StoreError {
    StoreError::Unavailable(format!("the store actor is unreachable: {e}"))
}

/// Answers every caller of a committed batch and publishes whom it wakes.
async fn answer(live: &Live, notifier: &Arc<dyn Notifier>, queue: Queue, batch: &WriteBatch, results: WriteResults) {
    let Queue {
        dispatches,
        children,
        effects,
        delivery_attempts,
        releases,
        completions,
        claim,
        ..
    } = queue;
    let WriteResults {
        dispatches: dispatched,
        children: created,
        effects: applied,
        delivery_attempts: recorded,
        releases: released,
        completions: completed,
        claimed,
        changes,
    } = results;
    let mut freed: BTreeSet<String> = BTreeSet::new();
    let mut settled = 0u64;
    for (answer, result) in completions.iter().zip(&completed) {
        if result.is_ok() {
            settled += 1;
            if let Some(queue) = &answer.frees_slot_on {
                freed.insert(queue.clone());
            }
        }
    }
    metrics::counter!(metric::TASKS_SETTLED).increment(settled);
    let notices = wake::commit_notices(live, batch, &completed, &changes, freed);
    for (reply, result) in dispatches.into_iter().zip(dispatched) {
        let _ = reply.send(result);
    }
    for (reply, result) in children.into_iter().zip(created) {
        let _ = reply.send(result);
    }
    for (reply, result) in effects.into_iter().zip(applied) {
        let _ = reply.send(result);
    }
    for (reply, result) in delivery_attempts.into_iter().zip(recorded) {
        let _ = reply.send(result);
    }
    for (reply, result) in releases.into_iter().zip(released) {
        let _ = reply.send(result);
    }
    for (answer, result) in completions.into_iter().zip(completed) {
        let _ = answer.reply.send(result);
    }
    if let Some(claim) = claim {
        // Should the worker be gone, the tasks come back when their leases expire.
        let _ = claim.send(Ok(claimed));
    }
    wake::publish(notifier, notices).await;
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Callers wait for their commit; the mailbox bound only limits how far
        // ahead of the store callers may run.
        ctx.set_mailbox_capacity(65_536);
        ctx.run_interval(PROBE_AFTER, |act, ctx| act.probe(ctx));
        // Started again by the supervisor: carry on with what was queued.
        self.commit(ctx);
        self.renew(ctx);
    }
}

impl Supervised for StoreActor {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!("store actor restarting");
        self.committing = false;
        self.committing_weight = 0;
        self.renewing = false;
        self.probing = false;
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("store actor stopped".into())
}

/// Counts a group commit that panicked, on both the commit-specific counter
/// and the one for every store lane.
fn count_commit_panic() {
    metrics::counter!(metric::COMMIT_PANICS).increment(1);
    metrics::counter!(metric::STORE_PANICS, "operation" => Lane::Commit.as_str()).increment(1);
}

/// A group that completes a task that does not exist: every store refuses the
/// item without writing, after running a whole group-commit transaction.
fn probe_batch() -> Arc<WriteBatch> {
    Arc::new(WriteBatch {
        completions: vec![Completion {
            lease: probe_lease(),
            outcome: Outcome::Retry {
                error: TaskError::new("probe", "the store actor's readiness probe"),
                delay: Duration::ZERO,
            },
        }],
        ..WriteBatch::default()
    })
}

/// A claim no task can match: an activity of a function nobody can name on a
/// queue nobody can name (a function filter alone would still let timers match).
fn probe_claim() -> ClaimRequest {
    let nobody = format!("courier.readiness-probe.{}", Uuid::new_v4());
    ClaimRequest {
        worker_id: nobody.clone(),
        queues: Some(vec![nobody.clone()]),
        tags: None,
        functions: Some(vec![nobody]),
        kinds: vec![TaskKind::Activity],
        max: 1,
        lease: Duration::from_secs(1),
        limits: Default::default(),
        exclude_functions: Vec::new(),
        exclude_internal: true,
    }
}

/// A lease nobody holds, on a task that does not exist.
fn probe_lease() -> LeaseKey {
    LeaseKey {
        task_id: TaskId::root_of(ExecutionId::new()),
        token: LeaseToken::new(),
    }
}

macro_rules! queued_handler {
    ($msg:ty, $out:ty, |$m:ident, $reply:ident, $admitted:ident| $item:expr) => {
        impl Handler<$msg> for StoreActor {
            type Result = ResponseFuture<StoreResult<$out>>;

            fn handle(&mut self, $m: $msg, ctx: &mut Self::Context) -> Self::Result {
                let ($reply, rx) = oneshot::channel();
                let $admitted;
                self.enqueue($item, ctx);
                Box::pin(async move {
                    let answer = rx.await.unwrap_or_else(|_| Err(stopped()));
                    // The permits go back once the write is answered, not before.
                    drop($admitted);
                    answer
                })
            }
        }
    };
}

/// Dispatches queue for the next commit; the reply lists each execution created or found.
impl Handler<Dispatch> for StoreActor {
    type Result = ResponseFuture<StoreResult<Vec<Dispatched>>>;

    fn handle(&mut self, msg: Dispatch, ctx: &mut Self::Context) -> Self::Result {
        let Dispatch(executions, admitted) = msg;
        let receivers = self.enqueue_each(executions, Queued::Dispatch, ctx);
        Box::pin(async move {
            // Every answer is awaited (not just up to the first error), so the
            // permits go back only once nothing of this message is pending.
            let answers = answered(receivers).await;
            drop(admitted);
            answers.into_iter().collect()
        })
    }
}

/// Releases queue for the next commit; the reply has one result per release.
impl Handler<ReleaseLeases> for StoreActor {
    type Result = ResponseFuture<StoreResult<Vec<StoreResult<()>>>>;

    fn handle(&mut self, msg: ReleaseLeases, ctx: &mut Self::Context) -> Self::Result {
        let ReleaseLeases { releases, admitted } = msg;
        let receivers = self.enqueue_each(releases, Queued::Release, ctx);
        Box::pin(async move {
            let answers = answered(receivers).await;
            // The permits go back once every release is answered.
            drop(admitted);
            Ok(answers)
        })
    }
}

/// Every answer, in order (a dropped reply is the actor stopping).
async fn answered<T>(receivers: Vec<oneshot::Receiver<StoreResult<T>>>) -> Vec<StoreResult<T>> {
    let mut out = Vec::with_capacity(receivers.len());
    for rx in receivers {
        out.push(rx.await.unwrap_or_else(|_| Err(stopped())));
    }
    out
}

queued_handler!(CreateChildren, Vec<ChildCreated>, |msg, reply, admitted| {
    admitted = msg.1;
    Queued::Children(msg.0, reply)
});
queued_handler!(ApplyEffect, EffectApplied, |msg, reply, admitted| {
    admitted = msg.1;
    Queued::Effect(msg.0, reply)
});
/// A completion queues for the next commit with the attempts it carries; the
/// reply is the completion's. An attempt refused on its own (its delivery gone)
/// is logged: it does not undo the task's outcome.
impl Handler<Complete> for StoreActor {
    type Result = ResponseFuture<StoreResult<Completed>>;

    fn handle(&mut self, msg: Complete, ctx: &mut Self::Context) -> Self::Result {
        let Complete {
            completion,
            frees_slot_on,
            attempts,
            admitted,
        } = msg;
        let task = completion.lease.task_id;
        let (attempts, receivers): (Vec<_>, Vec<_>) = attempts
            .into_iter()
            .map(|write| {
                let (tx, rx) = oneshot::channel();
                ((write, tx), rx)
            })
            .unzip();
        let (reply, rx) = oneshot::channel();
        self.enqueue(
            Queued::Completion(completion, attempts, CompletionReply { reply, frees_slot_on }),
            ctx,
        );
        Box::pin(async move {
            let answer = rx.await.unwrap_or_else(|_| Err(stopped()));
            // A transient error failed the whole commit: the caller retries the
            // attempts with the completion.
            let refusals = answered(receivers).await.into_iter().filter_map(Result::err);
            for refused in refusals.filter(|e| !e.is_transient()) {
                tracing::warn!(%task, error = %refused, "a delivery attempt written with its task's outcome was refused");
            }
            // The permits go back once everything is answered, not before.
            drop(admitted);
            answer
        })
    }
}

/// Claims run at once on their own lane.
impl Handler<Claim> for StoreActor {
    type Result = ResponseFuture<StoreResult<Vec<Claimed>>>;

    fn handle(&mut self, msg: Claim, _: &mut Self::Context) -> Self::Result {
        let (fault, readiness) = (self.fault.clone(), self.readiness.clone());
        let claiming = self.logged(|store| guarded(Lane::Claim, fault, async move { store.claim_tasks(&msg.0).await }));
        Box::pin(async move {
            let claimed = claiming.await;
            note_outcome(&readiness, Lane::Claim, &claimed);
            let claimed = claimed?;
            metrics::counter!(metric::CLAIMS).increment(claimed.len() as u64);
            Ok(claimed)
        })
    }
}

/// Renewals batch among themselves.
impl Handler<Renew> for StoreActor {
    type Result = ResponseFuture<StoreResult<Renewed>>;

    fn handle(&mut self, msg: Renew, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.renewals.push((msg, tx));
        self.renew(ctx);
        Box::pin(async move {
            let renewed = rx.await.unwrap_or_else(|_| Err(stopped()));
            if renewed.is_ok() {
                metrics::counter!(metric::LEASE_RENEWALS).increment(1);
            }
            renewed
        })
    }
}

/// Renews the lease and records the heartbeat.
impl Handler<Heartbeat> for StoreActor {
    type Result = ResponseFuture<StoreResult<Renewed>>;

    fn handle(&mut self, m: Heartbeat, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.heartbeat(m.lease, m.extend, m.details).await })
    }
}

/// Saves the checkpoint.
impl Handler<Checkpoint> for StoreActor {
    type Result = ResponseFuture<StoreResult<()>>;

    fn handle(&mut self, m: Checkpoint, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.checkpoint(m.lease, m.data).await })
    }
}

/// Records the progress report.
impl Handler<ReportProgress> for StoreActor {
    type Result = ResponseFuture<StoreResult<()>>;

    fn handle(&mut self, m: ReportProgress, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.append_progress(m.execution, m.task, &m.progress, m.fence).await })
    }
}

/// Parks the orchestrator if nothing settled since it looked.
impl Handler<SuspendTask> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: SuspendTask, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.suspend_task(m.lease, m.seen_wake_gen).await })
    }
}

/// Cancels the execution.
impl Handler<CancelExecution> for StoreActor {
    type Result = ResponseFuture<StoreResult<Cancelled>>;

    fn handle(&mut self, m: CancelExecution, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.cancel_execution(m.execution, &m.reason).await })
    }
}

/// Pauses or resumes the execution.
impl Handler<PauseExecution> for StoreActor {
    type Result = ResponseFuture<StoreResult<PauseState>>;

    fn handle(&mut self, m: PauseExecution, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move {
            if m.paused {
                store.pause_execution(m.execution).await
            } else {
                store.resume_execution(m.execution).await
            }
        })
    }
}

/// Pauses or resumes the queue.
impl Handler<PauseQueue> for StoreActor {
    type Result = ResponseFuture<StoreResult<PauseState>>;

    fn handle(&mut self, m: PauseQueue, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move {
            if m.paused {
                store.pause_queue(&m.queue).await
            } else {
                store.resume_queue(&m.queue).await
            }
        })
    }
}

/// Sends the signal.
impl Handler<SendSignal> for StoreActor {
    type Result = ResponseFuture<StoreResult<SignalSent>>;

    fn handle(&mut self, m: SendSignal, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.send_signal(m.execution, &m.name, m.payload).await })
    }
}

/// Replays the dead letter.
impl Handler<ReplayDeadLetter> for StoreActor {
    type Result = ResponseFuture<StoreResult<Replayed>>;

    fn handle(&mut self, m: ReplayDeadLetter, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.replay_dead_letter(m.0).await })
    }
}

/// Discards the dead letter.
impl Handler<DiscardDeadLetter> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: DiscardDeadLetter, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.delete_dead_letter(m.0).await })
    }
}

/// Times out expired executions.
impl Handler<TimeOutExecutions> for StoreActor {
    type Result = ResponseFuture<StoreResult<Vec<Cancelled>>>;

    fn handle(&mut self, m: TimeOutExecutions, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.time_out_executions(m.limit).await })
    }
}

/// Reports stuck tasks.
impl Handler<DetectStuckTasks> for StoreActor {
    type Result = ResponseFuture<StoreResult<Vec<TaskId>>>;

    fn handle(&mut self, m: DetectStuckTasks, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.detect_stuck_tasks(m.heartbeat_timeout, m.limit).await })
    }
}

/// Deletes old history.
impl Handler<Cleanup> for StoreActor {
    type Result = ResponseFuture<StoreResult<CleanupReport>>;

    fn handle(&mut self, m: Cleanup, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move {
            let mut report = CleanupReport::default();
            if let Some(before) = m.executions_before {
                report.executions = store.cleanup_executions(before).await?;
            }
            if let Some(before) = m.dead_letters_before {
                report.dead_letters = store.cleanup_dead_letters(before).await?;
            }
            if let Some(before) = m.events_before {
                report.events = store.trim_events(before).await?;
            }
            if m.expired_cache {
                report.cache_entries = store.purge_expired_cache().await?;
            }
            if let Some(before) = m.idempotency_before {
                report.idempotency_keys = store.trim_idempotency_keys(before).await?;
            }
            Ok(report)
        })
    }
}

/// Takes or keeps the role.
impl Handler<AcquireRole> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: AcquireRole, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.try_acquire_singleton(m.name, &m.owner, m.ttl).await })
    }
}

/// Reserves the idempotency key.
impl Handler<ReserveKey> for StoreActor {
    type Result = ResponseFuture<StoreResult<Reservation>>;

    fn handle(&mut self, m: ReserveKey, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.reserve_idempotency_key(&m.key, m.owner).await })
    }
}

/// Drops the reservation.
impl Handler<ReleaseKey> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: ReleaseKey, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.release_idempotency_key(&m.key, m.owner).await })
    }
}

/// Registers the webhook.
impl Handler<CreateWebhook> for StoreActor {
    type Result = ResponseFuture<StoreResult<()>>;

    fn handle(&mut self, m: CreateWebhook, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.create_webhook(&m.0).await })
    }
}

/// Stores the schedule.
impl Handler<CreateSchedule> for StoreActor {
    type Result = ResponseFuture<StoreResult<ScheduleRecord>>;

    fn handle(&mut self, m: CreateSchedule, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.create_schedule(&m.0).await })
    }
}

/// Replaces the schedule.
impl Handler<UpdateSchedule> for StoreActor {
    type Result = ResponseFuture<StoreResult<Option<ScheduleRecord>>>;

    fn handle(&mut self, m: UpdateSchedule, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.update_schedule(&m.schedule, m.expected_revision).await })
    }
}

/// Deletes the schedule.
impl Handler<DeleteSchedule> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: DeleteSchedule, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.delete_schedule(&m.0).await })
    }
}

/// Fires the slots; their executions' workers are woken.
impl Handler<FireSchedules> for StoreActor {
    type Result = ResponseFuture<StoreResult<Vec<Option<ScheduleRecord>>>>;

    fn handle(&mut self, m: FireSchedules, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.fire_schedules(&m.0).await })
    }
}

/// Joins the list of nodes.
impl Handler<JoinNode> for StoreActor {
    type Result = ResponseFuture<StoreResult<NodeRecord>>;

    fn handle(&mut self, m: JoinNode, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.join_node(&m.id, &m.report).await })
    }
}

/// Reports in.
impl Handler<ReportNode> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: ReportNode, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.report_node(&m.id, &m.report).await })
    }
}

/// Leaves the list of nodes.
impl Handler<LeaveNode> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: LeaveNode, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.leave_node(&m.0).await })
    }
}

/// Forgets silent nodes.
impl Handler<ForgetNodes> for StoreActor {
    type Result = ResponseFuture<StoreResult<u64>>;

    fn handle(&mut self, m: ForgetNodes, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.forget_nodes(m.0).await })
    }
}

/// Stores the function's settings.
impl Handler<PutFunctionSettings> for StoreActor {
    type Result = ResponseFuture<StoreResult<FunctionRecord>>;

    fn handle(&mut self, m: PutFunctionSettings, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.put_function_settings(&m.name, &m.settings).await })
    }
}

/// Forgets the function's settings.
impl Handler<DeleteFunctionSettings> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: DeleteFunctionSettings, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.delete_function_settings(&m.0).await })
    }
}

/// Deletes the webhook.
impl Handler<DeleteWebhook> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: DeleteWebhook, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.delete_webhook(m.0).await })
    }
}

/// Enables or disables the webhook.
impl Handler<SetWebhookEnabled> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: SetWebhookEnabled, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.set_webhook_enabled(m.id, m.enabled, m.reason.as_deref()).await })
    }
}

/// Rotates the webhook's secret.
impl Handler<RotateWebhookSecret> for StoreActor {
    type Result = ResponseFuture<StoreResult<Option<WebhookRecord>>>;

    fn handle(&mut self, m: RotateWebhookSecret, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.rotate_webhook_secret(m.id, &m.secret, m.grace).await })
    }
}

/// Replaces the webhook's stored secret value, if it still holds it.
impl Handler<ReplaceWebhookSecret> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: ReplaceWebhookSecret, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.replace_webhook_secret(m.id, &m.from, &m.to).await })
    }
}

/// Enqueues the deliveries (and dispatches their executions).
impl Handler<EnqueueDeliveries> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: EnqueueDeliveries, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.enqueue_deliveries(m.from, m.to, m.deliveries).await })
    }
}

/// Marks the delivery skipped.
impl Handler<SkipDelivery> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: SkipDelivery, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.skip_delivery(m.0).await })
    }
}

/// Replays the deliveries (and dispatches their executions).
impl Handler<ReplayDeliveries> for StoreActor {
    type Result = ResponseFuture<StoreResult<Vec<Uuid>>>;

    fn handle(&mut self, m: ReplayDeliveries, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.replay_deliveries(m.0).await })
    }
}

/// Sends the notification.
impl Handler<SendNotification> for StoreActor {
    type Result = ResponseFuture<StoreResult<NotificationSent>>;

    fn handle(&mut self, m: SendNotification, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.send_notification(m.notification, &m.ttl).await })
    }
}

/// Dismisses the notification.
impl Handler<DismissNotification> for StoreActor {
    type Result = ResponseFuture<StoreResult<Dismissal>>;

    fn handle(&mut self, m: DismissNotification, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.dismiss_notification(&m.viewer, m.id).await })
    }
}

/// Dismisses the group.
impl Handler<DismissGroup> for StoreActor {
    type Result = ResponseFuture<StoreResult<Vec<Uuid>>>;

    fn handle(&mut self, m: DismissGroup, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move { store.dismiss_group(&m.viewer, &m.group).await })
    }
}

/// Subscribes or unsubscribes.
impl Handler<SetSourceSubscription> for StoreActor {
    type Result = ResponseFuture<StoreResult<bool>>;

    fn handle(&mut self, m: SetSourceSubscription, _: &mut Self::Context) -> Self::Result {
        self.logged(move |store| async move {
            if m.subscribed {
                store.subscribe_source(&m.user, &m.source).await
            } else {
                store.unsubscribe_source(&m.user, &m.source).await
            }
        })
    }
}

/// Deletes expired notifications.
impl Handler<SweepNotifications> for StoreActor {
    type Result = ResponseFuture<StoreResult<u64>>;

    fn handle(&mut self, m: SweepNotifications, _: &mut Self::Context) -> Self::Result {
        self.quiet(move |store| async move { store.sweep_notifications(m.limit).await })
    }
}

/// How many writes were ever waiting in the actor at once (a test's hook).
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "usize")]
struct PeakPending;

#[cfg(test)]
impl Handler<PeakPending> for StoreActor {
    type Result = usize;

    fn handle(&mut self, _: PeakPending, _: &mut Self::Context) -> usize {
        self.peak_pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_core::{LocalNotifier, TaskSpec};
    use courier_store_sqlite::{SqliteOptions, SqliteStore};

    /// Five bounds' worth of dispatches at once, one message each: before
    /// admission they all piled into the queue and its overflow; now callers wait
    /// for permits, what waits in the actor never exceeds the bound (the overflow
    /// is still used: the bound is above one batch), and every dispatch lands.
    #[actix_rt::test]
    async fn a_flood_of_dispatches_waits_for_admission_and_every_one_lands() {
        let store = SqliteStore::open(SqliteOptions::memory()).await.unwrap();
        store.init().await.unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let bound = MAX_BATCH + MAX_BATCH / 2;
        let admission = Admission::new(bound);
        let actor = StoreActor::new(
            store.clone(),
            StoreActorParts {
                notifier: Arc::new(LocalNotifier::new()),
                live: Live::default(),
                admission: admission.clone(),
                readiness: Readiness::default(),
                fault: StoreFault::default(),
                offer: ClaimOffer::new(Default::default()),
            },
        )
        .start();
        let total = 5 * bound;
        let dispatches = (0..total).map(|n| {
            let (actor, admission) = (actor.clone(), admission.clone());
            async move {
                let spec = TaskSpec::new(TaskKind::Activity, "flood", serde_json::json!(n));
                let admitted = admission.admit(1).await?;
                actor
                    .send(Dispatch(vec![NewExecution::new(spec)], admitted))
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?
            }
        });
        let results = futures::future::join_all(dispatches).await;
        let landed = results.iter().filter(|r| matches!(r, Ok(d) if d.len() == 1)).count();
        assert_eq!(landed, total, "every dispatch landed");
        let peak = actor.send(PeakPending).await.unwrap();
        assert!(
            peak <= admission.limit(),
            "{peak} writes waited, over the bound of {bound}"
        );
        assert!(peak > MAX_BATCH, "the flood reached the overflow ({peak})");
        assert_eq!(admission.pending(), 0, "every permit went back");
    }
}
