//! Tabular models: batch scoring with known weights, probability outputs, pools.

mod common;

use std::sync::Arc;

use common::{CLASSIFIER, LOGISTIC_V1, assert_close, card, feature_rows, sigmoid_score};
use funnel_model::{Dim, LoadOptions, Mismatch, Model, ModelError};
use ndarray::{Array2, array};

fn logistic_v1() -> Model {
    common::runtime();
    Model::from_card(&card("logistic", "1"), &LoadOptions::default()).expect("logistic@1 loads")
}

#[test]
fn logistic_probabilities_are_the_sigmoid_of_the_known_weights() {
    let model = logistic_v1();
    let features = array![
        [1.0_f32, 2.0, 3.0, 4.0],
        [0.0, 0.0, 0.0, 0.0],
        [-1.5, 0.5, 2.0, -0.25]
    ];

    let probabilities = model.predict(features.view()).unwrap();

    assert_eq!(probabilities.dim(), (3, 1));
    // By hand: z = 0.5 - 2 + 0.75 + 8 - 0.1 = 7.15 and z = -0.1.
    assert_close(
        probabilities[[0, 0]],
        1.0 / (1.0 + (-7.15_f64).exp()),
        "row 0",
    );
    assert_close(probabilities[[1, 0]], 1.0 / (1.0 + 0.1_f64.exp()), "row 1");
    assert_close(
        probabilities[[2, 0]],
        sigmoid_score(LOGISTIC_V1, &[-1.5, 0.5, 2.0, -0.25]),
        "row 2",
    );
}

#[test]
fn a_batch_of_256_rows_matches_the_reference_row_by_row() {
    let model = logistic_v1();
    let features = feature_rows(256);

    let scores = model.predict_scores(features.view()).unwrap();

    assert_eq!(scores.len(), 256);
    for (row, score) in features.rows().into_iter().zip(&scores) {
        assert_close(
            *score,
            sigmoid_score(LOGISTIC_V1, row.as_slice().unwrap()),
            "batch row",
        );
    }
}

#[test]
fn a_transposed_feature_view_scores_like_a_contiguous_one() {
    let model = logistic_v1();
    let features = feature_rows(9);
    let column_major: Array2<f32> = features.t().to_owned();

    let from_view = model.predict(column_major.t()).unwrap();

    assert_eq!(from_view, model.predict(features.view()).unwrap());
}

#[test]
fn a_feature_matrix_of_the_wrong_width_is_refused_naming_the_input() {
    let model = logistic_v1();
    let features = Array2::<f32>::zeros((2, 3));

    let err = model.predict(features.view()).unwrap_err();

    assert!(matches!(err, ModelError::Input { .. }), "{err:?}");
    assert_eq!(err.tensor(), Some("features"));
    assert_eq!(
        err.mismatch(),
        Some(&Mismatch::Dim {
            axis: 1,
            expected: Dim::Fixed(4),
            actual: Dim::Fixed(3)
        })
    );
    assert!(err.to_string().contains("`features`"), "{err}");
}

#[test]
fn an_empty_batch_scores_no_rows() {
    let model = logistic_v1();

    let scores = model.predict(Array2::<f32>::zeros((0, 4)).view()).unwrap();

    assert_eq!(scores.dim(), (0, 1));
}

#[test]
fn the_card_gives_the_feature_order_and_identity() {
    let model = logistic_v1();

    assert_eq!(
        model.features(),
        [
            "sessions_7d",
            "cart_adds_7d",
            "dwell_minutes",
            "is_returning"
        ]
    );
    assert_eq!(model.info().sha256, model.card().unwrap().sha256);
    assert_eq!(model.info().sha256.len(), 64);
}

#[test]
fn classifier_scores_come_from_the_probability_column_the_card_names() {
    common::runtime();
    let model = Model::from_card(&card("classifier", "1"), &LoadOptions::default()).unwrap();
    let features = feature_rows(16);

    let scores = model.predict_scores(features.view()).unwrap();
    let probabilities = model
        .predict_output(features.view(), "probabilities")
        .unwrap();
    let mut outputs = model.run(&[("features", features.view().into())]).unwrap();
    let labels = outputs.take::<i64>("label").unwrap();

    assert_eq!(probabilities.dim(), (16, 2));
    for (row, features) in features.rows().into_iter().enumerate() {
        let positive = sigmoid_score(CLASSIFIER, features.as_slice().unwrap());
        assert_close(scores[row], positive, "score");
        assert_close(probabilities[[row, 0]], 1.0 - positive, "negative class");
        assert_eq!(
            labels[[row]],
            i64::from(positive > 0.5),
            "label of row {row}"
        );
    }
}

#[test]
fn reading_an_integer_output_as_floats_is_refused() {
    common::runtime();
    let model = Model::from_card(&card("classifier", "1"), &LoadOptions::default()).unwrap();

    let err = model
        .predict_output(feature_rows(2).view(), "label")
        .unwrap_err();

    assert!(
        matches!(&err, ModelError::Output { output, .. } if output == "label")
            && matches!(err.mismatch(), Some(Mismatch::ElementType { .. })),
        "{err:?}"
    );
}

#[test]
fn a_pool_of_sessions_serves_many_threads_at_once() {
    common::runtime();
    let options = LoadOptions {
        sessions: 3,
        warmup_batch: 8,
        ..LoadOptions::default()
    };
    let model = Arc::new(Model::from_card(&card("logistic", "1"), &options).unwrap());

    let workers: Vec<_> = (0..6)
        .map(|worker| {
            let model = Arc::clone(&model);
            std::thread::spawn(move || {
                for round in 0..50 {
                    let features = feature_rows(1 + (worker * 50 + round) % 32);
                    let scores = model.predict_scores(features.view()).unwrap();
                    for (row, score) in features.rows().into_iter().zip(&scores) {
                        assert_close(
                            *score,
                            sigmoid_score(LOGISTIC_V1, row.as_slice().unwrap()),
                            "pooled",
                        );
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker finished without panicking");
    }
}
