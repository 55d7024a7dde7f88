//! The local clock, with an offset tests can set to play a node whose clock is wrong.
//!
//! Lease and schedule decisions on Postgres never use this clock: they use the
//! database's, so that nodes with skewed clocks still agree.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A wall clock, possibly shifted.
///
/// ```
/// use std::time::Duration;
/// use courier_core::Clock;
/// let ahead = Clock::shifted(Duration::from_secs(30), true);
/// assert!(ahead.now() > Clock::system().now());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    offset_ms: i64,
}

impl Clock {
    /// The machine's clock.
    pub fn system() -> Self {
        Clock { offset_ms: 0 }
    }

    /// The machine's clock shifted by `offset`, ahead or behind.
    pub fn shifted(offset: Duration, ahead: bool) -> Self {
        let ms = offset.as_millis().min(i64::MAX as u128) as i64;
        Clock {
            offset_ms: if ahead { ms } else { -ms },
        }
    }

    /// A clock shifted by a signed number of milliseconds.
    pub fn from_offset_ms(offset_ms: i64) -> Self {
        Clock { offset_ms }
    }

    /// The offset from the machine's clock, in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }

    /// Now, in UTC.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms)
    }
}
