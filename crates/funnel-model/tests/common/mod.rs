//! Shared set-up of the integration tests: the runtime, the test models and their
//! reference outputs computed from the weights in `models/tools/make_test_models.py`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use funnel_model::init_runtime;
use ndarray::Array2;

/// Loads ONNX Runtime from `ORT_DYLIB_PATH`, which `.cargo/config.toml` sets.
pub fn runtime() {
    let library = std::env::var("ORT_DYLIB_PATH")
        .expect("ORT_DYLIB_PATH names the onnx runtime library (set by .cargo/config.toml)");
    init_runtime(Path::new(&library)).expect("the onnx runtime library loads");
}

pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/testdata")
}

pub fn card(name: &str, version: &str) -> PathBuf {
    testdata().join(name).join(version).join("model.json")
}

/// A fresh directory under the target dir for files a test writes.
pub fn scratch_dir(test: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "funnel-model-{test}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

pub const LOGISTIC_V1: ([f32; 4], f32) = ([0.5, -1.0, 0.25, 2.0], -0.1);
pub const LOGISTIC_V2: ([f32; 4], f32) = ([-0.5, 1.0, 0.75, -2.0], 0.3);
pub const CLASSIFIER: ([f32; 4], f32) = ([1.0, 0.5, -0.25, 0.0], 0.2);

pub fn logistic_weights(version: &str) -> ([f32; 4], f32) {
    match version {
        "1" => LOGISTIC_V1,
        "2" => LOGISTIC_V2,
        other => panic!("no logistic version {other}"),
    }
}

/// sigmoid(w · x + b), in f64.
pub fn sigmoid_score((weights, bias): ([f32; 4], f32), row: &[f32]) -> f64 {
    let z: f64 = weights
        .iter()
        .zip(row)
        .map(|(&w, &x)| f64::from(w) * f64::from(x))
        .sum::<f64>()
        + f64::from(bias);
    1.0 / (1.0 + (-z).exp())
}

/// Deterministic rows spread over [-3, 3].
pub fn feature_rows(rows: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, 4), |(r, c)| {
        ((r * 7 + c * 5) % 13) as f32 / 2.0 - 3.0
    })
}

pub fn assert_close(actual: f32, expected: f64, context: &str) {
    assert!(
        (f64::from(actual) - expected).abs() < 1e-6,
        "{context}: got {actual}, expected {expected}"
    );
}
