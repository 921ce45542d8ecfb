//! ONNX inference for every Funnel service: load a model version, check it against the
//! signature the code expects, warm it, run batches, and swap versions atomically.
//!
//! ```no_run
//! use std::path::Path;
//! use funnel_model::{LoadOptions, Model, ModelHandle, init_runtime};
//!
//! # fn main() -> Result<(), funnel_model::ModelError> {
//! init_runtime(Path::new("lib/libonnxruntime.so"))?;
//! let options = LoadOptions { sessions: 4, ..LoadOptions::default() };
//! let model = Model::from_store(Path::new("models"), "intent", "3", &options)?;
//! let handle = ModelHandle::new(model);
//!
//! // On a blocking worker, once per batch:
//! let features = ndarray::Array2::<f32>::zeros((256, handle.current().features().len()));
//! let scores = handle.current().predict_scores(features.view())?;
//! # let _ = scores;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`runtime`]: [`init_runtime`] loads the ONNX Runtime library once per process.
//! - [`spec`]: [`ModelSpec`], the inputs and outputs (names, types, shapes) a model must have.
//! - [`card`]: [`ModelCard`], the `model.json` beside each `model.onnx`, and its sha256.
//! - [`golden`]: [`GoldenCheck`], known inputs and outputs a model must reproduce to serve.
//! - [`tensor`]: typed inputs and outputs of a run, and [`TokenBatch`] for text encoders.
//! - [`session`]: [`ModelSession`], one validated session (runs take `&mut self`).
//! - [`model`]: [`Model`], a loaded version with a pool of sessions; [`LoadOptions`].
//! - [`handle`]: [`ModelHandle`], the version serving now, hot-swapped atomically.
//! - [`error`]: [`ModelError`], the one error type, with the path or model it is about.
//!
//! Inference is CPU work that blocks its thread: a run of unbounded size belongs on a
//! blocking pool. A run bounded to well under a millisecond may stay on the async worker
//! that needs it, where the hand-off to a blocking thread and back costs more than the run
//! (the recommender ranks at most `candidates.total_max` rows per request that way).

pub mod card;
pub mod error;
pub mod golden;
pub mod handle;
pub mod model;
pub mod runtime;
pub mod session;
pub mod spec;
pub mod tensor;

pub use card::{CARD_FILE, ModelCard, card_path, sha256_hex};
pub use error::{Mismatch, ModelError, Role};
pub use golden::{GoldenCheck, GoldenTensor};
pub use handle::ModelHandle;
pub use model::{LoadOptions, Model, ModelId, ModelInfo};
pub use runtime::init_runtime;
pub use session::ModelSession;
pub use spec::{Dim, ElementType, ModelSpec, ScoreOutput, TensorSpec};
pub use tensor::{Element, Outputs, TensorInput, TensorOutput, TokenBatch};
