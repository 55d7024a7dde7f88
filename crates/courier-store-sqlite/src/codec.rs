//! How values are spelled in SQLite: timestamps as INTEGER microseconds since the
//! Unix epoch (UTC), ids as 16-byte BLOBs, JSON as TEXT, states and kinds as their
//! `as_str()` TEXT, durations as INTEGER nanoseconds.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::{FromSqlError, Type, ValueRef};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use courier_core::{RetryPolicy, StoreError};

/// Microseconds since the epoch; the store's only spelling of time.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The time `us` microseconds after the epoch.
pub(crate) fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at + d`, saturating instead of overflowing for absurd durations.
pub(crate) fn after(at: i64, d: Duration) -> i64 {
    at.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// `at - d`, saturating.
pub(crate) fn before(at: i64, d: Duration) -> i64 {
    at.saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A duration as nanoseconds (exact for any duration shorter than 292 years).
pub(crate) fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A JSON value as TEXT, refused if a string in it holds a NUL: Postgres cannot
/// keep one, and a value must behave the same in either store.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> crate::error::Result<String> {
    let text = serde_json::to_string(value)?;
    if escapes_nul(&text) {
        return Err(StoreError::Invalid(
            "a JSON value holds a NUL character (\\u0000), which no Courier store keeps".into(),
        )
        .into());
    }
    Ok(text)
}

/// An optional JSON value as nullable TEXT (`Some(null)` is the text `null`, not SQL NULL).
pub(crate) fn json_opt<T: Serialize>(value: Option<&T>) -> crate::error::Result<Option<String>> {
    value.map(json).transpose()
}

/// Whether serialized JSON holds the escape `\u0000` (a NUL), not merely the
/// text `\\u0000` (a backslash followed by `u0000`).
fn escapes_nul(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("u0000").map(|i| i + from) {
        let backslashes = bytes[..at].iter().rev().take_while(|b| **b == b'\\').count();
        if backslashes % 2 == 1 {
            return true;
        }
        from = at + 1;
    }
    false
}

fn conversion(idx: usize, ty: Type, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, ty, Box::new(e))
}

/// Reads a non-null id column.
pub(crate) fn uuid_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Uuid> {
    row.get::<_, [u8; 16]>(idx).map(Uuid::from_bytes)
}

/// Reads a nullable id column.
pub(crate) fn uuid_opt_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Uuid>> {
    Ok(row.get::<_, Option<[u8; 16]>>(idx)?.map(Uuid::from_bytes))
}

/// Reads a non-null timestamp column.
pub(crate) fn time_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    row.get::<_, i64>(idx).map(time)
}

/// Reads a nullable timestamp column.
pub(crate) fn time_opt_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    Ok(row.get::<_, Option<i64>>(idx)?.map(time))
}

/// Reads a non-null JSON column without copying the text first.
pub(crate) fn json_at<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text = row.get_ref(idx)?.as_str().map_err(|e| from_sql(idx, e))?;
    serde_json::from_str(text).map_err(|e| conversion(idx, Type::Text, e))
}

/// A retry policy as JSON TEXT. Most tasks carry the default policy, whose
/// text is spelled once: serialising it at every insert was about a tenth of
/// what inserting a fan-out's child cost the writer.
pub(crate) fn retry_text(retry: &RetryPolicy) -> crate::error::Result<Cow<'static, str>> {
    if *retry == RetryPolicy::default() {
        Ok(Cow::Borrowed(default_retry_text()))
    } else {
        json(retry).map(Cow::Owned)
    }
}

/// Reads a retry policy written by [`retry_text`] (or by any earlier spelling
/// of it), knowing the default's text without parsing it.
pub(crate) fn retry_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<RetryPolicy> {
    let text = row.get_ref(idx)?.as_str().map_err(|e| from_sql(idx, e))?;
    if text == default_retry_text() {
        return Ok(RetryPolicy::default());
    }
    serde_json::from_str(text).map_err(|e| conversion(idx, Type::Text, e))
}

/// The default retry policy's JSON.
fn default_retry_text() -> &'static str {
    static TEXT: LazyLock<String> =
        LazyLock::new(|| serde_json::to_string(&RetryPolicy::default()).expect("the default retry policy serialises"));
    &TEXT
}

/// Reads a nullable JSON column.
pub(crate) fn json_opt_at<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<T>> {
    match row.get_ref(idx)? {
        ValueRef::Null => Ok(None),
        v => {
            let text = v.as_str().map_err(|e| from_sql(idx, e))?;
            serde_json::from_str(text)
                .map(Some)
                .map_err(|e| conversion(idx, Type::Text, e))
        }
    }
}

/// Reads a TEXT column spelled as one of core's string enums.
pub(crate) fn enum_at<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text = row.get_ref(idx)?.as_str().map_err(|e| from_sql(idx, e))?;
    text.parse().map_err(|e| conversion(idx, Type::Text, e))
}

fn from_sql(idx: usize, e: FromSqlError) -> rusqlite::Error {
    match e {
        FromSqlError::InvalidType => rusqlite::Error::InvalidColumnType(idx, String::new(), Type::Null),
        other => conversion(idx, Type::Text, other),
    }
}

/// A listing's `limit` for SQL: 0 means no limit (as `LIMIT -1` does in SQLite).
pub(crate) fn limit(limit: u32) -> i64 {
    if limit == 0 { -1 } else { i64::from(limit) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_real_nul_is_refused() {
        assert!(json(&json!({"a": "x\u{0}y"})).is_err());
        assert!(json(&json!({"k\u{0}": 1})).is_err());
        assert!(json(&json!(r"\u0000 spelled out")).is_ok());
        assert!(json(&json!(r"\\u0000")).is_ok());
        assert!(json(&json!("\\\u{0}")).is_err());
    }
}
