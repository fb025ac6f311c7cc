#!/usr/bin/env bash
# Regenerates contracts/out/*.abi and *.bin from contracts/src with solcjs and
# the real OpenZeppelin sources, and Chainlink's sequencer uptime feed from
# the sources of the npm package @chainlink/contracts. Needs the tools that scripts/setup.sh installs
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

# Chainlink's production L2 sequencer uptime feed (the zkSync one: its L1
# sender is an address alias, which anvil can impersonate), compiled from the
# sources @chainlink/contracts@1.3.0 ships (the package has no bytecode).
chainlink="$here/../.tools/chainlink/package/src/v0.8"
[ -d "$chainlink" ] || { echo "Chainlink sources missing: run scripts/setup.sh --with-solc" >&2; exit 1; }
mkdir -p "$here/out.tmp"
(cd "$chainlink" && "$tools/.bin/solcjs" --optimize --bin --abi --base-path . -o "$here/out.tmp" \
  l2ep/dev/zksync/ZKSyncSequencerUptimeFeed.sol)
for ext in abi bin; do
  cp "$here/out.tmp/l2ep_dev_zksync_ZKSyncSequencerUptimeFeed_sol_ZKSyncSequencerUptimeFeed.$ext" \
    "$here/out/ZKSyncSequencerUptimeFeed.$ext"
done
rm -rf "$here/out.tmp"
ls "$here/out"
