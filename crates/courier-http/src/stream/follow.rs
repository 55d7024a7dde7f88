//! Following the event log from a cursor: the part every stream session shares.
//!
//! A follower has a filter and a cursor (the last sequence number it has passed).
//! Live batches from the `LogTail` are applied if they start at or before the
//! cursor; one that starts after it means events were missed (the session was
//! busy, or had just joined), and the follower first reads the gap from the store.

use std::sync::Arc;

use courier_core::{Event, EventFilter, Store, StoreError};

use super::tail::Batch;

/// Events read per catch-up query.
const CATCH_UP_PAGE: u32 = 500;

/// A filter and a cursor into the log.
#[derive(Clone, Debug)]
pub(crate) struct Follower {
    pub filter: EventFilter,
    pub cursor: i64,
}

/// What to do with a batch.
pub(crate) enum Applied {
    /// The indexes in the batch of the events (possibly none) that are new and
    /// match; the cursor moved past the batch.
    Emit(Vec<usize>),
    /// Events before the batch were missed: read them (up to `upto`) first.
    Gap { upto: i64 },
}

impl Follower {
    /// Applies a live batch.
    pub(crate) fn apply(&mut self, batch: &Batch) -> Applied {
        if batch.to <= self.cursor {
            return Applied::Emit(Vec::new());
        }
        if batch.from > self.cursor {
            return Applied::Gap { upto: batch.from };
        }
        let picked = batch
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.seq > self.cursor && self.filter.matches(e))
            .map(|(i, _)| i)
            .collect();
        self.cursor = batch.to;
        Applied::Emit(picked)
    }

    /// Reads one page of what this follower missed, up to at least `upto`;
    /// returns the events and whether it has caught up (the read reached the
    /// log's head, which includes `upto`). A page by type may find nothing yet
    /// move the cursor: it looks one window of the log at a time.
    pub(crate) async fn catch_up_page(
        &mut self,
        store: &Arc<dyn Store>,
        upto: i64,
        max_event_bytes: usize,
    ) -> Result<(Vec<Event>, bool), StoreError> {
        let mut filter = self.filter.clone();
        filter.after = self.cursor;
        filter.limit = CATCH_UP_PAGE;
        let page = store.read_events(&filter).await?;
        let done = page.caught_up();
        let mut events = page.events;
        super::frame::trim(&mut events, max_event_bytes);
        // A page may have looked further than the events it found.
        self.cursor = page.through;
        if done {
            // Everything committed up to now has been read, which includes `upto`.
            self.cursor = self.cursor.max(upto);
        }
        Ok((events, done))
    }
}
