//! Group commit: a whole [`WriteBatch`] in the writer's transaction, one result
//! per item.

use courier_core::{StoreResult, WriteBatch, WriteResults};
use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::{children, complete, event_log, executions};

/// Applies `batch` in order: dispatches, child groups, effects, completions, events.
pub(crate) fn commit(conn: &Connection, now: i64, batch: &WriteBatch) -> Result<WriteResults> {
    let mut out = WriteResults {
        dispatches: Vec::with_capacity(batch.dispatches.len()),
        children: Vec::with_capacity(batch.children.len()),
        effects: Vec::with_capacity(batch.effects.len()),
        completions: Vec::with_capacity(batch.completions.len()),
        events: Vec::with_capacity(batch.events.len()),
    };
    for new in &batch.dispatches {
        out.dispatches.push(item(executions::dispatch(conn, now, new))?);
    }
    for group in &batch.children {
        out.children.push(item(children::create_group(conn, now, group))?);
    }
    for effect in &batch.effects {
        out.effects.push(item(children::apply_effect(conn, now, effect))?);
    }
    for completion in &batch.completions {
        out.completions.push(item(complete::complete(conn, now, completion))?);
    }
    for event in &batch.events {
        out.events.push(event_log::append(conn, now, event)?);
    }
    Ok(out)
}

/// Splits one item's outcome: a refusal (the item checks before it writes, so it
/// left nothing behind) is the item's result; a database failure fails the batch.
fn item<T>(result: Result<T>) -> Result<StoreResult<T>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(Error::Store(refusal)) => Ok(Err(refusal)),
        Err(failure) => Err(failure),
    }
}
