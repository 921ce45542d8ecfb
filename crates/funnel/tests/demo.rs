//! `funnel demo` runs the whole pipeline in one process (mock cluster,
//! in-memory store, ingest and behavior-predictor) and prints live figures.

use std::process::Command;

/// Runs `funnel demo` for a few seconds on the embedded mock cluster with `extra` args;
/// its standard output.
fn run_demo(extra: &[&str]) -> String {
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
        .args([
            "--recommender-grpc-listen",
            "127.0.0.1:0",
            "--recommender-admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--invalid-rate", "0.05", "--duplicate-rate", "0.05"])
        .args(extra)
        .output()
        .expect("failed to run funnel demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("embedded mock cluster"), "{stdout}");
    stdout
}

#[test]
fn the_demo_runs_the_embedded_pipeline_and_shows_live_figures() {
    let stdout = run_demo(&[]);
    assert!(
        stdout.contains("recommender: not started (it needs Redis"),
        "{stdout}"
    );
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

#[test]
fn with_redis_the_demo_shows_live_recommendations() {
    let redis = funnel_tests::Redis::start();
    let stdout = run_demo(&["--redis", &redis.url]);
    assert!(
        stdout.contains("recommender gRPC on 127.0.0.1:"),
        "{stdout}"
    );
    let lists = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("recommendation for u-"))
        .collect::<Vec<_>>();
    // The first lists may come before the recommender has read the catalog.
    assert!(
        lists.last().is_some_and(|l| l.contains('[')),
        "live recommendations are shown: {stdout}"
    );
    for line in &lists {
        assert!(line.contains(" arm "), "{line}");
        // `sku-… 0.123 [source+source]`, up to 5 of them.
        let items = line.split("): ").nth(1).unwrap_or_default();
        let shown = items
            .split(", ")
            .filter(|i| !i.is_empty())
            .collect::<Vec<_>>();
        assert!(shown.len() <= 5, "{line}");
        for item in shown {
            let mut parts = item.split_whitespace();
            let (id, score, sources) = (parts.next(), parts.next(), parts.next());
            assert!(id.is_some_and(|i| !i.is_empty()), "{item}");
            assert!(
                score.and_then(|s| s.parse::<f64>().ok()).is_some(),
                "{item}"
            );
            assert!(
                sources.is_some_and(|s| s.starts_with('[') && s.len() > 2),
                "{item}"
            );
        }
    }
    let arms = stdout
        .lines()
        .rfind(|l| l.contains("recommender arms: "))
        .unwrap_or_else(|| panic!("no arms line in {stdout}"));
    let lists_served = arms
        .split(" lists")
        .filter_map(|part| part.rsplit(' ').next()?.parse::<u64>().ok())
        .sum::<u64>();
    assert!(lists_served >= 1, "{arms}");
    let predicted = stdout
        .lines()
        .rfind(|l| l.contains("behavior-predictor: consumed "))
        .unwrap_or_else(|| panic!("no predictor line in {stdout}"));
    assert!(
        predicted.contains("| predictions ") && !predicted.contains("| predictions 0 "),
        "the predictor runs on Redis too: {predicted}"
    );
}
