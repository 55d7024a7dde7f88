//! Whom a commit wakes, decided in one place.
//!
//! Every write the `StoreActor` makes reports its [`Change`]s; this module turns
//! them into notices (through [`Change::notices`], the one table of whom each
//! change wakes) and publishes them, once per commit. For a group commit it also
//! hands settled children straight to their orchestrator when it lives on this
//! node, instead of publishing a notice that would make it read the store.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use courier_core::{Change, Completed, ExecutionId, Notice, Notifier, Outcome, StoreResult, WriteBatch, notices_of};

use crate::live::{ChildrenSettled, Live, Settled};

/// Publishes `notices`. Fire and forget: a lost notice costs latency, never a
/// wake-up, because every waiter also polls.
pub(crate) async fn publish(notifier: &Arc<dyn Notifier>, notices: Vec<Notice>) {
    if notices.is_empty() {
        return;
    }
    if let Err(e) = notifier.publish(notices).await {
        // The notifier counts and logs (rate-limited) its own failures.
        tracing::debug!(error = %e, "could not publish notices; waiters will find out by polling");
    }
}

/// The notices for a write's changes.
pub(crate) fn notices(changes: &[Change]) -> Vec<Notice> {
    notices_of(changes)
}

/// A durable sleep fell due: its timer task is claimable work now.
pub(crate) fn timer_due(queue: String) -> Vec<Notice> {
    vec![Notice::Work { queue }]
}

/// The notices for a group commit: its changes' notices, less the child
/// settlements handed directly to orchestrators living here, plus work on the
/// queues whose concurrency slots the commit freed.
pub(crate) fn commit_notices(
    live: &Live,
    batch: &WriteBatch,
    completions: &[StoreResult<Completed>],
    changes: &[Change],
    freed_queues: BTreeSet<String>,
) -> Vec<Notice> {
    let delivered = route_settled(live, batch, completions);
    let mut notices: Vec<Notice> = notices(changes)
        .into_iter()
        .filter(|n| match n {
            Notice::Execution {
                child: Some((task, _)), ..
            } => !delivered.contains(task),
            _ => true,
        })
        .collect();
    // Before `Events`, which notices_of puts last.
    let at = notices
        .len()
        .saturating_sub(usize::from(notices.last() == Some(&Notice::Events)));
    notices.splice(at..at, freed_queues.into_iter().map(|queue| Notice::Work { queue }));
    notices
}

/// Hands each settled child whose orchestrator lives here to it, one message per
/// execution; returns the children delivered that way.
fn route_settled(
    live: &Live,
    batch: &WriteBatch,
    completions: &[StoreResult<Completed>],
) -> BTreeSet<courier_core::TaskId> {
    let mut routes: HashMap<ExecutionId, Vec<Settled>> = HashMap::new();
    for (completion, result) in batch.completions.iter().zip(completions) {
        let Ok(done) = result else { continue };
        let Some(parent_id) = done.parent_id else { continue };
        if !done.state.is_terminal() || !live.contains(done.execution_id) {
            continue;
        }
        let (result, error) = match &completion.outcome {
            Outcome::Succeeded { result, .. } => (Some(result.clone()), None),
            Outcome::Failed { error, .. } => (None, Some(error.clone())),
            Outcome::Retry { .. } => continue,
        };
        routes.entry(done.execution_id).or_default().push(Settled {
            parent_id,
            task_id: done.task_id,
            state: done.state,
            result,
            error,
        });
    }
    let mut delivered = BTreeSet::new();
    for (execution, children) in routes {
        let ids: Vec<_> = children.iter().map(|c| c.task_id).collect();
        // A full mailbox or an actor that just stopped: the notice goes out instead
        // and the orchestrator (or its replay) reads the store.
        if live
            .get(execution)
            .is_some_and(|entry| entry.settled.try_send(ChildrenSettled(children)).is_ok())
        {
            delivered.extend(ids);
        }
    }
    delivered
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_core::{
        AttemptEnd, Completion, LeaseKey, LeaseToken, TaskId, TaskKind, TaskRef, TaskState, WriteBatch,
    };
    use serde_json::json;

    fn settled_child(execution: ExecutionId, step: i64) -> (Completion, Completed, Change) {
        let task = TaskId::for_step(execution, step);
        let completion = Completion {
            lease: LeaseKey {
                task_id: task,
                token: LeaseToken::new(),
            },
            outcome: Outcome::Succeeded {
                result: json!(step),
                remember: Vec::new(),
            },
        };
        let done = Completed {
            task_id: task,
            execution_id: execution,
            state: TaskState::Completed,
            parent_id: Some(TaskId::root_of(execution)),
            execution_state: None,
        };
        let change = Change::AttemptEnded {
            task: TaskRef::new(execution, task, TaskKind::Activity, "f"),
            attempt: 1,
            end: AttemptEnd::Completed,
        };
        (completion, done, change)
    }

    #[test]
    fn a_child_of_an_orchestrator_living_elsewhere_is_announced() {
        let execution = ExecutionId::new();
        let (completion, done, change) = settled_child(execution, 1);
        let batch = WriteBatch {
            completions: vec![completion],
            ..WriteBatch::default()
        };
        let notices = commit_notices(&Live::default(), &batch, &[Ok(done)], &[change], BTreeSet::new());
        assert!(
            notices
                .iter()
                .any(|n| matches!(n, Notice::Execution { child: Some(_), .. }))
        );
        assert_eq!(notices.last(), Some(&Notice::Events));
    }

    #[test]
    fn freed_slots_announce_work_before_the_log_notice() {
        let notices = commit_notices(
            &Live::default(),
            &WriteBatch::default(),
            &[],
            &[Change::TaskHeartbeat {
                execution: ExecutionId::new(),
                task: TaskId::root_of(ExecutionId::new()),
                details: None,
            }],
            BTreeSet::from(["limited".to_string()]),
        );
        assert_eq!(
            notices,
            vec![
                Notice::Work {
                    queue: "limited".into()
                },
                Notice::Events
            ]
        );
    }

    #[actix::test]
    async fn a_child_of_an_orchestrator_living_here_is_handed_to_it_not_announced() {
        use actix::prelude::*;

        struct Orchestrator(tokio::sync::mpsc::UnboundedSender<usize>);
        impl Actor for Orchestrator {
            type Context = Context<Self>;
        }
        impl Handler<ChildrenSettled> for Orchestrator {
            type Result = ();
            fn handle(&mut self, msg: ChildrenSettled, _: &mut Context<Self>) {
                let _ = self.0.send(msg.0.len());
            }
        }
        impl Handler<crate::live::Drain> for Orchestrator {
            type Result = ();
            fn handle(&mut self, _: crate::live::Drain, _: &mut Context<Self>) {}
        }

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let actor = Orchestrator(tx).start();
        let live = Live::default();
        let execution = ExecutionId::new();
        live.register(
            execution,
            crate::live::Entry {
                generation: live.next_generation(),
                settled: actor.clone().recipient(),
                drain: actor.recipient(),
            },
        );
        let (a, done_a, change_a) = settled_child(execution, 1);
        let (b, done_b, change_b) = settled_child(execution, 2);
        let batch = WriteBatch {
            completions: vec![a, b],
            ..WriteBatch::default()
        };
        let notices = commit_notices(
            &live,
            &batch,
            &[Ok(done_a), Ok(done_b)],
            &[change_a, change_b],
            BTreeSet::new(),
        );
        assert!(
            !notices
                .iter()
                .any(|n| matches!(n, Notice::Execution { child: Some(_), .. })),
            "delivered directly, so not announced: {notices:?}"
        );
        assert_eq!(rx.recv().await, Some(2), "one message with both children");
    }
}
