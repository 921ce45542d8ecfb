//! Throughput and latency of tabular scoring on the logistic test model, for a batch of 1
//! and a batch of 256: once through a session a worker holds, once through the
//! [`ModelHandle`] path a service takes per batch (load the current model, borrow a
//! session from its pool).
//!
//! `cargo bench -p funnel-model --bench inference`

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use funnel_model::{LoadOptions, Model, ModelHandle, init_runtime};
use ndarray::Array2;

const MEASURE_FOR: Duration = Duration::from_secs(2);

fn main() {
    let library = std::env::var("ORT_DYLIB_PATH")
        .expect("ORT_DYLIB_PATH names the onnx runtime library (set by .cargo/config.toml)");
    init_runtime(Path::new(&library)).expect("the onnx runtime library loads");
    let card =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/testdata/logistic/1/model.json");
    let handle = ModelHandle::new(
        Model::from_card(&card, &LoadOptions::default()).expect("logistic@1 loads"),
    );

    println!("logistic@1 (4 features -> 1 probability), intra_threads = 1, one thread");
    for batch in [1, 256] {
        let features =
            Array2::from_shape_fn((batch, 4), |(r, c)| ((r * 4 + c) % 17) as f32 / 17.0 - 0.5);

        let model = handle.current();
        let mut session = model.session();
        report("held session", batch, || {
            black_box(session.predict(black_box(features.view())).expect("scores"));
        });
        drop(session);

        report("handle", batch, || {
            black_box(
                handle
                    .current()
                    .predict(black_box(features.view()))
                    .expect("scores"),
            );
        });
    }
}

fn report(path: &str, batch: usize, mut run_batch: impl FnMut()) {
    for _ in 0..500 {
        run_batch();
    }
    let start = Instant::now();
    let mut batches = 0_u64;
    while start.elapsed() < MEASURE_FOR {
        for _ in 0..100 {
            run_batch();
        }
        batches += 100;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let micros_per_batch = elapsed * 1e6 / batches as f64;
    let rows_per_second = (batches * batch as u64) as f64 / elapsed;
    println!(
        "{path:>12}  batch {batch:>3}: {micros_per_batch:>8.2} µs/batch  {rows_per_second:>12.0} rows/s  ({batches} batches)"
    );
}
