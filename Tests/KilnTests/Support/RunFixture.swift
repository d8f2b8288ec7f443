import Foundation
import Histogram
import KilnCore
import KilnLoad

/// Builds run directories by hand (report.json, timeline.jsonl, histograms, check.json) for the report tests:
/// per-second samples drawn from a seeded noisy distribution, so a comparison of two fixtures is reproducible.
enum RunFixture {
    struct Operation {
        var name: String
        var rate: Double
        var p50: Double
        var p99: Double
    }

    static let operations = [
        Operation(name: "postgres.point-read", rate: 100, p50: 1.2, p99: 9),
        Operation(name: "redis.feature-read", rate: 150, p50: 0.6, p99: 4),
        Operation(name: "kafka.produce", rate: 50, p50: 3, p99: 25),
    ]

    /// Uniform in (0, 1) from a counter-based stream: value `index` of `seed`.
    static func uniform(_ seed: UInt64, _ index: UInt64) -> Double {
        (Double(SplitMix64.value(seed: seed, index: index) >> 11) + 0.5) / Double(1 << 53)
    }

    /// Standard normal (Box-Muller).
    static func normal(_ seed: UInt64, _ index: UInt64) -> Double {
        let u1 = uniform(seed, index * 2)
        let u2 = uniform(seed, index * 2 + 1)
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    /// Writes `<root>/<id>/`. `slowdown` multiplies one operation's latencies (e.g. 1.2 = +20 %).
    @discardableResult
    static func make(
        in root: URL, id: String, seed: UInt64, seconds: Int = 60, slowdown: [String: Double] = [:],
        interrupted: Bool = false, writeReport: Bool = true, failThreshold: Bool = false,
        faults: [[String: Any]]? = nil, drills: [[String: Any]]? = nil, check: [String: Any]? = nil
    ) throws -> URL {
        let directory = root.appendingPathComponent(id)
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("histograms/steady"), withIntermediateDirectories: true)
        let startedAt: Int64 = 1_795_000_000_000
        var lines: [String] = []
        var index: UInt64 = 0
        var histograms: [String: Histogram<UInt64>] = [:]
        var counts: [String: Int64] = [:]
        for second in 1...seconds {
            var ops: [String] = []
            for operation in operations {
                let factor = slowdown[operation.name] ?? 1
                index += 1
                let count = max(1, Int64((operation.rate * (1 + 0.05 * normal(seed, index))).rounded()))
                let p50 = operation.p50 * factor * exp(0.12 * normal(seed, index + 1_000_000))
                let p99 = operation.p99 * factor * exp(0.25 * normal(seed, index + 2_000_000))
                counts[operation.name, default: 0] += count
                var histogram = histograms[operation.name] ?? Histogram<UInt64>(numberOfSignificantValueDigits: .three)
                histogram.autoResize = true
                _ = histogram.record(UInt64(p50 * 1000))
                _ = histogram.record(UInt64(p99 * 1000))
                histograms[operation.name] = histogram
                ops.append(
                    #""\#(operation.name)":{"ok":\#(count),"fail":0,"info":0,"dropped":0,"late":0,"rows":0,"#
                        + String(format: #""p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}"#, p50, p99, p99 * 1.5))
            }
            lines.append(#"{"phase":"steady","second":\#(second),"ops":{\#(ops.joined(separator: ","))}}"#)
        }
        try (lines.joined(separator: "\n") + "\n").write(
            to: directory.appendingPathComponent("timeline.jsonl"), atomically: true, encoding: .utf8)
        for (name, histogram) in histograms {
            try JSONEncoder().encode(histogram).write(
                to: directory.appendingPathComponent("histograms/steady/\(name).json"))
        }
        try "name: fixture\nregression:\n  p99: +10%\n".write(
            to: directory.appendingPathComponent("scenario.yaml"), atomically: true, encoding: .utf8)
        if let check {
            try JSONSerialization.data(withJSONObject: check).write(to: directory.appendingPathComponent("check.json"))
        }
        guard writeReport else { return directory }
        let operationsJSON: [[String: Any]] = operations.map { operation in
            let factor = slowdown[operation.name] ?? 1
            let latency: [String: Any] = [
                "p50": operation.p50 * factor, "p90": operation.p99 * factor * 0.5, "p95": operation.p99 * factor * 0.7,
                "p99": operation.p99 * factor, "p999": operation.p99 * factor * 2, "p9999": operation.p99 * factor * 3,
                "max": operation.p99 * factor * 4, "mean": operation.p50 * factor * 1.3,
            ]
            let completed = counts[operation.name] ?? 0
            return [
                "name": operation.name, "store": String(operation.name.split(separator: ".")[0]), "kind": "read",
                "ok": completed, "fail": 0, "info": 0, "errors": [String: Int64](), "dropped": 0, "late": 0, "rows": 0,
                "throughput": Double(completed) / Double(seconds), "latency_ms": latency, "service_ms": latency,
            ]
        }
        let threshold: [String: Any] = [
            "phase": "steady", "scope": "postgres.point-read", "expression": "p99 < 50ms", "observed": 0.009,
            "passed": true, "source": "fixture.yaml:12",
        ]
        var failing = threshold
        failing["expression"] = "p99 < 1ms"
        failing["passed"] = false
        var report: [String: Any] = [
            "schema": RunReport.schemaVersion,
            "identity": [
                "id": id, "scenario": "fixture", "scenario_file": "/tmp/fixture.yaml", "dataset_spec": "/tmp/spec.yaml",
                "seed": 42, "dataset_rows": 100_000, "stack": "embedded", "namespace": "fixture",
                "kiln_revision": "abc1234", "host": "test", "cores": 2,
            ],
            "started_at": startedAt, "complete": !interrupted, "interrupted": interrupted,
            "phases": [
                [
                    "name": "steady", "executor": "constant-arrival-rate", "workers": 16, "started_at": startedAt + 2000,
                    "seconds": Double(seconds), "complete": !interrupted, "planned_ops": 18_000,
                    "operations": operationsJSON, "thresholds": failThreshold ? [threshold, failing] : [threshold],
                ]
            ],
            "verdict": interrupted ? "interrupted" : (failThreshold ? "thresholds-failed" : "passed"),
            "exit_code": interrupted ? 3 : (failThreshold ? 2 : 0),
            "store_rows": ["postgres": 0],
        ]
        if !interrupted { report["ended_at"] = startedAt + Int64(seconds + 3) * 1000 }
        if let faults { report["faults"] = faults }
        if let drills { report["drills"] = drills }
        // Through RunReport and its encoder: the file is exactly what kiln writes for these values.
        let decoded = try RunReport.decode(JSONSerialization.data(withJSONObject: report))
        try RunReport.encoder.encode(decoded).write(to: directory.appendingPathComponent("report.json"))
        return directory
    }

    static let startedAt: Int64 = 1_795_000_000_000

    static func failingCheck(run: String) -> [String: Any] {
        [
            "schema": "kiln.check/1", "run": run, "dataset_rows": 100_000, "validity": "invalid", "seconds": 1.5,
            "places": [
                [
                    "place": "postgres.rows", "source": "127.0.0.11:15432", "validity": "invalid", "expected": 1000,
                    "indeterminate": 0, "failed_writes": 0, "scanned": 998, "indeterminate_present": 0,
                    "counts": ["lost": 2], "seconds": 0.5,
                    "anomalies": [
                        ["kind": "lost", "txn_id": 17, "detail": "acknowledged ok, absent"],
                        ["kind": "lost", "txn_id": 99, "detail": "acknowledged ok, absent"],
                    ],
                ],
                [
                    "place": "redis.features", "source": "127.0.0.21:16379", "validity": "valid", "expected": 1000,
                    "indeterminate": 0, "failed_writes": 0, "scanned": 1000, "indeterminate_present": 0,
                    "counts": [String: Int](), "anomalies": [Any](), "seconds": 0.4,
                ],
                [
                    "place": "kafka.messages", "source": "127.0.0.31:19092", "validity": "unknown", "expected": 1000,
                    "indeterminate": 0, "failed_writes": 0, "scanned": 0, "indeterminate_present": 0,
                    "counts": [String: Int](), "anomalies": [Any](), "error": "broker did not answer", "seconds": 10,
                ],
            ],
        ]
    }

    static var faults: [[String: Any]] { [
        [
            "name": "redis-pause", "kind": "pause", "target": "redis.primary", "planned_start": startedAt + 20_000,
            "started_at": startedAt + 20_100, "stopped_at": startedAt + 25_000, "verified": "yes",
            "note": "SIGSTOP/SIGCONT",
        ]
    ] }

    static var drills: [[String: Any]] { [
        [
            "name": "redis pause", "fault": "redis-pause", "store": "redis", "verdict": "failed",
            "reason": "RTO 6200 ms > 5000 ms", "metrics": ["rto_ms": 6200, "unavailable_ms": 4900, "rpo_writes": 0],
        ],
        [
            "name": "postgres under redis pause", "fault": "redis-pause", "store": "postgres", "verdict": "unknown",
            "reason": "no ops in the window", "metrics": [String: Double](),
        ],
    ] }
}
