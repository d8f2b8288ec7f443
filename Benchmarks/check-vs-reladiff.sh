#!/usr/bin/env bash
# `kiln check` vs reladiff on the same PostgreSQL and ClickHouse tables, in the same run (issue 5).
# Usage: Benchmarks/check-vs-reladiff.sh RUN_DIR    (a run that loaded postgres and clickhouse, e.g. nightly-regression)
# Kiln reads both tables once and compares every column of every row with the oracle (and the run's history);
# reladiff compares two tables with each other (checksums per segment, bisecting differing segments).
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
# reladiff cannot open ClickHouse 18.16 (it queries information_schema, which 18.16 lacks), so the peer compares
# the same PostgreSQL table on the primary and its streaming replica: two full scans of 10M rows, 12 columns.
"$venv/bin/reladiff" "postgresql://postgres@127.0.0.11:15432/kiln" "${ns}_transactions" \
  "postgresql://postgres@127.0.0.12:15433/kiln" "${ns}_transactions" \
  -k txn_id -c user_id -c merchant_id -c device_id -c location_id -c amount -c currency -c ts -c channel \
  -c status -c fraud_score -c is_fraud -c ring_id --stats
reladiff_seconds=$(awk -v a="$start" -v b="$(clock)" 'BEGIN { print b - a }')
printf 'kiln check (postgres + clickhouse vs the oracle, every column, + minute-totals invariant): %.1f s\n' "$kiln_seconds"
printf 'reladiff (postgres primary vs replica, 12 columns): %.1f s\n' "$reladiff_seconds"
awk -v k="$kiln_seconds" -v r="$reladiff_seconds" 'BEGIN { printf "reladiff / kiln: %.2f\n", r / k }'
