//! Token-input models: int64 `input_ids` and `attention_mask` in, float32 embeddings out,
//! through an int8-quantised (DequantizeLinear) embedding table.

mod common;

use common::card;
use funnel_model::{ElementType, LoadOptions, Mismatch, Model, ModelError, TokenBatch};
use ndarray::{Array1, Array2};

fn text_encoder() -> Model {
    common::runtime();
    Model::from_card(&card("text-encoder", "1"), &LoadOptions::default())
        .expect("text-encoder@1 loads")
}

/// Row `id` of the embedding table: int8 values `4 * id + j - 32`, scale 0.25.
fn table_row(id: i64) -> Array1<f64> {
    Array1::from_shape_fn(4, |j| ((id * 4 + j as i64 - 32) as f64) * 0.25)
}

fn embed(model: &Model, batch: &TokenBatch) -> Array2<f32> {
    let mut outputs = model.run(&batch.inputs()).unwrap();
    outputs
        .take::<f32>("embedding")
        .unwrap()
        .into_dimensionality()
        .unwrap()
}

#[test]
fn embeddings_are_the_masked_mean_of_the_token_rows() {
    let model = text_encoder();
    let batch = TokenBatch::pad(&[vec![1, 2, 3], vec![5, 5], vec![15]], 0);

    let embeddings = embed(&model, &batch);

    assert_eq!(embeddings.dim(), (3, 4));
    let expected = [
        (table_row(1) + table_row(2) + table_row(3)) / 3.0,
        table_row(5),
        table_row(15),
    ];
    for (row, expected) in expected.iter().enumerate() {
        for (col, &want) in expected.iter().enumerate() {
            let got = f64::from(embeddings[[row, col]]);
            assert!(
                (got - want).abs() < 1e-6,
                "[{row}, {col}]: got {got}, expected {want}"
            );
        }
    }
}

#[test]
fn padding_does_not_change_an_embedding() {
    let model = text_encoder();

    let alone = embed(&model, &TokenBatch::pad(&[vec![4, 9]], 0));
    let padded = embed(
        &model,
        &TokenBatch::pad(&[vec![4, 9], vec![1, 2, 3, 4, 5, 6]], 0),
    );

    assert_eq!(alone.row(0), padded.row(0));
}

#[test]
fn a_missing_attention_mask_is_refused_naming_it() {
    let model = text_encoder();
    let batch = TokenBatch::pad(&[vec![1, 2]], 0);

    let err = model
        .run(&[("input_ids", batch.input_ids.view().into())])
        .unwrap_err();

    assert!(
        matches!(&err, ModelError::Input { tensor, .. } if tensor == "attention_mask")
            && matches!(err.mismatch(), Some(Mismatch::Missing { .. })),
        "{err:?}"
    );
}

#[test]
fn ids_and_mask_of_different_batch_sizes_are_refused() {
    let model = text_encoder();
    let ids = Array2::<i64>::zeros((1, 3));
    let mask = Array2::<i64>::ones((2, 3));

    let err = model
        .run(&[
            ("input_ids", ids.view().into()),
            ("attention_mask", mask.view().into()),
        ])
        .unwrap_err();

    assert!(
        matches!(&err, ModelError::Input { tensor, .. } if tensor == "attention_mask")
            && matches!(err.mismatch(), Some(Mismatch::Inconsistent { dim, size: 2, other_size: 1, .. }) if dim == "batch"),
        "{err:?}"
    );
}

#[test]
fn float_token_ids_are_refused() {
    let model = text_encoder();
    let ids = Array2::<f32>::zeros((1, 2));
    let mask = Array2::<i64>::ones((1, 2));

    let err = model
        .run(&[
            ("input_ids", ids.view().into()),
            ("attention_mask", mask.view().into()),
        ])
        .unwrap_err();

    assert!(
        matches!(&err, ModelError::Input { tensor, .. } if tensor == "input_ids")
            && matches!(
                err.mismatch(),
                Some(Mismatch::ElementType {
                    expected: ElementType::Int64,
                    ..
                })
            ),
        "{err:?}"
    );
}

#[test]
fn a_text_encoder_is_not_a_tabular_model() {
    let model = text_encoder();

    let err = model
        .predict(Array2::<f32>::zeros((1, 4)).view())
        .unwrap_err();

    assert!(matches!(err, ModelError::NotTabular { .. }), "{err:?}");
}
