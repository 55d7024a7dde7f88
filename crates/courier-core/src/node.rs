//! The cluster's nodes as they report themselves: each node writes a
//! [`NodeReport`] into the store every few seconds, so any node can say which
//! nodes are up, what they run and what they hold, idle or not (see
//! [`NodeStore`](crate::NodeStore)).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::serde_duration;

/// What a node says about itself when it reports in.
///
/// ```
/// use courier_core::NodeReport;
///
/// let mut report = NodeReport {
///     version: "0.1.0".into(),
///     functions: vec!["resize".into()],
///     worker: true,
///     capacity: 16,
///     running: 3,
///     live_executions: 1,
///     ready: true,
///     ..NodeReport::default()
/// };
/// report.gauges.insert("streams.events".into(), 12);
/// assert_eq!(report.gauges["streams.events"], 12);
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(description = "What a node said about itself when it last reported in.")
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Courier's version on the node.
    pub version: String,
    /// The functions its code registers, by name.
    #[serde(default)]
    pub functions: Vec<String>,
    /// Whether it claims tasks (a node may only serve the API).
    #[serde(default)]
    pub worker: bool,
    /// Activities it may run at once.
    #[serde(default)]
    pub capacity: u32,
    /// Activities running on it now.
    #[serde(default)]
    pub running: u32,
    /// Orchestrations held in its memory now.
    #[serde(default)]
    pub live_executions: u32,
    /// Whether it answers `/readyz` with 200.
    #[serde(default)]
    pub ready: bool,
    /// How often it reports in: it counts as up until three of these pass
    /// without a report.
    #[serde(default = "default_interval", with = "serde_duration")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::DurationText))]
    pub interval: Duration,
    /// Other counts its parts keep, by name (`streams.events`,
    /// `streams.notifications`, `ingest.in_flight`, ...).
    #[serde(default)]
    pub gauges: BTreeMap<String, u64>,
    /// Outside workers (over HTTP) that claimed through it lately, idle or not.
    #[serde(default)]
    pub external_workers: Vec<ExternalWorker>,
}

/// An outside worker as the node it claims through last saw it.
///
/// ```
/// use courier_core::ExternalWorker;
///
/// let worker = ExternalWorker {
///     id: "py-worker-1".into(),
///     functions: vec!["resize".into()],
///     queues: vec![],
///     last_claim_at: chrono::Utc::now(),
/// };
/// assert!(worker.queues.is_empty(), "no queue named: every queue");
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(description = "An outside worker as the node it claims through last saw it.")
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExternalWorker {
    /// The id it claims under (its tasks' lease owner is `external:<id>`).
    pub id: String,
    /// The functions it asked for (empty: any).
    #[serde(default)]
    pub functions: Vec<String>,
    /// The queues it asked for (empty: every queue).
    #[serde(default)]
    pub queues: Vec<String>,
    /// When it last asked for work (the node's clock).
    pub last_claim_at: DateTime<Utc>,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

impl Default for NodeReport {
    fn default() -> Self {
        NodeReport {
            version: String::new(),
            functions: Vec::new(),
            worker: false,
            capacity: 0,
            running: 0,
            live_executions: 0,
            ready: false,
            interval: default_interval(),
            gauges: BTreeMap::new(),
            external_workers: Vec::new(),
        }
    }
}

/// A node as the store last heard from it.
///
/// ```
/// use courier_core::{NodeRecord, NodeReport};
///
/// let now = chrono::Utc::now();
/// let node = NodeRecord {
///     id: "node-7f3a".into(),
///     started_at: now - chrono::TimeDelta::minutes(5),
///     seen_at: now,
///     report: NodeReport::default(),
/// };
/// assert!(node.is_up(now));
/// assert!(!node.is_up(now + chrono::TimeDelta::seconds(16)), "three 5 s reports missed");
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(description = "A node as the store last heard from it."))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's id (its lease owner name).
    pub id: String,
    /// When it joined (the store's clock).
    pub started_at: DateTime<Utc>,
    /// When it last reported in (the store's clock).
    pub seen_at: DateTime<Utc>,
    /// What it said then.
    pub report: NodeReport,
}

impl NodeRecord {
    /// Whether it reported in within three of its intervals before `now` (a
    /// node that stopped without leaving, or lost its store, stops reporting;
    /// one slow or lost report does not make it gone).
    pub fn is_up(&self, now: DateTime<Utc>) -> bool {
        chrono::TimeDelta::from_std(self.report.interval * 3).is_ok_and(|span| now - self.seen_at <= span)
    }
}
