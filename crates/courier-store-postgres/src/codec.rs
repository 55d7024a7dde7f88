//! How Rust values are spelled in the database: durations as microseconds
//! (`bigint`), enums as their wire text, structured values as `jsonb`.

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Result, corrupt};

/// Longer durations are cut to this (about 100 years), so `now() + d` stays a
/// valid timestamp however large a caller's "forever" is.
const MAX_MICROS: i64 = 100 * 366 * 24 * 3600 * 1_000_000;

/// A duration as whole microseconds.
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX).min(MAX_MICROS)
}

/// An optional duration as whole microseconds.
pub(crate) fn opt_micros(d: Option<Duration>) -> Option<i64> {
    d.map(micros)
}

/// Microseconds back to a duration (negative values read as zero).
pub(crate) fn duration_from_micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// SQL for `now()` plus a microsecond count held in `expr` (NULL stays NULL).
pub(crate) fn now_plus(expr: &str) -> String {
    format!("now() + ({expr})::int8::float8 * interval '1 microsecond'")
}

/// A value as `jsonb`.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| corrupt(format!("cannot encode a value as JSON: {e}")))
}

/// A `jsonb` value as `T`.
pub(crate) fn from_json<T: DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value).map_err(|e| corrupt(format!("{what}: {e}")))
}

/// A stored enum spelling.
pub(crate) fn parse<T>(text: &str) -> Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| corrupt(e))
}

/// Tags travel in bulk statements as one JSON array per row: `text[]` cannot be
/// nested ragged, and [`tags_sql`] turns it back into `text[]`.
pub(crate) fn tags_json(tags: &[String]) -> Value {
    Value::Array(tags.iter().cloned().map(Value::String).collect())
}

/// SQL turning a JSON array of strings into `text[]`.
pub(crate) fn tags_sql(expr: &str) -> String {
    format!("ARRAY(SELECT jsonb_array_elements_text({expr}))")
}

/// A non-negative count from SQL `bigint`.
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A `limit` where 0 means "no limit" (as SQL's `LIMIT NULL`).
pub(crate) fn limit(n: u32) -> Option<i64> {
    (n > 0).then_some(i64::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_and_saturate() {
        assert_eq!(
            duration_from_micros(micros(Duration::from_millis(1500))),
            Duration::from_millis(1500)
        );
        assert_eq!(micros(Duration::MAX), MAX_MICROS);
        assert_eq!(duration_from_micros(-5), Duration::ZERO);
    }
}
