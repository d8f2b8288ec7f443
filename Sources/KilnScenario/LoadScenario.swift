import Foundation

/// A load scenario file (`Scenarios/*.yaml`, run by `kiln run`): the stack, the dataset, and phases run in order.
/// Parsing is strict (unknown keys are errors) and every error names file:line:column and the field. Operation
/// names are checked against `knownOperations` (`store.operation`, from the store registry) while parsing, so
/// a typo is reported where it was written.
public struct LoadScenario: Sendable {
    public struct DatasetReference: Sendable {
        /// Absolute path of the dataset spec.
        public var spec: URL
        public var seed: UInt64
        /// Dataset size: the rows bulk phases load and writes draw from (each row written once per store).
        public var rows: Int64?
        /// Where `rows` (or the `dataset:` block without it) was written, `file:line:column`, for errors found once
        /// the spec is loaded (rows beyond the spec's `max_rows`).
        public var rowsSource: String = ""
    }

    public enum Executor: Sendable, Equatable {
        /// Load `rows` rows into each store as fast as it takes them, `workers` threads per store. `operations`
        /// are the bulk operations, one per store (`postgres.bulk`, or another bulk op such as `redis.bulk-set`).
        case bulk(rows: Int64, batch: Int, operations: [String], workers: Int, parallelStores: Bool)
        /// Open model: ops start at `rate` per second for `duration`, latency measured from the intended time.
        case constantArrivalRate(rate: Double, duration: Duration)
        /// Open model with a piecewise-linear rate: from `startRate` through each stage's target over its duration.
        case rampingArrivalRate(startRate: Double, stages: [Stage])
        /// Closed model: `workers` threads each run ops back to back for `duration` (latency from actual start).
        case closed(duration: Duration)

        public var name: String {
            switch self {
            case .bulk: "bulk"
            case .constantArrivalRate: "constant-arrival-rate"
            case .rampingArrivalRate: "ramping-arrival-rate"
            case .closed: "closed"
            }
        }
    }

    /// When a bulk phase's deferred secondary indexes are built (`index_build:`).
    public enum IndexBuild: String, Sendable, Equatable, CaseIterable {
        /// Before the next phase starts; the build's time is part of the phase's seconds.
        case endOfPhase = "end-of-phase"
        /// On its own thread while the following phases run; the run waits for it before the first later phase
        /// that uses one of the phase's stores, and before the run's phases end. Its seconds are reported apart
        /// (not in the phase's seconds); a failed build makes the run partial, as at the end of the phase.
        case background
    }

    public struct Stage: Sendable, Equatable {
        public var target: Double
        public var duration: Duration
    }

    public struct WeightedOperation: Sendable, Equatable {
        /// `store.operation`, e.g. `postgres.point-read`.
        public var name: String
        public var weight: Double
    }

    public struct Threshold: Sendable, Equatable {
        /// `store.operation`, a store name, or nil for the whole phase.
        public var scope: String?
        public var expression: ThresholdExpression
        /// Where it was written, `file:line`.
        public var source: String
    }

    public struct Phase: Sendable {
        public var name: String
        public var executor: Executor
        /// Threads for open/closed phases (the most that may run at once); per store for bulk.
        public var workers: Int
        public var mix: [WeightedOperation]
        public var thresholds: [Threshold]
        /// Open model: an op that cannot start within this of its intended time is dropped, not run.
        public var dropAfter: Duration
        /// Open model: an op that starts later than this after its intended time counts as late.
        public var lateAfter: Duration
        /// Bulk: drop the stores' secondary indexes before the load and build them once after it (stores that
        /// have none ignore it). The build time is part of the phase's report.
        public var deferIndexes = false
        /// With `defer_indexes`: when the build runs (`index_build:`).
        public var indexBuild: IndexBuild = .endOfPhase
        /// Hosts stack: the client groups (`client_groups: [clients-a, clients-b]`) the phase's workers run in,
        /// worker i in group i mod n, each worker thread inside its group's network namespace; empty: Kiln's root host.
        public var clientGroups: [String] = []
        /// Where a bulk phase's `rows` (else the phase) was written, `file:line:column`, for errors found once the
        /// dataset is known (more rows than the dataset holds).
        public var rowsSource: String = ""
        /// Where `client_groups` was written, `file:line:column` (empty when absent).
        public var clientGroupsSource: String = ""
        /// Open model: ops a connection may have outstanding at once (`pipeline_depth:`, 1–64; 1: no pipelining).
        /// Used only when no connection is idle; every operation of the mix must be one its client pipelines.
        public var pipelineDepth = 1
        /// Where `pipeline_depth` was written, `file:line:column` (empty when absent).
        public var pipelineDepthSource: String = ""
    }

    public var name: String
    public var file: URL
    public var description: String?
    public var stack: StackDefinition
    public var dataset: DatasetReference
    /// Prefix of every table/key/topic Kiln creates for this scenario.
    public var namespace: String
    /// Per-op timeout.
    public var timeout: Duration
    /// Drop and recreate the namespace's tables/keys/topics before the first phase.
    public var fresh: Bool
    public var phases: [Phase]
    /// The reference pipeline (sync workers from Kafka to the sink stores) that runs beside the phases, if any.
    public var pipeline: PipelineSpec? = nil
    /// The fault schedule (`faults:`, `proxy:`, `chaos:`, `heal_wait:`); nil when the scenario has none.
    public var faults: FaultScheduleSpec? = nil
    /// `regression:` limits for `kiln compare` (RegressionLimits.swift); nil when the file has none.
    public var regression: RegressionLimits? = nil
    /// `blackbox:` places the user's own services fill from the entry store (BlackBoxSpec.swift); nil when absent.
    public var blackbox: BlackBoxSpec? = nil
    /// `fault_shard:` the shard (`kiln run --shard i/n`) that runs the scenario's faults; the others run none and
    /// record their own timeline (default 0).
    public var faultShard: Int = 0
    /// Where `fault_shard` was written, `file:line:column` (for "outside 0..<n" at run time).
    public var faultShardSource: String = ""

    /// The stores the scenario drives (its phases' operations, the pipeline's Kafka topic and sinks, the proxied
    /// stores), by backend name, sorted: each needs its section in the stack (`Backends.missingSections`).
    public var stores: [String] {
        var names: Set<String> = []
        for phase in phases {
            var operations = phase.mix.map(\.name)
            if case .bulk(_, _, let bulk, _, _) = phase.executor { operations += bulk }
            for operation in operations {
                if let store = operation.split(separator: ".").first { names.insert(String(store)) }
            }
        }
        if let pipeline {
            names.insert("kafka")
            for sink in pipeline.sinks { names.insert(sink.rawValue) }
        }
        for store in faults?.proxied ?? [] { names.insert(store) }
        return names.sorted()
    }

    public static let executors = ["bulk", "constant-arrival-rate", "ramping-arrival-rate", "closed"]

    /// `knownSinks`: the pipeline sinks the backends provide (`Pipeline.knownSinks`: names, planted bugs, default
    /// staleness SLOs; KilnStores's short forms pass them).
    /// `vocabulary`: the backends' stack sections and proxiable stores (`BackendVocabulary.all` in KilnStores, which
    /// also offers `load(contentsOf:knownOperations:)` with it).
    public static func load(
        contentsOf url: URL, knownOperations: Set<String>, vocabulary: BackendVocabulary,
        knownSinks: [PipelineSpec.KnownSink]
    ) throws(SpecError) -> LoadScenario {
        let fields = try YAMLFields.document(contentsOf: url)
        return try parse(
            fields, file: url, knownOperations: knownOperations, vocabulary: vocabulary, knownSinks: knownSinks)
    }

    public static func parse(
        _ fields: YAMLFields, file url: URL, knownOperations: Set<String>, vocabulary: BackendVocabulary,
        knownSinks: [PipelineSpec.KnownSink]
    ) throws(SpecError) -> LoadScenario {
        let directory = url.deletingLastPathComponent()
        let name = try fields.optionalString("name") ?? url.deletingPathExtension().lastPathComponent
        // The name becomes part of run directory names: a file-name-safe word of at most 100 characters.
        guard name.range(of: #"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"#, options: .regularExpression) != nil else {
            throw fields.error(
                "name", "expected letters, digits, '.', '_' or '-' (at most 100, used in run directory names), found '"
                    + "\(name.prefix(60))\(name.count > 60 ? "…" : "")'")
        }
        let description = try fields.optionalString("description")
        let stack = try StackReference.resolve(fields, key: "stack", relativeTo: directory, vocabulary: vocabulary)

        let datasetFields = try fields.mapping("dataset")
        let specPath = try datasetFields.string("spec")
        let specURL = URL(fileURLWithPath: specPath, relativeTo: directory).standardizedFileURL
        guard StackReference.isRegularFile(specURL) else {
            throw datasetFields.error("spec", "dataset spec not found (or not a file): \(specURL.path)")
        }
        let seed = UInt64(try datasetFields.int("seed", default: 42, range: 0...Int.max))
        let rowsAt = datasetFields.location("rows")
        let rows = datasetFields.contains("rows") ? Int64(try datasetFields.count("rows")) : nil
        try datasetFields.finish()

        let namespace = try fields.optionalString("namespace") ?? "kiln"
        guard namespace.range(of: #"^[a-z][a-z0-9_]{0,30}$"#, options: .regularExpression) != nil else {
            throw fields.error("namespace", "expected lower-case letters, digits and _ (at most 31), found '\(namespace)'")
        }
        let timeout = try fields.duration("timeout", default: .seconds(10))
        let fresh = try fields.bool("fresh", default: true)
        let faultShardAt = fields.location("fault_shard")
        let faultShard = try fields.int("fault_shard", default: 0, range: 0...9_999)
        let stores = Set(knownOperations.compactMap { $0.split(separator: ".").first.map(String.init) })

        var phases: [Phase] = []
        for phaseFields in try fields.mappings("phases") {
            phases.append(try parsePhase(phaseFields, knownOperations: knownOperations, stores: stores))
        }
        if phases.isEmpty { throw fields.error("phases", "a scenario needs at least one phase") }
        var seen: Set<String> = []
        for (index, phase) in phases.enumerated() where !seen.insert(phase.name).inserted {
            throw fields.error("phases", "phase \(index + 1): the name '\(phase.name)' is used twice")
        }
        let pipeline = try fields.optionalMapping("pipeline").map { (spec) throws(SpecError) in
            try PipelineSpec.parse(spec, knownSinks: knownSinks)
        }
        let regression = try fields.optionalMapping("regression").map { (block) throws(SpecError) in
            try RegressionLimits.parse(block)
        }
        let faults = try FaultScheduleSpec.parse(fields, proxiable: vocabulary.proxiable)
        let blackbox = try fields.optionalMapping("blackbox").map { (block) throws(SpecError) in
            try BlackBoxSpec.parse(block)
        }
        try fields.finish()
        var scenario = LoadScenario(
            name: name, file: url, description: description, stack: stack,
            dataset: DatasetReference(
                spec: specURL, seed: seed, rows: rows, rowsSource: "\(url.path):\(rowsAt.line):\(rowsAt.column)"), namespace: namespace, timeout: timeout,
            fresh: fresh, phases: phases, pipeline: pipeline, faults: faults, regression: regression,
            blackbox: blackbox)
        scenario.faultShard = faultShard
        scenario.faultShardSource = "\(url.path):\(faultShardAt.line):\(faultShardAt.column)"
        return scenario
    }

    static func parsePhase(_ fields: YAMLFields, knownOperations: Set<String>, stores: Set<String>) throws(SpecError)
        -> Phase
    {
        let name = try fields.string("name")
        let rowsAt = fields.location("rows")
        let executorName = try fields.string("executor")
        let executor: Executor
        var mix: [WeightedOperation] = []
        var deferIndexes = false
        var indexBuild = IndexBuild.endOfPhase
        let workers: Int
        switch executorName {
        case "bulk":
            let rows = Int64(try fields.count("rows"))
            let batch = try fields.count("batch", default: 10_000, range: 1...10_000_000)
            workers = try fields.int("workers", default: 1, range: 1...256)
            let entries = try fields.strings("stores")
            var operations: [String] = []
            for (index, entry) in entries.enumerated() {
                // `store` means its `bulk` operation; `store.operation` names another bulk operation.
                let name = entry.text.contains(".") ? entry.text : "\(entry.text).bulk"
                let store = String(name.split(separator: ".")[0])
                let field = "\(fields.fieldPath("stores"))[\(index)]"
                guard stores.contains(store) else {
                    throw SpecError(
                        file: fields.file, line: entry.line, column: entry.column, field: field,
                        message: "unknown store '\(store)' (known: \(stores.sorted().joined(separator: ", ")))")
                }
                guard knownOperations.contains(name), name.split(separator: ".")[1].hasPrefix("bulk") else {
                    throw SpecError(
                        file: fields.file, line: entry.line, column: entry.column, field: field,
                        message: "'\(entry.text)' is not a bulk operation (bulk operations: "
                            + knownOperations.filter { $0.contains(".bulk") }.sorted().joined(separator: ", ") + ")")
                }
                if operations.contains(where: { $0.hasPrefix(store + ".") }) {
                    throw SpecError(
                        file: fields.file, line: entry.line, column: entry.column, field: field,
                        message: "store '\(store)' is listed twice (one bulk operation per store and phase)")
                }
                operations.append(name)
            }
            let parallel = try fields.bool("parallel_stores", default: false)
            deferIndexes = try fields.bool("defer_indexes", default: false)
            if fields.contains("index_build") {
                guard deferIndexes else {
                    throw fields.error("index_build", "needs `defer_indexes: true` (there is no deferred build to schedule)")
                }
                indexBuild = try fields.enumeration("index_build")
            }
            executor = .bulk(rows: rows, batch: batch, operations: operations, workers: workers, parallelStores: parallel)
            mix = operations.map { WeightedOperation(name: $0, weight: 1) }
        case "constant-arrival-rate":
            let rate = try fields.double("rate", range: 0.001...10_000_000)
            executor = .constantArrivalRate(rate: rate, duration: try positiveDuration(fields, "duration"))
            workers = try fields.int("workers", default: 16, range: 1...1024)
        case "ramping-arrival-rate":
            let start = try fields.double("start_rate", default: 0, range: 0...10_000_000)
            var stages: [Stage] = []
            for stage in try fields.mappings("stages") {
                stages.append(
                    Stage(
                        target: try stage.double("target", range: 0...10_000_000),
                        duration: try positiveDuration(stage, "duration")))
                try stage.finish()
            }
            if stages.isEmpty { throw fields.error("stages", "needs at least one stage") }
            executor = .rampingArrivalRate(startRate: start, stages: stages)
            workers = try fields.int("workers", default: 16, range: 1...1024)
        case "closed":
            executor = .closed(duration: try positiveDuration(fields, "duration"))
            workers = try fields.int("workers", default: 8, range: 1...1024)
        default:
            throw fields.error(
                "executor", "unknown executor '\(executorName)' (expected \(executors.joined(separator: ", ")))")
        }
        if executorName != "bulk" {
            let mixFields = try fields.mapping("mix")
            for key in mixFields.keys {
                guard knownOperations.contains(key) else {
                    let store = key.split(separator: ".").first.map(String.init) ?? key
                    let hint = stores.contains(store)
                        ? "operations of \(store): "
                            + knownOperations.filter { $0.hasPrefix(store + ".") }.sorted().joined(separator: ", ")
                        : "stores: \(stores.sorted().joined(separator: ", ")); write store.operation"
                    throw mixFields.error(key, "unknown operation '\(key)' (\(hint))")
                }
                if key.hasSuffix(".bulk") {
                    throw mixFields.error(key, "bulk operations run in a bulk phase, not in a mix")
                }
                mix.append(WeightedOperation(name: key, weight: try mixFields.double(key, range: 0...1_000_000)))
            }
            try mixFields.finish()
            if mix.allSatisfy({ $0.weight == 0 }) { throw fields.error("mix", "needs at least one positive weight") }
        }
        var pipelineDepth = 1
        var pipelineDepthSource = ""
        if fields.contains("pipeline_depth") {
            guard executorName == "constant-arrival-rate" || executorName == "ramping-arrival-rate" else {
                throw fields.error(
                    "pipeline_depth", "only an open-model phase (constant- or ramping-arrival-rate) pipelines")
            }
            let at = fields.location("pipeline_depth")
            pipelineDepthSource = "\(fields.file):\(at.line):\(at.column)"
            pipelineDepth = try fields.int("pipeline_depth", default: 1, range: 1...64)
        }
        let dropAfter = try fields.duration("drop_after", default: .seconds(2))
        let lateAfter = try fields.duration("late_after", default: .milliseconds(10))

        var thresholds: [Threshold] = []
        if let thresholdFields = try fields.optionalMapping("thresholds") {
            for scope in thresholdFields.keys {
                let scopeName: String? = scope == "phase" ? nil : scope
                if let scopeName, !knownOperations.contains(scopeName), !stores.contains(scopeName) {
                    throw thresholdFields.error(
                        scope, "unknown scope '\(scope)' (use phase, a store name or store.operation)")
                }
                for (text, line, column) in try thresholdFields.strings(scope) {
                    do {
                        thresholds.append(
                            Threshold(
                                scope: scopeName, expression: try ThresholdExpression.parse(text),
                                source: "\(fields.file):\(line)"))
                    } catch {
                        throw SpecError(
                            file: fields.file, line: line, column: column, field: thresholdFields.fieldPath(scope),
                            message: error.message)
                    }
                }
            }
            try thresholdFields.finish()
        }
        var clientGroups: [String] = []
        var clientGroupsSource = ""
        if fields.contains("client_groups") {
            let at = fields.location("client_groups")
            clientGroupsSource = "\(fields.file):\(at.line):\(at.column)"
            for (text, line, column) in try fields.strings("client_groups") {
                guard !text.isEmpty, text.count <= 40,
                    text.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") })
                else {
                    throw SpecError(
                        file: fields.file, line: line, column: column, field: fields.fieldPath("client_groups"),
                        message: "'\(text.prefix(60))' is not a client group name (a-z, 0-9 and -, at most 40)")
                }
                guard !clientGroups.contains(text) else {
                    throw fields.error("client_groups", "'\(text)' is listed twice")
                }
                clientGroups.append(text)
            }
            guard !clientGroups.isEmpty else { throw fields.error("client_groups", "needs at least one group") }
        }
        try fields.finish()
        return Phase(
            name: name, executor: executor, workers: workers, mix: mix, thresholds: thresholds, dropAfter: dropAfter,
            lateAfter: lateAfter, deferIndexes: deferIndexes, indexBuild: indexBuild, clientGroups: clientGroups,
            rowsSource: "\(fields.file):\(rowsAt.line):\(rowsAt.column)",
            clientGroupsSource: clientGroupsSource, pipelineDepth: pipelineDepth,
            pipelineDepthSource: pipelineDepthSource)
    }

    static func positiveDuration(_ fields: YAMLFields, _ key: String) throws(SpecError) -> Duration {
        let value = try fields.duration(key)
        if value <= .zero { throw fields.error(key, "must be longer than zero") }
        return value
    }
}

/// A k6-style threshold: `METRIC OP VALUE`, e.g. `p99 < 200ms`, `error_rate < 0.1%`, `dropped == 0`,
/// `throughput > 5000`. Metrics: p50 p90 p95 p99 p99.9 p99.99 max mean (durations), error_rate (percent or
/// fraction), errors, dropped, late, ok (counts), throughput (ops/s), rows_per_second.
public struct ThresholdExpression: Sendable, Equatable, CustomStringConvertible {
    public enum Comparison: String, Sendable, CaseIterable {
        case lessOrEqual = "<=", greaterOrEqual = ">=", equal = "==", notEqual = "!=", less = "<", greater = ">"

        public func holds(_ left: Double, _ right: Double) -> Bool {
            switch self {
            case .less: left < right
            case .lessOrEqual: left <= right
            case .greater: left > right
            case .greaterOrEqual: left >= right
            case .equal: left == right
            case .notEqual: left != right
            }
        }
    }

    public static let latencyMetrics = ["p50", "p90", "p95", "p99", "p99.9", "p99.99", "max", "mean"]
    public static let countMetrics = ["errors", "dropped", "late", "ok"]
    public static let rateMetrics = ["error_rate", "throughput", "rows_per_second"]

    public var metric: String
    public var comparison: Comparison
    /// Seconds for latency metrics, a fraction (0...1) for error_rate, a plain number otherwise.
    public var value: Double
    public var text: String

    public var description: String { text }

    public struct ParseError: Error {
        public var message: String
    }

    public static func parse(_ text: String) throws(ParseError) -> ThresholdExpression {
        var found: (Range<String.Index>, Comparison)?
        for comparison in Comparison.allCases {
            if let range = text.range(of: comparison.rawValue) { found = (range, comparison); break }
        }
        guard let (range, comparison) = found else {
            throw ParseError(message: "expected METRIC OP VALUE such as 'p99 < 200ms', found '\(text)'")
        }
        let metric = text[..<range.lowerBound].trimmingCharacters(in: .whitespaces).lowercased()
        let valueText = text[range.upperBound...].trimmingCharacters(in: .whitespaces)
        let value: Double?
        if latencyMetrics.contains(metric) {
            value = DurationText.parse(valueText).map(\.seconds)
        } else if metric == "error_rate" {
            value = valueText.hasSuffix("%") ? Double(valueText.dropLast()).map { $0 / 100 } : Double(valueText)
        } else if countMetrics.contains(metric) || rateMetrics.contains(metric) {
            value = CountSuffix.parse(valueText).map(Double.init) ?? Double(valueText)
        } else {
            let known = (latencyMetrics + countMetrics + rateMetrics).joined(separator: ", ")
            throw ParseError(message: "unknown metric '\(metric)' in '\(text)' (known: \(known))")
        }
        guard let value, value.isFinite else {
            throw ParseError(message: "cannot read the value '\(valueText)' of '\(text)'")
        }
        return ThresholdExpression(metric: metric, comparison: comparison, value: value, text: text)
    }
}
