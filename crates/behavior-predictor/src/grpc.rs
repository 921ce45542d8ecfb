//! `funnel.behavior.v1.BehaviorPredictor`: synchronous intent and repurchase scores with
//! the features used and an occlusion explanation.
//!
//! Cold start: a user (or session) the service has no state for gets `cold_start` true
//! and the scores of the cold-start row (intent: a session that has not started, of a
//! user with no history, see [`crate::scoring::cold_start_intent`]; repurchase: an empty
//! order history), with its features and explanation; never an error.

use std::sync::Arc;

use funnel_proto::pb::behavior::v1 as pb;
use funnel_proto::pb::behavior::v1::behavior_predictor_server::BehaviorPredictor;
use funnel_runtime::grpc::check_id;
use funnel_store::{Read, Store};
use tonic::{Request, Response, Status};

use crate::features::{INTENT_FEATURES, REPURCHASE_FEATURES, intent_features, repurchase_features};
use crate::scoring::{Impact, Scorer, cold_start_intent};
use crate::state::{SESSION_FIELDS, StateKeys, StoredSession, StoredUser, USER_FIELDS};

/// The gRPC edge: validates requests; store and model failures become `UNAVAILABLE` and
/// `INTERNAL` without their text.
pub struct BehaviorService {
    store: Store,
    keys: StateKeys,
    scorer: Arc<Scorer>,
}

impl BehaviorService {
    pub fn new(store: Store, keys: StateKeys, scorer: Arc<Scorer>) -> Self {
        BehaviorService {
            store,
            keys,
            scorer,
        }
    }

    /// The values of `fields` of the hash at `key`, in order.
    async fn fields(&self, key: String, fields: &[&str]) -> Result<Vec<Option<String>>, Status> {
        let read = Read::HMGet(key, fields.iter().map(|f| (*f).to_owned()).collect());
        let replies = self.store.read(&[read]).await.map_err(unavailable)?;
        Ok(replies
            .into_iter()
            .next()
            .map(funnel_store::Reply::into_fields)
            .unwrap_or_default())
    }

    async fn user(&self, user_id: &str) -> Result<Option<StoredUser>, Status> {
        let fields = self.fields(self.keys.user(user_id), &USER_FIELDS).await?;
        Ok(StoredUser::from_fields(fields))
    }

    async fn session(&self, session_id: &str) -> Result<Option<StoredSession>, Status> {
        let fields = self
            .fields(self.keys.session(session_id), &SESSION_FIELDS)
            .await?;
        Ok(StoredSession::from_fields(fields))
    }
}

fn unavailable(e: funnel_store::StoreError) -> Status {
    tracing::error!(error = %e, "state read failed");
    Status::unavailable("feature store unavailable")
}

fn internal<E: std::fmt::Display>(e: E) -> Status {
    tracing::error!(error = %e, "scoring failed");
    Status::internal("scoring failed")
}

fn named(names: &[&str], values: &[f32]) -> std::collections::HashMap<String, f32> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| ((*n).to_owned(), *v))
        .collect()
}

fn impacts(top: Vec<Impact>) -> Vec<pb::FeatureImpact> {
    top.into_iter()
        .map(|i| pb::FeatureImpact {
            name: i.name.to_owned(),
            value: i.value,
            reference: i.reference,
            delta: i.delta,
        })
        .collect()
}

#[tonic::async_trait]
impl BehaviorPredictor for BehaviorService {
    async fn predict_intent(
        &self,
        request: Request<pb::PredictIntentRequest>,
    ) -> Result<Response<pb::IntentResponse>, Status> {
        let req = request.into_inner();
        check_id("user_id", &req.user_id, true)?;
        check_id("session_id", &req.session_id, false)?;
        let session_id = if req.session_id.is_empty() {
            self.user(&req.user_id)
                .await?
                .map(|u| u.latest_session)
                .unwrap_or_default()
        } else {
            req.session_id.clone()
        };
        let session = if session_id.is_empty() {
            None
        } else {
            // A session of another user is not this user's: cold start.
            self.session(&session_id)
                .await?
                .filter(|s| s.user_id == req.user_id)
        };
        let (row, last_event_id) = match &session {
            Some(s) => (intent_features(&s.state), s.last_event_id.clone()),
            None => (cold_start_intent(), String::new()),
        };
        let scorer = Arc::clone(&self.scorer);
        let (info, score, top) = tokio::task::spawn_blocking(move || scorer.explain_intent(&row))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        Ok(Response::new(pb::IntentResponse {
            user_id: req.user_id,
            session_id,
            cold_start: session.is_none(),
            purchase_probability: score.purchase,
            abandonment_probability: score.abandonment,
            model: info.id.name,
            model_version: info.id.version,
            features: named(&INTENT_FEATURES, &row),
            top_features: impacts(top),
            last_event_id,
        }))
    }

    async fn predict_repurchase(
        &self,
        request: Request<pb::PredictRepurchaseRequest>,
    ) -> Result<Response<pb::RepurchaseResponse>, Status> {
        let req = request.into_inner();
        check_id("user_id", &req.user_id, true)?;
        let user = self.user(&req.user_id).await?;
        let orders = user.as_ref().map(|u| u.orders.as_slice()).unwrap_or(&[]);
        let row = repurchase_features(orders, funnel_core::now_ms());
        let scorer = Arc::clone(&self.scorer);
        let (info, probability, top) =
            tokio::task::spawn_blocking(move || scorer.explain_repurchase(&row))
                .await
                .map_err(internal)?
                .map_err(internal)?;
        Ok(Response::new(pb::RepurchaseResponse {
            user_id: req.user_id,
            cold_start: user.is_none(),
            repurchase_probability: probability,
            model: info.id.name,
            model_version: info.id.version,
            features: named(&REPURCHASE_FEATURES, &row),
            top_features: impacts(top),
        }))
    }
}
