#!/usr/bin/env bash
# Regenerates abis/aave-v3-configurator.json and abis/aave-v3-pool.json from
# the production artifacts of @aave/core-v3 (installed by scripts/setup.sh
# into .tools/aave): the ABIs of PoolConfigurator and Pool, as shipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
artifacts="$root/.tools/aave/node_modules/@aave/core-v3/artifacts/contracts/protocol/pool"
[ -d "$artifacts" ] || { echo "aave-abis: $artifacts is missing: run scripts/setup.sh" >&2; exit 1; }
extract() { # artifact, output
  python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["abi"], open(sys.argv[2],"w"), indent=2); open(sys.argv[2],"a").write("\n")' "$1" "$2"
}
extract "$artifacts/PoolConfigurator.sol/PoolConfigurator.json" "$root/abis/aave-v3-configurator.json"
extract "$artifacts/Pool.sol/Pool.json" "$root/abis/aave-v3-pool.json"
echo "aave-abis: wrote abis/aave-v3-configurator.json and abis/aave-v3-pool.json"
