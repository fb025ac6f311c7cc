#!/usr/bin/env bash
# SQLite's own floor for one catch-up range's rows: what the `sqlite3` shell
# takes to insert, with INSERT … SELECT (no parsing or binding per row), the
# rows a 2,000-block range of the catch-up scenario writes — 1,000 incidents,
# 2,000 pieces of evidence, 2,000 transitions, 4,000 ledger records — into a
# store with haltwatch's schema (migrations/sqlite), WAL, synchronous=NORMAL,
# in one transaction. The time to generate the random hashes is measured on
# its own and subtracted.
#
#   benches/sqlite_floor.sh            # needs the sqlite3 shell (apt install sqlite3)
#
# Variants: `hex` is the stored format (hashes and addresses as 0x-hex text,
# one ledger record per evidence/transition row); `blob` stores hashes and
# addresses as 32/20-byte BLOBs and writes one ledger record per commit.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sqlite3 >/dev/null || { echo "needs the sqlite3 shell: apt install sqlite3" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

rows() { # $1: hex | blob
  local h="'0x'||hex(randomblob(32))" a="'0x5FbDB2315678afecb367f032d93F642f64180aa3'" ledger=4000
  if [ "$1" = blob ]; then h="randomblob(32)"; a="x'5FbDB2315678afecb367f032d93F642f64180aa3'"; ledger=1; fi
  cat <<EOF
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<1000)
INSERT INTO incidents (id,key,protocol,chain,chain_id,state,severity,started_at,start_block,ended_at,end_block,planned)
SELECT i, printf('%016x', i*2654435761), 'Vault','anvil',31337,'resolved','halted',1700000000+i,i*2,1700000001+i,i*2+1,0 FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<2000)
INSERT INTO evidence (id,incident_id,kind,chain_id,contract,contract_name,tx_hash,block_number,block_hash,block_timestamp,log_index,event,args,changes,log_hash)
SELECT i,(i+1)/2,'log',31337,$a,'Vault',$h,i,$h,1700000000+i,0,'Paused','[{"name":"account","type":"address","value":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"}]','[{"scope":"*","halted":true}]',$h FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<2000)
INSERT INTO transitions (id,incident_id,kind,from_state,to_state,at,block_number,block_hash,log_index)
SELECT i,(i+1)/2,'opened','operational','halted',1700000000+i,i,$h,0 FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<$ledger)
INSERT INTO ledger (seq,kind,ref_id,payload,prev_hash,hash) SELECT i,'evidence',i,NULL,$h,$h FROM n;
COMMIT;
EOF
}

# CPU milliseconds (user + system, as the shell's timer reports them per
# statement) of the SQL in $1 against a fresh store.
timed() {
  rm -f "$dir"/s.db*
  { cat migrations/sqlite/*.sql; echo "PRAGMA journal_mode=WAL;"; } | sqlite3 "$dir/s.db" >/dev/null
  { echo "PRAGMA synchronous=NORMAL;"; echo ".timer on"; echo "$1"; } | sqlite3 "$dir/s.db" \
    | awk '/^Run Time/ { s += $6 + $8 } END { printf "%.1f\n", s * 1000 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

gen() { # generating the random values alone: as many hashes as `rows` makes
  local h="'0x'||hex(randomblob(32))" n=16000
  if [ "$1" = blob ]; then h="randomblob(32)"; n=8002; fi
  echo "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<$n) SELECT count(x) FROM (SELECT $h AS x FROM n);"
}

for variant in hex blob; do
  total=$(for _ in 1 2 3 4 5 6 7; do timed "$(rows $variant)"; done | median)
  g=$(for _ in 1 2 3 4 5 6 7; do timed "$(gen $variant)"; done | median)
  echo "$variant: ${total} ms per 2,000-block range, of which ${g} ms generating values: floor ≈ $(awk "BEGIN { print $total - $g }") ms"
done
