//! Retry policies. A policy is persisted with every task it governs, so retries
//! behave the same after a restart, on another node, or for an external worker.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::serde_duration;
use crate::error::TaskError;

/// How often and how soon a failed task is tried again.
///
/// The delay before attempt `n + 1` is
/// `min(initial_delay * backoff_factor^(n-1), max_delay)`, then spread by
/// `±jitter` (a fraction). Which errors retry: if `retry_on` is set, only those
/// kinds; kinds in `non_retryable` never do; everything else does.
///
/// ```
/// use std::time::Duration;
/// use courier_core::{RetryPolicy, RetryVerdict, TaskError};
/// let policy = RetryPolicy {
///     max_attempts: 3,
///     initial_delay: Duration::from_secs(1),
///     jitter: 0.0,
///     non_retryable: vec!["bad_input".into()],
///     ..RetryPolicy::default()
/// };
/// let flaky = TaskError::new("http_503", "try later");
/// assert_eq!(policy.verdict(&flaky, 1, 0.5), RetryVerdict::RetryAfter(Duration::from_secs(1)));
/// assert_eq!(policy.verdict(&flaky, 2, 0.5), RetryVerdict::RetryAfter(Duration::from_secs(2)));
/// assert_eq!(policy.verdict(&flaky, 3, 0.5), RetryVerdict::Exhausted);
/// let bad = TaskError::new("bad_input", "no");
/// assert_eq!(policy.verdict(&bad, 1, 0.5), RetryVerdict::NotRetryable);
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(description = "When and how often a failed task is retried.")
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Total attempts including the first (1 = never retry).
    pub max_attempts: u32,
    /// Delay before the first retry.
    #[serde(with = "serde_duration")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::DurationText))]
    pub initial_delay: Duration,
    /// Each further retry waits this many times longer.
    pub backoff_factor: f64,
    /// Upper bound of the delay.
    #[serde(with = "serde_duration")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::DurationText))]
    pub max_delay: Duration,
    /// Random spread of each delay, as a fraction of it (0.1 = ±10 %).
    pub jitter: f64,
    /// If set, only these error kinds retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<String>>,
    /// These error kinds never retry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub non_retryable: Vec<String>,
    /// An explicit schedule instead of exponential backoff: the delay before
    /// retry *n* is `schedule[n-1]` (with jitter), and there are
    /// `schedule.len() + 1` attempts in all (`max_attempts` is then ignored).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "schedule_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::DurationText>))]
    pub schedule: Vec<Duration>,
}

mod schedule_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct D(#[serde(with = "crate::duration::serde_duration")] Duration);

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(|d| D(*d)).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, De: Deserializer<'de>>(d: De) -> Result<Vec<Duration>, De::Error> {
        Ok(Vec::<D>::deserialize(d)?.into_iter().map(|D(d)| d).collect())
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            backoff_factor: 2.0,
            max_delay: Duration::from_secs(300),
            jitter: 0.1,
            retry_on: None,
            non_retryable: Vec::new(),
            schedule: Vec::new(),
        }
    }
}

/// What to do with a task that failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RetryVerdict {
    /// Put it back in the queue, due after this delay.
    RetryAfter(Duration),
    /// The error is retryable but the attempts are used up.
    Exhausted,
    /// The policy does not retry this kind of error.
    NotRetryable,
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn no_retry() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Whether errors of `kind` are retried at all.
    pub fn retries_kind(&self, kind: &str) -> bool {
        if self.non_retryable.iter().any(|k| k == kind) {
            return false;
        }
        match &self.retry_on {
            Some(kinds) => kinds.iter().any(|k| k == kind),
            None => true,
        }
    }

    /// The schedule seed 002's webhook dispatcher and Svix use: retries 5 s, 5 min,
    /// 30 min, 2 h, 5 h, 10 h and 10 h after the first attempt.
    pub fn webhook_schedule() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        RetryPolicy {
            schedule: vec![
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
            ],
            ..RetryPolicy::default()
        }
    }

    /// Total attempts this policy allows.
    pub fn attempts(&self) -> u32 {
        if self.schedule.is_empty() {
            self.max_attempts
        } else {
            self.schedule.len() as u32 + 1
        }
    }

    /// The delay before the attempt after `attempt` (1-based), with `unit_random`
    /// in `[0, 1)` choosing where in the jitter band it falls.
    pub fn delay_after(&self, attempt: u32, unit_random: f64) -> Duration {
        let capped = if self.schedule.is_empty() {
            let exponent = attempt.saturating_sub(1).min(64) as i32;
            let factor = if self.backoff_factor.is_finite() && self.backoff_factor >= 1.0 {
                self.backoff_factor
            } else {
                1.0
            };
            let base = self.initial_delay.as_secs_f64() * factor.powi(exponent);
            base.min(self.max_delay.as_secs_f64())
        } else {
            let index = (attempt.max(1) as usize - 1).min(self.schedule.len() - 1);
            self.schedule[index].as_secs_f64()
        };
        let jitter = self.jitter.clamp(0.0, 1.0);
        let spread = 1.0 + jitter * (2.0 * unit_random.clamp(0.0, 1.0) - 1.0);
        Duration::try_from_secs_f64((capped * spread).max(0.0)).unwrap_or(self.max_delay)
    }

    /// The verdict for `error` raised by attempt number `attempt` (1-based). An
    /// error that asks to be retried no sooner than some time (`Retry-After`) is
    /// retried no sooner than that.
    pub fn verdict(&self, error: &TaskError, attempt: u32, unit_random: f64) -> RetryVerdict {
        if error.non_retryable || !self.retries_kind(&error.kind) {
            RetryVerdict::NotRetryable
        } else if attempt >= self.attempts() {
            RetryVerdict::Exhausted
        } else {
            let delay = self.delay_after(attempt, unit_random);
            let asked = error.retry_after_ms.map(Duration::from_millis).unwrap_or_default();
            RetryVerdict::RetryAfter(delay.max(asked))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_cap() {
        let p = RetryPolicy {
            initial_delay: Duration::from_millis(100),
            backoff_factor: 3.0,
            max_delay: Duration::from_secs(1),
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let delays: Vec<u128> = (1..=5).map(|a| p.delay_after(a, 0.0).as_millis()).collect();
        assert_eq!(delays, vec![100, 300, 900, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_inside_its_band() {
        let p = RetryPolicy {
            initial_delay: Duration::from_secs(10),
            jitter: 0.2,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay_after(1, 0.0), Duration::from_secs(8));
        assert_eq!(p.delay_after(1, 0.5), Duration::from_secs(10));
        assert!(p.delay_after(1, 0.999_999) <= Duration::from_secs(12));
    }

    #[test]
    fn retry_on_restricts_and_non_retryable_wins() {
        let p = RetryPolicy {
            retry_on: Some(vec!["io".into(), "bad".into()]),
            non_retryable: vec!["bad".into()],
            ..RetryPolicy::default()
        };
        assert!(p.retries_kind("io"));
        assert!(!p.retries_kind("bad"));
        assert!(!p.retries_kind("other"));
    }

    #[test]
    fn a_schedule_replaces_exponential_backoff_and_retry_after_is_honoured() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::webhook_schedule()
        };
        assert_eq!(p.attempts(), 8);
        let e = TaskError::new("http_500", "oops");
        assert_eq!(p.verdict(&e, 1, 0.5), RetryVerdict::RetryAfter(Duration::from_secs(5)));
        assert_eq!(
            p.verdict(&e, 2, 0.5),
            RetryVerdict::RetryAfter(Duration::from_secs(300))
        );
        assert_eq!(
            p.verdict(&e, 7, 0.5),
            RetryVerdict::RetryAfter(Duration::from_secs(36_000))
        );
        assert_eq!(p.verdict(&e, 8, 0.5), RetryVerdict::Exhausted);
        let slow_down = TaskError {
            retry_after_ms: Some(60_000),
            ..e.clone()
        };
        assert_eq!(
            p.verdict(&slow_down, 1, 0.5),
            RetryVerdict::RetryAfter(Duration::from_secs(60))
        );
        let text = serde_json::to_string(&p).unwrap();
        assert!(
            text.contains(r#""schedule":["5s","5m","30m","2h","5h","10h","10h"]"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<RetryPolicy>(&text).unwrap(), p);
    }

    #[test]
    fn survives_a_round_trip_through_json() {
        let p = RetryPolicy {
            retry_on: Some(vec!["io".into()]),
            non_retryable: vec!["fatal".into()],
            max_delay: Duration::from_secs(90),
            ..RetryPolicy::default()
        };
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains("\"max_delay\":\"1m30s\""), "{text}");
        assert_eq!(serde_json::from_str::<RetryPolicy>(&text).unwrap(), p);
        // Missing fields take defaults, so stored policies stay readable as fields are added.
        let partial: RetryPolicy = serde_json::from_str(r#"{"max_attempts": 7}"#).unwrap();
        assert_eq!(partial.max_attempts, 7);
        assert_eq!(partial.initial_delay, Duration::from_secs(1));
    }
}
