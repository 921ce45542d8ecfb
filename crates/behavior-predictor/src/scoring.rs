//! The models in service and what they say about feature rows: batch inference for the
//! stream, and scores with occlusion explanations for single requests.
//!
//! Runs block the calling thread (ONNX Runtime); call them from a blocking pool.
//!
//! Occlusion: a feature's impact is the score with every feature as computed minus the
//! score with that one feature replaced by its reference value, others kept. The
//! reference is the feature's value in the cold-start row (a session that has not
//! started, of a user with no history; see [`cold_start_intent`]), and 0 for
//! repurchase (no orders). The cards carry no training means to use instead.

use std::path::Path;
use std::sync::Arc;

use funnel_model::{LoadOptions, Model, ModelHandle, ModelInfo};
use ndarray::Array2;

use crate::features::{
    INTENT_FEATURE_COUNT, INTENT_FEATURES, IntentFeatures, REPURCHASE_FEATURE_COUNT,
    REPURCHASE_FEATURES, RepurchaseFeatures, UserHistory, intent_features,
};
use crate::models::check_features;

/// How many features a request's explanation lists at most.
pub const TOP_FEATURES: usize = 5;

/// Intent scores of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntentScore {
    pub purchase: f32,
    pub abandonment: f32,
}

/// One feature's share of a score (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Impact {
    pub name: &'static str,
    pub value: f32,
    pub reference: f32,
    pub delta: f32,
}

/// The cold-start intent row: a session that has not started (no events, hour 0 UTC) of
/// a user with no history (days since the last session at its cap of 365).
pub fn cold_start_intent() -> IntentFeatures {
    intent_features(&UserHistory::default().begin_session(0))
}

/// The intent and repurchase models, each swappable as a whole.
pub struct Scorer {
    intent: ModelHandle,
    repurchase: ModelHandle,
    options: LoadOptions,
}

/// Which of the two models a lifecycle operation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRole {
    Intent,
    Repurchase,
}

impl ModelRole {
    /// The feature names, in column order, a card of this role must list.
    pub fn features(self) -> &'static [&'static str] {
        match self {
            ModelRole::Intent => &INTENT_FEATURES,
            ModelRole::Repurchase => &REPURCHASE_FEATURES,
        }
    }
}

/// A model that failed to load or does not fit the code.
#[derive(Debug, thiserror::Error)]
pub enum ScorerError {
    #[error(transparent)]
    Model(#[from] funnel_model::ModelError),
    #[error(transparent)]
    Features(#[from] crate::models::FeatureMismatch),
}

impl Scorer {
    /// Loads, validates (signature, sha256, golden vectors, feature list) and warms both
    /// models, each with `sessions` ONNX Runtime sessions.
    pub fn load(
        root: &Path,
        intent: (&str, &str),
        repurchase: (&str, &str),
        sessions: usize,
    ) -> Result<Scorer, ScorerError> {
        let options = LoadOptions {
            sessions,
            ..LoadOptions::default()
        };
        let intent = Model::from_store(root, intent.0, intent.1, &options)?;
        check_features(&intent, &INTENT_FEATURES)?;
        let repurchase = Model::from_store(root, repurchase.0, repurchase.1, &options)?;
        check_features(&repurchase, &REPURCHASE_FEATURES)?;
        Ok(Scorer {
            intent: ModelHandle::new(intent),
            repurchase: ModelHandle::new(repurchase),
            options,
        })
    }

    fn handle(&self, role: ModelRole) -> &ModelHandle {
        match role {
            ModelRole::Intent => &self.intent,
            ModelRole::Repurchase => &self.repurchase,
        }
    }

    /// The version of `role` serving now.
    pub fn info(&self, role: ModelRole) -> ModelInfo {
        self.handle(role).info()
    }

    /// Loads `<root>/<name>/<version>`, validates it like [`Scorer::load`] (signature,
    /// sha256, golden vectors, feature list, and the same contract as the version serving),
    /// warms it, then swaps it in for `role` and returns the version it replaced. Runs in
    /// flight finish on the version they took. Blocking; on any failure the serving
    /// version stays.
    pub fn swap(
        &self,
        role: ModelRole,
        root: &Path,
        name: &str,
        version: &str,
    ) -> Result<ModelInfo, ScorerError> {
        let candidate = Model::from_store(root, name, version, &self.options)?;
        check_features(&candidate, role.features())?;
        let previous = self.handle(role).swap(candidate)?;
        Ok(previous.info().clone())
    }

    pub fn intent_info(&self) -> ModelInfo {
        self.intent.info()
    }

    pub fn repurchase_info(&self) -> ModelInfo {
        self.repurchase.info()
    }

    /// Scores intent rows in one run; blocking.
    pub fn intent(
        &self,
        rows: &[IntentFeatures],
    ) -> Result<(Arc<Model>, Vec<IntentScore>), funnel_model::ModelError> {
        let model = self.intent.current();
        let scores = score_intent(&model, rows)?;
        Ok((model, scores))
    }

    /// Loads `<root>/<name>/<version>` as an intent shadow: validated like a version to
    /// serve, and checked to give both intent probabilities. Blocking.
    pub fn load_shadow(
        &self,
        root: &Path,
        name: &str,
        version: &str,
    ) -> Result<Arc<Model>, ScorerError> {
        let shadow = Model::from_store(root, name, version, &self.options)?;
        check_features(&shadow, &INTENT_FEATURES)?;
        score_intent(&shadow, &[cold_start_intent()])?;
        Ok(Arc::new(shadow))
    }

    /// Scores one intent row and explains P(purchase) by occlusion, in one run; blocking.
    pub fn explain_intent(
        &self,
        row: &IntentFeatures,
    ) -> Result<(ModelInfo, IntentScore, Vec<Impact>), funnel_model::ModelError> {
        let reference = cold_start_intent();
        let rows = occluded(row, &reference);
        let (model, scores) = self.intent(&rows)?;
        let top = top_impacts(
            &INTENT_FEATURES,
            row,
            &reference,
            scores.iter().map(|s| s.purchase),
        );
        Ok((model.info().clone(), scores[0], top))
    }

    /// Scores one repurchase row (P(an order in the next 91 days)) and explains it by
    /// occlusion, in one run; blocking.
    pub fn explain_repurchase(
        &self,
        row: &RepurchaseFeatures,
    ) -> Result<(ModelInfo, f32, Vec<Impact>), funnel_model::ModelError> {
        let model = self.repurchase.current();
        let reference = [0.0_f32; REPURCHASE_FEATURE_COUNT];
        let rows = occluded(row, &reference);
        let matrix =
            Array2::from_shape_fn((rows.len(), REPURCHASE_FEATURE_COUNT), |(r, c)| rows[r][c]);
        let scores = model.predict_scores(matrix.view())?;
        let top = top_impacts(
            &REPURCHASE_FEATURES,
            row,
            &reference,
            scores.iter().copied(),
        );
        Ok((model.info().clone(), scores[0], top))
    }
}

/// Scores intent rows with `model` in one run; blocking. A model whose output is not two
/// probabilities per row (purchase, abandonment) is an error, not a panic.
pub fn score_intent(
    model: &Model,
    rows: &[IntentFeatures],
) -> Result<Vec<IntentScore>, funnel_model::ModelError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let matrix = Array2::from_shape_fn((rows.len(), INTENT_FEATURE_COUNT), |(r, c)| rows[r][c]);
    let probabilities = model.predict(matrix.view())?;
    if probabilities.ncols() != 2 {
        return Err(funnel_model::ModelError::NotTabular {
            model: model.id().to_string(),
            reason: format!(
                "{} probabilities per row instead of 2",
                probabilities.ncols()
            ),
        });
    }
    Ok(probabilities
        .rows()
        .into_iter()
        .map(|row| IntentScore {
            purchase: row[0],
            abandonment: row[1],
        })
        .collect())
}

/// The row itself, then one copy per feature with that feature at its reference.
fn occluded<const N: usize>(row: &[f32; N], reference: &[f32; N]) -> Vec<[f32; N]> {
    let mut rows = Vec::with_capacity(N + 1);
    rows.push(*row);
    for column in 0..N {
        let mut copy = *row;
        copy[column] = reference[column];
        rows.push(copy);
    }
    rows
}

/// The features whose occlusion moved the score, largest |delta| first, at most
/// [`TOP_FEATURES`]. `scores` holds the row's score, then one per occluded copy.
fn top_impacts<const N: usize>(
    names: &[&'static str; N],
    row: &[f32; N],
    reference: &[f32; N],
    scores: impl Iterator<Item = f32>,
) -> Vec<Impact> {
    let mut scores = scores;
    let Some(actual) = scores.next() else {
        return Vec::new();
    };
    let mut impacts: Vec<Impact> = scores
        .zip(0..N)
        .filter(|(occluded, _)| *occluded != actual)
        .map(|(occluded, column)| Impact {
            name: names[column],
            value: row[column],
            reference: reference[column],
            delta: actual - occluded,
        })
        .collect();
    impacts.sort_by(|a, b| {
        b.delta
            .abs()
            .total_cmp(&a.delta.abs())
            .then(a.name.cmp(b.name))
    });
    impacts.truncate(TOP_FEATURES);
    impacts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impacts_rank_by_absolute_delta_and_skip_features_that_did_not_move() {
        let names = ["a", "b", "c", "d"];
        let row = [1.0, 2.0, 3.0, 4.0];
        let reference = [0.0; 4];
        let scores = [0.5, 0.4, 0.5, 0.9, 0.45];

        let top = top_impacts(&names, &row, &reference, scores.into_iter());

        let order: Vec<_> = top.iter().map(|i| i.name).collect();
        assert_eq!(order, ["c", "a", "d"]);
        assert!((top[0].delta - -0.4).abs() < 1e-6);
        assert_eq!(top[0].value, 3.0);
    }

    #[test]
    fn the_cold_start_row_has_no_events_and_no_history() {
        let row = cold_start_intent();
        let column = |name: &str| INTENT_FEATURES.iter().position(|f| *f == name).unwrap();
        assert_eq!(row[column("events")], 0.0);
        assert_eq!(row[column("is_returning")], 0.0);
        assert_eq!(row[column("days_since_last_session")], 365.0);
        assert_eq!(row[column("hour_cos")], 1.0);
    }
}
