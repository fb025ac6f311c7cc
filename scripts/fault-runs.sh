#!/usr/bin/env bash
# Runs the fault-injection suite (tests/chain_faults.rs) once per seed and
# prints, per scenario, how many runs passed. A scenario passes only when
# the history matches the chain's truth: no missed halt, no spurious
# incident, nothing withdrawn that still stands (and, where it has a mail
# server, exactly the mails it should).
#   scripts/fault-runs.sh            # seeds 1..5
#   scripts/fault-runs.sh 11 12 13   # these seeds
set -uo pipefail
cd "$(dirname "$0")/.."
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3 4 5)
cargo test --test chain_faults --no-run -q 2>/dev/null || { echo "fault-runs: the suite does not build" >&2; exit 1; }
results=$(mktemp)
for seed in "${seeds[@]}"; do
  FAULT_SEED=$seed cargo test --test chain_faults -- --test-threads 2 2>&1 \
    | grep -E '^test .* \.\.\. (ok|FAILED)$' \
    | sed -E "s/^test (.*) \.\.\. (ok|FAILED)$/$seed \1 \2/" >>"$results"
done
echo "| scenario | runs | passed | failed (seeds) |"
echo "|---|---|---|---|"
awk '{ runs[$2]++; if ($3 == "ok") ok[$2]++; else bad[$2] = bad[$2] " " $1 }
     END { for (t in runs) printf "| %s | %d | %d | %s |\n", t, runs[t], ok[t], (bad[t] == "" ? "0" : bad[t]) }' "$results" | sort
failed=$(grep -c ' FAILED$' "$results")
rm -f "$results"
[ "$failed" -eq 0 ]
