//! Options of a function set by an operator (over the API) and shared by every
//! node of the cluster through the store.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::serde_duration;
use crate::retry::RetryPolicy;

/// What an operator set for a function. Each field given overrides, for new
/// tasks of the function, what the code that registered it says (or Courier's
/// defaults, for a function only outside workers serve); a field left out keeps
/// that value.
///
/// ```
/// use std::time::Duration;
/// use courier_core::FunctionSettings;
///
/// let settings: FunctionSettings =
///     serde_json::from_str(r#"{"queue": "payments", "max_concurrent": 4, "timeout": "30s"}"#).unwrap();
/// assert_eq!(settings.queue.as_deref(), Some("payments"));
/// assert_eq!(settings.timeout, Some(Duration::from_secs(30)));
/// assert_eq!(settings.priority, None);
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "What an operator set for a function; each field given overrides the code's value for new tasks."
    )
)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSettings {
    /// When and how often a failed task is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Per-attempt time limit.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_duration::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::DurationText>))]
    pub timeout: Option<Duration>,
    /// The queue its tasks go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Routing tags of its tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Higher runs first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Cluster-wide cap on its running tasks (1 to 1,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub max_concurrent: Option<u32>,
    /// Paused: no node and no outside worker claims its tasks (running ones
    /// finish; dispatches are still taken and wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Cluster-wide cap on how many of its tasks start per second (optionally
    /// per key of the args); tasks over it wait in their queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::RateLimit>,
    /// Cluster-wide cap on its running tasks per key of their args.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<crate::ConcurrencyKey>,
}

/// A function's stored settings.
///
/// ```
/// use courier_core::{FunctionRecord, FunctionSettings};
///
/// let record = FunctionRecord {
///     name: "charge_card".into(),
///     settings: FunctionSettings { priority: Some(5), ..FunctionSettings::default() },
///     revision: 1,
///     updated_at: chrono::Utc::now(),
/// };
/// assert_eq!(record.settings.priority, Some(5));
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(description = "A function's stored settings."))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// The function.
    pub name: String,
    /// What is set.
    pub settings: FunctionSettings,
    /// Counts the writes of these settings: 1 for the first, one more for each after.
    pub revision: i64,
    /// When they were last written (the store's clock).
    pub updated_at: DateTime<Utc>,
}
