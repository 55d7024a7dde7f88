//! Group commit: one transaction for a whole [`WriteBatch`].
//!
//! Sections apply in the documented order (dispatches, children, effects,
//! completions), each with a few set-based statements however many items it has.
//! Refusals are per item and abort nothing; an unexpected database error rolls
//! the whole batch back and fails the call, so the caller can retry items one by
//! one. Parents woken by anything in the batch are bumped once each at the end.
//! Every section records its [`Change`]s in one list, in the order they happened;
//! their events are appended last, as the event log requires, and the list is the
//! batch's [`WriteResults::changes`].

use courier_core::{Change, StoreResult, WriteBatch, WriteResults, events_of};
use deadpool_postgres::Transaction;

use crate::PostgresStore;
use crate::children::{self, Fences};
use crate::error::Result;
use crate::transaction::in_transaction;
use crate::wake::Wakes;
use crate::{complete, dispatch, event_log};

/// Applies `batch` in one transaction.
pub(crate) async fn commit(store: &PostgresStore, batch: &WriteBatch) -> StoreResult<WriteResults> {
    if batch.is_empty() {
        return Ok(WriteResults::default());
    }
    in_transaction!(store, |tx| apply(tx, batch))
}

async fn apply(tx: &Transaction<'_>, batch: &WriteBatch) -> Result<WriteResults> {
    let mut changes: Vec<Change> = Vec::new();
    let mut wakes = Wakes::default();
    let dispatches = dispatch::apply(tx, &batch.dispatches, &mut changes).await?;
    let fences = Fences::lock(tx, batch).await?;
    let children = children::create(tx, &batch.children, &fences, &mut changes, &mut wakes).await?;
    let effects = children::apply_effects(tx, &batch.effects, &fences, &mut changes).await?;
    let completions = complete::apply(tx, &batch.completions, &mut changes, &mut wakes).await?;
    wakes.apply(tx, &mut changes).await?;
    event_log::append(tx, &events_of(&changes)).await?;
    Ok(WriteResults {
        dispatches,
        children,
        effects,
        completions,
        changes,
    })
}
