#!/usr/bin/env python3
"""Merge exactness (issue 18): compares run directories of the same open-model scenario — an unsharded run and
merged sharded runs — per phase and operation:
  - counts: per operation the ops scheduled (ok + fail + info + dropped) must be identical across the runs (op k's
    operation is a function of the seed, the phase and k only); completed ops and rows too where no run dropped one
    (a dropped op is not run: how many are dropped depends on the machine, not on the sharding);
  - latency: each run's p50/p99 from its (merged) HDR histogram (report.json) against the exact p50/p99 of the raw
    samples in its history.jsonl (write and bulk ops; reads are not kept in the history): HDR with 3 significant
    digits reports the highest value equivalent to the sample's bucket, so it must lie in [exact, exact·(1+2^-10)+1µs].
Usage: shard-merge-exactness.py SINGLE_RUN MERGED_RUN... ; exit 1 when a count differs or a percentile is outside."""
import json, math, sys
from collections import defaultdict

def report(run):
    return json.load(open(f"{run}/report.json"))

def counts(rep):
    out = {}
    for phase in rep["phases"]:
        for op in phase["operations"]:
            done = op["ok"] + op["fail"] + op["info"]
            out[(phase["name"], op["name"])] = (done + op["dropped"], done, op["rows"])
    return out

def raw_samples(run):
    samples = defaultdict(list)
    with open(f"{run}/history.jsonl") as f:
        for line in f:
            e = json.loads(line)
            micros = max(1, min(3_600_000_000, (e["end_ns"] - e["intended_ns"]) // 1000))
            samples[(e["phase"], e["op"])].append(micros)
    return samples

def exact(sorted_values, percentile):
    rank = max(1, math.ceil(percentile / 100 * len(sorted_values)))
    return sorted_values[rank - 1]

def main(runs):
    failed = False
    base = counts(report(runs[0]))
    print("| run | phase/operation | scheduled | completed | rows | p50 HDR / exact (ms) | p99 HDR / exact (ms) |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        rep = report(run)
        mine = counts(rep)
        for key in sorted(set(base) | set(mine)):
            a, b = base.get(key), mine.get(key)
            if a is None or b is None or a[0] != b[0]:
                failed = True
                print(f"SCHEDULED DIFFERS {run} {key}: {b} vs {a}", file=sys.stderr)
            elif a != b and a[0] == a[1] and b[0] == b[1]:
                failed = True
                print(f"COMPLETED DIFFERS without drops {run} {key}: {b} vs {a}", file=sys.stderr)
            elif a != b:
                print(f"note: {run} {key}: {b} vs {a} (dropped ops differ)", file=sys.stderr)
        samples = raw_samples(run)
        for phase in rep["phases"]:
            for op in phase["operations"]:
                key = (phase["name"], op["name"])
                cells = []
                values = sorted(samples.get(key, []))
                for p, field in [(50, "p50"), (99, "p99")]:
                    hdr = op["latency_ms"].get(field)
                    if not values or hdr is None:
                        cells.append(f"{hdr} / -")
                        continue
                    truth = exact(values, p)
                    hdr_us = round(hdr * 1000)
                    ok = truth <= hdr_us <= truth * (1 + 2**-10) + 1
                    failed |= not ok
                    cells.append(f"{hdr:.3f} / {truth / 1000:.3f}{'' if ok else ' OUTSIDE'}")
                s, c, r = mine[key]
                print(f"| {run.rstrip('/').split('/')[-1]} | {key[0]}/{key[1]} | {s} | {c} | {r} | {cells[0]} | {cells[1]} |")
    print("scheduled counts identical; percentiles within HDR precision" if not failed else "MISMATCH", file=sys.stderr)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
