//! Child executions: the link from a child to the orchestrator step that started
//! it, the child's end delivered to that parent as a signal, and the parent's end
//! applied to its children by their close policy, all in the transaction that
//! ends the execution, so no end is ever lost between the two.

use std::collections::{HashMap, VecDeque};

use courier_core::{Change, ChildOutcome, ExecutionId, ParentLink, StoreError};
use uuid::Uuid;

use crate::codec::parse;
use crate::error::{Error, Result};
use crate::executions::cancel_locked;
use crate::signals;
use crate::statements::{execute, query, query_opt};
use crate::transaction::Tx;
use crate::wake::Wakes;

/// Ties the new execution `child` to its parent, and marks the parent as one
/// with children.
pub(crate) async fn link(tx: &Tx, child: ExecutionId, link: &ParentLink) -> Result<()> {
    execute(
        tx,
        "UPDATE executions SET parent_execution_id = $2, parent_step = $3, parent_close = $4 WHERE id = $1",
        &[&child.0, &link.execution_id.0, &link.step, &link.close.as_str()],
    )
    .await?;
    execute(
        tx,
        "UPDATE executions SET has_children = true WHERE id = $1 AND NOT has_children",
        &[&link.execution_id.0],
    )
    .await?;
    Ok(())
}

/// Refuses unless `child` is a child execution of `parent`.
pub(crate) async fn require_child(tx: &Tx, parent: ExecutionId, child: ExecutionId) -> Result<()> {
    let row = query_opt(
        tx,
        "SELECT parent_execution_id FROM executions WHERE id = $1",
        &[&child.0],
    )
    .await?
    .ok_or(StoreError::ExecutionNotFound(child))?;
    if row.try_get::<_, Option<Uuid>>(0)? == Some(parent.0) {
        return Ok(());
    }
    Err(StoreError::Conflict {
        id: child.to_string(),
        detail: format!("execution {child} is not a child of execution {parent}"),
    }
    .into())
}

/// The parent link of `execution`, taken off it: an execution that continues as
/// new hands its link to its successor, whose end is then the one reported.
pub(crate) async fn hand_over(tx: &Tx, execution: ExecutionId) -> Result<Option<ParentLink>> {
    let row = query_opt(
        tx,
        "UPDATE executions n SET parent_execution_id = NULL, parent_step = NULL, parent_close = NULL
         FROM executions o WHERE n.id = $1 AND o.id = n.id AND o.parent_execution_id IS NOT NULL
         RETURNING o.parent_execution_id, o.parent_step, o.parent_close",
        &[&execution.0],
    )
    .await?;
    row.map(|r| {
        Ok(ParentLink {
            execution_id: ExecutionId(r.try_get(0)?),
            step: r.try_get(1)?,
            close: parse(r.try_get::<_, &str>(2)?)?,
        })
    })
    .transpose()
}

/// What the ends of executions set off, given their `ExecutionEnded` changes
/// (other changes are passed over): each parent that is still running receives
/// its child's end as the link's signal; children whose policy is `cancel` are
/// cancelled, and their ends followed in turn. The changes this makes go to
/// `changes`, the orchestrators to wake to `wakes`.
pub(crate) async fn ended(tx: &Tx, ends: Vec<Change>, changes: &mut Vec<Change>, wakes: &mut Wakes) -> Result<()> {
    let mut queue: VecDeque<Change> = ends
        .into_iter()
        .filter(|c| matches!(c, Change::ExecutionEnded { .. }))
        .collect();
    while !queue.is_empty() {
        let round: Vec<Change> = queue.drain(..).collect();
        let ids: Vec<Uuid> = round
            .iter()
            .filter_map(|c| match c {
                Change::ExecutionEnded { execution, .. } => Some(execution.0),
                _ => None,
            })
            .collect();
        let family: HashMap<Uuid, (Option<Uuid>, Option<i64>, bool)> = query(
            tx,
            "SELECT id, parent_execution_id, parent_step, has_children FROM executions
             WHERE id = ANY($1) AND (parent_execution_id IS NOT NULL OR has_children)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))))
        .collect::<Result<_>>()?;
        for end in round {
            let Change::ExecutionEnded {
                execution,
                state,
                result,
                error,
                reason,
                ..
            } = end
            else {
                continue;
            };
            let Some((parent, step, has_children)) = family.get(&execution.0).copied() else {
                continue;
            };
            if let (Some(parent), Some(step)) = (parent, step) {
                let outcome = ChildOutcome::ended(state, result, error, reason.as_deref());
                report_to_parent(tx, ExecutionId(parent), step, &outcome, changes, wakes).await?;
            }
            if has_children {
                let children = query(
                    tx,
                    "SELECT id FROM executions WHERE parent_execution_id = $1 AND parent_close = 'cancel'
                     AND state IN ('pending', 'running') ORDER BY id",
                    &[&execution.0],
                )
                .await?;
                let reason = format!("its parent execution {execution} ended ({state})");
                for row in children {
                    let child = ExecutionId(row.try_get(0)?);
                    if let (_, Some(end)) = cancel_locked(tx, child, &reason, changes).await? {
                        queue.push_back(end);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Delivers a child's end to its parent as the link's signal, unless the parent
/// has ended itself (then there is no one left to tell).
async fn report_to_parent(
    tx: &Tx,
    parent: ExecutionId,
    step: i64,
    outcome: &ChildOutcome,
    changes: &mut Vec<Change>,
    wakes: &mut Wakes,
) -> Result<()> {
    let name = ParentLink::signal_at(step);
    // `deliver` locks the parent's row and refuses a finished one.
    match signals::deliver(tx, parent, &name, &outcome.payload(), changes, wakes).await {
        Ok(_) => Ok(()),
        Err(Error::Store(StoreError::ExecutionState { .. } | StoreError::ExecutionNotFound(_))) => Ok(()),
        Err(e) => Err(e),
    }
}
