//! Hot-swapping model versions: validated versions replace the serving one atomically,
//! refused ones leave it serving, and runs in flight see one version or the other.

mod common;

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{assert_close, card, feature_rows, logistic_weights, scratch_dir, sigmoid_score};
use funnel_model::{LoadOptions, Model, ModelCard, ModelError, ModelHandle};

fn load(name: &str, version: &str) -> Model {
    common::runtime();
    Model::from_card(
        &card(name, version),
        &LoadOptions {
            sessions: 2,
            ..LoadOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{name}@{version} loads: {e}"))
}

fn assert_serves(handle: &ModelHandle, version: &str) {
    let model = handle.current();
    assert_eq!(model.id().version, version);
    let features = feature_rows(5);
    let scores = model.predict_scores(features.view()).unwrap();
    for (row, score) in features.rows().into_iter().zip(&scores) {
        assert_close(
            *score,
            sigmoid_score(logistic_weights(version), row.as_slice().unwrap()),
            "served score",
        );
    }
}

#[test]
fn swapping_in_version_2_changes_the_scores() {
    let handle = ModelHandle::new(load("logistic", "1"));
    assert_serves(&handle, "1");

    let previous = handle.swap(load("logistic", "2")).unwrap();

    assert_eq!(previous.id().version, "1");
    assert_serves(&handle, "2");
    assert_eq!(
        handle.info().sha256,
        ModelCard::load(&card("logistic", "2")).unwrap().sha256
    );
}

#[test]
fn a_run_that_holds_the_old_version_finishes_on_it() {
    let handle = ModelHandle::new(load("logistic", "1"));
    let in_flight = handle.current();

    handle
        .reload(&card("logistic", "2"), &LoadOptions::default())
        .unwrap();

    let features = feature_rows(1);
    let score = in_flight.predict_scores(features.view()).unwrap()[0];
    assert_close(
        score,
        sigmoid_score(logistic_weights("1"), features.row(0).as_slice().unwrap()),
        "old version",
    );
    assert_serves(&handle, "2");
}

#[test]
fn a_model_that_fails_validation_is_refused_and_the_old_one_keeps_serving() {
    let handle = ModelHandle::new(load("logistic", "1"));

    let err = handle
        .reload(&card("logistic-wrong-input", "1"), &LoadOptions::default())
        .unwrap_err();

    assert!(
        matches!(&err, ModelError::Signature { tensor, .. } if tensor == "features"),
        "{err:?}"
    );
    assert_serves(&handle, "1");
}

#[test]
fn a_model_that_fails_its_golden_check_is_refused_and_the_old_one_keeps_serving() {
    let handle = ModelHandle::new(load("logistic", "1"));
    let golden_of_v1 = handle.current().card().unwrap().golden.clone();
    let options = LoadOptions {
        golden: golden_of_v1,
        ..LoadOptions::default()
    };

    let err = handle.reload(&card("logistic", "2"), &options).unwrap_err();

    assert!(matches!(err, ModelError::GoldenMismatch { .. }), "{err:?}");
    assert_serves(&handle, "1");
}

#[test]
fn another_model_is_refused_even_when_it_loads() {
    let handle = ModelHandle::new(load("logistic", "1"));

    let err = handle.swap(load("classifier", "1")).unwrap_err();

    assert!(matches!(err, ModelError::SwapRefused { .. }), "{err:?}");
    assert!(err.to_string().contains("classifier@1"), "{err}");
    assert_serves(&handle, "1");
}

#[test]
fn a_version_with_another_feature_order_is_refused() {
    let handle = ModelHandle::new(load("logistic", "1"));
    let dir = scratch_dir("feature-order");
    let source = card("logistic", "2");
    fs::copy(source.with_file_name("model.onnx"), dir.join("model.onnx")).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&source).unwrap()).unwrap();
    json["features"].as_array_mut().unwrap().reverse();
    fs::write(dir.join("model.json"), json.to_string()).unwrap();

    let err = handle
        .reload(&dir.join("model.json"), &LoadOptions::default())
        .unwrap_err();

    assert!(matches!(err, ModelError::SwapRefused { .. }), "{err:?}");
    assert!(err.to_string().contains("feature order"), "{err}");
    assert_serves(&handle, "1");
}

#[test]
fn runs_during_swaps_return_the_results_of_one_version_or_the_other() {
    let handle = Arc::new(ModelHandle::new(load("logistic", "1")));
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let features = Arc::new(feature_rows(8));

    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (handle, stop, served, features) = (
                Arc::clone(&handle),
                Arc::clone(&stop),
                Arc::clone(&served),
                Arc::clone(&features),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let model = handle.current();
                    let version = model.id().version.clone();
                    let scores = model.predict_scores(features.view()).unwrap();
                    for (row, score) in features.rows().into_iter().zip(&scores) {
                        let expected =
                            sigmoid_score(logistic_weights(&version), row.as_slice().unwrap());
                        assert_close(*score, expected, &format!("a run on version {version}"));
                    }
                    let slot = if version == "1" { 0 } else { 1 };
                    served[slot].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    for round in 0..6 {
        let (version, slot) = if round % 2 == 0 { ("2", 1) } else { ("1", 0) };
        let before = served[slot].load(Ordering::Relaxed);
        handle.swap(load("logistic", version)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while served[slot].load(Ordering::Relaxed) == before {
            assert!(
                Instant::now() < deadline,
                "no run served version {version} within 10 s of the swap"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader
            .join()
            .expect("every run returned a valid result of one version");
    }

    assert!(served[0].load(Ordering::Relaxed) > 0 && served[1].load(Ordering::Relaxed) > 0);
}
