#!/usr/bin/env bash
# Regenerates the preset ABIs that come from production packages, as shipped:
#   abis/aave-v3-configurator.json, abis/aave-v3-pool.json: PoolConfigurator
#     and Pool of @aave/core-v3 (scripts/setup.sh installs it into .tools/aave)
#   abis/chainlink-sequencer-feed.json: ZKSyncSequencerUptimeFeed of
#     @chainlink/contracts (scripts/setup.sh --with-solc fetches it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
aave="$root/.tools/aave/node_modules/@aave/core-v3/artifacts/contracts/protocol/pool"
chainlink="$root/.tools/chainlink/package/abi/v0.8"
[ -d "$aave" ] || { echo "production-abis: $aave is missing: run scripts/setup.sh" >&2; exit 1; }
[ -d "$chainlink" ] || { echo "production-abis: $chainlink is missing: run scripts/setup.sh --with-solc" >&2; exit 1; }
write() { # input (an artifact with "abi", or a plain ABI), output
  python3 -c '
import json, sys
data = json.load(open(sys.argv[1]))
abi = data["abi"] if isinstance(data, dict) else data
with open(sys.argv[2], "w") as out:
    json.dump(abi, out, indent=2)
    out.write("\n")' "$1" "$2"
}
write "$aave/PoolConfigurator.sol/PoolConfigurator.json" "$root/abis/aave-v3-configurator.json"
write "$aave/Pool.sol/Pool.json" "$root/abis/aave-v3-pool.json"
write "$chainlink/ZKSyncSequencerUptimeFeed.json" "$root/abis/chainlink-sequencer-feed.json"
echo "production-abis: wrote abis/aave-v3-configurator.json, abis/aave-v3-pool.json, abis/chainlink-sequencer-feed.json"
