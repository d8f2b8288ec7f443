#!/usr/bin/env bash
# `kiln generate | psql \copy` vs `pgbench -i` on the same PostgreSQL, in the same run (issue 3).
# Usage: Benchmarks/generate-into-postgres.sh [ROWS=10M] [PGBENCH_SCALE=100]   (stack up: scripts/kiln stack up)
# Both sides load logged tables without indexes first (pgbench -I dtg: drop, create, generate), then the
# full variants add the primary key and a vacuum (pgbench -I dtgvp).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-10M}
scale=${2:-100}
kiln=.build/release/kiln
[ -x "$kiln" ] || swift build -c release >&2
eval "$("$kiln" stack env)"
psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
clock() { date +%s.%N; }
rate() { awk -v r="$1" -v s="$2" 'BEGIN { printf "%.2f M rows/s", r / s / 1e6 }'; }
count=$(python3 -c "s='$rows'; m={'K':1e3,'M':1e6,'B':1e9}; print(int(float(s[:-1])*m[s[-1]]) if s[-1] in m else int(s))")

load() { # format copy-format
    psql_q -c "DROP TABLE IF EXISTS kiln_bench_generate"
    psql_q -c "$("$kiln" generate --schema postgres --table kiln_bench_generate)"
    psql_q -c "ALTER TABLE kiln_bench_generate DROP CONSTRAINT kiln_bench_generate_pkey"
    local start end
    start=$(clock)
    "$kiln" generate --rows "$rows" --format "$1" | psql_q -c "\\copy kiln_bench_generate FROM STDIN (FORMAT $2)"
    end=$(clock)
    local seconds; seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
    printf '%-48s %8.2f s  %s\n' "kiln generate --format $1 | psql \\copy" "$seconds" "$(rate "$count" "$seconds")"
    start=$(clock)
    psql_q -c "ALTER TABLE kiln_bench_generate ADD PRIMARY KEY (txn_id)" -c "VACUUM ANALYZE kiln_bench_generate"
    end=$(clock)
    printf '%-48s %8.2f s\n' "  + primary key + vacuum" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')"
}

pgbench_load() { # init-steps
    local start end seconds
    start=$(clock)
    pgbench -q -i -s "$scale" -I "$1" >/dev/null 2>&1
    end=$(clock)
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
    printf '%-48s %8.2f s  %s\n' "pgbench -i -s $scale -I $1" "$seconds" "$(rate $((scale * 100000)) "$seconds")"
}

echo "rows: kiln $count (13 columns), pgbench $((scale * 100000)) (pgbench_accounts, 4 columns); $(date -u +%FT%TZ)"
load csv csv
load copy-binary binary
pgbench_load dtg
pgbench_load dtgvp
psql_q -c "DROP TABLE IF EXISTS kiln_bench_generate"
pgbench -q -i -I d >/dev/null 2>&1 || true
