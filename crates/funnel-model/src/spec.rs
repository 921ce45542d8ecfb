//! The signature a model must have: input and output names, element types and shapes.

use std::collections::HashSet;
use std::fmt;

use ort::session::Session;
use ort::value::{Outlet, TensorElementType, ValueType};
use serde::{Deserialize, Serialize};

use crate::error::{Mismatch, Role};

/// Element types the crate can feed to and read from a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    Float32,
    Float64,
    Int32,
    Int64,
}

impl ElementType {
    pub(crate) fn from_ort(ty: TensorElementType) -> Option<Self> {
        match ty {
            TensorElementType::Float32 => Some(Self::Float32),
            TensorElementType::Float64 => Some(Self::Float64),
            TensorElementType::Int32 => Some(Self::Int32),
            TensorElementType::Int64 => Some(Self::Int64),
            _ => None,
        }
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElementType::Float32 => "float32",
            ElementType::Float64 => "float64",
            ElementType::Int32 => "int32",
            ElementType::Int64 => "int64",
        })
    }
}

/// One axis of a tensor shape. In JSON a number is a fixed size and a string names a
/// dynamic axis (`["batch", 4]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Dynamic(String),
}

impl Dim {
    /// The dynamic batch axis every batched model has first.
    pub fn batch() -> Self {
        Dim::Dynamic("batch".to_owned())
    }

    /// A dynamic axis with a name, such as `"sequence"`.
    pub fn dynamic(name: impl Into<String>) -> Self {
        Dim::Dynamic(name.into())
    }

    /// Whether a model axis reported by ONNX Runtime (`-1` when dynamic) accepts this one.
    /// A model axis that is dynamic accepts any fixed size, but an axis the signature wants
    /// dynamic must be dynamic in the model too: a model exported with a fixed batch of 1
    /// cannot serve batches.
    fn accepts_model_dim(&self, model_dim: i64) -> bool {
        match self {
            Dim::Fixed(size) => model_dim < 0 || usize::try_from(model_dim) == Ok(*size),
            Dim::Dynamic(_) => model_dim < 0,
        }
    }

    fn accepts_size(&self, size: usize) -> bool {
        match self {
            Dim::Fixed(fixed) => *fixed == size,
            Dim::Dynamic(_) => true,
        }
    }

    fn from_model(model_dim: i64, symbol: Option<&str>) -> Self {
        match usize::try_from(model_dim) {
            Ok(size) => Dim::Fixed(size),
            Err(_) => Dim::Dynamic(symbol.unwrap_or_default().to_owned()),
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(size) => write!(f, "{size}"),
            Dim::Dynamic(name) if name.is_empty() => f.write_str("dynamic"),
            Dim::Dynamic(name) => write!(f, "dynamic ({name})"),
        }
    }
}

/// Name, element type and shape of one model input or output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: ElementType,
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, dtype: ElementType, shape: Vec<Dim>) -> Self {
        Self {
            name: name.into(),
            dtype,
            shape,
        }
    }

    /// Checks a concrete tensor shape (an input given to or an output read from a run).
    /// Named dynamic axes are bound to their size on first sight, so that `batch` or
    /// `sequence` must agree across all the tensors of one run.
    pub(crate) fn check_shape<'s>(
        &'s self,
        shape: &[usize],
        bound: &mut DimBindings<'s>,
    ) -> Result<(), Mismatch> {
        if shape.len() != self.shape.len() {
            return Err(Mismatch::Rank {
                expected: self.shape.len(),
                actual: shape.len(),
            });
        }
        for (axis, (expected, &size)) in self.shape.iter().zip(shape).enumerate() {
            if !expected.accepts_size(size) {
                return Err(Mismatch::Dim {
                    axis,
                    expected: expected.clone(),
                    actual: Dim::Fixed(size),
                });
            }
            if let Dim::Dynamic(dim) = expected
                && !dim.is_empty()
            {
                match bound.0.iter().find(|binding| binding.dim == dim) {
                    Some(binding) if binding.size != size => {
                        return Err(Mismatch::Inconsistent {
                            axis,
                            dim: dim.clone(),
                            size,
                            other: binding.tensor.to_owned(),
                            other_size: binding.size,
                        });
                    }
                    Some(_) => {}
                    None => bound.0.push(DimBinding {
                        dim,
                        size,
                        tensor: &self.name,
                    }),
                }
            }
        }
        Ok(())
    }

    /// Checks the declaration ONNX Runtime reports for this tensor in a loaded model.
    fn check_outlet(&self, outlet: &Outlet) -> Result<(), Mismatch> {
        let ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } = outlet.dtype()
        else {
            return Err(Mismatch::NotATensor {
                actual: outlet.dtype().to_string(),
            });
        };
        let actual = ElementType::from_ort(*ty);
        if actual != Some(self.dtype) {
            return Err(Mismatch::ElementType {
                expected: self.dtype,
                actual: actual.map_or_else(|| ty.to_string(), |t| t.to_string()),
            });
        }
        if shape.len() != self.shape.len() {
            return Err(Mismatch::Rank {
                expected: self.shape.len(),
                actual: shape.len(),
            });
        }
        for (axis, (expected, &model_dim)) in self.shape.iter().zip(shape.iter()).enumerate() {
            if !expected.accepts_model_dim(model_dim) {
                let symbol = dimension_symbols
                    .get(axis)
                    .map(String::as_str)
                    .filter(|s| !s.is_empty());
                return Err(Mismatch::Dim {
                    axis,
                    expected: expected.clone(),
                    actual: Dim::from_model(model_dim, symbol),
                });
            }
        }
        Ok(())
    }
}

/// Sizes the named dynamic axes took in one run, e.g. `batch = 256`.
#[derive(Debug, Default)]
pub(crate) struct DimBindings<'s>(Vec<DimBinding<'s>>);

#[derive(Debug)]
struct DimBinding<'s> {
    dim: &'s str,
    size: usize,
    tensor: &'s str,
}

/// Which output column is "the score" of a tabular model, e.g. column 1 of an skl2onnx
/// classifier's `probabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreOutput {
    pub output: String,
    pub column: usize,
}

/// The signature the code expects of a model. Outputs the model has beyond these are
/// never computed; inputs it has beyond these make the model unusable and are refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelSpec {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The output and column that [`crate::Model::predict_scores`] returns; the first
    /// output's column 0 when absent.
    pub score: Option<ScoreOutput>,
}

impl ModelSpec {
    /// A tabular model: one `float32 [batch, features]` input and the given outputs.
    pub fn tabular(input: &str, features: usize, outputs: Vec<TensorSpec>) -> Self {
        Self {
            inputs: vec![TensorSpec::new(
                input,
                ElementType::Float32,
                vec![Dim::batch(), Dim::Fixed(features)],
            )],
            outputs,
            score: None,
        }
    }

    pub fn with_score(mut self, output: impl Into<String>, column: usize) -> Self {
        self.score = Some(ScoreOutput {
            output: output.into(),
            column,
        });
        self
    }

    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|t| t.name == name)
    }

    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|t| t.name == name)
    }

    /// The output and column scores come from.
    pub fn score_output(&self) -> ScoreOutput {
        self.score.clone().unwrap_or_else(|| ScoreOutput {
            output: self
                .outputs
                .first()
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            column: 0,
        })
    }

    /// The spec on its own makes sense: names unique, something to feed and read, and a
    /// score that points at a `float32 [batch, k]` output with `column < k`.
    pub fn validate(&self) -> Result<(), String> {
        if self.inputs.is_empty() {
            return Err("no inputs".to_owned());
        }
        if self.outputs.is_empty() {
            return Err("no outputs".to_owned());
        }
        for (role, tensors) in [("input", &self.inputs), ("output", &self.outputs)] {
            let mut seen = HashSet::new();
            for tensor in tensors {
                if tensor.name.is_empty() {
                    return Err(format!("an {role} has an empty name"));
                }
                if !seen.insert(tensor.name.as_str()) {
                    return Err(format!("{role} `{}` is listed twice", tensor.name));
                }
            }
        }
        if let Some(score) = &self.score {
            let Some(output) = self.output(&score.output) else {
                return Err(format!("score output `{}` is not an output", score.output));
            };
            if output.dtype != ElementType::Float32 || output.shape.len() != 2 {
                return Err(format!(
                    "score output `{}` must be float32 of rank 2",
                    score.output
                ));
            }
            if let Dim::Fixed(columns) = output.shape[1]
                && score.column >= columns
            {
                return Err(format!(
                    "score column {} is out of range for `{}` with {columns} columns",
                    score.column, score.output
                ));
            }
        }
        Ok(())
    }

    /// Checks a loaded session against the spec; the error says which tensor and how.
    pub(crate) fn check_session(&self, session: &Session) -> Result<(), (Role, String, Mismatch)> {
        check_outlets(Role::Input, &self.inputs, session.inputs())?;
        if let Some(extra) = session
            .inputs()
            .iter()
            .find(|outlet| self.input(outlet.name()).is_none())
        {
            return Err((Role::Input, extra.name().to_owned(), Mismatch::Unexpected));
        }
        check_outlets(Role::Output, &self.outputs, session.outputs())
    }
}

fn check_outlets(
    role: Role,
    expected: &[TensorSpec],
    actual: &[Outlet],
) -> Result<(), (Role, String, Mismatch)> {
    for spec in expected {
        let Some(outlet) = actual.iter().find(|o| o.name() == spec.name) else {
            let available = actual.iter().map(|o| o.name().to_owned()).collect();
            return Err((role, spec.name.clone(), Mismatch::Missing { available }));
        };
        spec.check_outlet(outlet)
            .map_err(|mismatch| (role, spec.name.clone(), mismatch))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_read_from_json_as_numbers_or_names() {
        let dims: Vec<Dim> = serde_json::from_str(r#"["batch", 4]"#).unwrap();
        assert_eq!(dims, vec![Dim::batch(), Dim::Fixed(4)]);
    }

    #[test]
    fn a_dynamic_axis_in_the_spec_refuses_a_fixed_model_axis() {
        assert!(Dim::batch().accepts_model_dim(-1));
        assert!(!Dim::batch().accepts_model_dim(1));
        assert!(Dim::Fixed(4).accepts_model_dim(-1));
        assert!(Dim::Fixed(4).accepts_model_dim(4));
        assert!(!Dim::Fixed(4).accepts_model_dim(5));
    }

    #[test]
    fn a_score_must_point_at_a_column_that_exists() {
        let probabilities = TensorSpec::new(
            "probabilities",
            ElementType::Float32,
            vec![Dim::batch(), Dim::Fixed(2)],
        );
        let spec = ModelSpec::tabular("features", 4, vec![probabilities]);
        assert!(
            spec.clone()
                .with_score("probabilities", 1)
                .validate()
                .is_ok()
        );
        let err = spec.with_score("probabilities", 2).validate().unwrap_err();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let out = TensorSpec::new("p", ElementType::Float32, vec![Dim::batch()]);
        let spec = ModelSpec::tabular("features", 4, vec![out.clone(), out]);
        assert!(spec.validate().unwrap_err().contains("listed twice"));
    }
}
