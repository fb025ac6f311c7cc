#!/usr/bin/env bash
# Installs what haltwatch's demo and tests need, into .tools/ (git-ignored):
#   - anvil (a real EVM node), from the npm package @foundry-rs/anvil
#   - with --with-solc: solcjs, @openzeppelin/contracts and the sources of
#     @chainlink/contracts, to rebuild contracts/out with contracts/build.sh
#     (the compiled outputs are committed, so tests never need this)
#   - aiosmtpd (a real SMTP server) in .tools/venv, for the email tests
#   - chromium (Debian package, as root), for the status page test
#   - promtool (Debian package prometheus, as root), for the /metrics test
#   - PostgreSQL's server (Debian package postgresql, as root), for the lease
#     tests: each starts its own cluster in a temporary folder
#   - the production Aave V3 artifacts (npm @aave/core-v3), into .tools/aave,
#     for the tests that deploy the real market
# Needs node + npm and python3. Idempotent: does nothing when the pinned versions are there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
anvil_version=1.7.1
anvil="$tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"

command -v npm >/dev/null || { echo "setup: npm is required (apt-get install nodejs npm)" >&2; exit 1; }
mkdir -p "$tools"

# Each tool gets its own prefix: `npm install --no-save` prunes what an
# earlier call installed under the same prefix.
install() { # prefix, packages...
  local prefix=$1; shift
  echo "setup: installing $* into ${prefix#$root/}"
  # --ignore-scripts: the anvil package ships its native binary; its postinstall is not needed.
  npm install --prefix "$prefix" --no-audit --no-fund --no-save --ignore-scripts --loglevel=error "$@" >/dev/null
}
if ! [ -x "$anvil" ] || ! "$anvil" --version 2>/dev/null | grep -q "Version: $anvil_version"; then
  install "$tools" "@foundry-rs/anvil@$anvil_version"
fi
# A real SMTP server for the email tests: aiosmtpd in its own virtualenv.
venv="$tools/venv"
if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
  echo "setup: installing aiosmtpd==1.4.6 into .tools/venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check aiosmtpd==1.4.6
fi
# A real browser for the status page test: Debian's chromium.
if ! [ -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing chromium (Debian package)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium is missing; install it as root: apt-get install chromium" >&2
  fi
fi
# promtool, to check /metrics the way Prometheus reads it: Debian's prometheus.
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing promtool (Debian package prometheus)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "setup: promtool is missing; install it as root: apt-get install prometheus" >&2
  fi
fi
# Production Aave V3 bytecode: the package's Hardhat artifacts.
aave_version=1.19.3
if ! grep -qs "\"version\": \"$aave_version\"" "$tools/aave/node_modules/@aave/core-v3/package.json"; then
  install "$tools/aave" "@aave/core-v3@$aave_version"
fi
# A real PostgreSQL for the lease tests: Debian's server binaries. The
# package's own cluster is not used (policy-rc.d may keep it from starting).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing PostgreSQL (Debian package postgresql)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  else
    echo "setup: PostgreSQL is missing; install it as root: apt-get install postgresql" >&2
  fi
fi
if [ "${1:-}" = "--with-solc" ] && ! [ -x "$tools/solc/node_modules/.bin/solcjs" ]; then
  install "$tools/solc" "solc@0.8.37" "@openzeppelin/contracts@5.7.0"
fi
# Chainlink's contract sources (the package ships no bytecode): only its own
# tarball, since its dependencies include git URLs this machine cannot reach.
chainlink_version=1.3.0
if [ "${1:-}" = "--with-solc" ] && ! grep -qs "\"version\": \"$chainlink_version\"" "$tools/chainlink/package/package.json"; then
  echo "setup: fetching @chainlink/contracts@$chainlink_version sources into .tools/chainlink"
  rm -rf "$tools/chainlink" && mkdir -p "$tools/chainlink"
  (cd "$tools/chainlink" && npm pack --silent "@chainlink/contracts@$chainlink_version" >/dev/null \
    && tar xzf "chainlink-contracts-$chainlink_version.tgz")
fi
"$anvil" --version | head -1
