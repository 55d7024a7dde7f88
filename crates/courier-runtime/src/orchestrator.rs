//! What orchestrator code sees of the runtime, and the replay driver behind it.
//!
//! Every `call`, `map` item, `sleep`, `wait_signal` and recorded effect takes
//! the next *step* number when it is called (not when it is awaited), so the
//! same code takes the same steps in the same order on every run. A step's task
//! id is derived from (execution, step). On a replay, a step whose task is in the
//! history resolves from it (a completed child is never run again); a step that
//! names a different function than its history fails the execution with a
//! `non_determinism` error; a step beyond the history creates its task.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use courier_core::{
    ChildCreated, Effect, EffectWrite, ExecutionId, LeaseKey, NewNotification, NewTask, NotificationTtl, Progress,
    Target, TaskError, TaskId, TaskKind, TaskRecord, TaskSpec, TaskState,
};
use futures::channel::oneshot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::admission::Admission;
use crate::options::FunctionTable;
use crate::store_actor::ApplyEffect;

/// The code queued children; create them.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct FlushOutbox;

/// The code diverged from its history; fail the execution.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct NonDeterminism(pub TaskError);

/// The code started a durable sleep (nudge the worker when it falls due).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum SleepStarted {
    /// A new sleep of this long.
    After(Duration),
    /// A sleep recorded earlier, due then (by the store's clock).
    Until(DateTime<Utc>),
}

/// Whom the driver tells what its code did: the execution's actor (children to
/// create, a divergence, a sleep) and the `StoreActor` (effects to record).
#[derive(Clone)]
pub(crate) struct DriverPort {
    pub flush: Recipient<FlushOutbox>,
    pub diverged: Recipient<NonDeterminism>,
    pub sleeping: Recipient<SleepStarted>,
    pub effects: Recipient<ApplyEffect>,
    /// Permits an effect's write takes before it is sent.
    pub admission: Admission,
}

/// An orchestrator's code, type-erased to speak JSON.
pub(crate) type OrchestratorFn = std::sync::Arc<
    dyn Fn(OrchestratorContext, Value) -> futures::future::LocalBoxFuture<'static, Result<Value, TaskError>>
        + Send
        + Sync,
>;

/// How a step ended: its result, or its error.
pub(crate) type StepOutcome = Result<Value, TaskError>;

/// What the history says about one step.
#[derive(Clone, Debug)]
pub(crate) struct StepRecord {
    pub kind: TaskKind,
    pub function: String,
    pub state: TaskState,
    pub result: Option<Value>,
    pub error: Option<TaskError>,
    pub scheduled_for: DateTime<Utc>,
}

impl StepRecord {
    pub(crate) fn of(task: &TaskRecord) -> Self {
        StepRecord {
            kind: task.kind,
            function: task.function.clone(),
            state: task.state,
            result: task.result.clone(),
            error: task.error.clone(),
            scheduled_for: task.scheduled_for,
        }
    }

    /// The outcome if the step has settled.
    pub(crate) fn outcome(&self) -> Option<StepOutcome> {
        settled_outcome(self.state, self.result.clone(), self.error.clone())
    }
}

/// The outcome of a task in `state`, if that state is terminal.
pub(crate) fn settled_outcome(
    state: TaskState,
    result: Option<Value>,
    error: Option<TaskError>,
) -> Option<StepOutcome> {
    match state {
        TaskState::Completed => Some(Ok(result.unwrap_or(Value::Null))),
        TaskState::Failed => {
            Some(Err(error.unwrap_or_else(|| {
                TaskError::new(TaskError::ERROR, "failed without an error")
            })))
        }
        TaskState::Cancelled => Some(Err(TaskError::new(TaskError::CANCELLED, "the step was cancelled"))),
        _ => None,
    }
}

/// Who is waiting for a step.
enum Waiter {
    One(oneshot::Sender<StepOutcome>),
    /// Slot `index` of a `map`.
    Group(Rc<RefCell<Gather>>, usize),
}

/// The results of a `map` as they come in.
struct Gather {
    results: Vec<Option<StepOutcome>>,
    remaining: usize,
    done: Option<oneshot::Sender<()>>,
}

impl Gather {
    fn fill(&mut self, index: usize, outcome: StepOutcome) {
        if self.results[index].is_none() {
            self.results[index] = Some(outcome);
            self.remaining -= 1;
            if self.remaining == 0
                && let Some(done) = self.done.take()
            {
                let _ = done.send(());
            }
        }
    }
}

/// The state shared by an orchestrator's code and its `ExecutionActor`.
pub(crate) struct Driver {
    pub execution_id: ExecutionId,
    pub task_id: TaskId,
    /// The orchestrator's function (an execution that continues as new runs it again).
    pub function: String,
    /// The execution this one continued as, once `continue_as_new` recorded it.
    pub continued: Option<ExecutionId>,
    pub lease: LeaseKey,
    next_step: i64,
    history: HashMap<i64, StepRecord>,
    waiting: HashMap<TaskId, (i64, TaskKind, String, Waiter)>,
    pub outbox: Vec<NewTask>,
    flush_scheduled: bool,
    pub failed: Option<TaskError>,
    pub functions: FunctionTable,
    notification_ttl: NotificationTtl,
    port: DriverPort,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        execution_id: ExecutionId,
        task_id: TaskId,
        function: String,
        lease: LeaseKey,
        history: HashMap<i64, StepRecord>,
        functions: FunctionTable,
        notification_ttl: NotificationTtl,
        port: DriverPort,
    ) -> Self {
        Driver {
            execution_id,
            task_id,
            function,
            continued: None,
            lease,
            next_step: 1,
            history,
            waiting: HashMap::new(),
            outbox: Vec::new(),
            flush_scheduled: false,
            failed: None,
            functions,
            notification_ttl,
            port,
        }
    }

    /// The step taken last.
    pub(crate) fn last_step(&self) -> i64 {
        self.next_step - 1
    }

    /// Task ids of unsettled steps the code is waiting for.
    pub(crate) fn awaited(&self) -> Vec<TaskId> {
        self.waiting.keys().copied().collect()
    }

    /// Whether `task` is an unsettled step the code waits for, and what it should be.
    pub(crate) fn expected(&self, task: TaskId) -> Option<(TaskKind, &str)> {
        self.waiting
            .get(&task)
            .map(|(_, kind, function, _)| (*kind, function.as_str()))
    }

    /// Delivers a settled step to whoever waits for it.
    pub(crate) fn settle(&mut self, task: TaskId, outcome: StepOutcome) -> bool {
        let Some((_, _, _, waiter)) = self.waiting.remove(&task) else {
            return false;
        };
        match waiter {
            Waiter::One(tx) => {
                let _ = tx.send(outcome);
            }
            Waiter::Group(gather, index) => gather.borrow_mut().fill(index, outcome),
        }
        true
    }

    /// Records that the code diverged from its history; the actor fails the execution.
    fn diverged(&mut self, step: i64, recorded: (TaskKind, &str), wanted: (TaskKind, &str)) -> TaskError {
        let error = TaskError::non_retryable(
            TaskError::NON_DETERMINISM,
            format!(
                "step {step} replayed as {} {:?} but the history has {} {:?}: the orchestrator's code changed \
                 under a running execution",
                wanted.0, wanted.1, recorded.0, recorded.1
            ),
        );
        if self.failed.is_none() {
            self.failed = Some(error.clone());
            self.port.diverged.do_send(NonDeterminism(error.clone()));
        }
        error
    }

    /// Checks a child the store reports at a step against what the code wanted.
    pub(crate) fn check_existing(&mut self, task: TaskId, created: &ChildCreated) -> Result<(), TaskError> {
        if let ChildCreated::Existing { kind, function, .. } = created
            && let Some((step, want_kind, want_fn, _)) = self.waiting.get(&task)
            && (*kind != *want_kind || function != want_fn)
        {
            let (step, want_kind, want_fn) = (*step, *want_kind, want_fn.clone());
            return Err(self.diverged(step, (*kind, function), (want_kind, &want_fn)));
        }
        Ok(())
    }

    fn schedule_flush(&mut self) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            self.port.flush.do_send(FlushOutbox);
        }
    }

    /// Takes the children waiting to be created.
    pub(crate) fn take_outbox(&mut self) -> Vec<NewTask> {
        self.flush_scheduled = false;
        std::mem::take(&mut self.outbox)
    }

    /// Takes the next step for a child of `spec`: resolved from history, or
    /// queued for creation; `waiter` is told the outcome.
    fn begin(&mut self, spec: TaskSpec, waiter: Waiter) {
        let step = self.next_step;
        self.next_step += 1;
        let id = TaskId::for_step(self.execution_id, step);
        if let Some(error) = &self.failed {
            deliver(waiter, Err(error.clone()));
            return;
        }
        if let Some(record) = self.history.get(&step).cloned() {
            if record.kind != spec.kind || record.function != spec.function {
                let error = self.diverged(step, (record.kind, &record.function), (spec.kind, &spec.function));
                deliver(waiter, Err(error));
                return;
            }
            if let Some(outcome) = record.outcome() {
                deliver(waiter, outcome);
                return;
            }
            if record.kind == TaskKind::Sleep {
                self.port.sleeping.do_send(SleepStarted::Until(record.scheduled_for));
            }
            self.waiting.insert(id, (step, spec.kind, spec.function, waiter));
            return;
        }
        if spec.kind == TaskKind::Sleep {
            self.port
                .sleeping
                .do_send(SleepStarted::After(spec.delay.unwrap_or_default()));
        }
        self.waiting
            .insert(id, (step, spec.kind, spec.function.clone(), waiter));
        self.outbox.push(NewTask {
            execution_id: self.execution_id,
            parent_id: Some(self.task_id),
            step,
            spec,
            result: None,
        });
        self.schedule_flush();
    }
}

fn deliver(waiter: Waiter, outcome: StepOutcome) {
    match waiter {
        Waiter::One(tx) => {
            let _ = tx.send(outcome);
        }
        Waiter::Group(gather, index) => gather.borrow_mut().fill(index, outcome),
    }
}

/// Handed to orchestrator code: the only door to the outside world an
/// orchestrator may use, because everything through it is recorded and replayed.
///
/// ```no_run
/// use std::time::Duration;
/// use courier_runtime::OrchestratorContext;
/// use courier_core::TaskError;
///
/// async fn onboarding(ctx: OrchestratorContext, user: String) -> Result<String, TaskError> {
///     let account: u64 = ctx.call("create_account", &user).await?;
///     ctx.sleep(Duration::from_secs(3600)).await?;
///     let confirmed: bool = ctx.wait_signal("email_confirmed").await?;
///     let sent: Vec<bool> = ctx.map("send_welcome", vec![account; 3]).await?;
///     ctx.increment("welcomes", sent.len() as f64).await?;
///     Ok(format!("{user}: confirmed={confirmed}"))
/// }
/// ```
#[derive(Clone)]
pub struct OrchestratorContext {
    pub(crate) driver: Rc<RefCell<Driver>>,
}

pub(crate) fn to_value<A: Serialize>(args: A) -> Result<Value, TaskError> {
    serde_json::to_value(args)
        .map_err(|e| TaskError::non_retryable(TaskError::SERIALIZATION, format!("arguments are not JSON: {e}")))
}

pub(crate) fn from_value<R: DeserializeOwned>(value: Value) -> Result<R, TaskError> {
    serde_json::from_value(value).map_err(|e| {
        TaskError::non_retryable(
            TaskError::SERIALIZATION,
            format!("a step's result does not have the expected type: {e}"),
        )
    })
}

pub(crate) async fn receive(rx: oneshot::Receiver<StepOutcome>) -> StepOutcome {
    rx.await
        .unwrap_or_else(|_| Err(TaskError::new(TaskError::CANCELLED, "the execution stopped")))
}

impl OrchestratorContext {
    pub(crate) fn new(driver: Rc<RefCell<Driver>>) -> Self {
        OrchestratorContext { driver }
    }

    /// The execution this orchestrator drives.
    pub fn execution_id(&self) -> ExecutionId {
        self.driver.borrow().execution_id
    }

    pub(crate) fn step(&self, spec: TaskSpec) -> oneshot::Receiver<StepOutcome> {
        let (tx, rx) = oneshot::channel();
        self.driver.borrow_mut().begin(spec, Waiter::One(tx));
        rx
    }

    /// Calls an activity and waits for its result (retried by its policy).
    /// The step is taken now, in call order, even if the future is awaited later.
    pub fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        function: &str,
        args: A,
    ) -> impl Future<Output = Result<R, TaskError>> + use<A, R> {
        let spec = to_value(args).map(|args| self.driver.borrow().functions.spec(function, args));
        let rx = spec.map(|spec| self.step(spec));
        async move { from_value(receive(rx?).await?) }
    }

    /// [`call`](Self::call) with a spec adjusted by `adjust` (queue, tags, priority, delay).
    pub fn call_with<A: Serialize, R: DeserializeOwned, F: FnOnce(TaskSpec) -> TaskSpec>(
        &self,
        function: &str,
        args: A,
        adjust: F,
    ) -> impl Future<Output = Result<R, TaskError>> + use<A, R, F> {
        let spec = to_value(args).map(|args| adjust(self.driver.borrow().functions.spec(function, args)));
        let rx = spec.map(|spec| self.step(spec));
        async move { from_value(receive(rx?).await?) }
    }

    /// Calls `function` once per item, all at once, and gathers the results in
    /// item order. Fails with the first failed item's error (by position) once
    /// every item has settled. Each item costs the same however many there are.
    pub fn map<A: Serialize, R: DeserializeOwned, I: IntoIterator<Item = A>>(
        &self,
        function: &str,
        items: I,
    ) -> impl Future<Output = Result<Vec<R>, TaskError>> + use<A, R, I> {
        let specs: Result<Vec<TaskSpec>, TaskError> = {
            let driver = self.driver.borrow();
            items
                .into_iter()
                .map(|item| to_value(item).map(|args| driver.functions.spec(function, args)))
                .collect()
        };
        let started = specs.map(|specs| {
            let (done_tx, done_rx) = oneshot::channel();
            let gather = Rc::new(RefCell::new(Gather {
                results: vec![None; specs.len()],
                remaining: specs.len(),
                done: Some(done_tx),
            }));
            if specs.is_empty() {
                gather.borrow_mut().done.take().map(|tx| tx.send(()));
            }
            let mut driver = self.driver.borrow_mut();
            for (index, spec) in specs.into_iter().enumerate() {
                driver.begin(spec, Waiter::Group(gather.clone(), index));
            }
            (gather, done_rx)
        });
        async move {
            let (gather, done) = started?;
            let _ = done.await;
            let results = std::mem::take(&mut gather.borrow_mut().results);
            results
                .into_iter()
                .map(|r| from_value(r.unwrap_or_else(|| Err(TaskError::new(TaskError::CANCELLED, "not settled")))?))
                .collect()
        }
    }

    /// Sleeps durably: survives restarts, and holds no worker slot while it lasts.
    pub fn sleep(&self, duration: Duration) -> impl Future<Output = Result<(), TaskError>> + use<> {
        let spec = TaskSpec::new(
            TaskKind::Sleep,
            "courier.sleep",
            json!({"ms": duration.as_millis() as u64}),
        )
        .with_delay(duration);
        let rx = self.step(spec);
        async move { receive(rx).await.map(|_| ()) }
    }

    /// Waits for the signal `name` (one sent earlier counts) and returns its payload.
    pub fn wait_signal<T: DeserializeOwned>(&self, name: &str) -> impl Future<Output = Result<T, TaskError>> + use<T> {
        let rx = self.step(TaskSpec::new(TaskKind::SignalWait, name, Value::Null));
        async move { from_value(receive(rx).await?) }
    }

    /// Waits for the signal `name` at most `timeout`; `None` if it did not come.
    pub fn wait_signal_for<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<T>, TaskError>> + use<T> {
        let rx = self.step(TaskSpec::new(TaskKind::SignalWait, name, Value::Null).with_delay(timeout));
        async move {
            match receive(rx).await {
                Ok(payload) => Ok(Some(from_value(payload)?)),
                Err(e) if e.kind == TaskError::TIMEOUT => Ok(None),
                Err(e) => Err(e),
            }
        }
    }

    /// Records `effect` at the next step (applied once, however often replayed)
    /// and returns its recorded result.
    pub(crate) fn effect(&self, effect: Effect) -> impl Future<Output = Result<Value, TaskError>> + use<> {
        self.effect_made(effect.function_name(), Box::new(move || Ok(effect)))
    }

    /// [`effect`](Self::effect), made only when the step has no record yet (a
    /// replay reads the recorded result and never calls `make`).
    fn effect_made(
        &self,
        function: String,
        make: Box<dyn FnOnce() -> Result<Effect, TaskError> + '_>,
    ) -> impl Future<Output = Result<Value, TaskError>> + use<> {
        match self.reserve_effect(&function) {
            (_, Some(outcome)) => futures::future::Either::Left(futures::future::ready(outcome)),
            (step, None) => match make() {
                Ok(effect) => futures::future::Either::Right(self.write_effect(step, function, effect)),
                Err(error) => futures::future::Either::Left(futures::future::ready(Err(error))),
            },
        }
    }

    /// Takes the next step for an effect recorded as `function`, with its
    /// outcome if it is settled already (the history has it, or the code
    /// diverged); without one, the step is free to write.
    pub(crate) fn reserve_effect(&self, function: &str) -> (i64, Option<StepOutcome>) {
        let mut driver = self.driver.borrow_mut();
        let step = driver.next_step;
        driver.next_step += 1;
        if let Some(error) = &driver.failed {
            return (step, Some(Err(error.clone())));
        }
        if let Some(record) = driver.history.get(&step).cloned() {
            let outcome = if record.kind != TaskKind::Effect || record.function != function {
                Err(driver.diverged(step, (record.kind, &record.function), (TaskKind::Effect, function)))
            } else {
                Ok(record.result.unwrap_or(Value::Null))
            };
            return (step, Some(outcome));
        }
        (step, None)
    }

    /// Records `effect` at `step` (taken by [`reserve_effect`](Self::reserve_effect))
    /// and returns its recorded result.
    pub(crate) fn write_effect(
        &self,
        step: i64,
        function: String,
        effect: Effect,
    ) -> impl Future<Output = Result<Value, TaskError>> + use<> {
        let driver = self.driver.borrow();
        let write = EffectWrite {
            fence: Some(driver.lease),
            execution_id: driver.execution_id,
            parent_id: Some(driver.task_id),
            step,
            effect,
        };
        let effects = driver.port.effects.clone();
        let admission = driver.port.admission.clone();
        let driver = self.driver.clone();
        async move {
            let admitted = admission
                .admit(1)
                .await
                .map_err(|e| TaskError::new("store", e.to_string()))?;
            let applied = effects
                .send(ApplyEffect(write, admitted))
                .await
                .map_err(|e| TaskError::new(TaskError::CANCELLED, e.to_string()))?
                .map_err(|e| TaskError::new("store", e.to_string()))?;
            if let ChildCreated::Existing {
                kind,
                function: recorded,
                ..
            } = &applied.task
                && (*kind != TaskKind::Effect || *recorded != function)
            {
                let error = driver
                    .borrow_mut()
                    .diverged(step, (*kind, recorded), (TaskKind::Effect, &function));
                return Err(error);
            }
            Ok(applied.result)
        }
    }

    /// The time, read from this node's clock on the first run and recorded as a
    /// step, so every replay gets the same instant (an orchestrator must not read
    /// the clock itself: a replay would take another branch).
    ///
    /// ```no_run
    /// # async fn flow(ctx: courier_runtime::OrchestratorContext) -> Result<(), courier_core::TaskError> {
    /// let started = ctx.now().await?;
    /// let deadline = started + chrono::Duration::hours(24);
    /// # let _ = deadline; Ok(()) }
    /// ```
    pub fn now(&self) -> impl Future<Output = Result<DateTime<Utc>, TaskError>> + use<> {
        self.record("now", Utc::now)
    }

    /// A random number in `[0, 1)`, drawn on the first run and recorded, so every
    /// replay gets the same one.
    pub fn random(&self) -> impl Future<Output = Result<f64, TaskError>> + use<> {
        self.record("random", rand::random::<f64>)
    }

    /// A fresh random (v4) UUID, made on the first run and recorded, so every
    /// replay gets the same one (an idempotency key for a call to the outside
    /// world, say).
    pub fn uuid(&self) -> impl Future<Output = Result<Uuid, TaskError>> + use<> {
        self.record("uuid", Uuid::new_v4)
    }

    /// Any value the code makes that must not change on replay (Temporal's side
    /// effect): `make` runs on the first run only, its value is recorded under
    /// `name` as a step, and every replay reads it back. `name` is checked on
    /// replay like a function's, so reordered code fails loudly instead of
    /// reading another step's value.
    ///
    /// ```no_run
    /// # async fn flow(ctx: courier_runtime::OrchestratorContext) -> Result<(), courier_core::TaskError> {
    /// let shard: u32 = ctx.record("shard", || rand::random::<u32>() % 16).await?;
    /// # let _ = shard; Ok(()) }
    /// ```
    pub fn record<T: Serialize + DeserializeOwned, F: FnOnce() -> T>(
        &self,
        name: &str,
        make: F,
    ) -> impl Future<Output = Result<T, TaskError>> + use<T, F> {
        let name = name.to_string();
        let function = format!("courier.record:{name}");
        let applied = self.effect_made(
            function,
            Box::new(move || {
                let value = serde_json::to_value(make()).map_err(|e| {
                    TaskError::non_retryable(TaskError::SERIALIZATION, format!("a value to record is not JSON: {e}"))
                })?;
                Ok(Effect::Record { name, value })
            }),
        );
        async move {
            let value = applied.await?;
            serde_json::from_value(value)
                .map_err(|e| TaskError::non_retryable(TaskError::SERIALIZATION, format!("a recorded value: {e}")))
        }
    }

    /// Reports progress of the execution (recorded once, however often replayed).
    pub fn progress(&self, progress: Progress) -> impl Future<Output = Result<(), TaskError>> + use<> {
        let applied = self.effect(Effect::Progress(progress));
        async move { applied.await.map(|_| ()) }
    }

    /// Adds `by` to the execution's counter `name` and returns its new value
    /// (applied once, however often replayed).
    pub fn increment(&self, name: &str, by: f64) -> impl Future<Output = Result<f64, TaskError>> + use<> {
        let applied = self.effect(Effect::Increment {
            name: name.to_string(),
            amount: by,
        });
        async move { Ok(applied.await?.as_f64().unwrap_or_default()) }
    }

    /// Sets the execution's state value `key` (applied once, however often replayed).
    pub fn set_state<V: Serialize>(&self, key: &str, value: V) -> impl Future<Output = Result<(), TaskError>> + use<V> {
        let applied = to_value(value).map(|value| {
            self.effect(Effect::SetState {
                key: key.to_string(),
                value,
            })
        });
        async move { applied?.await.map(|_| ()) }
    }

    /// Sends a notification for people, once however often the orchestrator
    /// replays (it is recorded as a step; the node's notification filters and
    /// hooks, which run around sends through `Notifications`, do not run here:
    /// a replay must send exactly what the code wrote). Returns its id.
    pub fn notify(&self, notification: NewNotification) -> impl Future<Output = Result<Uuid, TaskError>> + use<> {
        let checked = crate::notifications::validate(&notification)
            .map_err(|e| TaskError::non_retryable("invalid_notification", e.to_string()));
        let applied = checked.map(|()| {
            let ttl = self.driver.borrow().notification_ttl;
            self.effect(Effect::Notify { notification, ttl })
        });
        async move {
            let id = applied?.await?;
            serde_json::from_value(id).map_err(|e| {
                TaskError::non_retryable(TaskError::SERIALIZATION, format!("a notification's recorded id: {e}"))
            })
        }
    }

    /// Sends a queued notification to every session of `user` (see [`notify`](Self::notify)).
    pub fn notify_user(
        &self,
        user: &str,
        kind: &str,
        payload: Value,
    ) -> impl Future<Output = Result<Uuid, TaskError>> + use<> {
        self.notify(NewNotification::new(Target::User(user.to_string()), kind, payload))
    }

    /// Sends a queued notification to one browser session (see [`notify`](Self::notify)).
    pub fn notify_session(
        &self,
        session: &str,
        kind: &str,
        payload: Value,
    ) -> impl Future<Output = Result<Uuid, TaskError>> + use<> {
        self.notify(NewNotification::new(
            Target::Session(session.to_string()),
            kind,
            payload,
        ))
    }

    /// Shows this execution's progress to `target` as one toast that updates in
    /// place: a `generic` notification grouped by the execution's id, so each
    /// report replaces the last (`title`, `message`, and `percent` when known).
    pub fn notify_progress(
        &self,
        target: Target,
        title: &str,
        progress: &Progress,
    ) -> impl Future<Output = Result<Uuid, TaskError>> + use<> {
        let mut payload = serde_json::Map::new();
        payload.insert("title".into(), json!(title));
        payload.insert("message".into(), json!(progress.message.clone().unwrap_or_default()));
        if let Some(percent) = progress.percent {
            payload.insert("percent".into(), json!(percent));
        }
        payload.insert("execution_id".into(), json!(self.execution_id()));
        let notification =
            NewNotification::new(target, "generic", Value::Object(payload)).with_group(self.execution_id().to_string());
        self.notify(notification)
    }
}
