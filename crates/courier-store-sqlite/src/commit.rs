//! Group commit: a whole [`WriteBatch`] in the writer's transaction, one result
//! per item, and the changes of the whole batch.

use courier_core::{HoldsNul, PriorityAgeing, StoreResult, WriteBatch, WriteResults};
use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::wake::Wakes;
use crate::{children, claim, complete, dispatch, leases, webhooks};

/// Applies `batch` in order: dispatches, child groups, effects, delivery
/// attempts, releases, completions, then the claim riding it (claiming in
/// `ageing`'s order, like any claim).
pub(crate) fn commit(conn: &Connection, now: i64, ageing: PriorityAgeing, batch: &WriteBatch) -> Result<WriteResults> {
    let mut out = WriteResults {
        dispatches: Vec::with_capacity(batch.dispatches.len()),
        children: Vec::with_capacity(batch.children.len()),
        effects: Vec::with_capacity(batch.effects.len()),
        delivery_attempts: Vec::with_capacity(batch.delivery_attempts.len()),
        releases: Vec::with_capacity(batch.releases.len()),
        completions: Vec::with_capacity(batch.completions.len()),
        claimed: Vec::new(),
        changes: Vec::with_capacity(batch.len() * 2),
    };
    let changes = &mut out.changes;
    // An item holding a NUL is refused on its own, as Postgres (which cannot
    // store one) refuses it: the same value behaves the same in either store.
    for new in &batch.dispatches {
        out.dispatches.push(match new.check_nul() {
            Ok(()) => item(dispatch::dispatch(conn, now, new, changes))?,
            Err(refusal) => Err(refusal),
        });
    }
    for group in &batch.children {
        out.children
            .push(match group.tasks.iter().try_for_each(HoldsNul::check_nul) {
                Ok(()) => item(children::create_group(conn, now, group, changes))?,
                Err(refusal) => Err(refusal),
            });
    }
    for effect in &batch.effects {
        out.effects.push(match effect.check_nul() {
            Ok(()) => item(children::apply_effect(conn, now, effect, changes))?,
            Err(refusal) => Err(refusal),
        });
    }
    for write in &batch.delivery_attempts {
        out.delivery_attempts.push(match write.check_nul() {
            Ok(()) => item(webhooks::record_attempt(conn, now, &write.attempt, write.state))?,
            Err(refusal) => Err(refusal),
        });
    }
    for release in &batch.releases {
        out.releases.push(item(leases::release(
            conn,
            now,
            &release.lease,
            release.delay,
            changes,
        ))?);
    }
    let mut wakes = Wakes::default();
    for completion in &batch.completions {
        out.completions.push(match completion.check_nul() {
            Ok(()) => item(complete::complete(conn, now, completion, changes, &mut wakes))?,
            Err(refusal) => Err(refusal),
        });
    }
    // Before the claim, so that a parent woken here can ride it.
    wakes.apply(conn, now, changes)?;
    if let Some(req) = &batch.claim {
        out.claimed = claim::claim(conn, now, ageing, req, changes)?;
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
