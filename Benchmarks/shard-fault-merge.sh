#!/bin/sh
# Issue 18, merge exactness under a fault: one unsharded run vs 2 shards (JOB_COMPLETION_INDEX as a Kubernetes
# Indexed Job sets it) of one drill — a 2 s SIGSTOP of a PRIVATE Redis (127.0.2.21:36221, its own KILN_STACK_DIR;
# never the shared stack) under 100 ops/s for 12 s, `fault_shard: 1` — merged with `kiln merge`, checked with
# `kiln check`. Prints per operation the scheduled/completed counts, and the fault and drill of both runs.
# Usage: Benchmarks/shard-fault-merge.sh [WORK_DIR]   (default /tmp/shard-fault-bench; removed first)
set -eu
K=${KILN:-$(cd "$(dirname "$0")/.." && pwd)/.build/debug/kiln}
W=${1:-/tmp/shard-fault-bench}
HOME_DIR=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$W" && mkdir -p "$W"
export KILN_STACK_DIR="$W/stack"
cat > "$W/stack.yaml" <<EOF
name: shard-fault-bench
kind: embedded
chaos_target: true
redis:
  primary: 127.0.2.21:36221
  replicas: []
  sentinels: []
  master_name: kiln
EOF
cat > "$W/scenario.yaml" <<EOF
name: shard-fault
stack: $W/stack.yaml
dataset: {spec: $HOME_DIR/Generators/fraud-platform.yaml, seed: 21, rows: 10K}
namespace: sf_bench
timeout: 10s
fresh: true
fault_shard: 1
faults:
  - {name: freeze-redis, kind: pause, target: redis-primary, at: 4s, duration: 2s}
heal_wait: 1s
phases:
  - name: open
    executor: constant-arrival-rate
    rate: 100
    duration: 12s
    workers: 32
    drop_after: 10s
    mix: {redis.feature-update: 1, redis.feature-read: 1}
EOF
trap '"$K" stack down --stack "$W/stack.yaml" >/dev/null 2>&1 || true' EXIT
"$K" stack up --stack "$W/stack.yaml" > "$W/stack-up.log" 2>&1
R="$W/runs"
set +e
"$K" run "$W/scenario.yaml" --runs-directory "$R" --id single > "$W/single.log" 2>&1; single=$?
"$K" run "$W/scenario.yaml" --setup-only > "$W/setup.log" 2>&1
for i in 0 1; do
  JOB_COMPLETION_INDEX=$i "$K" run "$W/scenario.yaml" --shards 2 --runs-directory "$R" --id shard-$i > "$W/shard-$i.log" 2>&1 &
done
wait
"$K" merge "$R/shard-0" "$R/shard-1" -o "$R/merged" > "$W/merge.log" 2>&1; merge=$?
"$K" check "$R/merged" > "$W/check.log" 2>&1; check=$?
set -e
echo "exit codes: unsharded run $single, merge $merge (3 = NOT CHECKED until checked), check of the merged run $check"
python3 - "$R" <<'EOF'
import json, sys
root = sys.argv[1]
def load(name): return json.load(open(f"{root}/{name}/report.json"))
for name in ["single", "shard-0", "shard-1", "merged"]:
    r = load(name)
    print(f"== {name}: verdict {r['verdict']}")
    for phase in r["phases"]:
        for op in phase["operations"]:
            scheduled = op["ok"] + op["fail"] + op["info"] + op["dropped"]
            print(f"  {phase['name']}/{op['name']}: scheduled {scheduled}, ok {op['ok']}, fail {op['fail']}, "
                  f"info {op['info']}, dropped {op['dropped']}, p99 {op['latency_ms'].get('p99')} ms")
    for f in r.get("faults") or []:
        print(f"  fault {f['name']} ({f['kind']}): verified {f['verified']}, run_by_shard {f.get('run_by_shard')}, "
              f"planned_only {f.get('planned_only', False)}, started {f.get('started_at')}")
    for d in r.get("drills") or []:
        m = d["metrics"]
        print(f"  drill {d['name']}: {d['verdict']}; time_to_detect_ms {m.get('time_to_detect_ms')}, "
              f"rto_ms {m.get('rto_ms')}, unavailable_ms {m.get('unavailable_ms')}, "
              f"p99_worst_second_ms {m.get('p99_worst_second_ms')}, errors {m.get('errors')}, rpo_writes {m.get('rpo_writes')}")
EOF
