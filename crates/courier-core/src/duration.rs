//! Human durations: `"500ms"`, `"30s"`, `"1h30m"`, `"2d"`.
//!
//! Every duration a user writes (HTTP bodies, config files, CLI flags) goes through
//! [`parse_duration`], so they all accept the same spelling and refuse the same mistakes.

use std::time::Duration;

use thiserror::Error;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. \"500ms\", \"30s\", \"1h30m\", \"2d\")")]
pub struct DurationError {
    /// What the user wrote.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a duration made of one or more `<integer><unit>` parts, units `ms`, `s`,
/// `m`, `h`, `d`, largest first, each unit at most once. A bare `0` is zero.
///
/// ```
/// use std::time::Duration;
/// use courier_core::parse_duration;
/// assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
/// assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
/// assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
/// assert!(parse_duration("30").is_err());
/// assert!(parse_duration("5 minutes").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let bytes = s.as_bytes();
    let mut total_ms: u128 = 0;
    let mut i = 0;
    // Rank of the last unit seen, so "30s1h" and "1h1h" are refused.
    let mut last_rank = usize::MAX;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(err("expected a number"));
        }
        let number: u128 = s[start..i].parse().map_err(|_| err("number too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let (rank, unit_ms) = match &s[unit_start..i] {
            "d" => (4, 86_400_000),
            "h" => (3, 3_600_000),
            "m" => (2, 60_000),
            "s" => (1, 1_000),
            "ms" => (0, 1),
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        if rank >= last_rank {
            return Err(err("units must go from largest to smallest, each once"));
        }
        last_rank = rank;
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| err("too large"))?;
    }
    let ms = u64::try_from(total_ms).map_err(|_| err("too large"))?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration in the spelling [`parse_duration`] reads back
/// (sub-millisecond parts are dropped).
///
/// ```
/// use std::time::Duration;
/// use courier_core::format_duration;
/// assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
/// assert_eq!(format_duration(Duration::ZERO), "0");
/// ```
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{}", ms / size, unit));
            ms %= size;
        }
    }
    out
}

/// Serde for `Duration` fields of public formats: written as a duration string,
/// read from a string or from a number of seconds (fractions allowed).
pub mod serde_duration {
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};
    use serde::{Deserialize, Serializer};

    /// Writes `d` as a duration string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// Reads a duration string or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    pub(crate) struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration such as \"30s\" or a number of seconds")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            super::parse_duration(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v).map_err(|_| E::custom("a duration must be finite and not negative"))
        }
    }

    /// The same for `Option<Duration>`.
    pub mod option {
        use super::*;

        /// Writes `Some(d)` as a duration string, `None` as null.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        /// Reads null, a duration string or a number of seconds.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] Duration);
            Option::<Wrap>::deserialize(d).map(|o| o.map(|w| w.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_documented_spelling() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(2 * 86_400));
        assert_eq!(
            parse_duration("1d2h3m4s5ms").unwrap(),
            Duration::from_millis(93_784_005)
        );
        assert_eq!(parse_duration(" 10m ").unwrap(), Duration::from_secs(600));
    }

    #[test]
    fn refuses_anything_else_with_a_reason() {
        for bad in [
            "",
            "30",
            "s",
            "1.5s",
            "-1s",
            "1x",
            "30s1h",
            "1h1h",
            "5 minutes",
            "1hour",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains("invalid duration"), "{e}");
        }
        assert!(parse_duration("999999999999999999999d").is_err());
    }

    #[test]
    fn formatting_round_trips() {
        for ms in [1u64, 999, 1000, 1500, 60_000, 5_400_000, 90_061_001] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }

    #[test]
    fn serde_reads_strings_and_seconds() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct T {
            #[serde(with = "serde_duration")]
            d: Duration,
            #[serde(default, with = "serde_duration::option")]
            o: Option<Duration>,
        }
        let t: T = serde_json::from_str(r#"{"d": "1m", "o": 2.5}"#).unwrap();
        assert_eq!(t.d, Duration::from_secs(60));
        assert_eq!(t.o, Some(Duration::from_millis(2500)));
        let t: T = serde_json::from_str(r#"{"d": 3}"#).unwrap();
        assert_eq!(t.o, None);
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"d":"3s","o":null}"#);
        assert!(serde_json::from_str::<T>(r#"{"d": -1}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"d": "soon"}"#).is_err());
    }
}
