#!/usr/bin/env bash
# Regenerates contracts/out/*.abi and *.bin from contracts/src with solcjs and
# the real OpenZeppelin sources. Needs the tools that scripts/setup.sh installs
# (solc@0.8.37 and @openzeppelin/contracts@5 under .tools/). The outputs are
# committed so that building and testing haltwatch never needs node.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools="$here/../.tools/solc/node_modules"
[ -x "$tools/.bin/solcjs" ] || { echo "solcjs missing: run scripts/setup.sh --with-solc" >&2; exit 1; }
cd "$here/src"
rm -rf "$here/out.tmp" && mkdir -p "$here/out.tmp"
"$tools/.bin/solcjs" --optimize --bin --abi --base-path . --include-path "$tools" -o "$here/out.tmp" *.sol
# solcjs names outputs <file>_<Contract>; keep only our contracts, named by contract.
rm -rf "$here/out" && mkdir -p "$here/out"
for f in "$here"/out.tmp/*_sol_*; do
  base=$(basename "$f")
  case "$base" in @openzeppelin*) continue ;; esac
  cp "$f" "$here/out/${base#*_sol_}"
done
rm -rf "$here/out.tmp"
ls "$here/out"
