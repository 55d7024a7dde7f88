//! Child executions and continue-as-new: what an orchestrator starts as an
//! execution of its own, recorded at a step like any effect.
//!
//! A child's id is [`ExecutionId::started_at`] the parent's step, so a replay
//! names the same child without asking the store. The store starts the child in
//! the same transaction that records the step, and reports the child's end to
//! the parent as the signal its [`ParentLink`] names, in the transaction that
//! ends the child: awaiting a child is a signal wait, durable like any other.

use std::future::Future;
use std::time::Duration;

use courier_core::{
    ChildOutcome, Effect, ExecutionId, NewExecution, ParentClose, ParentLink, TaskError, TaskId, TaskKind, TaskSpec,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::DispatchOptions;
use crate::orchestrator::{OrchestratorContext, from_value, receive, to_value};

/// How a child execution is started: dispatch options over its function's, and
/// what the parent's end does to it.
///
/// ```
/// use std::time::Duration;
/// use courier_core::ParentClose;
/// use courier_runtime::ChildOptions;
/// let options = ChildOptions::default().close(ParentClose::Abandon).expiry(Duration::from_secs(600));
/// assert_eq!(options.close, ParentClose::Abandon);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChildOptions {
    /// What the parent's end does to the child (default: cancel it).
    pub close: ParentClose,
    /// Queue, tags, priority, delay and expiry over the function's (an
    /// idempotency key is not used: the step already makes the start happen once).
    pub dispatch: DispatchOptions,
}

impl ChildOptions {
    /// Sets the parent-close policy.
    pub fn close(mut self, close: ParentClose) -> Self {
        self.close = close;
        self
    }

    /// Times the child out this long after it starts.
    pub fn expiry(mut self, expiry: Duration) -> Self {
        self.dispatch.expiry = Some(expiry);
        self
    }

    /// Routes the child's root task to `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.dispatch.queue = Some(queue.into());
        self
    }
}

/// A child execution an orchestrator started.
///
/// ```no_run
/// # async fn flow(ctx: courier_runtime::OrchestratorContext) -> Result<(), courier_core::TaskError> {
/// let child = ctx.start_child("import_batch", 7).await?;
/// // ... other steps while it runs ...
/// let imported: u64 = child.result().await?;
/// # let _ = imported; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ChildExecution {
    id: ExecutionId,
    link: ParentLink,
    ctx: OrchestratorContext,
}

impl ChildExecution {
    /// The child's execution id.
    pub fn id(&self) -> ExecutionId {
        self.id
    }

    /// Waits durably for the child to end and returns its result; its error if it
    /// failed, `cancelled` or `timeout` if it was cancelled or timed out. Takes a
    /// step when called.
    pub fn result<R: DeserializeOwned>(&self) -> impl Future<Output = Result<R, TaskError>> + use<R> {
        let rx = self.ctx.step(TaskSpec::new(
            TaskKind::SignalWait,
            self.link.signal_name(),
            Value::Null,
        ));
        async move { from_value(end_of(receive(rx).await?)?) }
    }
}

impl ChildExecution {
    /// Cancels the child (and its own children, by their policies), recorded as
    /// a step so a replay does not cancel again. Its end then reaches this
    /// orchestrator like any other: a wait for its result gets `cancelled`. A
    /// child that has ended already is left alone.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use futures::FutureExt;
    /// # async fn flow(ctx: courier_runtime::OrchestratorContext) -> Result<(), courier_core::TaskError> {
    /// let quote = ctx.start_child("fetch_quote", "acme").await?;
    /// let first = ctx
    ///     .select(vec![
    ///         quote.result::<f64>().map(|r| r.map(Some)).boxed_local(),
    ///         ctx.sleep(Duration::from_secs(30)).map(|r| r.map(|()| None)).boxed_local(),
    ///     ])
    ///     .await?;
    /// if first.index == 1 {
    ///     quote.cancel("no quote within 30 s").await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn cancel(&self, reason: &str) -> impl Future<Output = Result<(), TaskError>> + use<> {
        let applied = self.ctx.effect(Effect::CancelChild {
            execution_id: self.id,
            reason: reason.to_string(),
        });
        async move { applied.await.map(|_| ()) }
    }
}

/// The child's result from the signal that carried its end.
fn end_of(payload: Value) -> Result<Value, TaskError> {
    let outcome: ChildOutcome = serde_json::from_value(payload)
        .map_err(|e| TaskError::non_retryable(TaskError::SERIALIZATION, format!("a child execution's end: {e}")))?;
    outcome.into_result()
}

impl OrchestratorContext {
    /// Starts `function(args)` as a child execution of its own (with its own
    /// history, retries and expiry, listed and cancellable like any execution)
    /// and returns it once the start is recorded. Cancelling this execution, or
    /// its ending while the child runs, cancels the child (see
    /// [`start_child_with`](Self::start_child_with) to let it run on).
    pub fn start_child<A: Serialize>(
        &self,
        function: &str,
        args: A,
    ) -> impl Future<Output = Result<ChildExecution, TaskError>> + use<A> {
        self.start_child_with(function, args, ChildOptions::default())
    }

    /// [`start_child`](Self::start_child) with options.
    pub fn start_child_with<A: Serialize>(
        &self,
        function: &str,
        args: A,
        options: ChildOptions,
    ) -> impl Future<Output = Result<ChildExecution, TaskError>> + use<A> {
        let args = to_value(args);
        let recorded = format!("courier.child:{function}");
        let (at, settled) = self.reserve_effect(&recorded);
        let execution_id = self.execution_id();
        let link = ParentLink {
            execution_id,
            step: at,
            close: options.close,
        };
        let id = ExecutionId::started_at(execution_id, at);
        let written = match (settled, args) {
            (Some(outcome), _) => futures::future::Either::Left(futures::future::ready(outcome)),
            (None, Err(e)) => futures::future::Either::Left(futures::future::ready(Err(e))),
            (None, Ok(args)) => {
                let mut spec = self.driver.borrow().functions.spec(function, args);
                options.dispatch.apply(&mut spec);
                let execution = NewExecution {
                    id,
                    spec,
                    expiry: options.dispatch.expiry,
                    idempotency_key: None,
                    parent: Some(link),
                };
                futures::future::Either::Right(self.write_effect(at, recorded, Effect::StartChild { execution }))
            }
        };
        let ctx = self.clone();
        async move {
            written.await?;
            Ok(ChildExecution { id, link, ctx })
        }
    }

    /// Runs `function(args)` as a child execution and waits durably for its
    /// result: [`start_child`](Self::start_child) and
    /// [`ChildExecution::result`], with both steps taken now.
    ///
    /// ```no_run
    /// # async fn flow(ctx: courier_runtime::OrchestratorContext) -> Result<(), courier_core::TaskError> {
    /// let invoice: String = ctx.call_orchestrator("bill_customer", "cus_42").await?;
    /// # let _ = invoice; Ok(()) }
    /// ```
    pub fn call_orchestrator<A: Serialize, R: DeserializeOwned>(
        &self,
        function: &str,
        args: A,
    ) -> impl Future<Output = Result<R, TaskError>> + use<A, R> {
        self.call_orchestrator_with(function, args, ChildOptions::default())
    }

    /// [`call_orchestrator`](Self::call_orchestrator) with options.
    pub fn call_orchestrator_with<A: Serialize, R: DeserializeOwned>(
        &self,
        function: &str,
        args: A,
        options: ChildOptions,
    ) -> impl Future<Output = Result<R, TaskError>> + use<A, R> {
        let started = self.start_child_with(function, args, options);
        let step = self.driver.borrow().last_step();
        let link = ParentLink {
            execution_id: self.execution_id(),
            step,
            close: ParentClose::Cancel,
        };
        let rx = self.step(TaskSpec::new(TaskKind::SignalWait, link.signal_name(), Value::Null));
        async move {
            started.await?;
            from_value(end_of(receive(rx).await?)?)
        }
    }

    /// Ends this execution and starts a fresh one of the same function with
    /// `args` and an empty history, so a loop that runs for ever keeps its
    /// history bounded. Return what it gives back straight away (`return
    /// ctx.continue_as_new(next).await;`): this execution then completes with
    /// `{"continued_as_new": "<id>"}`, and a parent waiting for it waits for the
    /// successor instead. Only an execution's root orchestrator can do this.
    ///
    /// ```no_run
    /// # use courier_core::TaskError;
    /// async fn poll_forever(ctx: courier_runtime::OrchestratorContext, round: u64) -> Result<(), TaskError> {
    ///     for _ in 0..100 {
    ///         ctx.call::<_, ()>("poll_inbox", round).await?;
    ///         ctx.sleep(std::time::Duration::from_secs(60)).await?;
    ///     }
    ///     ctx.continue_as_new(round + 1).await
    /// }
    /// ```
    pub fn continue_as_new<A: Serialize, R>(&self, args: A) -> impl Future<Output = Result<R, TaskError>> + use<A, R> {
        let (execution_id, root) = {
            let driver = self.driver.borrow();
            (
                driver.execution_id,
                driver.task_id == TaskId::root_of(driver.execution_id),
            )
        };
        let args = to_value(args);
        let (at, settled) = self.reserve_effect("courier.continue_as_new");
        let written = match (root, settled, args) {
            (false, _, _) => futures::future::Either::Left(futures::future::ready(Err(TaskError::non_retryable(
                "continue_as_new",
                "only an execution's root orchestrator can continue as new",
            )))),
            (true, Some(outcome), _) => futures::future::Either::Left(futures::future::ready(outcome)),
            (true, None, Err(e)) => futures::future::Either::Left(futures::future::ready(Err(e))),
            (true, None, Ok(args)) => {
                let function = self.driver.borrow().function.clone();
                let spec = self.driver.borrow().functions.spec(&function, args);
                let execution = NewExecution {
                    id: ExecutionId::started_at(execution_id, at),
                    spec,
                    expiry: None,
                    idempotency_key: None,
                    parent: None,
                };
                futures::future::Either::Right(self.write_effect(
                    at,
                    "courier.continue_as_new".into(),
                    Effect::ContinueAsNew { execution },
                ))
            }
        };
        let driver = self.driver.clone();
        async move {
            let recorded = written.await?;
            let successor: ExecutionId = serde_json::from_value(recorded).map_err(|e| {
                TaskError::non_retryable(TaskError::SERIALIZATION, format!("a recorded successor's id: {e}"))
            })?;
            driver.borrow_mut().continued = Some(successor);
            Err(TaskError::non_retryable(
                TaskError::CONTINUED_AS_NEW,
                format!("continued as new execution {successor}"),
            ))
        }
    }
}
