//! Waking orchestrators whose children settled.
//!
//! A settled child bumps its parent's `wake_gen`, so a suspension racing the
//! settlement sees it and refuses; a `waiting` parent also becomes `pending`, due
//! now. The writer thread serialises every write, so the two never interleave.

use courier_core::{Change, Requeue, TaskId, TaskState};
use rusqlite::Connection;

use crate::error::Result;
use crate::{event_log, tasks};

/// A child of `parent` settled: wake it (see the module documentation).
pub(crate) fn wake_parent(conn: &Connection, now: i64, parent: TaskId, changes: &mut Vec<Change>) -> Result<()> {
    let Some(p) = tasks::head(conn, parent)? else {
        return Ok(());
    };
    if p.state == TaskState::Waiting {
        conn.prepare_cached(
            "UPDATE tasks SET wake_gen = wake_gen + 1, state = 'pending', scheduled_for = ?2 WHERE rowid = ?1",
        )?
        .execute((p.rowid, now))?;
        let change = Change::TaskQueued {
            task: p.task_ref(),
            queue: p.queue.clone(),
            attempt: p.attempt,
            reason: Requeue::Woken,
            claimable_now: true,
        };
        event_log::record(conn, now, changes, change)?;
    } else {
        conn.prepare_cached("UPDATE tasks SET wake_gen = wake_gen + 1 WHERE rowid = ?1")?
            .execute([p.rowid])?;
    }
    Ok(())
}
