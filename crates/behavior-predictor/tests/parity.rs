//! Online/offline parity: the golden vectors written by `models/train.py` replayed through
//! the serving code. Raw events go through the real validator, the features through
//! `SessionState`, and the feature rows through the real model files in ONNX Runtime; every
//! value must match what training computed within the file's tolerance.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use behavior_predictor::{
    INTENT_FEATURES, OrderRecord, REPURCHASE_FEATURES, SessionState, StreamContext, UserHistory,
    check_features, intent_features, repurchase_features,
};
use funnel_core::pb::EventType;
use funnel_core::{ContentType, Limits, parse_event};
use funnel_model::{LoadOptions, Model, init_runtime};
use ndarray::Array2;
use serde::Deserialize;

#[derive(Deserialize)]
struct IntentParity {
    tolerance: f64,
    features: Vec<String>,
    streams: Vec<Stream>,
}

#[derive(Deserialize)]
struct Stream {
    name: String,
    events: Vec<serde_json::Value>,
    expected: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    event_id: String,
    features: Vec<f64>,
    outputs: Vec<f64>,
}

#[derive(Deserialize)]
struct RepurchaseParity {
    tolerance: f64,
    features: Vec<String>,
    histories: Vec<History>,
}

#[derive(Deserialize)]
struct History {
    name: String,
    now_ms: i64,
    orders: Vec<OrderRecord>,
    features: Vec<f64>,
    outputs: Vec<f64>,
}

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(name)
        .join("1")
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

fn load_model(name: &str, features: &[&str]) -> Model {
    let library = std::env::var("ORT_DYLIB_PATH")
        .expect("ORT_DYLIB_PATH names the onnx runtime library (set by .cargo/config.toml)");
    init_runtime(Path::new(&library)).expect("the onnx runtime library loads");
    let model = Model::from_card(&model_dir(name).join("model.json"), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{name}@1 loads and passes its golden check: {e}"));
    check_features(&model, features).expect("the card lists the features the code computes");
    model
}

/// Compares float32 values with golden ones written as the shortest decimal of a float32,
/// so the golden value is read back as the float32 it stands for first.
fn assert_all_close(actual: &[f32], expected: &[f64], tolerance: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (column, (a, e)) in actual.iter().zip(expected).enumerate() {
        #[allow(clippy::cast_possible_truncation)]
        let e = *e as f32;
        assert!(
            (f64::from(*a) - f64::from(e)).abs() <= tolerance,
            "{what}, column {column}: rust {a}, training {e}"
        );
    }
}

/// The bookkeeping of the service: catalog and clicks, a history per user, a state per session.
#[derive(Default)]
struct Replay {
    context: StreamContext,
    users: HashMap<String, UserHistory>,
    sessions: HashMap<String, SessionState>,
    /// Store and reload every state as JSON between events, as a feature store would.
    through_json: bool,
}

impl Replay {
    /// Feeds one raw event; the features of its session afterwards, unless it is a catalog event.
    fn step(&mut self, raw: &serde_json::Value) -> Option<[f32; INTENT_FEATURES.len()]> {
        let payload = serde_json::to_vec(raw).unwrap();
        let event = parse_event(&payload, ContentType::Json, &Limits::default())
            .unwrap_or_else(|r| panic!("parity event {raw} is valid: {}", r.reason));
        if event.r#type() == EventType::Item {
            self.context.observe(&event);
            return None;
        }
        let user = self.users.entry(event.user_id.clone()).or_default();
        let state = self
            .sessions
            .entry(event.session_id.clone())
            .or_insert_with(|| user.begin_session(event.ts_ms));
        if self.through_json {
            *state = serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap();
            *user = serde_json::from_str(&serde_json::to_string(user).unwrap()).unwrap();
        }
        state.apply(&event, &self.context.context_for(&event));
        let features = intent_features(state);
        if event.r#type() == EventType::Order {
            user.record_order();
        }
        self.context.observe(&event);
        Some(features)
    }
}

#[test]
fn intent_features_and_probabilities_match_training_event_by_event() {
    let parity: IntentParity = read_json(&model_dir("intent").join("parity.json"));
    assert_eq!(
        parity.features, INTENT_FEATURES,
        "parity.json feature order"
    );
    let model = load_model("intent", &INTENT_FEATURES);

    let mut checked = 0;
    for stream in &parity.streams {
        let mut replay = Replay::default();
        let rows: Vec<_> = stream
            .events
            .iter()
            .filter_map(|raw| replay.step(raw))
            .collect();
        assert_eq!(
            rows.len(),
            stream.expected.len(),
            "{}: user events",
            stream.name
        );
        for (row, expected) in rows.iter().zip(&stream.expected) {
            let what = format!("{} {} features", stream.name, expected.event_id);
            assert_all_close(row, &expected.features, parity.tolerance, &what);
        }

        let matrix =
            Array2::from_shape_fn((rows.len(), INTENT_FEATURES.len()), |(r, c)| rows[r][c]);
        let probabilities = model.predict(matrix.view()).expect("the intent model runs");
        for (row, expected) in probabilities.rows().into_iter().zip(&stream.expected) {
            let what = format!("{} {} probabilities", stream.name, expected.event_id);
            assert_all_close(
                row.as_slice().unwrap(),
                &expected.outputs,
                parity.tolerance,
                &what,
            );
        }
        checked += rows.len();
    }
    assert!(checked >= 100, "only {checked} events were checked");
}

#[test]
fn repurchase_features_and_probabilities_match_training_history_by_history() {
    let parity: RepurchaseParity = read_json(&model_dir("repurchase").join("parity.json"));
    assert_eq!(
        parity.features, REPURCHASE_FEATURES,
        "parity.json feature order"
    );
    let model = load_model("repurchase", &REPURCHASE_FEATURES);

    let rows: Vec<_> = parity
        .histories
        .iter()
        .map(|h| repurchase_features(&h.orders, h.now_ms))
        .collect();
    for (row, history) in rows.iter().zip(&parity.histories) {
        let what = format!("{} features", history.name);
        assert_all_close(row, &history.features, parity.tolerance, &what);
    }

    let matrix =
        Array2::from_shape_fn((rows.len(), REPURCHASE_FEATURES.len()), |(r, c)| rows[r][c]);
    let probabilities = model
        .predict(matrix.view())
        .expect("the repurchase model runs");
    for (row, history) in probabilities.rows().into_iter().zip(&parity.histories) {
        let what = format!("{} probabilities", history.name);
        assert_all_close(
            row.as_slice().unwrap(),
            &history.outputs,
            parity.tolerance,
            &what,
        );
    }
}

#[test]
fn session_state_stored_as_json_between_events_gives_the_same_features() {
    let parity: IntentParity = read_json(&model_dir("intent").join("parity.json"));
    for stream in &parity.streams {
        let mut in_memory = Replay::default();
        let mut stored = Replay {
            through_json: true,
            ..Replay::default()
        };
        for raw in &stream.events {
            let (stored, in_memory) = (stored.step(raw), in_memory.step(raw));
            assert_eq!(stored.is_some(), in_memory.is_some());
            if let (Some(stored), Some(in_memory)) = (stored, in_memory) {
                // serde_json's default float parsing may be one ulp off.
                let in_memory = in_memory.map(f64::from);
                assert_all_close(
                    &stored,
                    &in_memory,
                    1e-6,
                    &format!("{}: {raw}", stream.name),
                );
            }
        }
    }
}

#[test]
fn a_card_listing_other_features_is_refused() {
    let model = load_model("repurchase", &REPURCHASE_FEATURES);
    let mut reordered = REPURCHASE_FEATURES;
    reordered.swap(0, 1);

    let err = check_features(&model, &reordered).unwrap_err();

    assert_eq!(err.actual[0], "recency_days");
    assert_eq!(err.expected[0], "frequency");
}
