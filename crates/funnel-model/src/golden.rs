//! Golden vectors: inputs with known outputs that a model must reproduce before it serves.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::session::ModelSession;
use crate::spec::ElementType;
use crate::tensor::{OwnedInput, TensorInput};

/// A tensor written out in a card: its shape and its values in row-major order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl GoldenTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Self {
        Self { shape, data }
    }

    fn to_array<T>(&self, convert: impl Fn(f64) -> T) -> Result<ArrayD<T>, String> {
        ArrayD::from_shape_vec(
            IxDyn(&self.shape),
            self.data.iter().copied().map(convert).collect(),
        )
        .map_err(|e| e.to_string())
    }
}

/// Inputs and the outputs they must produce, each value within `tolerance` (absolute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenCheck {
    pub tolerance: f64,
    pub inputs: BTreeMap<String, GoldenTensor>,
    pub outputs: BTreeMap<String, GoldenTensor>,
}

impl GoldenCheck {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(format!(
                "golden tolerance {} is not a finite non-negative number",
                self.tolerance
            ));
        }
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err("golden vectors need inputs and outputs".to_owned());
        }
        for (name, tensor) in self.inputs.iter().chain(&self.outputs) {
            let expected: usize = tensor.shape.iter().product();
            if tensor.data.len() != expected {
                return Err(format!(
                    "golden tensor `{name}` has {} values for shape {:?}",
                    tensor.data.len(),
                    tensor.shape
                ));
            }
        }
        Ok(())
    }

    /// Runs the inputs through `session` and compares every expected output.
    pub(crate) fn verify(&self, session: &mut ModelSession, path: &Path) -> Result<(), ModelError> {
        let golden_error = |output: &str, detail: String| ModelError::GoldenMismatch {
            path: path.to_path_buf(),
            output: output.to_owned(),
            detail,
        };
        self.validate().map_err(|detail| golden_error("", detail))?;

        let mut owned = Vec::with_capacity(self.inputs.len());
        for (name, tensor) in &self.inputs {
            let dtype = session
                .spec()
                .input(name)
                .map_or(ElementType::Float32, |t| t.dtype);
            let array = match dtype {
                #[allow(clippy::cast_possible_truncation)]
                ElementType::Float32 => tensor.to_array(|v| v as f32).map(OwnedInput::Float32),
                ElementType::Float64 => tensor.to_array(|v| v).map(OwnedInput::Float64),
                #[allow(clippy::cast_possible_truncation)]
                ElementType::Int32 => tensor.to_array(|v| v as i32).map(OwnedInput::Int32),
                #[allow(clippy::cast_possible_truncation)]
                ElementType::Int64 => tensor.to_array(|v| v as i64).map(OwnedInput::Int64),
            }
            .map_err(|detail| golden_error(name, detail))?;
            owned.push((name.as_str(), array));
        }
        let inputs: Vec<(&str, TensorInput<'_>)> = owned
            .iter()
            .map(|(name, array)| (*name, array.view()))
            .collect();
        let outputs = session
            .run(&inputs)
            .map_err(|source| ModelError::GoldenRun {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;

        for (name, expected) in &self.outputs {
            let Some(actual) = outputs.get(name) else {
                return Err(golden_error(
                    name,
                    "is not an output of the signature".to_owned(),
                ));
            };
            if actual.shape() != expected.shape.as_slice() {
                return Err(golden_error(
                    name,
                    format!("shape {:?}, expected {:?}", actual.shape(), expected.shape),
                ));
            }
            let values = actual.to_f64_vec();
            for (index, (&got, &want)) in values.iter().zip(&expected.data).enumerate() {
                let difference = (got - want).abs();
                if difference.is_nan() || difference > self.tolerance {
                    return Err(golden_error(
                        name,
                        format!(
                            "value {index} is {got}, expected {want} (tolerance {})",
                            self.tolerance
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
