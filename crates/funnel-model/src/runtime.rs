//! Loading the ONNX Runtime shared library and holding the process-wide environment.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ort::environment::Environment;
use ort::logging::LogLevel;

use crate::error::ModelError;

struct Runtime {
    library: PathBuf,
    environment: Environment,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Loads the ONNX Runtime shared library at `dylib_path` and creates the process's
/// environment. Call it once at start-up, before loading any model, so that a missing or
/// incompatible library is a clean error rather than a panic on first use.
///
/// Idempotent: calling it again with the same library is a no-op; a different library is
/// refused, since a process can hold only one.
pub fn init_runtime(dylib_path: &Path) -> Result<(), ModelError> {
    let library = dylib_path
        .canonicalize()
        .map_err(|source| ModelError::RuntimeLoad {
            path: dylib_path.to_path_buf(),
            source: Box::new(source),
        })?;
    let _guard = INIT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(runtime) = RUNTIME.get() {
        if runtime.library == library {
            return Ok(());
        }
        return Err(ModelError::RuntimeAlreadyInitialized {
            loaded: runtime.library.clone(),
            requested: library,
        });
    }
    let environment = ort::init_from(&library)
        .map_err(|source| ModelError::RuntimeLoad {
            path: library.clone(),
            source: Box::new(source),
        })?
        .with_name("funnel")
        .with_telemetry(false)
        .with_logger(Arc::new(log_to_tracing))
        .build()
        .map_err(|source| ModelError::RuntimeLoad {
            path: library.clone(),
            source: Box::new(source),
        })?;
    // The logger is registered at verbose level; formatting every verbose message of
    // every run would cost more than the runs of a small model.
    environment.set_log_level(LogLevel::Warning);
    tracing::info!(library = %library.display(), "onnx runtime loaded");
    let _ = RUNTIME.set(Runtime {
        library,
        environment,
    });
    Ok(())
}

/// The environment sessions are created in; an error until [`init_runtime`] succeeded.
pub(crate) fn environment() -> Result<&'static Environment, ModelError> {
    RUNTIME
        .get()
        .map(|runtime| &runtime.environment)
        .ok_or(ModelError::RuntimeNotInitialized)
}

/// Sends ONNX Runtime's own log lines to `tracing` rather than to stderr.
fn log_to_tracing(level: LogLevel, category: &str, _id: &str, location: &str, message: &str) {
    match level {
        LogLevel::Verbose => {
            tracing::trace!(target: "onnxruntime", category, location, "{message}");
        }
        LogLevel::Info => tracing::debug!(target: "onnxruntime", category, location, "{message}"),
        LogLevel::Warning => tracing::warn!(target: "onnxruntime", category, location, "{message}"),
        LogLevel::Error | LogLevel::Fatal => {
            tracing::error!(target: "onnxruntime", category, location, "{message}");
        }
    }
}
