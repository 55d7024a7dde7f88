//! Group commit: a whole [`WriteBatch`] in the writer's transaction, one result
//! per item, and the changes of the whole batch.

use courier_core::{StoreResult, WriteBatch, WriteResults};
use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::{children, complete, dispatch};

/// Applies `batch` in order: dispatches, child groups, effects, completions.
pub(crate) fn commit(conn: &Connection, now: i64, batch: &WriteBatch) -> Result<WriteResults> {
    let mut out = WriteResults {
        dispatches: Vec::with_capacity(batch.dispatches.len()),
        children: Vec::with_capacity(batch.children.len()),
        effects: Vec::with_capacity(batch.effects.len()),
        completions: Vec::with_capacity(batch.completions.len()),
        changes: Vec::with_capacity(batch.len() * 2),
    };
    let changes = &mut out.changes;
    for new in &batch.dispatches {
        out.dispatches.push(item(dispatch::dispatch(conn, now, new, changes))?);
    }
    for group in &batch.children {
        out.children
            .push(item(children::create_group(conn, now, group, changes))?);
    }
    for effect in &batch.effects {
        out.effects
            .push(item(children::apply_effect(conn, now, effect, changes))?);
    }
    for completion in &batch.completions {
        out.completions
            .push(item(complete::complete(conn, now, completion, changes))?);
    }
    Ok(out)
}

/// Splits one item's outcome: a refusal (the item checks before it writes, so it
/// left nothing behind, changes included) is the item's result; a database
/// failure fails the batch.
fn item<T>(result: Result<T>) -> Result<StoreResult<T>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(Error::Store(refusal)) => Ok(Err(refusal)),
        Err(failure) => Err(failure),
    }
}
