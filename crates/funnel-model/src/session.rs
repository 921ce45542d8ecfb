//! One validated ONNX Runtime session and the runs it serves.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ndarray::{Array1, Array2, ArrayView2, CowArray, Ix1, Ix2, IxDyn};
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session, SessionInputValue};
use ort::value::{DynValue, TensorRef};

use crate::error::{Mismatch, ModelError};
use crate::model::LoadOptions;
use crate::runtime;
use crate::spec::{Dim, DimBindings, ElementType, ModelSpec, TensorSpec};
use crate::tensor::{Outputs, OwnedInput, TensorInput, TensorOutput};

/// One ONNX Runtime session whose model matched its [`ModelSpec`].
///
/// Running takes `&mut self` because ONNX Runtime's `Run` is not safe to call on one
/// session from several threads at once; [`crate::Model`] keeps a pool of these.
pub struct ModelSession {
    label: Arc<str>,
    spec: Arc<ModelSpec>,
    session: Session,
    /// Computes only the outputs of the signature (an skl2onnx ZipMap, say, never runs).
    run_options: RunOptions<HasSelectedOutputs>,
}

impl fmt::Debug for ModelSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelSession")
            .field("model", &self.label)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl ModelSession {
    /// Opens a session on the model bytes read from `path` and checks it against `spec`.
    pub(crate) fn open(
        bytes: &[u8],
        path: &Path,
        label: Arc<str>,
        spec: Arc<ModelSpec>,
        options: &LoadOptions,
    ) -> Result<Self, ModelError> {
        let open_error = |source: ort::Error| ModelError::Open {
            path: path.to_path_buf(),
            source,
        };
        let environment = runtime::environment()?;
        let mut builder = Session::builder(environment)
            .map_err(open_error)?
            .with_intra_threads(options.intra_threads)
            .map_err(|e| open_error(e.into()))?
            .with_intra_op_spinning(options.intra_op_spinning)
            .map_err(|e| open_error(e.into()))?;
        let session = builder.commit_from_memory(bytes).map_err(open_error)?;
        spec.check_session(&session)
            .map_err(|(role, tensor, mismatch)| ModelError::Signature {
                path: path.to_path_buf(),
                role,
                tensor,
                mismatch: Box::new(mismatch),
            })?;
        let selector = spec
            .outputs
            .iter()
            .fold(OutputSelector::no_default(), |selector, output| {
                selector.with(output.name.as_str())
            });
        let run_options = RunOptions::new()
            .map_err(open_error)?
            .with_outputs(selector);
        Ok(Self {
            label,
            spec,
            session,
            run_options,
        })
    }

    /// Runs a batch of zeros through the model so that the first real request does not
    /// pay for allocation and kernel set-up. Batch axes (the first axis, and any axis named
    /// like one) get `batch` rows; other dynamic axes get 1.
    pub(crate) fn warm_up(&mut self, batch: usize) -> Result<(), ModelError> {
        let spec = Arc::clone(&self.spec);
        let batch_axes: Vec<&Dim> = spec
            .inputs
            .iter()
            .filter_map(|input| input.shape.first())
            .collect();
        let owned: Vec<(&str, OwnedInput)> = spec
            .inputs
            .iter()
            .map(|input| {
                let shape: Vec<usize> = input
                    .shape
                    .iter()
                    .map(|dim| match dim {
                        Dim::Fixed(size) => *size,
                        Dim::Dynamic(_) if batch_axes.contains(&dim) => batch,
                        Dim::Dynamic(_) => 1,
                    })
                    .collect();
                (input.name.as_str(), OwnedInput::zeros(input.dtype, &shape))
            })
            .collect();
        let inputs: Vec<(&str, TensorInput<'_>)> = owned
            .iter()
            .map(|(name, input)| (*name, input.view()))
            .collect();
        self.run(&inputs).map(drop)
    }

    /// `name@version` of the model this session runs.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Runs named inputs through the model and returns the signature's outputs.
    ///
    /// Every input of the signature must be given once, with its element type and any
    /// fixed axis sizes; views need not be contiguous (they are copied if they are not).
    pub fn run(&mut self, inputs: &[(&str, TensorInput<'_>)]) -> Result<Outputs, ModelError> {
        let spec = Arc::clone(&self.spec);
        let mut bound = DimBindings::default();
        check_inputs(&spec, &self.label, inputs, &mut bound)?;
        let label = &self.label;
        let inference_error = |source: ort::Error| ModelError::Inference {
            model: label.to_string(),
            source,
        };

        let contiguous: Vec<(&str, Contiguous<'_>)> = inputs
            .iter()
            .map(|(name, input)| (*name, Contiguous::new(input)))
            .collect();
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(contiguous.len());
        for (name, input) in &contiguous {
            values.push((
                Cow::Borrowed(*name),
                input.to_value().map_err(inference_error)?,
            ));
        }
        let outputs = self
            .session
            .run_with_options(values, &self.run_options)
            .map_err(inference_error)?;

        let mut tensors = Vec::with_capacity(spec.outputs.len());
        for spec in &spec.outputs {
            let output_error = |mismatch| ModelError::Output {
                model: label.to_string(),
                output: spec.name.clone(),
                mismatch: Box::new(mismatch),
            };
            let value = outputs.get(&spec.name).ok_or_else(|| {
                output_error(Mismatch::Missing {
                    available: outputs.keys().map(str::to_owned).collect(),
                })
            })?;
            let tensor = extract(value, spec).map_err(inference_error)?;
            spec.check_shape(tensor.shape(), &mut bound)
                .map_err(output_error)?;
            tensors.push((spec.name.clone(), tensor));
        }
        Ok(Outputs::new(label.to_string(), tensors))
    }

    /// Scores a tabular batch (`[rows, features]`) and returns the score output: the
    /// signature's `score` output, or its first output.
    pub fn predict(&mut self, features: ArrayView2<'_, f32>) -> Result<Array2<f32>, ModelError> {
        let output = self.spec.score_output().output;
        self.predict_output(features, &output)
    }

    /// Runs a tabular batch and returns output `output` as `[rows, k]` (a `[rows]`
    /// output becomes one column).
    pub fn predict_output(
        &mut self,
        features: ArrayView2<'_, f32>,
        output: &str,
    ) -> Result<Array2<f32>, ModelError> {
        let spec = Arc::clone(&self.spec);
        let input = tabular_input(&spec, &self.label)?;
        let mut outputs = self.run(&[(input, features.into())])?;
        let array = outputs.take::<f32>(output)?;
        let rank_error = |actual| ModelError::Output {
            model: self.label.to_string(),
            output: output.to_owned(),
            mismatch: Box::new(Mismatch::Rank {
                expected: 2,
                actual,
            }),
        };
        match array.ndim() {
            1 => {
                let column = array
                    .into_dimensionality::<Ix1>()
                    .map_err(|_| rank_error(1))?;
                Ok(column.insert_axis(ndarray::Axis(1)))
            }
            2 => array
                .into_dimensionality::<Ix2>()
                .map_err(|_| rank_error(2)),
            actual => Err(rank_error(actual)),
        }
    }

    /// One score per row: column `score.column` of the score output.
    pub fn predict_scores(
        &mut self,
        features: ArrayView2<'_, f32>,
    ) -> Result<Array1<f32>, ModelError> {
        let score = self.spec.score_output();
        let matrix = self.predict_output(features, &score.output)?;
        if score.column >= matrix.ncols() {
            return Err(ModelError::Output {
                model: self.label.to_string(),
                output: score.output,
                mismatch: Box::new(Mismatch::Dim {
                    axis: 1,
                    expected: Dim::Fixed(score.column + 1),
                    actual: Dim::Fixed(matrix.ncols()),
                }),
            });
        }
        Ok(matrix.column(score.column).to_owned())
    }
}

/// Every input of the signature given once, with its element type and shape.
fn check_inputs<'s>(
    spec: &'s ModelSpec,
    label: &str,
    inputs: &[(&str, TensorInput<'_>)],
    bound: &mut DimBindings<'s>,
) -> Result<(), ModelError> {
    let input_error = |tensor: &str, mismatch| ModelError::Input {
        model: label.to_owned(),
        tensor: tensor.to_owned(),
        mismatch: Box::new(mismatch),
    };
    for expected in &spec.inputs {
        let Some((_, input)) = inputs.iter().find(|(name, _)| *name == expected.name) else {
            let available = inputs.iter().map(|(name, _)| (*name).to_owned()).collect();
            return Err(input_error(&expected.name, Mismatch::Missing { available }));
        };
        if input.element_type() != expected.dtype {
            return Err(input_error(
                &expected.name,
                Mismatch::ElementType {
                    expected: expected.dtype,
                    actual: input.element_type().to_string(),
                },
            ));
        }
        expected
            .check_shape(input.shape(), bound)
            .map_err(|mismatch| input_error(&expected.name, mismatch))?;
    }
    for (index, (name, _)) in inputs.iter().enumerate() {
        let given_before = inputs[..index].iter().any(|(earlier, _)| earlier == name);
        if given_before || spec.input(name).is_none() {
            return Err(input_error(name, Mismatch::Unexpected));
        }
    }
    Ok(())
}

/// The single `float32 [rows, features]` input of a tabular model.
fn tabular_input<'s>(spec: &'s ModelSpec, label: &str) -> Result<&'s str, ModelError> {
    let not_tabular = |reason: String| ModelError::NotTabular {
        model: label.to_owned(),
        reason,
    };
    match spec.inputs.as_slice() {
        [input] if input.dtype == ElementType::Float32 && input.shape.len() == 2 => Ok(&input.name),
        [input] => Err(not_tabular(format!(
            "input `{}` is {} of rank {}, not float32 [rows, features]",
            input.name,
            input.dtype,
            input.shape.len()
        ))),
        inputs => Err(not_tabular(format!("it has {} inputs", inputs.len()))),
    }
}

/// An input in the contiguous row-major layout ONNX Runtime reads; borrowed when the
/// caller's view already is.
enum Contiguous<'a> {
    Float32(CowArray<'a, f32, IxDyn>),
    Float64(CowArray<'a, f64, IxDyn>),
    Int32(CowArray<'a, i32, IxDyn>),
    Int64(CowArray<'a, i64, IxDyn>),
}

impl<'a> Contiguous<'a> {
    fn new(input: &'a TensorInput<'_>) -> Self {
        match input {
            TensorInput::Float32(view) => Contiguous::Float32(view.as_standard_layout()),
            TensorInput::Float64(view) => Contiguous::Float64(view.as_standard_layout()),
            TensorInput::Int32(view) => Contiguous::Int32(view.as_standard_layout()),
            TensorInput::Int64(view) => Contiguous::Int64(view.as_standard_layout()),
        }
    }

    fn to_value(&self) -> ort::Result<SessionInputValue<'_>> {
        Ok(match self {
            Contiguous::Float32(array) => TensorRef::from_array_view(array)?.into(),
            Contiguous::Float64(array) => TensorRef::from_array_view(array)?.into(),
            Contiguous::Int32(array) => TensorRef::from_array_view(array)?.into(),
            Contiguous::Int64(array) => TensorRef::from_array_view(array)?.into(),
        })
    }
}

fn extract(value: &DynValue, spec: &TensorSpec) -> ort::Result<TensorOutput> {
    Ok(match spec.dtype {
        ElementType::Float32 => TensorOutput::Float32(value.try_extract_array::<f32>()?.to_owned()),
        ElementType::Float64 => TensorOutput::Float64(value.try_extract_array::<f64>()?.to_owned()),
        ElementType::Int32 => TensorOutput::Int32(value.try_extract_array::<i32>()?.to_owned()),
        ElementType::Int64 => TensorOutput::Int64(value.try_extract_array::<i64>()?.to_owned()),
    })
}
