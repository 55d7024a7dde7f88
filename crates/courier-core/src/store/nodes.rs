//! The cluster's nodes: each writes what it runs and holds every few seconds,
//! so any node can list them all, idle or busy, and tell the ones that stopped
//! reporting (see [`NodeRecord`]).

use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreResult;
use crate::node::{NodeRecord, NodeReport};

/// Stored node reports.
#[async_trait]
pub trait NodeStore: Send + Sync {
    /// Records that node `id` started now: its row is written afresh (a node
    /// restarted under the same id starts again), `started_at` and `seen_at`
    /// set to the store's clock.
    async fn join_node(&self, id: &str, report: &NodeReport) -> StoreResult<NodeRecord>;

    /// Records `id`'s latest report and stamps `seen_at`; `false` (and nothing
    /// written) if the node has no row (it was forgotten: it should join again).
    async fn report_node(&self, id: &str, report: &NodeReport) -> StoreResult<bool>;

    /// Forgets `id` (it stopped on purpose); whether it had a row.
    async fn leave_node(&self, id: &str) -> StoreResult<bool>;

    /// Every node with a row, by id (in byte order), reporting or not.
    async fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>>;

    /// Forgets the nodes not seen for `older_than` (by the store's clock); how many.
    async fn forget_nodes(&self, older_than: Duration) -> StoreResult<u64>;
}
