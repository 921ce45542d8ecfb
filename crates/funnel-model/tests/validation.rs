//! Loading refuses any model that does not match its card: signature, checksum, golden
//! vectors, or a file the runtime cannot read.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{card, scratch_dir, testdata};
use funnel_model::{
    Dim, ElementType, LoadOptions, Mismatch, Model, ModelCard, ModelError, ModelId, ModelSpec,
    Role, TensorSpec, sha256_hex,
};

fn probability() -> TensorSpec {
    TensorSpec::new(
        "probability",
        ElementType::Float32,
        vec![Dim::batch(), Dim::Fixed(1)],
    )
}

fn load(card_path: &Path) -> Result<Model, ModelError> {
    common::runtime();
    Model::from_card(card_path, &LoadOptions::default())
}

/// Copies a card and its model into a scratch directory, editing the card on the way.
fn copy_card(
    name: &str,
    version: &str,
    test: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    let dir = scratch_dir(test);
    let source = card(name, version);
    fs::copy(source.with_file_name("model.onnx"), dir.join("model.onnx")).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&source).unwrap()).unwrap();
    edit(&mut json);
    let target = dir.join("model.json");
    fs::write(&target, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    target
}

#[test]
fn a_model_whose_input_is_named_differently_is_refused_naming_the_input() {
    let err = load(&card("logistic-wrong-input", "1")).unwrap_err();

    assert!(
        matches!(
            err,
            ModelError::Signature {
                role: Role::Input,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.tensor(), Some("features"));
    assert_eq!(
        err.mismatch(),
        Some(&Mismatch::Missing {
            available: vec!["inputs".to_owned()]
        })
    );
    let message = err.to_string();
    assert!(
        message.contains("input `features` is missing") && message.contains("inputs"),
        "{message}"
    );
}

#[test]
fn a_model_exported_with_a_fixed_batch_is_refused() {
    let err = load(&card("logistic-fixed-batch", "1")).unwrap_err();

    assert!(
        matches!(&err, ModelError::Signature { tensor, .. } if tensor == "features")
            && matches!(
                err.mismatch(),
                Some(Mismatch::Dim {
                    axis: 0,
                    expected: Dim::Dynamic(_),
                    actual: Dim::Fixed(1)
                })
            ),
        "{err:?}"
    );
}

#[test]
fn a_signature_with_another_element_type_is_refused() {
    common::runtime();
    let spec = ModelSpec {
        inputs: vec![TensorSpec::new(
            "features",
            ElementType::Float64,
            vec![Dim::batch(), Dim::Fixed(4)],
        )],
        outputs: vec![probability()],
        score: None,
    };
    let path = testdata().join("logistic/1/model.onnx");

    let err = Model::from_file(
        &path,
        ModelId::new("logistic", "1"),
        spec,
        &LoadOptions::default(),
    )
    .unwrap_err();

    assert!(
        matches!(&err, ModelError::Signature { tensor, .. } if tensor == "features")
            && matches!(
                err.mismatch(),
                Some(Mismatch::ElementType { expected: ElementType::Float64, actual }) if actual == "float32"
            ),
        "{err:?}"
    );
}

#[test]
fn a_signature_with_an_output_the_model_lacks_is_refused() {
    common::runtime();
    let missing = TensorSpec::new(
        "churn",
        ElementType::Float32,
        vec![Dim::batch(), Dim::Fixed(1)],
    );
    let spec = ModelSpec::tabular("features", 4, vec![probability(), missing]);
    let path = testdata().join("logistic/1/model.onnx");

    let err = Model::from_file(
        &path,
        ModelId::new("logistic", "1"),
        spec,
        &LoadOptions::default(),
    )
    .unwrap_err();

    assert!(
        matches!(&err, ModelError::Signature { role: Role::Output, tensor, .. } if tensor == "churn")
            && matches!(
                err.mismatch(),
                Some(Mismatch::Missing { available }) if available == &["probability"]
            ),
        "{err:?}"
    );
}

#[test]
fn a_signature_in_code_loads_a_model_without_a_card() {
    common::runtime();
    let spec = ModelSpec::tabular("features", 4, vec![probability()]);
    let path = testdata().join("logistic/1/model.onnx");

    let model = Model::from_file(
        &path,
        ModelId::new("logistic", "1"),
        spec,
        &LoadOptions::default(),
    )
    .unwrap();

    assert!(model.card().is_none());
    assert_eq!(model.info().sha256, sha256_hex(&fs::read(&path).unwrap()));
}

#[test]
fn a_file_that_does_not_match_the_card_checksum_is_refused() {
    let card_path = copy_card("logistic", "1", "checksum", |_| {});
    fs::copy(
        card("logistic", "2").with_file_name("model.onnx"),
        card_path.with_file_name("model.onnx"),
    )
    .unwrap();

    let err = load(&card_path).unwrap_err();

    match &err {
        ModelError::Checksum {
            path,
            expected,
            actual,
        } => {
            assert_eq!(path, &card_path.with_file_name("model.onnx"));
            assert_eq!(
                expected,
                &ModelCard::load(&card("logistic", "1")).unwrap().sha256
            );
            assert_eq!(
                actual,
                &ModelCard::load(&card("logistic", "2")).unwrap().sha256
            );
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn a_model_that_misses_its_golden_vectors_is_refused() {
    common::runtime();
    let golden_of_v1 = ModelCard::load(&card("logistic", "1")).unwrap().golden;
    let options = LoadOptions {
        golden: golden_of_v1,
        ..LoadOptions::default()
    };

    let err = Model::from_card(&card("logistic", "2"), &options).unwrap_err();

    assert!(
        matches!(&err, ModelError::GoldenMismatch { output, .. } if output == "probability"),
        "{err:?}"
    );
}

#[test]
fn a_card_whose_golden_outputs_are_wrong_refuses_its_own_model() {
    let card_path = copy_card("logistic", "1", "golden", |json| {
        json["golden"]["outputs"]["probability"]["data"][1] = serde_json::json!(0.4751);
    });

    let err = load(&card_path).unwrap_err();

    let message = err.to_string();
    assert!(matches!(err, ModelError::GoldenMismatch { .. }), "{err:?}");
    assert!(
        message.contains("value 1") && message.contains("0.4751"),
        "{message}"
    );
}

#[test]
fn a_file_the_runtime_cannot_parse_is_refused() {
    let garbage = b"this is not an onnx model".to_vec();
    let card_path = copy_card("logistic", "1", "garbage", |json| {
        json["sha256"] = serde_json::json!(sha256_hex(b"this is not an onnx model"));
    });
    fs::write(card_path.with_file_name("model.onnx"), garbage).unwrap();

    let err = load(&card_path).unwrap_err();

    assert!(matches!(err, ModelError::Open { .. }), "{err:?}");
}

#[test]
fn a_store_card_must_sit_under_its_own_name_and_version() {
    common::runtime();
    Model::from_store(&testdata(), "logistic", "2", &LoadOptions::default())
        .expect("logistic@2 loads from the store");

    let root = scratch_dir("store");
    let misplaced = root.join("logistic").join("7");
    fs::create_dir_all(&misplaced).unwrap();
    for file in ["model.json", "model.onnx"] {
        fs::copy(
            card("logistic", "1").with_file_name(file),
            misplaced.join(file),
        )
        .unwrap();
    }

    let err = Model::from_store(&root, "logistic", "7", &LoadOptions::default()).unwrap_err();

    assert!(matches!(err, ModelError::InvalidCard { .. }), "{err:?}");
    assert!(err.to_string().contains("logistic@1"), "{err}");
}

#[test]
fn zero_sessions_is_refused() {
    common::runtime();
    let options = LoadOptions {
        sessions: 0,
        ..LoadOptions::default()
    };

    let err = Model::from_card(&card("logistic", "1"), &options).unwrap_err();

    assert!(matches!(err, ModelError::InvalidOptions { .. }), "{err:?}");
}
