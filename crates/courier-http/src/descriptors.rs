//! The node's file-descriptor budget: how many connections it accepts and how
//! many of them may be long-lived streams, given the process's descriptor limit.
//!
//! Every connection holds a descriptor for as long as it lives, and so do the
//! store's and the notifier's connections, the database files and the runtime's
//! own handles. Left alone, a burst of streams takes the last descriptor, every
//! `accept` then fails with `EMFILE`, and the node stops answering anything,
//! `/healthz` included, although it is healthy. So the listener accepts at most
//! [`Budget::connections`] connections (a descriptor reserve stays free for the
//! node's own use), and streams take at most [`Budget::streams`] of them (the
//! rest stay free for the API and the probes): past that a stream is refused
//! with 503 and `Retry-After`, like past `http.max_streams`.
//!
//! ```
//! use courier_http::descriptors::Budget;
//! // `ulimit -n 1024`, `http.max_streams` at its default.
//! let budget = Budget::for_limit(1024, 16384);
//! assert_eq!((budget.connections, budget.streams), (896, 832));
//! // Plenty of descriptors: the setting decides.
//! assert_eq!(Budget::for_limit(1 << 20, 16384).streams, 16384);
//! ```

/// Descriptors kept for the node's own use: store and notifier connections,
/// database files, the runtime's handles.
pub const RESERVED: u64 = 128;
/// Connections kept for requests that are not streams (API calls, probes).
pub const NOT_STREAMS: usize = 64;

/// What a descriptor limit allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Connections the listener holds at once; past it, new ones wait in the
    /// listen backlog until one closes.
    pub connections: usize,
    /// Streams open at once (the lower of `http.max_streams` and what the
    /// connections leave after [`NOT_STREAMS`]).
    pub streams: usize,
}

impl Budget {
    /// The budget under a limit of `limit` descriptors, with streams capped at
    /// `max_streams` (`http.max_streams`) too.
    pub fn for_limit(limit: u64, max_streams: usize) -> Budget {
        // A tiny limit still leaves the node half of it, and a few connections.
        let reserve = RESERVED.min(limit / 2);
        let connections = usize::try_from(limit - reserve).unwrap_or(usize::MAX).max(2);
        let streams = connections
            .saturating_sub(NOT_STREAMS.min(connections / 2))
            .clamp(1, max_streams.max(1));
        Budget { connections, streams }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_leaves_room_for_the_node_and_for_requests_that_are_not_streams() {
        let b = Budget::for_limit(400, 16384);
        assert_eq!((b.connections, b.streams), (272, 208));
        // A setting lower than the limit allows wins.
        assert_eq!(Budget::for_limit(1024, 100).streams, 100);
        // Tiny limits still make a usable (if small) node.
        let tiny = Budget::for_limit(20, 16384);
        assert_eq!((tiny.connections, tiny.streams), (10, 5));
        assert_eq!(
            Budget::for_limit(0, 16384),
            Budget {
                connections: 2,
                streams: 1
            }
        );
        assert!(Budget::for_limit(u64::MAX, usize::MAX).streams > 0);
    }
}
