//! Flow control per function, held in the store for the whole cluster (see
//! [`RateLimitStore`](crate::RateLimitStore)): rate limits, how many tasks of a
//! function (or of one key of it, taken from the args) may start per second, as
//! a token bucket; and concurrency keys, how many tasks sharing one key may run
//! at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most a rate limit may allow per second or hold as a burst.
pub const MAX_RATE: f64 = 1_000_000.0;

/// A cluster-wide token bucket for a function's task starts: `per_second`
/// tokens flow in, at most `burst` wait, and each task start takes one. A task
/// that finds none goes back to its queue until its token is due: it waits, it
/// never fails. With `key` (a JSON pointer into the args, such as
/// `/customer_id`), each value of it has a bucket of its own.
///
/// ```
/// use courier_core::RateLimit;
/// use serde_json::json;
///
/// let limit: RateLimit = serde_json::from_value(json!({"per_second": 5, "key": "/customer"})).unwrap();
/// assert_eq!(limit.burst(), 5.0);
/// assert_eq!(limit.bucket("charge", &json!({"customer": "acme"})), "charge\u{1f}\"acme\"");
/// assert_eq!(limit.bucket("charge", &json!({})), "charge\u{1f}null");
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "A cluster-wide token bucket for a function's task starts, optionally one per key of its args."
    )
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Task starts allowed per second, on average (above 0, at most 1,000,000).
    pub per_second: f64,
    /// How many may start at once after a quiet spell (default: `per_second`,
    /// rounded up, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub burst: Option<u32>,
    /// A JSON pointer into the args (`/customer_id`): one bucket per value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl RateLimit {
    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<String> {
        if !(self.per_second > 0.0 && self.per_second <= MAX_RATE) {
            return Some(format!("per_second must be above 0 and at most {MAX_RATE}"));
        }
        if self.burst.is_some_and(|b| b == 0 || f64::from(b) > MAX_RATE) {
            return Some(format!("burst must be 1 to {MAX_RATE}"));
        }
        if let Some(key) = &self.key
            && !key.starts_with('/')
        {
            return Some(format!(
                "key must be a JSON pointer such as \"/customer_id\", not {key:?}"
            ));
        }
        None
    }

    /// The bucket's size.
    pub fn burst(&self) -> f64 {
        match self.burst {
            Some(b) => f64::from(b),
            None => self.per_second.ceil().max(1.0),
        }
    }

    /// The bucket a task of `function` with `args` takes its token from: the
    /// function's, or with a key the function's and the key's value (as JSON,
    /// `null` when the args lack it), joined by a unit separator.
    pub fn bucket(&self, function: &str, args: &Value) -> String {
        match &self.key {
            None => function.to_string(),
            Some(pointer) => {
                let value = args.pointer(pointer).unwrap_or(&Value::Null);
                format!("{function}\u{1f}{value}")
            }
        }
    }

    /// How long the `n`th task (from 0) refused by a take that left
    /// `next_token_in` until its next token should wait: one token's time
    /// apart, so the refused come back in order rather than all at once.
    pub fn wait_of(&self, n: u32, next_token_in: Duration) -> Duration {
        next_token_in + Duration::from_secs_f64(f64::from(n) / self.per_second)
    }
}

/// What a take from a bucket gave.
///
/// ```
/// use std::time::Duration;
/// use courier_core::TokenGrant;
///
/// let grant = TokenGrant { granted: 2, next_token_in: Duration::from_millis(150) };
/// assert_eq!(grant.granted, 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenGrant {
    /// Tokens taken (at most the number asked for).
    pub granted: u32,
    /// How long until the bucket holds its next whole token (zero if it
    /// already does).
    #[serde(with = "crate::duration::serde_duration")]
    pub next_token_in: Duration,
}

/// Takes up to `want` whole tokens from a bucket holding `tokens` that refills
/// at `per_second`: what a store's take grants (the bucket keeps
/// `tokens - granted`).
///
/// ```
/// use std::time::Duration;
/// use courier_core::take_tokens;
///
/// let grant = take_tokens(2.5, 4, 10.0);
/// assert_eq!(grant.granted, 2);
/// assert_eq!(grant.next_token_in, Duration::from_millis(50));
/// ```
pub fn take_tokens(tokens: f64, want: u32, per_second: f64) -> TokenGrant {
    let granted = (tokens.floor().max(0.0) as u64).min(u64::from(want)) as u32;
    let left = tokens - f64::from(granted);
    let next_token_in = if left >= 1.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64((1.0 - left) / per_second)
    };
    TokenGrant { granted, next_token_in }
}

/// A cap on how many of a function's tasks that share one key (a JSON pointer
/// into the args, such as `/customer_id`) may run at once across the cluster.
/// A task over it goes back to its queue and waits; it never fails.
///
/// ```
/// use courier_core::ConcurrencyKey;
/// use serde_json::json;
///
/// let per_customer: ConcurrencyKey = serde_json::from_value(json!({"key": "/customer", "max": 2})).unwrap();
/// assert_eq!(per_customer.bucket("sync", &json!({"customer": 7})), "sync\u{1f}7");
/// assert!(per_customer.problem().is_none());
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "A cap on how many of a function's tasks sharing one key of their args run at once, cluster-wide."
    )
)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyKey {
    /// A JSON pointer into the args (`/customer_id`); tasks without it share the `null` key.
    pub key: String,
    /// How many may run at once per key (1 to 1,000,000).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub max: u32,
}

impl ConcurrencyKey {
    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<String> {
        if !self.key.starts_with('/') {
            return Some(format!(
                "key must be a JSON pointer such as \"/customer_id\", not {:?}",
                self.key
            ));
        }
        if self.max == 0 || f64::from(self.max) > MAX_RATE {
            return Some(format!("max must be 1 to {MAX_RATE}"));
        }
        None
    }

    /// The slot set a task of `function` with `args` counts against.
    pub fn bucket(&self, function: &str, args: &Value) -> String {
        let value = args.pointer(&self.key).unwrap_or(&Value::Null);
        format!("{function}\u{1f}{value}")
    }
}
