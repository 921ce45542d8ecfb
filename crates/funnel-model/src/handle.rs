//! Hot-swapping: the model version currently serving, replaced atomically.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::error::ModelError;
use crate::model::{LoadOptions, Model, ModelInfo};
use crate::spec::{Dim, TensorSpec};

/// The version of one model that is serving now.
///
/// Readers take [`ModelHandle::current`] and run on that `Arc<Model>`; a swap never
/// disturbs a run in progress, and the old version is dropped when its last run ends.
/// Only a [`Model`] that loaded, matched its signature and passed its golden checks can
/// be offered, and it must also be compatible with the one serving (same name, same
/// inputs and outputs, same feature order), so callers never see the contract change.
#[derive(Debug)]
pub struct ModelHandle {
    current: ArcSwap<Model>,
}

impl ModelHandle {
    pub fn new(model: Model) -> Self {
        Self {
            current: ArcSwap::from_pointee(model),
        }
    }

    /// The model serving now. Hold it for one batch, not longer, so swaps take effect.
    pub fn current(&self) -> Arc<Model> {
        self.current.load_full()
    }

    pub fn info(&self) -> ModelInfo {
        self.current.load().info().clone()
    }

    /// Puts `candidate` in service and returns the version it replaced. An incompatible
    /// candidate is refused and the serving version stays.
    pub fn swap(&self, candidate: Model) -> Result<Arc<Model>, ModelError> {
        let serving = self.current.load();
        if let Err(reason) = compatible(&serving, &candidate) {
            return Err(ModelError::SwapRefused {
                current: serving.id().to_string(),
                candidate: candidate.id().to_string(),
                reason,
            });
        }
        // Compatibility is an equivalence, so checking against a version that a
        // concurrent swap has just replaced is as good as checking against the new one.
        let previous = self.current.swap(Arc::new(candidate));
        let now = self.current.load();
        tracing::info!(
            model = %now.id(),
            sha256 = %now.info().sha256,
            replaced = %previous.id(),
            "model swapped"
        );
        Ok(previous)
    }

    /// Loads the model a card describes and swaps it in. Any failure (unreadable card,
    /// checksum, signature, warm-up, golden check, incompatibility) leaves the serving
    /// version in place and is returned.
    pub fn reload(
        &self,
        card_path: &Path,
        options: &LoadOptions,
    ) -> Result<Arc<Model>, ModelError> {
        let candidate = Model::from_card(card_path, options)?;
        self.swap(candidate)
    }
}

fn compatible(serving: &Model, candidate: &Model) -> Result<(), String> {
    if serving.id().name != candidate.id().name {
        return Err(format!(
            "model name `{}` differs from `{}`",
            candidate.id().name,
            serving.id().name
        ));
    }
    let (old, new) = (serving.spec(), candidate.spec());
    for (role, old, new) in [
        ("inputs", &old.inputs, &new.inputs),
        ("outputs", &old.outputs, &new.outputs),
    ] {
        let same = old.len() == new.len() && old.iter().zip(new).all(|(a, b)| same_signature(a, b));
        if !same {
            return Err(format!(
                "{role} differ: {} instead of {}",
                describe(new),
                describe(old)
            ));
        }
    }
    if let (Some(old), Some(new)) = (serving.card(), candidate.card())
        && old.features != new.features
    {
        return Err(format!(
            "feature order differs: [{}] instead of [{}]",
            new.features.join(", "),
            old.features.join(", ")
        ));
    }
    Ok(())
}

/// Same name, element type and shape; dynamic axes match whatever they are named.
fn same_signature(a: &TensorSpec, b: &TensorSpec) -> bool {
    a.name == b.name
        && a.dtype == b.dtype
        && a.shape.len() == b.shape.len()
        && a.shape.iter().zip(&b.shape).all(|pair| match pair {
            (Dim::Fixed(x), Dim::Fixed(y)) => x == y,
            (Dim::Dynamic(_), Dim::Dynamic(_)) => true,
            _ => false,
        })
}

fn describe(tensors: &[TensorSpec]) -> String {
    let parts: Vec<String> = tensors
        .iter()
        .map(|t| {
            let dims: Vec<String> = t.shape.iter().map(ToString::to_string).collect();
            format!("{} {}[{}]", t.name, t.dtype, dims.join(", "))
        })
        .collect();
    parts.join("; ")
}
