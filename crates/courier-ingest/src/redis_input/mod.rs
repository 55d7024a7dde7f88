//! The Redis inputs: a Redis Stream read through a consumer group
//! ([`stream`], durable: an entry is acknowledged only once its execution is
//! committed) and a pub/sub channel ([`pubsub`], best effort). Both dial Redis
//! the way the Redis notifier does ([`courier_notify::RedisConnector`]), and
//! both reconnect by themselves, with capped exponential backoff, for as long
//! as the node runs.

pub(crate) mod pubsub;
pub(crate) mod stream;

use std::time::Duration;

use tokio::sync::watch;

/// Capped exponential backoff: 100 ms, 200 ms, ... up to 5 s.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MOST: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The wait before the next attempt (doubling each time, capped).
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MOST);
        wait
    }

    /// After a success: the next failure waits the shortest time again.
    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Whether the input should stop: the stop flag is up, or the [`crate::Ingest`]
/// holding its sender is gone.
pub(crate) fn is_stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Resolves once the input should stop.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Sleeps `wait`, or less if the input is told to stop meanwhile.
pub(crate) async fn pause(wait: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = stopped(stop) => {}
    }
}

/// This node's id, for connection and consumer names.
pub(crate) fn node_id(intake: &crate::Intake) -> String {
    intake
        .courier()
        .map(|courier| courier.node_id().to_string())
        .unwrap_or_else(|| "node".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_seconds_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..8).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(100));
    }
}
