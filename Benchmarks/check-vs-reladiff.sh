#!/usr/bin/env bash
# `kiln check` vs reladiff on the same PostgreSQL and ClickHouse tables, in the same run (issue 5).
# Usage: Benchmarks/check-vs-reladiff.sh RUN_DIR    (a run that loaded postgres and clickhouse, e.g. nightly-regression)
# Kiln reads both tables once and compares every column of every row with the oracle (and the run's history);
# reladiff compares the two tables with each other (checksums per segment, bisecting differing segments), on the
# columns both stores keep in the same type.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:?usage: Benchmarks/check-vs-reladiff.sh RUN_DIR}
venv=.kiln/venv
"$venv/bin/python" -c 'import reladiff, clickhouse_driver, psycopg2' 2>/dev/null \
  || "$venv/bin/pip" install -q --disable-pip-version-check reladiff clickhouse-driver psycopg2-binary
kiln=.build/release/kiln
[ -x "$kiln" ] || swift build -c release >&2
ns=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['identity']['namespace'])" "$run/report.json")
clock() { date +%s.%N; }
start=$(clock)
"$kiln" check "$run" --places postgres.rows,clickhouse.rows
kiln_seconds=$(awk -v a="$start" -v b="$(clock)" 'BEGIN { print b - a }')
start=$(clock)
"$venv/bin/reladiff" "postgresql://postgres@127.0.0.11:15432/kiln" "${ns}_transactions" \
  "clickhouse://default@127.0.0.51:18124/kiln" "${ns}_transactions" \
  -k txn_id -c user_id -c merchant_id -c device_id -c location_id -c currency -c channel -c status \
  --stats || true
reladiff_seconds=$(awk -v a="$start" -v b="$(clock)" 'BEGIN { print b - a }')
printf 'kiln check (postgres + clickhouse vs the oracle, every column): %.1f s\n' "$kiln_seconds"
printf 'reladiff (postgres vs clickhouse, 8 columns): %.1f s\n' "$reladiff_seconds"
awk -v k="$kiln_seconds" -v r="$reladiff_seconds" 'BEGIN { printf "reladiff / kiln: %.2f\n", r / k }'
