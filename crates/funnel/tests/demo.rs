//! `funnel demo` runs the whole pipeline in one process (mock cluster,
//! in-memory store) and prints live figures.

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
}
