//! Graceful shutdown: the first SIGTERM or SIGINT cancels a token that every
//! task watches; a second one exits at once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A cloneable shutdown signal. `cancelled()` resolves once shutdown began.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Begins shutdown (what a signal does; tests call it directly).
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when shutdown begins.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// A future for `serve_with_shutdown`-style APIs.
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let token = self.token.clone();
        async move { token.cancelled().await }
    }

    /// Triggers on the first SIGTERM/SIGINT; the second exits the process with
    /// status 130 without draining.
    pub fn listen_for_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received, draining (send it again to exit now)");
            this.trigger();
            wait_for_signal().await;
            tracing::warn!("second shutdown signal, exiting without draining");
            std::process::exit(130);
        });
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("failed to install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Runs `fut` but gives up after `grace`, logging what was cut short.
pub async fn with_grace<F: std::future::Future>(
    what: &str,
    grace: Duration,
    fut: F,
) -> Option<F::Output> {
    match tokio::time::timeout(grace, fut).await {
        Ok(out) => Some(out),
        Err(_) => {
            tracing::warn!(
                what,
                grace_secs = grace.as_secs(),
                "grace period over, not waiting any longer"
            );
            None
        }
    }
}
