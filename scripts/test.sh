#!/usr/bin/env bash
# The tests: the whole suite (the history on SQLite), then the
# store-touching tests again with the history on PostgreSQL (a real
# cluster started by the tests themselves; `scripts/setup.sh` installs it).
# Arguments go to both `cargo test` runs (e.g. `--release`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test "$@"
HALTWATCH_TEST_STORE=postgres cargo test "$@" \
    --test pause_incidents --test email --test restart_and_reorg --test audit
