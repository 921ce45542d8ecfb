//! Tensors going into a run and coming out of it, typed by [`ElementType`].

use ndarray::{Array, Array2, ArrayD, ArrayView, ArrayViewD, Dimension, IxDyn};

use crate::error::{Mismatch, ModelError};
use crate::spec::ElementType;

/// A borrowed input tensor of any supported element type.
#[derive(Debug, Clone)]
pub enum TensorInput<'a> {
    Float32(ArrayViewD<'a, f32>),
    Float64(ArrayViewD<'a, f64>),
    Int32(ArrayViewD<'a, i32>),
    Int64(ArrayViewD<'a, i64>),
}

impl TensorInput<'_> {
    pub fn element_type(&self) -> ElementType {
        match self {
            TensorInput::Float32(_) => ElementType::Float32,
            TensorInput::Float64(_) => ElementType::Float64,
            TensorInput::Int32(_) => ElementType::Int32,
            TensorInput::Int64(_) => ElementType::Int64,
        }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            TensorInput::Float32(a) => a.shape(),
            TensorInput::Float64(a) => a.shape(),
            TensorInput::Int32(a) => a.shape(),
            TensorInput::Int64(a) => a.shape(),
        }
    }
}

/// An owned output tensor of any supported element type.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorOutput {
    Float32(ArrayD<f32>),
    Float64(ArrayD<f64>),
    Int32(ArrayD<i32>),
    Int64(ArrayD<i64>),
}

impl TensorOutput {
    pub fn element_type(&self) -> ElementType {
        match self {
            TensorOutput::Float32(_) => ElementType::Float32,
            TensorOutput::Float64(_) => ElementType::Float64,
            TensorOutput::Int32(_) => ElementType::Int32,
            TensorOutput::Int64(_) => ElementType::Int64,
        }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            TensorOutput::Float32(a) => a.shape(),
            TensorOutput::Float64(a) => a.shape(),
            TensorOutput::Int32(a) => a.shape(),
            TensorOutput::Int64(a) => a.shape(),
        }
    }

    /// The values widened to `f64`, in row-major order (for tolerance comparisons).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            TensorOutput::Float32(a) => a.iter().map(|&v| f64::from(v)).collect(),
            TensorOutput::Float64(a) => a.iter().copied().collect(),
            TensorOutput::Int32(a) => a.iter().map(|&v| f64::from(v)).collect(),
            // Exact for the magnitudes models output (labels, ids below 2^53).
            #[allow(clippy::cast_precision_loss)]
            TensorOutput::Int64(a) => a.iter().map(|&v| v as f64).collect(),
        }
    }
}

/// An owned input tensor, for inputs the crate makes itself (warm-up, golden vectors).
pub(crate) enum OwnedInput {
    Float32(ArrayD<f32>),
    Float64(ArrayD<f64>),
    Int32(ArrayD<i32>),
    Int64(ArrayD<i64>),
}

impl OwnedInput {
    pub(crate) fn zeros(dtype: ElementType, shape: &[usize]) -> Self {
        let shape = IxDyn(shape);
        match dtype {
            ElementType::Float32 => OwnedInput::Float32(ArrayD::zeros(shape)),
            ElementType::Float64 => OwnedInput::Float64(ArrayD::zeros(shape)),
            ElementType::Int32 => OwnedInput::Int32(ArrayD::zeros(shape)),
            ElementType::Int64 => OwnedInput::Int64(ArrayD::zeros(shape)),
        }
    }

    pub(crate) fn view(&self) -> TensorInput<'_> {
        match self {
            OwnedInput::Float32(a) => a.into(),
            OwnedInput::Float64(a) => a.into(),
            OwnedInput::Int32(a) => a.into(),
            OwnedInput::Int64(a) => a.into(),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for i32 {}
    impl Sealed for i64 {}
}

/// A Rust type that maps to one [`ElementType`]: `f32`, `f64`, `i32` or `i64`.
pub trait Element: sealed::Sealed + Copy + 'static {
    const TYPE: ElementType;
    fn input(view: ArrayViewD<'_, Self>) -> TensorInput<'_>;
    fn output(tensor: &TensorOutput) -> Option<&ArrayD<Self>>;
    fn into_output(tensor: TensorOutput) -> Option<ArrayD<Self>>;
}

macro_rules! element {
    ($ty:ty, $variant:ident) => {
        impl Element for $ty {
            const TYPE: ElementType = ElementType::$variant;

            fn input(view: ArrayViewD<'_, Self>) -> TensorInput<'_> {
                TensorInput::$variant(view)
            }

            fn output(tensor: &TensorOutput) -> Option<&ArrayD<Self>> {
                match tensor {
                    TensorOutput::$variant(array) => Some(array),
                    _ => None,
                }
            }

            fn into_output(tensor: TensorOutput) -> Option<ArrayD<Self>> {
                match tensor {
                    TensorOutput::$variant(array) => Some(array),
                    _ => None,
                }
            }
        }
    };
}

element!(f32, Float32);
element!(f64, Float64);
element!(i32, Int32);
element!(i64, Int64);

impl<'a, T: Element, D: Dimension> From<ArrayView<'a, T, D>> for TensorInput<'a> {
    fn from(view: ArrayView<'a, T, D>) -> Self {
        T::input(view.into_dyn())
    }
}

impl<'a, T: Element, D: Dimension> From<&'a Array<T, D>> for TensorInput<'a> {
    fn from(array: &'a Array<T, D>) -> Self {
        T::input(array.view().into_dyn())
    }
}

/// The outputs of one run, in the order of the signature's outputs.
#[derive(Debug, Clone)]
pub struct Outputs {
    model: String,
    tensors: Vec<(String, TensorOutput)>,
}

impl Outputs {
    pub(crate) fn new(model: String, tensors: Vec<(String, TensorOutput)>) -> Self {
        Self { model, tensors }
    }

    pub fn get(&self, name: &str) -> Option<&TensorOutput> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// A view of output `name`, which must have element type `T`.
    pub fn array<T: Element>(&self, name: &str) -> Result<ArrayViewD<'_, T>, ModelError> {
        let tensor = self.get(name).ok_or_else(|| self.missing(name))?;
        T::output(tensor)
            .map(|array| array.view())
            .ok_or_else(|| self.wrong_type::<T>(name, tensor))
    }

    /// Takes output `name` out of the set without copying it.
    pub fn take<T: Element>(&mut self, name: &str) -> Result<ArrayD<T>, ModelError> {
        let index = self
            .tensors
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| self.missing(name))?;
        if T::output(&self.tensors[index].1).is_none() {
            return Err(self.wrong_type::<T>(name, &self.tensors[index].1));
        }
        let (_, tensor) = self.tensors.swap_remove(index);
        Ok(T::into_output(tensor).expect("element type checked above"))
    }

    fn missing(&self, name: &str) -> ModelError {
        ModelError::Output {
            model: self.model.clone(),
            output: name.to_owned(),
            mismatch: Box::new(Mismatch::Missing {
                available: self.names().map(str::to_owned).collect(),
            }),
        }
    }

    fn wrong_type<T: Element>(&self, name: &str, tensor: &TensorOutput) -> ModelError {
        ModelError::Output {
            model: self.model.clone(),
            output: name.to_owned(),
            mismatch: Box::new(Mismatch::ElementType {
                expected: T::TYPE,
                actual: tensor.element_type().to_string(),
            }),
        }
    }
}

/// Token sequences padded into the `[batch, sequence]` `input_ids` and `attention_mask`
/// tensors a text encoder takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    pub input_ids: Array2<i64>,
    pub attention_mask: Array2<i64>,
}

impl TokenBatch {
    /// Pads every sequence with `pad_id` to the longest one; the mask is 1 on real tokens.
    pub fn pad<S: AsRef<[i64]>>(sequences: &[S], pad_id: i64) -> Self {
        let width = sequences
            .iter()
            .map(|s| s.as_ref().len())
            .max()
            .unwrap_or(0);
        let mut input_ids = Array2::from_elem((sequences.len(), width), pad_id);
        let mut attention_mask = Array2::zeros((sequences.len(), width));
        for (row, sequence) in sequences.iter().enumerate() {
            for (col, &id) in sequence.as_ref().iter().enumerate() {
                input_ids[[row, col]] = id;
                attention_mask[[row, col]] = 1;
            }
        }
        Self {
            input_ids,
            attention_mask,
        }
    }

    /// The two named inputs, ready for [`crate::Model::run`].
    pub fn inputs(&self) -> [(&'static str, TensorInput<'_>); 2] {
        [
            ("input_ids", self.input_ids.view().into()),
            ("attention_mask", self.attention_mask.view().into()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn token_batches_pad_to_the_longest_sequence() {
        let batch = TokenBatch::pad(&[vec![7, 8, 9], vec![5]], 0);
        assert_eq!(batch.input_ids, array![[7, 8, 9], [5, 0, 0]]);
        assert_eq!(batch.attention_mask, array![[1, 1, 1], [1, 0, 0]]);
    }

    #[test]
    fn taking_an_output_checks_its_element_type() {
        let mut outputs = Outputs::new(
            "m@1".to_owned(),
            vec![(
                "label".to_owned(),
                TensorOutput::Int64(array![1_i64, 0].into_dyn()),
            )],
        );
        let err = outputs.take::<f32>("label").unwrap_err();
        assert!(err.to_string().contains("int64"), "{err}");
        assert_eq!(
            outputs.take::<i64>("label").unwrap(),
            array![1_i64, 0].into_dyn()
        );
        assert!(outputs.is_empty());
    }
}
