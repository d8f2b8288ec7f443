#!/bin/bash
# Client CPU per op of Kiln's open-model postgres.point-read vs pgbench at the same fixed rate (issue 18, item 5).
# Usage: Benchmarks/pg-cpu-per-op.sh KILN_BINARY RATE [LONG_SECONDS]
#   env STACK (a PRIVATE stack file; its postgres.primary is used), WORK (scratch directory, default /tmp/pg-cpu-per-op),
#   KILN_ENV (extra "NAME=value ..." for Kiln, e.g. KILN_OPEN_BATCH_WINDOW_US=200).
# CPU per op = (task-clock of a LONG run - task-clock of a 1 s run) / (ops completed in the long run - the short one's),
# so set-up (bulk of 20K rows, connections, statement preparation, report writing) cancels out. Kiln: `kiln run` of
# one constant-arrival-rate phase, 64 workers; pgbench: -n -M prepared -c 64 -j 2 -R RATE with Kiln's point-read
# query on Kiln's table (as `kiln bench capacity`). Both on the same server, one after the other.
set -eu
BIN=$1; RATE=$2; LONG=${3:-11}; SHORT=1
: "${STACK:?STACK=<private stack file>}"
WORK=${WORK:-/tmp/pg-cpu-per-op}; mkdir -p "$WORK/runs"
REPO=$(cd "$(dirname "$0")/.." && pwd)
PRIMARY=$(awk '/^postgres:/{p=1} p && /primary:/{print $2; exit}' "$STACK")
PGHOSTADDR=${PRIMARY%:*}; PGPORTNUM=${PRIMARY#*:}
for s in $SHORT $LONG; do cat > "$WORK/cap-$s.yaml" <<YAML
name: cap-pg
stack: $STACK
dataset: {spec: $REPO/Generators/fraud-platform.yaml, seed: 42, rows: 20000}
namespace: benchcap
fresh: true
phases:
  - {name: load, executor: bulk, rows: 20000, batch: 5K, workers: 2, stores: [postgres]}
  - {name: step, executor: constant-arrival-rate, rate: $RATE, duration: ${s}s, workers: 64, drop_after: 1s, mix: {postgres.point-read: 1}}
YAML
done
cat > "$WORK/point-read.sql" <<'SQL'
\set id random(1, 20000)
SELECT txn_id, user_id, merchant_id, device_id, location_id, amount, currency, (extract(epoch FROM ts) * 1000)::bigint AS ts_ms, channel, status, fraud_score, is_fraud, ring_id FROM benchcap_transactions WHERE txn_id = :id;
SQL
clock() { perf stat -x, -o "$WORK/perf.out" -e task-clock,context-switches "$@" > "$WORK/cmd.out" 2>&1 || true
    awk -F, '/task-clock/{t=$1} /context-switches/{c=$1} END{print t, c}' "$WORK/perf.out"; }
kiln_ops() { python3 -c "import json,sys;o=json.load(open(sys.argv[1]))['phases'][-1]['operations'][0];l=o['latency_ms'];print(o['ok']+o['fail'], o['dropped'], l['p50'], l['p99'])" "$(ls -td "$WORK"/runs/*/ | head -1)report.json"; }
pgbench_ops() { awk '/actually processed/{split($0,a,": "); split(a[2],b,"/"); print b[1]}' "$WORK/cmd.out"; }
kiln() { (export ${KILN_ENV:-} KILN_STACK_DIR="$WORK/stack"; clock "$BIN" run "$WORK/cap-$1.yaml" --runs-directory "$WORK/runs"); }
pgb() { clock pgbench -n -M prepared -c 64 -j 2 -R "$RATE" -T "$1" -f "$WORK/point-read.sql" -h "$PGHOSTADDR" -p "$PGPORTNUM" -U postgres kiln; }
read a ac <<<"$(kiln $SHORT)"; read ka _ <<<"$(kiln_ops)"
read b bc <<<"$(kiln $LONG)"; read kb kdrop kp50 kp99 <<<"$(kiln_ops)"
read c cc <<<"$(pgb $SHORT)"; pa=$(pgbench_ops)
read d dc <<<"$(pgb $LONG)"; pb=$(pgbench_ops)
awk -v a="$a" -v b="$b" -v c="$c" -v d="$d" -v ac="$ac" -v bc="$bc" -v cc="$cc" -v dc="$dc" -v ka="$ka" -v kb="$kb" \
    -v pa="$pa" -v pb="$pb" -v r="$RATE" 'BEGIN{ k=(b-a)*1000/(kb-ka); p=(d-c)*1000/(pb-pa);
    printf "rate %d: kiln %.2f us/op (%.3f cs/op), pgbench %.2f us/op (%.3f cs/op), kiln/pgbench %.2f\n",
        r, k, (bc-ac)/(kb-ka), p, (dc-cc)/(pb-pa), k/p }'
echo "kiln long phase: dropped $kdrop, p50 $kp50 ms, p99 $kp99 ms; $(grep -h 'latency average' "$WORK/cmd.out")"; uptime
