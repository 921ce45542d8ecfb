#!/usr/bin/env bash
# Builds and runs every test. Needs what scripts/setup.sh installs; starts its
# own brokers and redis-servers on free loopback ports.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "ONNX test models are reproducible"
.tools/venv/bin/python models/tools/make_test_models.py --check

step "model cards match their files (sha256)"
.tools/venv/bin/python models/tools/check_cards.py

step "deployment files (offline validation)"
scripts/validate-deploy.sh --require-all

step "README examples through the real ingest binary with a real Kafka client"
cargo build --locked -q -p ingest
.tools/venv/bin/python tests/readme/check_readme.py target/debug/ingest

step "Rust tests (unit, and black-box against Tansu and redis-server)"
cargo test --workspace --locked --no-fail-fast
