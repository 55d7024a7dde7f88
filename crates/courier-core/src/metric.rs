//! The name of every metric Courier exports on `/metrics`, in one place, so a
//! dashboard or an alert can be checked against this list and no two crates
//! spell one metric two ways.
//!
//! Names follow Prometheus conventions: counters end in `_total`, durations are
//! histograms in seconds, gauges are plain nouns. Labels are noted where a metric
//! has them.

// ----- the runtime -------------------------------------------------------------

/// Histogram: how long each group commit took.
pub const COMMIT_SECONDS: &str = "courier_commit_seconds";
/// Counter: operations written by group commits.
pub const COMMIT_OPERATIONS: &str = "courier_commit_operations_total";
/// Counter: group commits that panicked (their callers were answered with an
/// error, the node turned not ready and the store actor restarted).
pub const COMMIT_PANICS: &str = "courier_commit_panics_total";
/// Counter: store calls that panicked, label `operation` (commit, claim,
/// renewal); the node is not ready until a call of the same operation succeeds.
pub const STORE_PANICS: &str = "courier_store_panics_total";
/// Gauge: group-commit writes admitted to the store actor and not yet answered
/// (at most its bound; callers past it wait).
pub const PENDING_WRITES: &str = "courier_pending_writes";
/// Counter: executions dispatched through this node.
pub const DISPATCHES: &str = "courier_dispatches_total";
/// Counter: tasks claimed by this node (its worker and external workers it served).
pub const CLAIMS: &str = "courier_claims_total";
/// Counter: lease renewals that succeeded.
pub const LEASE_RENEWALS: &str = "courier_lease_renewals_total";
/// Counter: leases this node lost (cancelled, reclaimed after a stall).
pub const LEASES_LOST: &str = "courier_leases_lost_total";
/// Counter: outcomes refused because their lease was no longer held.
pub const FENCED_WRITES: &str = "courier_fenced_writes_total";
/// Counter: attempts that ended, by how: completed, retried, failed.
pub const COMPLETIONS: &str = "courier_completions_total";
/// Counter: attempts that will be retried.
pub const RETRIES: &str = "courier_retries_total";
/// Counter: attempts that failed for good.
pub const FAILURES: &str = "courier_failures_total";
/// Counter: task outcomes committed.
pub const TASKS_SETTLED: &str = "courier_tasks_settled_total";
/// Histogram: how long activity code ran per attempt.
pub const ACTIVITY_SECONDS: &str = "courier_activity_seconds";
/// Counter: activity calls answered from the result cache.
pub const CACHE_HITS: &str = "courier_cache_hits_total";
/// Counter: orchestrator replays that diverged from history.
pub const NON_DETERMINISM: &str = "courier_non_determinism_total";
/// Counter: executions handed back because they started under another version.
pub const VERSION_MISMATCHES: &str = "courier_version_mismatches_total";
/// Counter: awaited children found missing from the store (a lost acknowledged
/// write), each recreated by a replay.
pub const LOST_CHILDREN: &str = "courier_lost_children_total";
/// Counter: child task rows orchestrators read back from the store to learn
/// how children settled: after a notice (which names the child, not its
/// result), when a poll finds settles nobody told of, and before suspending.
/// Children settled on the orchestrator's own node are handed over by their
/// commit and not read.
pub const CHILDREN_READ: &str = "courier_orchestrator_children_read_total";
/// Counter: schedule slots fired (executions started by schedules).
pub const SCHEDULE_SLOTS_FIRED: &str = "courier_schedule_slots_fired_total";
/// Counter: claimed tasks given back to wait for a rate-limit token, by function.
pub const RATE_LIMITED: &str = "courier_rate_limited_total";
/// Counter: claimed tasks given back to wait for a slot of their concurrency key, by function.
pub const KEY_LIMITED: &str = "courier_key_limited_total";
/// Counter: housekeeping rounds run while holding the maintenance role.
pub const MAINTENANCE_ROUNDS: &str = "courier_maintenance_rounds_total";
/// Counter: executions timed out by housekeeping.
pub const EXECUTIONS_TIMED_OUT: &str = "courier_executions_timed_out_total";
/// Counter: tasks reported stuck.
pub const TASKS_STUCK: &str = "courier_tasks_stuck_total";
/// Counter: cleanup passes run.
pub const CLEANUP_RUNS: &str = "courier_cleanup_runs_total";

// ----- streams, webhooks and the HTTP surface -----------------------------------

/// Counter: times a stream session fell behind and caught up from the log.
pub const STREAM_LAGGED: &str = "courier_stream_lagged_total";
/// Counter: times the event log's head was found behind the streams' cursor
/// (the database lost acknowledged commits) and every stream was reset.
pub const EVENT_LOG_RESETS: &str = "courier_event_log_resets_total";
/// Gauge: open SSE connections on this node.
pub const SSE_CONNECTIONS: &str = "courier_sse_connections";
/// Gauge: open WebSocket connections on this node.
pub const WS_CONNECTIONS: &str = "courier_ws_connections";
/// Counter: webhook deliveries enqueued.
pub const WEBHOOK_DELIVERIES: &str = "courier_webhook_deliveries_total";
/// Counter: webhook deliveries skipped because their webhook was disabled
/// (recorded, and replayable once it is enabled).
pub const WEBHOOK_DELIVERIES_SKIPPED: &str = "courier_webhook_deliveries_skipped_total";
/// Counter: webhook delivery attempts, label `outcome` (`delivered`, `failed`, `retrying`).
pub const WEBHOOK_ATTEMPTS: &str = "courier_webhook_attempts_total";
/// Gauge: tasks ready now, label `queue`.
pub const QUEUE_READY: &str = "courier_queue_ready";
/// Gauge: tasks scheduled for later, label `queue`.
pub const QUEUE_SCHEDULED: &str = "courier_queue_scheduled";
/// Gauge: tasks running, label `queue`.
pub const QUEUE_RUNNING: &str = "courier_queue_running";
/// Gauge: the event log's highest sequence number.
pub const EVENT_LOG_HEAD: &str = "courier_event_log_head";
/// Gauge: how far this node's log tail is behind the head.
pub const EVENT_LOG_LAG: &str = "courier_event_log_lag";
/// Gauge: open notification streams (browsers) on this node.
pub const NOTIFICATION_STREAMS: &str = "courier_notification_streams";
/// Counter: requests and messages refused (or trimmed) at one of the HTTP
/// surface's caps, label `reason`: `streams` (`http.max_streams`), `waiters`
/// (`http.max_waiters`), `ws_subscriptions` (`http.max_ws_subscriptions`),
/// `event_bytes` (an event's data over `http.max_event_bytes`, streamed without it).
pub const HTTP_REFUSED: &str = "courier_http_refused_total";

// ----- the notifier ---------------------------------------------------------------

/// Gauge: notices published, label `backend`.
pub const NOTIFIER_PUBLISHED: &str = "courier_notifier_published";
/// Gauge: publish calls that could not reach the transport, label `backend`.
pub const NOTIFIER_PUBLISH_FAILURES: &str = "courier_notifier_publish_failures";
/// Gauge: messages received on the subscription connection, label `backend`.
pub const NOTIFIER_RECEIVED: &str = "courier_notifier_received";
/// Gauge: reconnections of the subscription connection, label `backend`.
pub const NOTIFIER_RECONNECTS: &str = "courier_notifier_reconnects";
/// Gauge: messages received that could not be understood, label `backend`.
pub const NOTIFIER_MALFORMED: &str = "courier_notifier_malformed";
/// Gauge: 1 while the subscription connection is up, label `backend`.
pub const NOTIFIER_CONNECTED: &str = "courier_notifier_connected";
/// Gauge: channels subscribed for this node, label `backend`.
pub const NOTIFIER_CHANNELS: &str = "courier_notifier_channels";

// ----- ingestion -----------------------------------------------------------------

/// Counter: messages taken in and committed as executions, label `input` (tcp, http, pubsub, stream).
pub const INGEST_ACCEPTED: &str = "courier_ingest_accepted_total";
/// Counter: messages refused, labels `input` and `reason` (invalid, queue_full, unauthorized, too_large, store).
pub const INGEST_REFUSED: &str = "courier_ingest_refused_total";
/// Gauge: messages accepted but not yet committed (bounded by `ingest.queue_size`).
pub const INGEST_IN_FLIGHT: &str = "courier_ingest_in_flight";
/// Counter: stream entries moved to the dead-letter stream, label `reason` (unparsable, invalid, max_deliveries).
pub const INGEST_DEAD: &str = "courier_ingest_dead_total";
/// Counter: stream entries taken over from a consumer that stopped acknowledging.
pub const INGEST_RECLAIMED: &str = "courier_ingest_reclaimed_total";
/// Counter: errors of an input's connection (each one retried with backoff), label `input`.
pub const INGEST_ERRORS: &str = "courier_ingest_errors_total";
/// Counter: recipient deliveries that ended, labels `provider` and `outcome` (ok, failed).
pub const INGEST_DELIVERIES: &str = "courier_ingest_deliveries_total";

/// Every name above, for checks that nothing exports an unlisted metric.
pub const ALL: &[&str] = &[
    COMMIT_SECONDS,
    COMMIT_OPERATIONS,
    COMMIT_PANICS,
    STORE_PANICS,
    PENDING_WRITES,
    DISPATCHES,
    CLAIMS,
    LEASE_RENEWALS,
    LEASES_LOST,
    FENCED_WRITES,
    COMPLETIONS,
    RETRIES,
    FAILURES,
    TASKS_SETTLED,
    ACTIVITY_SECONDS,
    CACHE_HITS,
    NON_DETERMINISM,
    VERSION_MISMATCHES,
    LOST_CHILDREN,
    CHILDREN_READ,
    MAINTENANCE_ROUNDS,
    SCHEDULE_SLOTS_FIRED,
    RATE_LIMITED,
    KEY_LIMITED,
    EXECUTIONS_TIMED_OUT,
    TASKS_STUCK,
    CLEANUP_RUNS,
    STREAM_LAGGED,
    EVENT_LOG_RESETS,
    SSE_CONNECTIONS,
    WS_CONNECTIONS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_DELIVERIES_SKIPPED,
    WEBHOOK_ATTEMPTS,
    QUEUE_READY,
    QUEUE_SCHEDULED,
    QUEUE_RUNNING,
    EVENT_LOG_HEAD,
    EVENT_LOG_LAG,
    NOTIFICATION_STREAMS,
    HTTP_REFUSED,
    NOTIFIER_PUBLISHED,
    NOTIFIER_PUBLISH_FAILURES,
    NOTIFIER_RECEIVED,
    NOTIFIER_RECONNECTS,
    NOTIFIER_MALFORMED,
    NOTIFIER_CONNECTED,
    NOTIFIER_CHANNELS,
    INGEST_ACCEPTED,
    INGEST_REFUSED,
    INGEST_IN_FLIGHT,
    INGEST_DEAD,
    INGEST_RECLAIMED,
    INGEST_ERRORS,
    INGEST_DELIVERIES,
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_name_is_listed_once_and_follows_the_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for name in super::ALL {
            assert!(seen.insert(name), "{name} listed twice");
            assert!(name.starts_with("courier_"), "{name}");
        }
        let source = include_str!("metric.rs");
        let declared = source
            .lines()
            .filter(|line| line.starts_with("pub const ") && !line.starts_with("pub const ALL"))
            .count();
        assert_eq!(declared, super::ALL.len(), "a name is missing from ALL");
    }
}
