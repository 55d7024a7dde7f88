//! Builders and shorthands the cases share.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
pub use courier_core::store::{
    CacheStore, ContextStore, DeadLetterStore, EventStore, ExecutionStore, SeedRecords, Store, TaskStore, WebhookStore,
};
use courier_core::{
    Change, ChildCreated, ChildGroup, ClaimRequest, Claimed, Completed, Completion, EffectApplied, EffectWrite, Event,
    EventFilter, EventType, ExecutionId, ExecutionRecord, ExecutionState, LeaseKey, LeaseLost, NewExecution, NewTask,
    Outcome, RetryPolicy, StoreError, StoreResult, TaskError, TaskId, TaskKind, TaskRecord, TaskSpec, TaskState,
    WriteBatch, events_of as events_of_changes,
};
use serde_json::{Value, json};

/// A shared store handle.
pub type DynStore = Arc<dyn Store>;

/// The batch writes one at a time, as the cases use them: each commits a one-kind
/// [`WriteBatch`] through [`Store::commit`].
#[async_trait::async_trait]
pub trait BatchWrites {
    /// Commits `completions`; one result each.
    async fn complete_tasks(&self, completions: Vec<Completion>) -> StoreResult<Vec<StoreResult<Completed>>>;
    /// Commits one group of children.
    async fn create_children(&self, fence: Option<LeaseKey>, tasks: Vec<NewTask>) -> StoreResult<Vec<ChildCreated>>;
    /// Commits one effect.
    async fn apply_effect(&self, write: EffectWrite) -> StoreResult<EffectApplied>;
}

#[async_trait::async_trait]
impl BatchWrites for DynStore {
    async fn complete_tasks(&self, completions: Vec<Completion>) -> StoreResult<Vec<StoreResult<Completed>>> {
        let batch = WriteBatch {
            completions,
            ..WriteBatch::default()
        };
        Ok(self.commit(Arc::new(batch)).await?.completions)
    }

    async fn create_children(&self, fence: Option<LeaseKey>, tasks: Vec<NewTask>) -> StoreResult<Vec<ChildCreated>> {
        let batch = WriteBatch {
            children: vec![ChildGroup { fence, tasks }],
            ..WriteBatch::default()
        };
        self.commit(Arc::new(batch))
            .await?
            .children
            .pop()
            .expect("one result per child group")
    }

    async fn apply_effect(&self, write: EffectWrite) -> StoreResult<EffectApplied> {
        let batch = WriteBatch {
            effects: vec![write],
            ..WriteBatch::default()
        };
        self.commit(Arc::new(batch))
            .await?
            .effects
            .pop()
            .expect("one result per effect")
    }
}

/// Asserts that the events appended after `after` are exactly those of `changes`,
/// in order: what a write reports is what it logged.
pub async fn assert_logged(store: &DynStore, after: i64, changes: &[Change], what: &str) {
    let logged = store
        .read_events(&EventFilter::after(after).limit(10_000))
        .await
        .expect("read events")
        .events;
    let expected = events_of_changes(changes);
    let shape = |e: &Event| (e.event_type, e.execution_id, e.task_id, e.data.clone());
    assert_eq!(
        logged.iter().map(shape).collect::<Vec<_>>(),
        expected
            .iter()
            .map(|e| (e.event_type, e.execution_id, e.task_id, e.data.clone()))
            .collect::<Vec<_>>(),
        "{what}: the events logged differ from the changes reported"
    );
}

/// An activity spec on the default queue.
pub fn activity(function: &str) -> TaskSpec {
    TaskSpec::new(TaskKind::Activity, function, json!({"f": function}))
}

/// An orchestrator spec on the default queue.
pub fn orchestrator(function: &str) -> TaskSpec {
    TaskSpec::new(TaskKind::Orchestrator, function, json!(null))
}

/// Dispatches one execution of `spec` and returns its id.
pub async fn dispatch(store: &DynStore, spec: TaskSpec) -> ExecutionId {
    let new = NewExecution::new(spec);
    let id = new.id;
    let out = store.dispatch(vec![new]).await.expect("dispatch").value;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].id(), id);
    id
}

/// Dispatches `n` executions of `function` in one batch.
pub async fn dispatch_many(store: &DynStore, function: &str, n: usize) -> Vec<ExecutionId> {
    let batch: Vec<NewExecution> = (0..n).map(|_| NewExecution::new(activity(function))).collect();
    let ids: Vec<ExecutionId> = batch.iter().map(|e| e.id).collect();
    let out = store.dispatch(batch).await.expect("dispatch batch").value;
    assert_eq!(out.iter().map(|d| d.id()).collect::<Vec<_>>(), ids);
    ids
}

/// A claim request for anything, with a 30 s lease.
pub fn claim_any(worker: &str, max: u32) -> ClaimRequest {
    ClaimRequest::new(worker, max, Duration::from_secs(30))
}

/// Claims with `req`.
pub async fn claim(store: &DynStore, req: &ClaimRequest) -> Vec<Claimed> {
    store.claim_tasks(req).await.expect("claim").value
}

/// Claims exactly one task (panics otherwise).
pub async fn claim_one(store: &DynStore, req: &ClaimRequest) -> Claimed {
    let mut req = req.clone();
    req.max = 1;
    let mut got = claim(store, &req).await;
    assert_eq!(got.len(), 1, "expected one claimable task");
    got.pop().unwrap()
}

/// Dispatches an orchestrator and claims its root task.
pub async fn running_orchestrator(store: &DynStore, function: &str) -> (ExecutionId, Claimed) {
    let id = dispatch(store, orchestrator(function)).await;
    let claimed = claim_one(store, &claim_any("orchestrator-worker", 1).functions([function])).await;
    assert_eq!(claimed.task.execution_id, id);
    (id, claimed)
}

/// A child of `parent` at `step`.
pub fn child(parent: &Claimed, step: i64, spec: TaskSpec) -> NewTask {
    NewTask {
        execution_id: parent.task.execution_id,
        parent_id: Some(parent.task.id),
        step,
        spec,
        result: None,
    }
}

/// Completes a claim successfully.
pub async fn succeed(store: &DynStore, lease: LeaseKey, result: Value) -> StoreResult<Completed> {
    one(store
        .complete_tasks(vec![Completion {
            lease,
            outcome: Outcome::Succeeded {
                result,
                remember: Vec::new(),
            },
        }])
        .await)
}

/// Fails a claim for good, with a dead letter.
pub async fn fail_for_good(store: &DynStore, lease: LeaseKey, kind: &str) -> StoreResult<Completed> {
    one(store
        .complete_tasks(vec![Completion {
            lease,
            outcome: Outcome::Failed {
                error: TaskError::new(kind, "it broke"),
                reason: "attempts exhausted".into(),
                dead_letter: true,
            },
        }])
        .await)
}

/// The single item of a one-item batch result.
pub fn one<T>(results: StoreResult<Vec<StoreResult<T>>>) -> StoreResult<T> {
    let mut v = results.expect("batch call failed as a whole");
    assert_eq!(v.len(), 1);
    v.pop().unwrap()
}

/// Whether `err` is a refused fenced write for `task`.
pub fn is_lease_lost(err: &StoreError, task: TaskId) -> bool {
    matches!(err, StoreError::LeaseLost { task_id, .. } if *task_id == task)
}

/// Asserts `result` is a refused fenced write for `task` for `reason`.
pub fn assert_lease_lost<T: std::fmt::Debug>(result: StoreResult<T>, task: TaskId, reason: LeaseLost) {
    match result {
        Err(StoreError::LeaseLost { task_id, reason: r }) => {
            assert_eq!(task_id, task);
            assert_eq!(r, reason, "lease lost for the wrong reason");
        }
        other => panic!("expected LeaseLost({reason:?}) for {task}, got {other:?}"),
    }
}

/// Every event of an execution, oldest first.
pub async fn events_of(store: &DynStore, execution: ExecutionId) -> Vec<Event> {
    store
        .read_events(&EventFilter::after(0).execution(execution).limit(10_000))
        .await
        .expect("read events")
        .events
}

/// The types of `events`.
pub fn types(events: &[Event]) -> Vec<EventType> {
    events.iter().map(|e| e.event_type).collect()
}

/// The events of `execution` of one type.
pub async fn events_of_type(store: &DynStore, execution: ExecutionId, t: EventType) -> Vec<Event> {
    events_of(store, execution)
        .await
        .into_iter()
        .filter(|e| e.event_type == t)
        .collect()
}

/// A task, which must exist.
pub async fn task(store: &DynStore, id: TaskId) -> TaskRecord {
    store.get_task(id).await.expect("get task").expect("task exists")
}

/// An execution, which must exist.
pub async fn execution(store: &DynStore, id: ExecutionId) -> ExecutionRecord {
    store
        .get_execution(id)
        .await
        .expect("get execution")
        .expect("execution exists")
}

/// Now, to the microsecond (what both stores keep).
pub fn now_micros() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A raw execution record as the seed protocol would insert it.
pub fn execution_record(id: ExecutionId, function: &str) -> ExecutionRecord {
    let now = now_micros();
    ExecutionRecord {
        id,
        function: function.to_string(),
        version: Some("v1".into()),
        state: ExecutionState::Pending,
        args: json!({"n": 1}),
        result: None,
        error: None,
        queue: "default".into(),
        tags: vec!["t".into()],
        priority: 2,
        idempotency_key: None,
        created_at: now,
        updated_at: now,
        started_at: None,
        completed_at: None,
        deadline: None,
        parent: None,
    }
}

/// A raw pending task record at `step` of `execution`.
pub fn task_record(execution: ExecutionId, step: i64, kind: TaskKind, function: &str) -> TaskRecord {
    let now = now_micros();
    TaskRecord {
        id: TaskId::for_step(execution, step),
        execution_id: execution,
        parent_id: if step == 0 {
            None
        } else {
            Some(TaskId::root_of(execution))
        },
        step,
        kind,
        function: function.to_string(),
        version: None,
        queue: "default".into(),
        tags: Vec::new(),
        priority: 0,
        state: TaskState::Pending,
        args: json!([1, 2]),
        result: None,
        error: None,
        checkpoint: None,
        attempt: 0,
        retry: RetryPolicy::default(),
        timeout: Some(Duration::from_secs(9)),
        lease_owner: None,
        lease_token: None,
        lease_expires_at: None,
        heartbeat_at: None,
        stuck_at: None,
        wake_gen: 0,
        scheduled_for: now - chrono::Duration::seconds(1),
        created_at: now,
        started_at: None,
        completed_at: None,
    }
}

/// Asserts two instants are within `tolerance` of each other.
pub fn assert_close(a: DateTime<Utc>, b: DateTime<Utc>, tolerance: Duration, what: &str) {
    let diff = (a - b).abs().to_std().unwrap_or_default();
    assert!(
        diff <= tolerance,
        "{what}: {a} and {b} differ by {diff:?} (> {tolerance:?})"
    );
}

/// Sleeps.
pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
