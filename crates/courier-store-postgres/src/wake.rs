//! Waking orchestrators whose children settled.
//!
//! A settled child bumps its parent's `wake_gen`; a `waiting` parent also becomes
//! `pending`, due now. Both happen in one UPDATE per parent, on the row locked
//! first, so a concurrent `suspend_task` (which parks only if `wake_gen` is
//! unchanged) either sees the bump or is seen as `waiting` and woken: no wake-up
//! falls between. Each parent that was `waiting` is reported as a
//! [`Change::TaskQueued`] (woken).

use std::collections::HashMap;

use courier_core::{Change, ExecutionId, Requeue, TaskId, TaskKind, TaskRef, TaskState};
use uuid::Uuid;

use crate::codec::parse;
use crate::error::Result;
use crate::statements::query;
use crate::transaction::Tx;

/// Parents to wake, each with how many of its children settled, in first-seen order.
#[derive(Default)]
pub(crate) struct Wakes {
    order: Vec<TaskId>,
    settled: HashMap<TaskId, i64>,
}

impl Wakes {
    /// Records that a child of `parent` settled.
    pub(crate) fn add(&mut self, parent: TaskId) {
        let n = self.settled.entry(parent).or_insert(0);
        if *n == 0 {
            self.order.push(parent);
        }
        *n += 1;
    }

    /// Bumps every parent once and requeues those that were waiting; records a
    /// `TaskQueued` (woken) for each requeued one, in first-seen order.
    pub(crate) async fn apply(self, tx: &Tx, changes: &mut Vec<Change>) -> Result<()> {
        if self.order.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = self.order.iter().map(|p| p.0).collect();
        let counts: Vec<i64> = self.order.iter().map(|p| self.settled[p]).collect();
        // Lock first so that the state read is the one the update changes.
        let before: HashMap<Uuid, String> = query(
            tx,
            "SELECT id, state FROM tasks WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_>>()?;
        let rows = query(
            tx,
            "UPDATE tasks t SET wake_gen = t.wake_gen + w.n,
                 state = CASE WHEN t.state = 'waiting' THEN 'pending' ELSE t.state END,
                 scheduled_for = CASE WHEN t.state = 'waiting' THEN now() ELSE t.scheduled_for END
             FROM unnest($1::uuid[], $2::int8[]) AS w(id, n)
             WHERE t.id = ANY($1) AND t.id = w.id
             RETURNING t.id, t.execution_id, t.kind, t.function, t.attempt, t.queue",
            &[&ids, &counts],
        )
        .await?;
        let mut woken: HashMap<Uuid, (ExecutionId, TaskKind, String, u32, String)> = HashMap::new();
        for r in &rows {
            let id: Uuid = r.try_get(0)?;
            if before.get(&id).map(String::as_str) == Some(TaskState::Waiting.as_str()) {
                let attempt: i32 = r.try_get(4)?;
                woken.insert(
                    id,
                    (
                        ExecutionId(r.try_get(1)?),
                        parse(r.try_get::<_, &str>(2)?)?,
                        r.try_get(3)?,
                        u32::try_from(attempt).unwrap_or(0),
                        r.try_get(5)?,
                    ),
                );
            }
        }
        for parent in &self.order {
            if let Some((execution, kind, function, attempt, queue)) = woken.remove(&parent.0) {
                changes.push(Change::TaskQueued {
                    task: TaskRef::new(execution, *parent, kind, function),
                    queue,
                    attempt,
                    reason: Requeue::Woken,
                    claimable_now: true,
                });
            }
        }
        Ok(())
    }
}
