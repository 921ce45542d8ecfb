//! The one error type of the crate, carrying the path or model it is about.

use std::fmt;
use std::path::PathBuf;

use crate::spec::{Dim, ElementType};

/// Whether a signature problem is about a model input or a model output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Input => "input",
            Role::Output => "output",
        })
    }
}

/// How one tensor differs from what the signature expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The tensor is not there; `available` lists the names that are.
    Missing {
        available: Vec<String>,
    },
    /// The tensor is there but the signature does not know it.
    Unexpected,
    /// The value is a sequence, map or optional, not a tensor.
    NotATensor {
        actual: String,
    },
    ElementType {
        expected: ElementType,
        actual: String,
    },
    Rank {
        expected: usize,
        actual: usize,
    },
    Dim {
        axis: usize,
        expected: Dim,
        actual: Dim,
    },
    /// A named dynamic axis (`batch`, `sequence`) has another size than in `other`.
    Inconsistent {
        axis: usize,
        dim: String,
        size: usize,
        other: String,
        other_size: usize,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Missing { available } => {
                write!(f, "is missing (present: {})", available.join(", "))
            }
            Mismatch::Unexpected => f.write_str("is not in the signature"),
            Mismatch::NotATensor { actual } => write!(f, "is {actual}, not a tensor"),
            Mismatch::ElementType { expected, actual } => {
                write!(f, "has element type {actual}, expected {expected}")
            }
            Mismatch::Rank { expected, actual } => {
                write!(f, "has rank {actual}, expected {expected}")
            }
            Mismatch::Dim {
                axis,
                expected,
                actual,
            } => write!(f, "has dimension {axis} = {actual}, expected {expected}"),
            Mismatch::Inconsistent {
                axis,
                dim,
                size,
                other,
                other_size,
            } => write!(
                f,
                "has {dim} = {size} (dimension {axis}), but `{other}` has {dim} = {other_size}"
            ),
        }
    }
}

/// Everything that can go wrong loading, validating, running or swapping a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("failed to load the onnx runtime library {path}")]
    RuntimeLoad {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("onnx runtime is already initialised from {loaded}, cannot switch to {requested}")]
    RuntimeAlreadyInitialized { loaded: PathBuf, requested: PathBuf },

    #[error("onnx runtime is not initialised: call init_runtime first")]
    RuntimeNotInitialized,

    #[error("invalid load options: {reason}")]
    InvalidOptions { reason: String },

    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("model card {path} cannot be parsed")]
    CardParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("model card {path} is invalid: {reason}")]
    InvalidCard { path: PathBuf, reason: String },

    #[error("signature for model {path} is invalid: {reason}")]
    InvalidSpec { path: PathBuf, reason: String },

    #[error("model file {path} has sha256 {actual}, its card says {expected}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("onnx runtime cannot open model {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },

    #[error("model {path} does not match its signature: {role} `{tensor}` {mismatch}")]
    Signature {
        path: PathBuf,
        role: Role,
        tensor: String,
        mismatch: Box<Mismatch>,
    },

    #[error("model {path} failed its warm-up run")]
    Warmup {
        path: PathBuf,
        #[source]
        source: Box<ModelError>,
    },

    #[error("model {path} cannot run its golden vectors")]
    GoldenRun {
        path: PathBuf,
        #[source]
        source: Box<ModelError>,
    },

    #[error("model {path} fails its golden check on `{output}`: {detail}")]
    GoldenMismatch {
        path: PathBuf,
        output: String,
        detail: String,
    },

    #[error("input `{tensor}` for model {model} {mismatch}")]
    Input {
        model: String,
        tensor: String,
        mismatch: Box<Mismatch>,
    },

    #[error("output `{output}` of model {model} {mismatch}")]
    Output {
        model: String,
        output: String,
        mismatch: Box<Mismatch>,
    },

    #[error("model {model} is not a tabular model: {reason}")]
    NotTabular { model: String, reason: String },

    #[error("inference failed for model {model}")]
    Inference {
        model: String,
        #[source]
        source: ort::Error,
    },

    #[error("refused to swap {current} for {candidate}: {reason}")]
    SwapRefused {
        current: String,
        candidate: String,
        reason: String,
    },
}

impl ModelError {
    /// How a tensor differed from the signature, for signature, input and output errors.
    pub fn mismatch(&self) -> Option<&Mismatch> {
        match self {
            ModelError::Signature { mismatch, .. }
            | ModelError::Input { mismatch, .. }
            | ModelError::Output { mismatch, .. } => Some(mismatch),
            _ => None,
        }
    }

    /// The input or output an error is about, if it is about one.
    pub fn tensor(&self) -> Option<&str> {
        match self {
            ModelError::Signature { tensor, .. } | ModelError::Input { tensor, .. } => Some(tensor),
            ModelError::Output { output, .. } | ModelError::GoldenMismatch { output, .. } => {
                Some(output)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_stay_small_enough_to_return_by_value() {
        assert!(
            std::mem::size_of::<ModelError>() <= 96,
            "{}",
            std::mem::size_of::<ModelError>()
        );
    }
}
