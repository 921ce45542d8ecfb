//! The ingest binary's start-up contract: a bad configuration stops it with
//! exit code 64 and a message naming the key; `--print-config` masks secrets.

use std::process::Command;

fn ingest() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ingest"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FUNNEL_")) {
        cmd.env_remove(k);
    }
    cmd
}

/// Starts ingest with one environment variable set and asserts that it stops at once
/// with exit code 64 and a message containing `expected`.
fn assert_refused(var: (&str, &str), expected: &str) {
    let out = ingest().env(var.0, var.1).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{var:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(expected), "{var:?}: {err}");
}

#[test]
fn an_unknown_key_stops_the_process_naming_the_key() {
    assert_refused(
        ("FUNNEL_INGEST__BATCH_MAXIMUM", "10"),
        "unknown key `ingest.batch_maximum`",
    );
}

#[test]
fn a_bad_value_stops_the_process_naming_the_key() {
    assert_refused(("FUNNEL_INGEST__BATCH_MAX", "many"), "ingest.batch_max");
    assert_refused(("FUNNEL_GRPC__LISTEN", "not-an-address"), "grpc.listen");
    // Zero would retry a failing batch in a busy loop.
    assert_refused(
        ("FUNNEL_INGEST__RETRY_BACKOFF_MAX_MS", "0"),
        "ingest.retry_backoff_max_ms must be at least 1",
    );
}

#[test]
fn a_bad_config_file_is_named() {
    let dir = std::env::temp_dir().join(format!("ingest-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[redis]\nurl = 7\nkeyprefix = \"x\"\n").unwrap();
    let out = ingest().arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("redis.keyprefix"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn print_config_shows_the_effective_config_with_secrets_masked() {
    let out = ingest()
        .arg("--print-config")
        .env("FUNNEL_REDIS__URL", "redis://app:hunter2@redis:6379/0")
        .env("FUNNEL_KAFKA__OPTIONS__SASL_PASSWORD", "hunter2")
        .env("FUNNEL_KAFKA__OPTIONS__SASL_USERNAME", "app")
        .env("FUNNEL_KAFKA__BROKERS", "kafka:9092")
        .env("FUNNEL_INGEST_SERVICE_HOST", "10.0.0.1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("url = \"redis://app:***@redis:6379/0\""),
        "{text}"
    );
    assert!(text.contains("brokers = \"kafka:9092\""), "{text}");
    assert!(text.contains("\"sasl.username\" = \"app\""), "{text}");
    assert!(text.contains("batch_max = 2000"), "{text}");
}
