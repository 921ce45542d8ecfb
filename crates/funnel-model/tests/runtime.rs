//! Loading the ONNX Runtime library: clean errors, once per process. This file is its own
//! test binary, so it sees the process before any other test initialised the runtime.

mod common;

use std::path::Path;

use funnel_model::{LoadOptions, Model, ModelError, init_runtime};

#[test]
fn the_runtime_loads_once_and_bad_libraries_are_clean_errors() {
    let err =
        Model::from_card(&common::card("logistic", "1"), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, ModelError::RuntimeNotInitialized), "{err:?}");

    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-libonnxruntime.so");
    let err = init_runtime(&missing).unwrap_err();
    assert!(
        matches!(&err, ModelError::RuntimeLoad { path, .. } if path == &missing),
        "{err:?}"
    );

    let not_a_library = common::card("logistic", "1");
    let err = init_runtime(&not_a_library).unwrap_err();
    assert!(matches!(err, ModelError::RuntimeLoad { .. }), "{err:?}");
    assert!(err.to_string().contains("model.json"), "{err}");

    common::runtime();
    common::runtime();

    let err = init_runtime(&not_a_library).unwrap_err();
    assert!(
        matches!(err, ModelError::RuntimeAlreadyInitialized { .. }),
        "{err:?}"
    );

    let model = Model::from_card(&common::card("logistic", "1"), &LoadOptions::default())
        .expect("models load once the runtime is up");
    assert_eq!(model.id().to_string(), "logistic@1");
}
