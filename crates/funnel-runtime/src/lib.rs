//! Runtime plumbing every Funnel process shares: layered configuration,
//! telemetry, graceful shutdown and the admin HTTP server (metrics, health).
//!
//! # Layout
//! - [`config`]: defaults, then `--config FILE`, then `FUNNEL_<SECTION>__<KEY>`;
//!   unknown keys and bad values fail at start, naming the key.
//! - [`telemetry`]: `tracing` subscriber, optional OTLP export, W3C propagation.
//! - [`shutdown`]: SIGTERM/SIGINT to a cancellation token; a second signal exits.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz` and the readiness flag.
//! - [`cli`]: the flags every service binary takes.
//! - [`reload`]: noticing that a file reloaded without restart changed.

pub mod admin;
pub mod cli;
pub mod config;
pub mod grpc;
pub mod reload;
pub mod shutdown;
pub mod telemetry;

pub use admin::{AdminConfig, Health};
pub use config::{ConfigError, GrpcConfig, load_config};
pub use grpc::Listeners;
pub use shutdown::Shutdown;
pub use telemetry::{TelemetryConfig, TelemetryGuard};

/// Exit code for a configuration error (`EX_CONFIG` is 78; 64 is `EX_USAGE`,
/// which STYLE.md asks for: a bad config is a usage error of the binary).
pub const EXIT_BAD_CONFIG: i32 = 64;
