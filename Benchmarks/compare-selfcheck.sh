#!/usr/bin/env bash
# Self-check of `kiln compare` on this machine (issue 7): a baseline of 3 runs of the same steady mix, then N more
# runs on the same build, each compared against the baseline, must all be free of `regressed`; a run with one
# operation slowed ~20 % through the fault proxy must compare `regressed` for that operation and nothing else.
# Usage: Benchmarks/compare-selfcheck.sh [REPEATS=10] [SLOWDOWN=latency toxic for clickhouse, e.g. 2ms]
# Needs the embedded stack up (scripts/kiln stack up). Takes ~(REPEATS + 5) minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-10}
slowdown=${2:-}
kiln=.build/release/kiln
[ -x "$kiln" ] || swift build -c release --product kiln >&2
runs=Reports/runs
stamp=$(date -u +%Y%m%dT%H%M%S)
scenario=Scenarios/selfcheck/compare.yaml
"$kiln" run "$scenario" --phase seed --id "sc-$stamp-seed" >/dev/null
steady() { "$kiln" run "$1" --phase steady --continue-from "$runs/sc-$stamp-seed" --id "$2" >/dev/null || true; }
steady "$scenario" "sc-$stamp-warmup"   # caches warm; not compared
for i in b1 b2 b3 $(seq 1 "$repeats"); do steady "$scenario" "sc-$stamp-$i"; done
baseline=("$runs/sc-$stamp-b1" "$runs/sc-$stamp-b2" "$runs/sc-$stamp-b3")
if [ -z "$slowdown" ]; then
  # 20 % of the baseline's clickhouse.minute-aggregate p50, in whole milliseconds (the toxic's resolution), min 1.
  slowdown=$(python3 - "$runs/sc-$stamp-b1/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))  # the first baseline run
ops = [op for phase in report["phases"] for op in phase["operations"] if op["name"] == "clickhouse.minute-aggregate"]
print(f'{max(1, round(ops[0]["latency_ms"]["p50"] * 0.2))}ms')
PY
)
fi
slow=$(mktemp --suffix=.yaml -p Scenarios/selfcheck)
trap 'rm -f "$slow"' EXIT
# The same scenario with a latency toxic on the ClickHouse proxy for the whole run.
sed -e "s/^name: selfcheck-compare$/name: selfcheck-compare-slow/" \
    -e "s/^proxy: \[clickhouse\]$/proxy: [clickhouse]\nfaults:\n  - {name: slow-clickhouse, kind: proxy, target: clickhouse, toxic: latency=$slowdown, at: 0s, duration: 10m}\nheal_wait: 0s/" \
    "$scenario" > "$slow"
steady "$slow" "sc-$stamp-slow"
echo "repeated runs against the baseline runs sc-$stamp-b1..b3:"
unchanged=0
for i in $(seq 1 "$repeats"); do
  verdicts=$({ "$kiln" compare "${baseline[@]}" "$runs/sc-$stamp-$i" --json || true; } \
    | python3 -c 'import json,sys; print(" ".join(sorted({r["verdict"] for r in json.load(sys.stdin)["rows"]})))')
  echo "  sc-$stamp-$i: $verdicts"
  case " $verdicts " in *" regressed "*) ;; *) unchanged=$((unchanged + 1)) ;; esac
done
echo "no false regression in $unchanged of $repeats comparisons"
echo "slowed run (clickhouse latency toxic $slowdown) against the baseline runs:"
{ "$kiln" compare "${baseline[@]}" "$runs/sc-$stamp-slow" --json || true; } | python3 -c '
import json, sys
rows = json.load(sys.stdin)["rows"]
for r in rows:
    if r["verdict"] != "unchanged":
        print(f"  {r[\"operation\"]} {r[\"metric\"]}: {r[\"verdict\"]} ({r.get(\"change\")})")
'
