//! The event log streamed to clients: one reader of the log per node (the
//! [`tail`]), and one actor per connection that follows it: [`sse`] for
//! Server-Sent Events, [`ws`] for WebSocket. Both sessions share their core
//! ([`session`]): following the log from a cursor ([`follow`]), catching up from
//! the store after a gap, and stalling (instead of slowing anyone) when a client
//! stops reading. [`frame`] renders events for each wire.
//!
//! Which file to open: a new wire format → `frame.rs`; what every stream does
//! with batches, gaps and slow clients → `session.rs`; connection handling of
//! one protocol → `sse.rs` or `ws.rs`.

pub(crate) mod follow;
pub(crate) mod frame;
pub(crate) mod session;
pub(crate) mod sse;
pub(crate) mod tail;
pub(crate) mod ws;
