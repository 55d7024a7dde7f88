//! The retry verdict: what a failed attempt's error becomes under the policy
//! persisted with its task (so it survives restarts, unlike the seed's filter).

use courier_core::{Outcome, RetryVerdict, TaskError, TaskRecord};

/// The outcome of `task`'s attempt failing with `error`: a retry after the
/// policy's delay, or a final failure kept as a dead letter.
pub(crate) fn outcome_of_error(task: &TaskRecord, error: TaskError) -> Outcome {
    match task.retry.verdict(&error, task.attempt, rand::random::<f64>()) {
        RetryVerdict::RetryAfter(delay) => Outcome::Retry { error, delay },
        RetryVerdict::Exhausted => Outcome::Failed {
            reason: format!("attempts exhausted ({} of {})", task.attempt, task.retry.attempts()),
            error,
            dead_letter: true,
        },
        RetryVerdict::NotRetryable => Outcome::Failed {
            reason: format!("error kind {:?} is not retryable", error.kind),
            error,
            dead_letter: true,
        },
    }
}

/// A task record for unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use courier_core::{ExecutionId, RetryPolicy, TaskId, TaskKind, TaskRecord, TaskState};

    /// A running activity: the root task of `execution`, on its first attempt.
    pub(crate) fn task(execution: ExecutionId) -> TaskRecord {
        let now = chrono::Utc::now();
        TaskRecord {
            id: TaskId::root_of(execution),
            execution_id: execution,
            parent_id: None,
            step: 0,
            kind: TaskKind::Activity,
            function: "f".into(),
            version: None,
            queue: "default".into(),
            tags: Vec::new(),
            priority: 0,
            state: TaskState::Running,
            args: serde_json::Value::Null,
            result: None,
            error: None,
            checkpoint: None,
            attempt: 1,
            retry: RetryPolicy::default(),
            timeout: None,
            lease_owner: None,
            lease_token: None,
            lease_expires_at: None,
            heartbeat_at: None,
            stuck_at: None,
            wake_gen: 0,
            scheduled_for: now,
            created_at: now,
            started_at: None,
            completed_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_core::{ExecutionId, RetryPolicy};
    use std::time::Duration;

    fn task(attempt: u32, retry: RetryPolicy) -> TaskRecord {
        let mut task = tests_support::task(ExecutionId::new());
        task.attempt = attempt;
        task.retry = retry;
        task
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(100),
            jitter: 0.0,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn an_error_with_attempts_left_is_retried_after_the_policy_delay() {
        match outcome_of_error(&task(1, policy()), TaskError::new("io", "down")) {
            Outcome::Retry { delay, error } => {
                assert_eq!(delay, Duration::from_millis(100));
                assert_eq!(error.kind, "io");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_last_attempt_fails_for_good_with_a_dead_letter() {
        match outcome_of_error(&task(3, policy()), TaskError::new("io", "down")) {
            Outcome::Failed {
                dead_letter, reason, ..
            } => {
                assert!(dead_letter);
                assert!(reason.contains("3 of 3"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_non_retryable_error_is_never_retried() {
        let outcome = outcome_of_error(&task(1, policy()), TaskError::non_retryable("bad_input", "no"));
        assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
    }
}
