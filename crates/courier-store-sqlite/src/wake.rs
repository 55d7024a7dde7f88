//! Waking orchestrators whose children settled.
//!
//! A settled child bumps its parent's `wake_gen`, so a suspension racing the
//! settlement sees it and refuses; a `waiting` parent also becomes `pending`, due
//! now. The writer thread serialises every write, so the two never interleave.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use courier_core::{Change, Requeue, TaskId, TaskState};
use rusqlite::Connection;

use crate::error::Result;
use crate::{event_log, tasks};

/// The parents a batch of completions wakes, each with how many of its children
/// settled, in first-seen order: a fan-out's settled children wake their parent
/// once per batch, not once each (which read and rewrote the parent's row per
/// child, about a tenth of what a child cost the writer).
#[derive(Default)]
pub(crate) struct Wakes {
    parents: Vec<(TaskId, i64)>,
    index: HashMap<TaskId, usize>,
}

impl Wakes {
    /// Records that a child of `parent` settled.
    pub(crate) fn add(&mut self, parent: TaskId) {
        match self.index.entry(parent) {
            Entry::Occupied(at) => self.parents[*at.get()].1 += 1,
            Entry::Vacant(at) => {
                at.insert(self.parents.len());
                self.parents.push((parent, 1));
            }
        }
    }

    /// Wakes every parent once, its `wake_gen` bumped by how many of its
    /// children settled.
    pub(crate) fn apply(self, conn: &Connection, now: i64, changes: &mut Vec<Change>) -> Result<()> {
        for (parent, settled) in self.parents {
            wake(conn, now, parent, settled, changes)?;
        }
        Ok(())
    }
}

/// A child of `parent` settled: wake it (see the module documentation).
pub(crate) fn wake_parent(conn: &Connection, now: i64, parent: TaskId, changes: &mut Vec<Change>) -> Result<()> {
    wake(conn, now, parent, 1, changes)
}

/// `settled` children of `parent` settled: wake it once.
fn wake(conn: &Connection, now: i64, parent: TaskId, settled: i64, changes: &mut Vec<Change>) -> Result<()> {
    let Some(p) = tasks::head(conn, parent)? else {
        return Ok(());
    };
    if p.state == TaskState::Waiting {
        conn.prepare_cached(
            "UPDATE tasks SET wake_gen = wake_gen + ?3, state = 'pending', scheduled_for = ?2 WHERE rowid = ?1",
        )?
        .execute((p.rowid, now, settled))?;
        let change = Change::TaskQueued {
            task: p.task_ref(),
            queue: p.queue.clone(),
            attempt: p.attempt,
            reason: Requeue::Woken,
            claimable_now: true,
        };
        event_log::record(conn, now, changes, change)?;
    } else {
        conn.prepare_cached("UPDATE tasks SET wake_gen = wake_gen + ?2 WHERE rowid = ?1")?
            .execute((p.rowid, settled))?;
    }
    Ok(())
}
