//! One conformance suite for every [`Store`] implementation.
//!
//! Each store crate runs the whole suite from its own `tests/conformance.rs`:
//!
//! ```ignore
//! async fn fresh() -> courier_store_conformance::Fixture {
//!     let store = courier_store_sqlite::SqliteStore::open(SqliteOptions::memory()).await.unwrap();
//!     courier_store_conformance::Fixture::new(std::sync::Arc::new(store))
//! }
//! courier_store_conformance::conformance_tests!(sqlite, fresh);
//! ```
//!
//! which expands to one `#[tokio::test]` per case inside `mod sqlite`, so the test
//! output names the backend each case ran against (`sqlite::claims_...`). Each
//! case gets a fresh, initialised, isolated store, so counts are exact.
//!
//! The cases pin the semantics documented on [`courier_core::Store`]; this crate
//! is not a place for store-specific behaviour.
#![deny(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use courier_core::Store;

pub mod cases;
pub mod support;

/// A fresh store for one case, and how to throw it away afterwards.
pub struct Fixture {
    /// The store, initialised and empty.
    pub store: Arc<dyn Store>,
    teardown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Fixture {
    /// A fixture with nothing to tear down.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Fixture { store, teardown: None }
    }

    /// Runs `teardown` after the case passes (a failed case leaves its data for inspection).
    pub fn with_teardown(mut self, teardown: impl Future<Output = ()> + Send + 'static) -> Self {
        self.teardown = Some(Box::pin(teardown));
        self
    }

    /// Tears the store down.
    pub async fn teardown(self) {
        if let Some(t) = self.teardown {
            t.await;
        }
    }
}

/// Expands to the whole suite for one backend: `conformance_tests!(name, fresh)`
/// where `fresh` is an `async fn() -> Fixture` in the calling module.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:ident, $fresh:ident) => {
        mod $backend {
            $crate::__cases! { @tests $fresh }
        }
    };
}

/// The names of every case (`module::case`), in the order the suite runs them.
pub const CASES: &[&str] = __cases!(@names);

/// The one list of cases. A case written in `src/cases/` and not listed here
/// fails this crate's own tests, so no case is silently left out.
#[doc(hidden)]
#[macro_export]
macro_rules! __cases {
    (@$mode:ident $($fresh:ident)?) => {
        $crate::__cases! { @emit $mode $($fresh)?;
            executions::dispatch_creates_the_execution_and_its_root_task,
            executions::dispatching_twice_with_one_idempotency_key_creates_one_execution,
            executions::a_delayed_dispatch_is_not_claimable_before_its_time,
            executions::creating_an_execution_with_its_root_task_is_atomic,
            executions::raw_execution_records_round_trip,
            executions::executions_list_newest_first_with_filters_and_paging,
            executions::executions_list_by_queue_time_range_and_idempotency_key,
            executions::cancel_sticks_and_fences_running_tasks,
            executions::executions_past_their_deadline_time_out,
            executions::internal_executions_are_listed_only_when_asked_for,
            tasks::raw_task_records_round_trip,
            tasks::queue_depths_count_ready_scheduled_and_running_tasks,
            claims::six_claimers_claim_each_of_500_tasks_exactly_once,
            claims::a_concurrency_limit_of_two_holds_with_eight_claimers,
            claims::a_stale_lease_owner_cannot_write,
            claims::an_expired_lease_is_reclaimed_as_a_new_attempt,
            claims::an_expired_but_unclaimed_lease_still_completes,
            claims::a_task_scheduled_in_the_future_is_claimable_only_when_due,
            claims::claims_follow_priority_then_age,
            claims::a_flood_of_higher_priority_overtakes_only_within_the_ageing_bound,
            claims::claims_route_by_queue_tags_function_and_kind,
            claims::claiming_a_root_task_starts_its_execution_once,
            claims::lease_renewal_extends_live_leases_and_reports_lost_ones,
            claims::heartbeats_and_checkpoints_are_recorded_and_survive_a_retry,
            claims::releasing_a_claim_gives_the_attempt_back,
            claims::releases_ride_the_group_commit,
            claims::the_seed_claim_takes_one_task_at_a_time,
            claims::a_claim_leaves_excluded_and_internal_functions_alone,
            claims::a_claim_riding_a_commit_takes_the_work_the_commit_made,
            completion::success_completes_the_task_and_its_execution,
            completion::falsy_results_are_real_results,
            completion::a_refused_completion_settles_nothing,
            completion::a_retry_requeues_the_task_after_its_delay,
            completion::a_final_failure_dead_letters_the_task_and_fails_the_execution,
            completion::remembered_results_land_with_the_completion,
            completion::settled_children_wake_their_parent,
            completion::children_settling_in_one_batch_wake_their_parent_once,
            nul::a_dispatch_holding_a_nul_is_refused,
            nul::a_batch_refuses_only_its_items_holding_a_nul,
            nul::a_result_holding_a_nul_is_refused_and_the_task_can_still_settle,
            nul::a_signal_holding_a_nul_is_refused,
            completion::suspending_is_refused_once_a_child_has_settled,
            children::children_are_created_under_the_parents_lease,
            children::effects_apply_once_per_step,
            children::a_recorded_value_is_read_back_unchanged,
            children::one_commit_carries_many_kinds_and_isolates_refusals,
            children::a_notification_effect_is_sent_once_per_step,
            child_executions::a_child_execution_starts_once_and_reports_its_end,
            child_executions::a_parents_end_cancels_its_children_by_policy,
            child_executions::continuing_as_new_hands_the_link_to_the_successor,
            child_executions::a_parent_cancels_its_child_once,
            signals::a_signal_sent_before_anyone_waits_is_kept,
            signals::an_executions_signals_list_oldest_first_with_their_consumers,
            signals::a_signal_completes_the_oldest_wait_and_wakes_its_parent,
            signals::a_signal_wait_with_a_timeout_is_claimable_when_due,
            signals::raw_signal_records_round_trip,
            dead_letters::dead_letters_are_listed_counted_read_and_deleted,
            dead_letters::replaying_a_dead_letter_resumes_a_failed_execution,
            dead_letters::replaying_a_child_dead_letter_reopens_its_orchestrator,
            cleanup::cleanup_removes_only_old_terminal_executions_with_all_their_rows,
            cleanup::old_dead_letters_are_cleaned_up,
            cleanup::trimming_keeps_events_the_webhook_dispatcher_has_not_read,
            cleanup::old_finished_idempotency_keys_are_trimmed,
            cache::cache_entries_expire,
            cache::idempotency_results_persist,
            cache::an_idempotency_key_admits_one_holder_at_a_time,
            counters::counters_stay_exact_under_eight_concurrent_incrementers,
            counters::ensuring_counters_and_state_values_keeps_existing_entries,
            counters::progress_reports_list_the_latest_window_oldest_first,
            event_log::event_sequences_are_gap_free_and_readable_after_a_cursor,
            event_log::a_tailing_reader_never_skips_a_committed_event,
            event_log::trimmed_sequence_numbers_are_never_reused,
            event_log::internal_events_are_marked_and_left_out_when_asked,
            event_log::internal_events_are_marked_in_a_large_mixed_batch,
            event_log::a_read_that_scans_the_log_pages_through_it_a_window_at_a_time,
            maintenance::stuck_tasks_are_reported_once_per_attempt,
            maintenance::a_singleton_role_has_one_holder_until_it_expires,
            maintenance::the_store_clock_is_utc_now,
            webhooks::webhooks_are_created_read_listed_and_conflict_on_a_taken_id,
            webhooks::webhooks_are_disabled_and_enabled,
            webhooks::rotating_a_secret_keeps_the_replaced_one_for_the_grace_period,
            webhooks::concurrent_rotations_chain_without_losing_a_secret,
            webhooks::replacing_a_secret_value_is_a_compare_and_set,
            webhooks::deleting_a_webhook_deletes_its_deliveries_and_their_attempts,
            webhooks::deliveries_are_read_with_their_webhooks_and_events_for_attempts,
            webhooks::enqueueing_deliveries_dispatches_their_executions_and_moves_the_cursor,
            webhooks::a_stale_or_refused_enqueue_writes_nothing,
            webhooks::racing_enqueuers_enqueue_a_range_once,
            webhooks::delivery_attempts_update_their_delivery_and_list_in_order,
            webhooks::delivery_attempts_ride_the_group_commit,
            webhooks::a_lone_attempt_holding_a_nul_is_refused_and_writes_nothing,
            webhooks::deliveries_list_newest_first_with_paging,
            webhooks::cleanup_deletes_the_deliveries_of_cleaned_executions,
            webhooks::skipped_deliveries_dispatch_nothing_and_list_oldest_first,
            webhooks::replaying_a_skipped_delivery_dispatches_it_once,
            webhooks::racing_replays_replay_each_delivery_once,
            webhooks::cleanup_deletes_old_skipped_deliveries,
            functions::function_settings_are_set_replaced_and_read_back,
            functions::function_settings_list_by_name,
            functions::function_settings_are_deleted,
            functions::concurrent_function_settings_writes_each_take_a_revision,
            functions::function_settings_holding_a_nul_are_refused,
            nodes::a_node_joins_reports_and_leaves,
            nodes::nodes_list_by_id_and_a_restart_joins_afresh,
            nodes::nodes_not_seen_lately_are_forgotten,
            nodes::a_node_report_holding_a_nul_is_refused,
            pauses::a_paused_execution_is_not_claimed_until_it_is_resumed,
            pauses::a_paused_execution_keeps_its_running_task_but_does_not_reclaim_it,
            pauses::a_paused_queue_is_not_claimed_until_it_is_resumed,
            pauses::pausing_what_has_ended_or_does_not_exist_is_refused,
            rate_limits::a_bucket_starts_full_and_refills_at_its_rate,
            rate_limits::concurrent_takes_never_grant_more_than_the_bucket_holds,
            rate_limits::a_bucket_holding_a_nul_is_refused,
            rate_limits::key_slots_are_given_while_fewer_than_max_run,
            rate_limits::concurrent_slot_takers_never_exceed_max,
            schedules::schedules_are_created_read_and_listed,
            schedules::schedules_update_at_their_revision_and_delete_with_their_runs,
            schedules::due_schedules_are_read_by_the_stores_clock,
            schedules::a_firing_dispatches_records_and_logs_each_slot_once,
            schedules::racing_firings_of_one_revision_write_once,
            schedules::a_schedule_holding_a_nul_is_refused,
            schedules::firings_in_one_write_answer_each,
            changes::every_write_reports_exactly_the_changes_it_logged,
            changes::fenced_progress_is_refused_after_the_lease_is_lost,
            maintenance::initialising_again_is_harmless,
            notifications::notifications_are_stored_by_mode_and_numbered_by_their_events,
            notifications::a_group_replaces_its_live_notification,
            notifications::concurrent_group_replacement_leaves_exactly_one,
            notifications::replay_and_dismissal_follow_the_viewer,
            notifications::a_group_is_dismissed_for_one_subscriber,
            notifications::users_subscribe_to_sources,
            notifications::expired_notifications_are_swept_and_a_stale_cursor_is_told,
            notifications::the_first_cluster_value_stored_wins,
        }
    };
    (@emit tests $fresh:ident; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let fixture = super::$fresh().await;
                $crate::cases::$module::$case(fixture.store.clone()).await;
                fixture.teardown().await;
            }
        )*
    };
    (@emit names; $($module:ident :: $case:ident),* $(,)?) => {
        &[$(concat!(stringify!($module), "::", stringify!($case))),*]
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    fn sources(dir: &str) -> Vec<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "rs"))
            .map(|path| {
                let module = path.file_stem().unwrap().to_string_lossy().into_owned();
                (module, std::fs::read_to_string(&path).expect("readable source"))
            })
            .collect();
        files.sort();
        files
    }

    /// Names after `prefix` at the start of a line (ignoring indentation).
    fn declared(source: &str, prefix: &str) -> Vec<String> {
        source
            .lines()
            .filter_map(|line| line.trim_start().strip_prefix(prefix))
            .map(|rest| rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
            .collect()
    }

    #[test]
    fn every_case_written_is_registered_and_every_registered_case_exists() {
        let written: BTreeSet<String> = sources("src/cases")
            .into_iter()
            .flat_map(|(module, source)| {
                declared(&source, "pub async fn ")
                    .into_iter()
                    .map(move |case| format!("{module}::{case}"))
            })
            .collect();
        let registered: BTreeSet<String> = super::CASES.iter().map(|c| c.to_string()).collect();
        assert_eq!(super::CASES.len(), registered.len(), "a case is registered twice");
        let forgotten: Vec<_> = written.difference(&registered).collect();
        assert!(
            forgotten.is_empty(),
            "cases written but not registered in `__cases!`: {forgotten:?}"
        );
        let missing: Vec<_> = registered.difference(&written).collect();
        assert!(missing.is_empty(), "cases registered but not written: {missing:?}");
    }

    #[test]
    fn every_store_operation_is_exercised_by_some_case() {
        // Lifecycle calls the fixtures make themselves (`close` is each store
        // crate's own test: closing a shared Postgres pool would break teardown).
        const EXEMPT: &[&str] = &["close"];
        let operations: BTreeSet<String> = sources("../courier-core/src/store")
            .into_iter()
            .flat_map(|(_, source)| {
                let mut ops = declared(&source, "async fn ");
                ops.extend(declared(&source, "fn backend"));
                ops
            })
            .filter(|op| !op.is_empty())
            .collect();
        let cases: String = sources("src/cases")
            .into_iter()
            .chain(sources("src").into_iter().filter(|(m, _)| m == "support"))
            .map(|(_, source)| source)
            .collect();
        let unexercised: Vec<_> = operations
            .iter()
            .filter(|op| !EXEMPT.contains(&op.as_str()))
            .filter(|op| !cases.contains(&format!(".{op}(")))
            .collect();
        assert!(
            unexercised.is_empty(),
            "store operations no case calls: {unexercised:?}"
        );
    }
}
