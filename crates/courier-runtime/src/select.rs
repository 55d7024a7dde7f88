//! `ctx.select`: the first of several steps to settle wins, and the choice is
//! recorded as a step of its own, so every replay takes the same branch even when
//! the history shows the others settled too.

use std::future::Future;

use courier_core::{Effect, TaskError};
use futures::FutureExt;
use futures::future::LocalBoxFuture;
use serde_json::json;

use crate::orchestrator::{OrchestratorContext, from_value};

/// Which branch of a [`select`](OrchestratorContext::select) settled first, and how.
#[derive(Debug)]
pub struct Selected<T> {
    /// Its position among the branches.
    pub index: usize,
    /// What it settled with (a failed branch wins like any other).
    pub outcome: Result<T, TaskError>,
}

/// What the choice is recorded as.
const RECORDED: &str = "select";

impl OrchestratorContext {
    /// Waits for the first of `branches` to settle (children, activities, timers,
    /// signal waits: any step futures, mapped to one type) and returns which one
    /// and its outcome. The choice is recorded, so a replay takes the same branch.
    /// The others are not cancelled: a losing activity or child still runs, a
    /// losing timer fires into nothing, and a losing signal wait still takes the
    /// next signal of its name. If several had settled before the choice was
    /// first recorded (a node died in between), the first in the list wins.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use futures::FutureExt;
    /// # async fn flow(ctx: courier_runtime::OrchestratorContext) -> Result<(), courier_core::TaskError> {
    /// enum Event { Approved(bool), TimedOut }
    /// let chosen = ctx
    ///     .select(vec![
    ///         ctx.wait_signal::<bool>("approval").map(|r| r.map(Event::Approved)).boxed_local(),
    ///         ctx.sleep(Duration::from_secs(86_400)).map(|r| r.map(|()| Event::TimedOut)).boxed_local(),
    ///     ])
    ///     .await?;
    /// match chosen.outcome? {
    ///     Event::Approved(yes) => { /* ... */ let _ = yes; }
    ///     Event::TimedOut => { /* ... */ }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn select<T, F>(&self, branches: Vec<F>) -> impl Future<Output = Result<Selected<T>, TaskError>> + use<T, F>
    where
        T: 'static,
        F: Future<Output = Result<T, TaskError>> + 'static,
    {
        let function = Effect::Record {
            name: RECORDED.into(),
            value: json!(null),
        }
        .function_name();
        let (step, recorded) = self.reserve_effect(&function);
        let ctx = self.clone();
        async move {
            let mut branches: Vec<LocalBoxFuture<'static, Result<T, TaskError>>> =
                branches.into_iter().map(FutureExt::boxed_local).collect();
            if branches.is_empty() {
                return Err(TaskError::non_retryable("select", "select needs at least one branch"));
            }
            if let Some(recorded) = recorded {
                let index: usize = from_value(recorded?)?;
                if index >= branches.len() {
                    return Err(TaskError::non_retryable(
                        TaskError::NON_DETERMINISM,
                        format!(
                            "step {step} recorded branch {index} of a select that now has {} branches",
                            branches.len()
                        ),
                    ));
                }
                let outcome = branches.swap_remove(index).await;
                return Ok(Selected { index, outcome });
            }
            let (outcome, index, _losers) = futures::future::select_all(branches).await;
            let choice = Effect::Record {
                name: RECORDED.into(),
                value: json!(index),
            };
            ctx.write_effect(step, function, choice).await?;
            Ok(Selected { index, outcome })
        }
    }
}
