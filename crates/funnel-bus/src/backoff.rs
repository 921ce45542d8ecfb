//! Waiting between attempts of something that must eventually succeed.

use std::time::Duration;

use funnel_runtime::Shutdown;

/// A doubling wait, from 50 ms up to a cap, cut short by shutdown.
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(max: Duration) -> Self {
        Backoff {
            next: Duration::from_millis(50).min(max),
            max,
        }
    }

    /// How long the next [`Backoff::wait`] sleeps.
    pub(crate) fn next(&self) -> Duration {
        self.next
    }

    /// Sleeps for the current backoff and doubles it; false if shutdown came first.
    pub(crate) async fn wait(&mut self, shutdown: &Shutdown) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(self.next) => {}
            _ = shutdown.cancelled() => return false,
        }
        self.next = (self.next * 2).min(self.max);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn doubles_up_to_the_cap_and_stops_at_shutdown() {
        let shutdown = Shutdown::new();
        let mut backoff = Backoff::new(Duration::from_millis(120));
        let mut waits = Vec::new();
        let started = std::time::Instant::now();
        for _ in 0..4 {
            waits.push(backoff.next().as_millis());
            assert!(backoff.wait(&shutdown).await);
        }
        assert_eq!(waits, [50, 100, 120, 120]);
        assert!(started.elapsed() >= Duration::from_millis(390));

        shutdown.trigger();
        let started = std::time::Instant::now();
        assert!(!backoff.wait(&shutdown).await);
        assert!(started.elapsed() < Duration::from_millis(120));
        assert_eq!(backoff.next().as_millis(), 120);
    }
}
