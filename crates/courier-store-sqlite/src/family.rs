//! Child executions: the link from a child to the orchestrator step that started
//! it, the child's end delivered to that parent as a signal, and the parent's end
//! applied to its children by their close policy, all in the transaction that
//! ends the execution, so no end is ever lost between the two.

use courier_core::{Change, ChildOutcome, ExecutionId, ParentLink, StoreError};
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::{enum_at, uuid_at, uuid_opt_at};
use crate::error::Result;
use crate::{executions, signals};

/// Ties the new execution `child` to its parent, and marks the parent as one
/// with children.
pub(crate) fn link(conn: &Connection, child: ExecutionId, link: &ParentLink) -> Result<()> {
    conn.prepare_cached(
        "UPDATE executions SET parent_execution_id = ?2, parent_step = ?3, parent_close = ?4 WHERE id = ?1",
    )?
    .execute(params![
        child.0.as_bytes(),
        link.execution_id.0.as_bytes(),
        link.step,
        link.close.as_str()
    ])?;
    conn.prepare_cached("UPDATE executions SET has_children = 1 WHERE id = ?1 AND has_children = 0")?
        .execute([link.execution_id.0.as_bytes()])?;
    Ok(())
}

/// Refuses unless `child` is a child execution of `parent`.
pub(crate) fn require_child(conn: &Connection, parent: ExecutionId, child: ExecutionId) -> Result<()> {
    match parent_of(conn, child)? {
        Some(link) if link.execution_id == parent => Ok(()),
        Some(_) | None if executions::state_of(conn, child)?.is_some() => Err(not_a_child(parent, child).into()),
        _ => Err(StoreError::ExecutionNotFound(child).into()),
    }
}

fn not_a_child(parent: ExecutionId, child: ExecutionId) -> StoreError {
    StoreError::Conflict {
        id: child.to_string(),
        detail: format!("execution {child} is not a child of execution {parent}"),
    }
}

/// The parent link of `execution`, taken off it: an execution that continues as
/// new hands its link to its successor, whose end is then the one reported.
pub(crate) fn hand_over(conn: &Connection, execution: ExecutionId) -> Result<Option<ParentLink>> {
    let link = parent_of(conn, execution)?;
    if link.is_some() {
        conn.prepare_cached(
            "UPDATE executions SET parent_execution_id = NULL, parent_step = NULL, parent_close = NULL WHERE id = ?1",
        )?
        .execute([execution.0.as_bytes()])?;
    }
    Ok(link)
}

fn parent_of(conn: &Connection, execution: ExecutionId) -> Result<Option<ParentLink>> {
    let row = conn
        .prepare_cached("SELECT parent_execution_id, parent_step, parent_close FROM executions WHERE id = ?1")?
        .query_row([execution.0.as_bytes()], |row| {
            Ok(match uuid_opt_at(row, 0)? {
                Some(parent) => Some(ParentLink {
                    execution_id: ExecutionId(parent),
                    step: row.get(1)?,
                    close: enum_at(row, 2)?,
                }),
                None => None,
            })
        })
        .optional()?;
    row.flatten().map_or(Ok(None), |link| Ok(Some(link)))
}

/// What an execution's end sets off, given its `ExecutionEnded` (recorded just
/// before): its parent, if it has one and is still running, receives the end as
/// the link's signal; its children whose policy is `cancel` are cancelled (and so
/// on down).
pub(crate) fn ended(conn: &Connection, now: i64, ended: &Change, changes: &mut Vec<Change>) -> Result<()> {
    let Change::ExecutionEnded {
        execution,
        state,
        result,
        error,
        reason,
        ..
    } = ended
    else {
        return Ok(());
    };
    let family: Option<(Option<uuid::Uuid>, Option<i64>, bool)> = conn
        .prepare_cached("SELECT parent_execution_id, parent_step, has_children FROM executions WHERE id = ?1")?
        .query_row([execution.0.as_bytes()], |row| {
            Ok((uuid_opt_at(row, 0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let Some((parent, step, has_children)) = family else {
        return Ok(());
    };
    if let (Some(parent), Some(step)) = (parent, step) {
        let parent = ExecutionId(parent);
        // A parent that ended (or was cleaned up since: an abandoned child can
        // outlive it) has no one left to tell.
        if executions::state_of(conn, parent)?.is_some_and(|(state, _)| !state.is_terminal()) {
            let payload = ChildOutcome::ended(*state, result.clone(), error.clone(), reason.as_deref()).payload();
            let name = ParentLink::signal_at(step);
            signals::send(conn, now, parent, &name, &payload, changes)?;
        }
    }
    if has_children {
        let children: Vec<ExecutionId> = conn
            .prepare_cached(
                "SELECT id FROM executions INDEXED BY executions_parent WHERE parent_execution_id = ?1 \
                 AND parent_close = 'cancel' AND state IN ('pending', 'running') ORDER BY id",
            )?
            .query_map([execution.0.as_bytes()], |row| uuid_at(row, 0).map(ExecutionId))?
            .collect::<rusqlite::Result<_>>()?;
        let reason = format!("its parent execution {execution} ended ({state})");
        for child in children {
            executions::cancel(conn, now, child, &reason, changes)?;
        }
    }
    Ok(())
}
