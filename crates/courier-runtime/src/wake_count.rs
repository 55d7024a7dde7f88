//! [`WakeCount`]: whether an orchestrator's `wake_gen` counts settled children
//! it was not told of.
//!
//! Each settled child adds one to its parent's `wake_gen` in the commit that
//! settles it. An orchestrator told of a child by that commit
//! (`ChildrenSettled`) need not read it back; its poll reads only its own row
//! and compares the row's count with what it knows.

/// What an orchestrator knows of its row's `wake_gen`: the count it last took
/// in, and the children it was told of since.
#[derive(Debug, Clone)]
pub(crate) struct WakeCount {
    /// The row's `wake_gen` as last taken in.
    seen: i64,
    /// Children told of since `seen`.
    told: i64,
    /// A read that counted more settled children than were known of: looked
    /// at again at the next read.
    ahead: Option<i64>,
}

/// Where the told count stood when a read of the row was sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadSent {
    told: i64,
}

/// Whether a read counted settled children nobody told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unexplained {
    /// Some: read the awaited children back.
    Some,
    /// None: everything the row counts is known of (or may still be on its way).
    None,
}

impl WakeCount {
    /// Starts from the row's `wake_gen` as claimed.
    pub(crate) fn new(wake_gen: i64) -> Self {
        WakeCount {
            seen: wake_gen,
            told: 0,
            ahead: None,
        }
    }

    /// `n` children were handed over by the commits that settled them.
    pub(crate) fn told(&mut self, n: usize) {
        self.told += n as i64;
    }

    /// A read of the row is being sent now.
    pub(crate) fn read_sent(&self) -> ReadSent {
        ReadSent { told: self.told }
    }

    /// Takes in the row's `wake_gen` from the read `sent`.
    ///
    /// Children told of before the read was sent were committed before it, so
    /// the row counts them; those told of while it was out may not be counted
    /// yet, and stay told for the next read. A row counting more than is known
    /// may only be ahead of commits whose hand-over is still on its way, so it
    /// is believed only if a later read finds less known than it counted.
    pub(crate) fn read(&mut self, wake_gen: i64, sent: ReadSent) -> Unexplained {
        let known = self.seen + self.told;
        if self.ahead.take().is_some_and(|earlier| earlier > known) {
            self.adopt(wake_gen, known, sent);
            return Unexplained::Some;
        }
        if wake_gen > known {
            self.ahead = Some(wake_gen);
        } else {
            self.adopt(wake_gen, known, sent);
        }
        Unexplained::None
    }

    fn adopt(&mut self, wake_gen: i64, known: i64, sent: ReadSent) {
        // A read taken in since this one was sent may have lowered `told`.
        let told_since = (self.told - sent.told).max(0);
        self.seen = wake_gen;
        self.told = (known - wake_gen).clamp(0, told_since);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_told_of_explain_the_row() {
        let mut count = WakeCount::new(10);
        count.told(3);
        let sent = count.read_sent();
        assert_eq!(count.read(13, sent), Unexplained::None);
        assert_eq!(count.read(13, count.read_sent()), Unexplained::None);
    }

    #[test]
    fn a_child_nobody_told_of_is_believed_at_the_next_read() {
        let mut count = WakeCount::new(0);
        count.told(2);
        // One more settled than was told: perhaps its hand-over is on its way.
        assert_eq!(count.read(3, count.read_sent()), Unexplained::None);
        // Still not told a read later: read the children back.
        assert_eq!(count.read(3, count.read_sent()), Unexplained::Some);
        // Taken in: nothing more to explain.
        assert_eq!(count.read(3, count.read_sent()), Unexplained::None);
    }

    #[test]
    fn a_hand_over_that_arrives_between_two_reads_explains_the_first() {
        let mut count = WakeCount::new(0);
        assert_eq!(count.read(1, count.read_sent()), Unexplained::None);
        count.told(1);
        assert_eq!(count.read(1, count.read_sent()), Unexplained::None);
        count.told(1);
        assert_eq!(count.read(2, count.read_sent()), Unexplained::None);
    }

    #[test]
    fn children_told_of_while_a_read_is_out_wait_for_the_next_read() {
        let mut count = WakeCount::new(0);
        let sent = count.read_sent();
        count.told(4); // committed after the read's snapshot
        assert_eq!(count.read(0, sent), Unexplained::None);
        // The next read counts them; one more nobody told of is then seen.
        assert_eq!(count.read(5, count.read_sent()), Unexplained::None);
        assert_eq!(count.read(5, count.read_sent()), Unexplained::Some);
    }

    #[test]
    fn a_miscount_does_not_outlive_one_read() {
        // Told of a child whose wake-up the claimed row already counted.
        let mut count = WakeCount::new(5);
        count.told(1);
        assert_eq!(count.read(5, count.read_sent()), Unexplained::None);
        // The surplus is gone: a child nobody told of shows.
        assert_eq!(count.read(6, count.read_sent()), Unexplained::None);
        assert_eq!(count.read(6, count.read_sent()), Unexplained::Some);
    }

    #[test]
    fn overlapping_reads_never_panic_and_keep_the_count_sane() {
        let mut count = WakeCount::new(0);
        count.told(3);
        let first = count.read_sent();
        let second = count.read_sent();
        assert_eq!(count.read(3, first), Unexplained::None);
        // The second read was sent with the same told count, since lowered.
        assert_eq!(count.read(3, second), Unexplained::None);
        assert_eq!(count.read(4, count.read_sent()), Unexplained::None);
        assert_eq!(count.read(4, count.read_sent()), Unexplained::Some);
    }
}
