//! The binary's start-up contract: a bad configuration stops it with exit code 64 and a
//! message naming the key, before anything is loaded or bound.

use std::process::{Command, Output};

fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_behavior-predictor"));
    // Relative defaults (`models.root`, `policy.file`) resolve from the repository root.
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FUNNEL_")) {
        cmd.env_remove(k);
    }
    cmd
}

fn predictor(vars: &[(&str, &str)]) -> Output {
    command().envs(vars.iter().copied()).output().unwrap()
}

fn assert_refused_naming(output: &Output, key: &str) {
    assert_eq!(output.status.code(), Some(64));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains(key), "{err}");
}

#[test]
fn an_unknown_key_stops_the_process_naming_the_key() {
    let out = predictor(&[("FUNNEL_PREDICTOR__DEBOUNCE", "10")]);
    assert_refused_naming(&out, "unknown key `predictor.debounce`");
}

#[test]
fn a_bad_value_stops_the_process_naming_the_key() {
    let out = predictor(&[("FUNNEL_PREDICTOR__DEBOUNCE_MS", "soon")]);
    assert_refused_naming(&out, "predictor.debounce_ms");

    let out = predictor(&[("FUNNEL_PREDICTOR__BATCH_MAX", "0")]);
    assert_refused_naming(&out, "predictor.batch_max must be at least 1");

    let out = predictor(&[("FUNNEL_MODELS__SESSIONS", "0")]);
    assert_refused_naming(&out, "models.sessions must be at least 1");

    // Zero would retry a failing part in a busy loop.
    let out = predictor(&[("FUNNEL_PREDICTOR__RETRY_BACKOFF_MAX_MS", "0")]);
    assert_refused_naming(&out, "predictor.retry_backoff_max_ms must be at least 1");

    let out = predictor(&[("FUNNEL_TOPICS__PREDICTIONS", "no spaces please")]);
    assert_refused_naming(&out, "topics.predictions");
}

#[test]
fn print_config_shows_every_section_with_its_defaults() {
    let out = command().arg("--print-config").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "events = \"funnel.events.v1\"",
        "predictions = \"funnel.predictions.behavior.v1\"",
        "debounce_ms = 1000",
        "group_id = \"funnel-behavior-predictor\"",
        "intent_version = \"1\"",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn a_bad_policy_file_stops_the_process_naming_the_key() {
    let path = std::env::temp_dir().join(format!("bad-policy-{}.toml", std::process::id()));
    let shipped = include_str!("../../../models/policy.toml");
    std::fs::write(
        &path,
        shipped.replace("max_purchase = 0.6", "max_purchase = 0.2"),
    )
    .unwrap();
    let out = predictor(&[("FUNNEL_POLICY__FILE", path.to_str().unwrap())]);
    assert_refused_naming(
        &out,
        "offer_coupon.min_purchase must not exceed offer_coupon.max_purchase",
    );
    std::fs::write(
        &path,
        "version = \"x\"\nholdout_share = 0.1\nsurprise = 1\n",
    )
    .unwrap();
    let out = predictor(&[("FUNNEL_POLICY__FILE", path.to_str().unwrap())]);
    assert_refused_naming(&out, "surprise");
    let _ = std::fs::remove_file(&path);

    let out = predictor(&[("FUNNEL_POLICY__FILE", "no/such/policy.toml")]);
    assert_refused_naming(&out, "policy.file no/such/policy.toml");
}
