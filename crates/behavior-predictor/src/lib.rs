//! behavior-predictor: what a shopper will do next, from the canonical event stream.
//!
//! For now the library holds the features the models are trained on, computed exactly as
//! `models/funnel_models/features.py` computes them offline; the service comes next.
//!
//! # Layout
//! - [`features`]: [`SessionState`] (one session, updated per event), [`UserHistory`],
//!   [`intent_features`] and [`repurchase_features`], with the feature names in model order.
//! - [`context`]: [`StreamContext`], what the stream knows beyond a session (catalog prices
//!   and categories, item popularity), and the [`EventContext`] it gives each event.
//! - [`models`]: checks that a loaded model's card lists exactly these features.

pub mod context;
pub mod features;
pub mod models;

pub use context::{CatalogItem, EventContext, StreamContext};
pub use features::{
    INTENT_FEATURES, IntentFeatures, OrderRecord, REPURCHASE_FEATURES, RepurchaseFeatures,
    SessionState, UserHistory, intent_features, repurchase_features,
};
pub use models::{FeatureMismatch, check_features};
