//! The shadow model: a candidate intent version scored on the same feature rows as the
//! serving one and published only to the shadow topic, so it can be compared on live
//! traffic; it never reaches the predictions topic or the conversion policy.
//!
//! Its runs happen after a batch is published and written, in the background and on a
//! blocking thread; when [`MAX_IN_FLIGHT`] runs are already pending a batch is skipped
//! (counted) rather than queued, so a slow shadow never holds up the stream.

use std::sync::Arc;

use funnel_bus::{OutRecord, Producer};
use funnel_model::Model;
use funnel_proto::pb::behavior::v1::IntentPrediction;
use prost::Message as _;
use tokio::sync::Semaphore;

use crate::features::IntentFeatures;
use crate::metrics::Metrics;
use crate::scoring::score_intent;

/// Shadow runs pending at once before batches are skipped.
pub const MAX_IN_FLIGHT: usize = 4;

/// A loaded, validated shadow version and where its predictions go.
#[derive(Clone)]
pub struct Shadow {
    model: Arc<Model>,
    topic: String,
    producer: Producer,
    metrics: Metrics,
    in_flight: Arc<Semaphore>,
}

impl Shadow {
    pub fn new(model: Arc<Model>, topic: String, producer: Producer, metrics: Metrics) -> Self {
        Shadow {
            model,
            topic,
            producer,
            metrics,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Scores `rows` with the shadow model and publishes each of `served` (the predictions
    /// the serving model published for the same rows) again with the shadow's scores and
    /// version, in the background.
    pub fn publish(&self, rows: Vec<IntentFeatures>, served: Vec<IntentPrediction>) {
        if rows.is_empty() {
            return;
        }
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            self.metrics.shadow_skipped.inc_by(rows.len() as u64);
            return;
        };
        let shadow = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let model = Arc::clone(&shadow.model);
            let scores = tokio::task::spawn_blocking(move || score_intent(&model, &rows)).await;
            let scores = match scores {
                Ok(Ok(scores)) => scores,
                Ok(Err(e)) => return shadow.failed(&e.to_string()),
                Err(e) => return shadow.failed(&e.to_string()),
            };
            let id = shadow.model.id();
            let records: Vec<OutRecord> = served
                .into_iter()
                .zip(scores)
                .map(|(served, score)| {
                    let prediction = IntentPrediction {
                        purchase_probability: score.purchase,
                        abandonment_probability: score.abandonment,
                        model: id.name.clone(),
                        model_version: id.version.clone(),
                        prediction_ts_ms: funnel_core::now_ms(),
                        ..served
                    };
                    OutRecord::new(
                        &shadow.topic,
                        Some(prediction.user_id.as_bytes()),
                        prediction.encode_to_vec(),
                    )
                    .header("content-type", "application/x-protobuf")
                })
                .collect();
            match shadow.producer.send_all(&records).await {
                Ok(()) => {
                    shadow
                        .metrics
                        .shadow_predictions
                        .inc_by(records.len() as u64);
                }
                Err(e) => shadow.failed(&e.to_string()),
            }
        });
    }

    fn failed(&self, error: &str) {
        self.metrics.shadow_errors.inc();
        tracing::warn!(model = %self.model.id(), error, "shadow run failed; its batch has no shadow predictions");
    }
}
