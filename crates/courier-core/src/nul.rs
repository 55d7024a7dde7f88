//! NUL characters (`\u0000`) in what a write stores.
//!
//! Postgres cannot keep a NUL in `text` or `jsonb`; SQLite can. A value must
//! behave the same whichever store holds it, and one item of a group commit must
//! never fail its neighbours, so both stores refuse such an item on its own
//! (with [`StoreError::Invalid`] naming the field) before any SQL runs:
//! [`WriteBatch::split_nul`] does it for a batch.

use std::borrow::Cow;

use serde_json::Value;

use crate::error::{StoreError, TaskError};
use crate::execution::NewExecution;
use crate::function::FunctionSettings;
use crate::node::NodeReport;
use crate::notification::{NewNotification, Target};
use crate::progress::Progress;
use crate::schedule::ScheduleRecord;
use crate::store::{AttemptWrite, Effect, EffectWrite, WriteBatch, WriteResults};
use crate::task::{Completion, NewTask, Outcome, Remember, TaskSpec};
use crate::webhook::DeliveryAttempt;

/// Whether `text` holds a NUL.
pub fn text_has_nul(text: &str) -> bool {
    text.as_bytes().contains(&0)
}

/// Whether any string or object key inside `value` holds a NUL.
///
/// ```
/// use serde_json::json;
/// assert!(courier_core::value_has_nul(&json!({"a": ["ok", "b\u{0}"]})));
/// assert!(courier_core::value_has_nul(&json!({"k\u{0}": 1})));
/// assert!(!courier_core::value_has_nul(&json!({"a": "\\u0000 spelled out"})));
/// ```
pub fn value_has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => text_has_nul(s),
        Value::Array(items) => items.iter().any(value_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| text_has_nul(k) || value_has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// The refusal of a value whose `field` holds a NUL.
pub fn nul_refused(field: &str) -> StoreError {
    StoreError::Invalid(format!(
        "{field} holds a NUL character (\\u0000), which no Courier store keeps"
    ))
}

/// Something a write stores, which can say where it holds a NUL.
pub trait HoldsNul {
    /// The first field holding a NUL, if any.
    fn nul_field(&self) -> Option<&'static str>;

    /// `Err` naming that field, if there is one.
    fn check_nul(&self) -> Result<(), StoreError> {
        self.nul_field().map_or(Ok(()), |field| Err(nul_refused(field)))
    }
}

fn first(checks: &[(&'static str, bool)]) -> Option<&'static str> {
    checks.iter().find(|(_, has)| *has).map(|(field, _)| *field)
}

impl HoldsNul for TaskSpec {
    fn nul_field(&self) -> Option<&'static str> {
        first(&[
            ("function", text_has_nul(&self.function)),
            ("version", self.version.as_deref().is_some_and(text_has_nul)),
            ("queue", text_has_nul(&self.queue)),
            ("tags", self.tags.iter().any(|t| text_has_nul(t))),
            ("args", value_has_nul(&self.args)),
            (
                "retry.retry_on",
                self.retry.retry_on.iter().flatten().any(|k| text_has_nul(k)),
            ),
        ])
    }
}

impl HoldsNul for NewExecution {
    fn nul_field(&self) -> Option<&'static str> {
        if self.idempotency_key.as_deref().is_some_and(text_has_nul) {
            return Some("idempotency_key");
        }
        self.spec.nul_field()
    }
}

impl HoldsNul for NewTask {
    fn nul_field(&self) -> Option<&'static str> {
        if self.result.as_ref().is_some_and(value_has_nul) {
            return Some("result");
        }
        self.spec.nul_field()
    }
}

impl HoldsNul for ScheduleRecord {
    fn nul_field(&self) -> Option<&'static str> {
        let d = &self.definition;
        first(&[
            ("id", text_has_nul(&self.id)),
            ("function", text_has_nul(&d.function)),
            ("args", value_has_nul(&d.args)),
            ("cron", d.cron.as_deref().is_some_and(text_has_nul)),
            ("timezone", text_has_nul(&d.timezone)),
            ("queue", d.queue.as_deref().is_some_and(text_has_nul)),
        ])
    }
}

impl HoldsNul for NodeReport {
    fn nul_field(&self) -> Option<&'static str> {
        first(&[
            ("version", text_has_nul(&self.version)),
            ("functions", self.functions.iter().any(|f| text_has_nul(f))),
            ("gauges", self.gauges.keys().any(|k| text_has_nul(k))),
            (
                "external_workers",
                self.external_workers
                    .iter()
                    .any(|w| text_has_nul(&w.id) || w.functions.iter().chain(&w.queues).any(|t| text_has_nul(t))),
            ),
        ])
    }
}

impl HoldsNul for FunctionSettings {
    fn nul_field(&self) -> Option<&'static str> {
        first(&[
            ("queue", self.queue.as_deref().is_some_and(text_has_nul)),
            ("tags", self.tags.iter().flatten().any(|t| text_has_nul(t))),
            (
                "concurrency_key.key",
                self.concurrency_key.as_ref().is_some_and(|c| text_has_nul(&c.key)),
            ),
            (
                "rate_limit.key",
                self.rate_limit
                    .as_ref()
                    .and_then(|r| r.key.as_deref())
                    .is_some_and(text_has_nul),
            ),
            (
                "retry.retry_on",
                self.retry
                    .iter()
                    .flat_map(|r| r.retry_on.iter().flatten())
                    .any(|k| text_has_nul(k)),
            ),
            (
                "retry.non_retryable",
                self.retry
                    .iter()
                    .flat_map(|r| r.non_retryable.iter())
                    .any(|k| text_has_nul(k)),
            ),
        ])
    }
}

impl HoldsNul for TaskError {
    fn nul_field(&self) -> Option<&'static str> {
        first(&[
            ("error.kind", text_has_nul(&self.kind)),
            ("error.message", text_has_nul(&self.message)),
            ("error.details", self.details.as_ref().is_some_and(value_has_nul)),
        ])
    }
}

impl HoldsNul for DeliveryAttempt {
    fn nul_field(&self) -> Option<&'static str> {
        first(&[
            ("response", self.response.as_deref().is_some_and(text_has_nul)),
            ("error", self.error.as_deref().is_some_and(text_has_nul)),
        ])
    }
}

impl HoldsNul for AttemptWrite {
    fn nul_field(&self) -> Option<&'static str> {
        self.attempt.nul_field()
    }
}

impl HoldsNul for Completion {
    fn nul_field(&self) -> Option<&'static str> {
        match &self.outcome {
            Outcome::Succeeded { result, remember } => {
                let key = |r: &Remember| match r {
                    Remember::Cache { key, .. } | Remember::Idempotency { key } => text_has_nul(key),
                };
                first(&[
                    ("result", value_has_nul(result)),
                    ("remember", remember.iter().any(key)),
                ])
            }
            Outcome::Retry { error, .. } => error.nul_field(),
            Outcome::Failed { error, reason, .. } => error.nul_field().or(first(&[("reason", text_has_nul(reason))])),
        }
    }
}

impl HoldsNul for Progress {
    fn nul_field(&self) -> Option<&'static str> {
        first(&[
            ("progress.step", self.step.as_deref().is_some_and(text_has_nul)),
            ("progress.status", self.status.as_deref().is_some_and(text_has_nul)),
            ("progress.message", self.message.as_deref().is_some_and(text_has_nul)),
            ("progress.detail", self.detail.as_ref().is_some_and(value_has_nul)),
        ])
    }
}

impl HoldsNul for NewNotification {
    fn nul_field(&self) -> Option<&'static str> {
        let target = match &self.target {
            Target::Session(k) | Target::User(k) | Target::Source(k) => text_has_nul(k),
            Target::Broadcast => false,
        };
        first(&[
            ("target", target),
            ("kind", text_has_nul(&self.kind)),
            ("group", self.group.as_deref().is_some_and(text_has_nul)),
            ("payload", value_has_nul(&self.payload)),
        ])
    }
}

impl HoldsNul for EffectWrite {
    fn nul_field(&self) -> Option<&'static str> {
        match &self.effect {
            Effect::Increment { name, .. } => first(&[("counter", text_has_nul(name))]),
            Effect::SetState { key, value } => {
                first(&[("state key", text_has_nul(key)), ("state value", value_has_nul(value))])
            }
            Effect::Progress(progress) => progress.nul_field(),
            Effect::Notify { notification, .. } => notification.nul_field(),
            Effect::Record { name, value } => first(&[
                ("record name", text_has_nul(name)),
                ("recorded value", value_has_nul(value)),
            ]),
            Effect::StartChild { execution } | Effect::ContinueAsNew { execution } => execution.nul_field(),
            Effect::CancelChild { reason, .. } => first(&[("reason", text_has_nul(reason))]),
        }
    }
}

/// The items of a [`WriteBatch`] refused for a NUL, by section and position, to
/// be put back among the results of the rest (see [`WriteBatch::split_nul`]).
#[derive(Debug, Default)]
pub struct NulRefusals {
    dispatches: Vec<(usize, StoreError)>,
    children: Vec<(usize, StoreError)>,
    effects: Vec<(usize, StoreError)>,
    delivery_attempts: Vec<(usize, StoreError)>,
    completions: Vec<(usize, StoreError)>,
}

impl NulRefusals {
    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
            && self.children.is_empty()
            && self.effects.is_empty()
            && self.delivery_attempts.is_empty()
            && self.completions.is_empty()
    }

    /// The results of the whole batch: `applied` (the results of the batch
    /// without the refused items) with each refusal put back at its position.
    pub fn merge(self, mut applied: WriteResults) -> WriteResults {
        fn put_back<T>(results: &mut Vec<Result<T, StoreError>>, refused: Vec<(usize, StoreError)>) {
            for (at, e) in refused {
                results.insert(at.min(results.len()), Err(e));
            }
        }
        put_back(&mut applied.dispatches, self.dispatches);
        put_back(&mut applied.children, self.children);
        put_back(&mut applied.effects, self.effects);
        put_back(&mut applied.delivery_attempts, self.delivery_attempts);
        put_back(&mut applied.completions, self.completions);
        applied
    }
}

/// Splits `items` into those to apply and the positions (ascending) refused.
fn split<T: HoldsNul + Clone>(items: &[T], refused: &mut Vec<(usize, StoreError)>) -> Vec<T> {
    let mut kept = Vec::with_capacity(items.len());
    for (at, item) in items.iter().enumerate() {
        match item.check_nul() {
            Ok(()) => kept.push(item.clone()),
            Err(e) => refused.push((at, e)),
        }
    }
    kept
}

impl WriteBatch {
    /// The batch without its items holding a NUL, and those items' refusals.
    ///
    /// Borrows when nothing holds one, which is the case that matters for speed.
    ///
    /// ```
    /// use courier_core::{NewExecution, StoreError, TaskKind, TaskSpec, WriteBatch, WriteResults};
    /// let spec = |args| TaskSpec::new(TaskKind::Activity, "f", args);
    /// let batch = WriteBatch {
    ///     dispatches: vec![NewExecution::new(spec("a\u{0}".into())), NewExecution::new(spec("b".into()))],
    ///     ..WriteBatch::default()
    /// };
    /// let (rest, refused) = batch.split_nul();
    /// assert_eq!(rest.dispatches.len(), 1);
    /// let mut applied = WriteResults::default();
    /// applied.dispatches.push(Err(StoreError::Invalid("stand-in for the applied item".into())));
    /// let merged = refused.merge(applied);
    /// assert!(matches!(&merged.dispatches[0], Err(StoreError::Invalid(m)) if m.contains("args")));
    /// ```
    pub fn split_nul(&self) -> (Cow<'_, WriteBatch>, NulRefusals) {
        let any = self.dispatches.iter().any(|d| d.nul_field().is_some())
            || self
                .children
                .iter()
                .any(|g| g.tasks.iter().any(|t| t.nul_field().is_some()))
            || self.effects.iter().any(|e| e.nul_field().is_some())
            || self.delivery_attempts.iter().any(|a| a.nul_field().is_some())
            || self.completions.iter().any(|c| c.nul_field().is_some());
        if !any {
            return (Cow::Borrowed(self), NulRefusals::default());
        }
        let mut refused = NulRefusals::default();
        let dispatches = split(&self.dispatches, &mut refused.dispatches);
        // A child group is created whole or not at all, so one NUL refuses its group.
        let mut children = Vec::with_capacity(self.children.len());
        for (at, group) in self.children.iter().enumerate() {
            match group.tasks.iter().find_map(|t| t.check_nul().err()) {
                None => children.push(group.clone()),
                Some(e) => refused.children.push((at, e)),
            }
        }
        let effects = split(&self.effects, &mut refused.effects);
        let delivery_attempts = split(&self.delivery_attempts, &mut refused.delivery_attempts);
        // A release carries no text.
        let releases = self.releases.clone();
        let completions = split(&self.completions, &mut refused.completions);
        let rest = WriteBatch {
            dispatches,
            children,
            effects,
            delivery_attempts,
            releases,
            completions,
            claim: self.claim.clone(),
        };
        (Cow::Owned(rest), refused)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{TaskKind, WriteResults};

    #[test]
    fn refusals_go_back_to_their_positions() {
        let spec = |args: Value| NewExecution::new(TaskSpec::new(TaskKind::Activity, "f", args));
        let batch = WriteBatch {
            dispatches: vec![
                spec(json!("\u{0}")),
                spec(json!(1)),
                spec(json!({"\u{0}": 1})),
                spec(json!(2)),
            ],
            ..WriteBatch::default()
        };
        let (rest, refused) = batch.split_nul();
        assert_eq!(rest.dispatches.len(), 2);
        let applied = WriteResults {
            dispatches: vec![
                Err(StoreError::Conflict {
                    id: "1".into(),
                    detail: String::new(),
                }),
                Err(StoreError::Conflict {
                    id: "2".into(),
                    detail: String::new(),
                }),
            ],
            ..WriteResults::default()
        };
        let merged = refused.merge(applied);
        let ids: Vec<String> = merged
            .dispatches
            .iter()
            .map(|r| match r {
                Err(StoreError::Conflict { id, .. }) => id.clone(),
                Err(StoreError::Invalid(m)) => m.split(' ').next().unwrap_or_default().to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(ids, ["args", "1", "args", "2"]);
    }

    #[test]
    fn a_clean_batch_is_borrowed() {
        let batch = WriteBatch {
            dispatches: vec![NewExecution::new(TaskSpec::new(TaskKind::Activity, "f", json!("x")))],
            ..WriteBatch::default()
        };
        assert!(matches!(batch.split_nul(), (Cow::Borrowed(_), r) if r.is_empty()));
    }
}
