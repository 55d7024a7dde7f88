//! Group commit: one transaction for a whole [`WriteBatch`].
//!
//! Sections apply in the documented order (dispatches, children, effects,
//! delivery attempts, releases, completions, the claim riding the batch), each
//! with a few set-based (or pipelined) statements however many items it has.
//! Refusals are per item and abort nothing; an unexpected database error rolls
//! the whole batch back and fails the call, so the caller can retry items one by
//! one. Parents woken by anything in the batch are bumped once each at the end.
//! Every section records its [`Change`]s in one list, in the order they happened;
//! their events are appended last, as the event log requires (followed only by
//! stamping their seqs into the notifications the batch stored), and the list is
//! the batch's [`WriteResults::changes`], each change told its event's seq.

use courier_core::{Change, StoreResult, WriteBatch, WriteResults};

use crate::PostgresStore;
use crate::children::{self, Fences};
use crate::error::Result;
use crate::event_log::Then;
use crate::transaction::{Tx, in_transaction};
use crate::wake::Wakes;
use crate::{claim, complete, dispatch, event_log, leases, notifications, webhooks};

/// Applies `batch` in one transaction.
pub(crate) async fn commit(store: &PostgresStore, batch: &WriteBatch) -> StoreResult<WriteResults> {
    // Items holding a NUL (which Postgres cannot store) are refused on their own
    // instead of failing the whole batch's statements.
    let (batch, refused) = batch.split_nul();
    if batch.is_empty() {
        return Ok(refused.merge(WriteResults::default()));
    }
    let batch = &*batch;
    in_transaction!(store, |tx| apply(store, tx, batch)).map(|applied| refused.merge(applied))
}

async fn apply(store: &PostgresStore, tx: &Tx, batch: &WriteBatch) -> Result<WriteResults> {
    let mut changes: Vec<Change> = Vec::new();
    let mut wakes = Wakes::default();
    let dispatches = dispatch::apply(tx, &batch.dispatches, &mut changes).await?;
    // Notification effects replace their group's live notification under the
    // group's advisory lock, taken before any row lock (in name order) so that no
    // one holding a row this batch wants can be waiting for one of these.
    notifications::lock_groups(tx, notifications::effect_group_locks(store, &batch.effects)).await?;
    let fences = Fences::lock(tx, batch).await?;
    let children = children::create(tx, &batch.children, &fences, &mut changes, &mut wakes).await?;
    let effects = children::apply_effects(tx, &batch.effects, &fences, &mut changes, &mut wakes).await?;
    let delivery_attempts = webhooks::record_attempts(tx, &batch.delivery_attempts).await?;
    let releases = leases::release_all(tx, &batch.releases, &mut changes).await?;
    let completions = complete::apply(tx, &batch.completions, &mut changes, &mut wakes).await?;
    wakes.apply(tx, &mut changes).await?;
    // Last, so that it sees every task the batch made claimable; its row locks
    // come after all of the batch's others, as any claimer's do.
    let claimed = match &batch.claim {
        Some(req) => claim::claim_in(store, tx, req, &mut changes).await?,
        None => Vec::new(),
    };
    // Stamping seqs is the one thing that may follow the append; without it,
    // the append goes out with the COMMIT.
    if notifications::need_stamps(&changes) {
        event_log::append_changes(tx, &mut changes, Then::Continue).await?;
        notifications::stamp_seqs(tx, &changes).await?;
    } else {
        event_log::append_changes(tx, &mut changes, Then::Commit).await?;
    }
    Ok(WriteResults {
        dispatches,
        children,
        effects,
        delivery_attempts,
        releases,
        completions,
        claimed,
        changes,
    })
}
