//! The contract between this crate's features and a model's card: the card lists the
//! feature names in column order, and they must be exactly the ones computed here.

/// A card whose feature list differs from the code's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model {model} expects features {expected:?} but the code computes {actual:?}")]
pub struct FeatureMismatch {
    pub model: String,
    pub expected: Vec<String>,
    pub actual: Vec<String>,
}

/// Refuses a model whose card does not list exactly `features`, in that order.
pub fn check_features(
    model: &funnel_model::Model,
    features: &[&str],
) -> Result<(), FeatureMismatch> {
    if model
        .features()
        .iter()
        .map(String::as_str)
        .eq(features.iter().copied())
    {
        return Ok(());
    }
    Err(FeatureMismatch {
        model: model.id().to_string(),
        expected: model.features().to_vec(),
        actual: features.iter().map(|f| (*f).to_owned()).collect(),
    })
}
