//! `funnel demo` runs the whole pipeline in one process (mock cluster,
//! in-memory store, ingest and behavior-predictor) and prints live figures.

use std::process::Command;

#[test]
fn the_demo_runs_the_embedded_pipeline_and_shows_live_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_funnel"))
        .args(["demo", "--duration", "8", "--rate", "1000", "--every", "2"])
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--predictor-grpc-listen",
            "127.0.0.1:0",
            "--predictor-admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--models-root",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"),
        ])
        .args(["--invalid-rate", "0.05", "--duplicate-rate", "0.05"])
        .output()
        .expect("failed to run funnel demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("embedded mock cluster"), "{stdout}");
    let figure = |line: &str, label: &str| -> f64 {
        line.split(label)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    let last = stdout
        .lines()
        .rfind(|l| l.contains("| ingested "))
        .unwrap_or_else(|| panic!("no summary line in {stdout}"));
    assert!(figure(last, "produced ") >= 4_000.0, "{last}");
    assert!(figure(last, "| ingested ") >= 4_000.0, "{last}");
    assert!(figure(last, "| canonical ") >= 3_000.0, "{last}");
    assert!(
        figure(last, "| DLQ ") > 0.0,
        "malformed events are dead-lettered: {last}"
    );
    assert!(
        figure(last, "duplicates dropped ") > 0.0,
        "re-sent events are dropped: {last}"
    );
    assert!(
        stdout.contains("session s"),
        "a live shopper's features are shown: {stdout}"
    );
    assert!(
        stdout.contains("behavior-predictor (intent@1)"),
        "the predictor serves the intent model, version 1: {stdout}"
    );
    let predicted = stdout
        .lines()
        .rfind(|l| l.contains("behavior-predictor: consumed "))
        .unwrap_or_else(|| panic!("no predictor line in {stdout}"));
    assert!(figure(predicted, "consumed ") >= 3_000.0, "{predicted}");
    assert!(figure(predicted, "| predictions ") > 0.0, "{predicted}");
    let predictions = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("prediction intent@1: u-"))
        .collect::<Vec<_>>();
    assert!(
        !predictions.is_empty(),
        "live predictions are shown: {stdout}"
    );
    for line in predictions {
        for label in ["purchase ", "abandonment "] {
            let p = line
                .split(label)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {label}probability in {line}"));
            assert!((0.0..=1.0).contains(&p), "{label}{p} in {line}");
        }
        assert!(line.contains(" session s"), "{line}");
    }
}
