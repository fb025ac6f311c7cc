#!/usr/bin/env bash
# What must pass before every commit (and what CI runs after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test
