import Foundation
import KilnData
import KilnScenario
import KilnStores
import Logging

/// Shard `index` of `count` of a run (`kiln run --shard i/n`): k6's execution segments, striped. Every shard runs
/// the same scenario with the same seed; what each takes is a pure function of (index, count), so no shard needs
/// to talk to another and the union of all shards is exactly the unsharded run's plan:
/// - open model: op `k` of a phase (its operation, its random draw and its intended time all functions of k) runs in
///   shard `k mod count`. Each shard runs ⌈(total − index) / count⌉ ops: the `total mod count` leftover ops go to the
///   lowest indexes, one each, and the shards' counts add up to the total. Each shard's arrival rate is 1/count of the
///   phase's (ops keep the unsharded schedule's intended times, interleaved).
/// - bulk: a phase loading rows `[b, b + R)` in B batches gives shard i the contiguous whole batches
///   `[⌊B·i/n⌋, ⌊B·(i+1)/n⌋)` (the slices tile the range exactly; the bulk ops are the unsharded run's).
/// - writes of open and closed phases: the j-th write of shard i to a store that held `b` rows at the phase start
///   takes row `b + j·n + i` (its own residue class mod n: disjoint from every other shard's writes).
/// - closed model: shard i runs `⌊W/n⌋` workers, plus one for the `W mod n` lowest indexes (W ≥ n required).
public struct ShardSlice: Sendable, Equatable, Codable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    public init(index: Int, count: Int) throws(Invalid) {
        guard count >= 1 else { throw Invalid(description: "the shard count must be at least 1, found \(count)") }
        guard count <= 10_000 else { throw Invalid(description: "at most 10000 shards, found \(count)") }
        guard index >= 0, index < count else {
            throw Invalid(description: "shard index \(index) outside 0..<\(count)")
        }
        self.index = index
        self.count = count
    }

    /// `i/n`, e.g. `0/4`.
    public static func parse(_ text: String) throws(Invalid) -> ShardSlice {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]) else {
            throw Invalid(description: "expected INDEX/COUNT such as 0/4, found '\(text)'")
        }
        return try ShardSlice(index: index, count: count)
    }

    public var description: String { "\(index)/\(count)" }

    /// The phase-global index of this shard's j-th open-model op.
    @inline(__always)
    func globalOp(_ j: Int64) -> Int64 { j &* Int64(count) &+ Int64(index) }

    /// Ops of a phase of `total` ops that this shard runs.
    public func share(ofOps total: Int64) -> Int64 {
        total > Int64(index) ? (total - Int64(index) + Int64(count) - 1) / Int64(count) : 0
    }

    /// This shard's slice of a bulk load of `rows` rows starting at `first` in batches of `batch` rows: whole
    /// batches of the unsharded load — of its ⌈rows/batch⌉ batches, shard i takes `[⌊B·i/n⌋, ⌊B·(i+1)/n⌋)` — so the
    /// shards together run exactly the unsharded run's bulk ops, each over the same rows.
    public func bulkSlice(first: Int64, rows: Int64, batch: Int64 = 1) -> Range<Int64> {
        let batch = max(1, batch)
        let batches = rows / batch + (rows % batch == 0 ? 0 : 1)
        func offset(_ i: Int) -> Int64 {
            let (product, overflow) = Self.part(batches, i, count).multipliedReportingOverflow(by: batch)
            return overflow ? rows : min(rows, product)
        }
        return (first + offset(index))..<(first + offset(index + 1))
    }

    /// ⌊rows·i/n⌋ without overflow for any Int64 rows.
    static func part(_ rows: Int64, _ i: Int, _ n: Int) -> Int64 {
        let product = rows.multipliedFullWidth(by: Int64(i))
        return Int64(Int64(n).dividingFullWidth(product).quotient)
    }

    /// Row of this shard's j-th write to a store that held `base` rows when the phase began.
    @inline(__always)
    func writeRow(base: Int64, j: Int64) -> Int64 { base &+ j &* Int64(count) &+ Int64(index) }

    /// Closed-model workers of this shard out of the phase's `total`.
    public func workers(_ total: Int) -> Int { total / count + (index < total % count ? 1 : 0) }

    /// Open-model worker budget of this shard (each store's pool still gets at least 2).
    func openWorkers(_ total: Int) -> Int { max(1, (total + count - 1) / count) }

    /// Why the scenario's `fault_shard` cannot name the shard that runs its faults in a run of `count` shards, or nil:
    /// it must be one of the run's shards, `0..<count` (the indexes of `--shard i/n` and of JOB_COMPLETION_INDEX).
    /// The message starts with the field's `file:line:column` (the scenario file when the field is absent).
    public static func faultShardRefusal(_ scenario: LoadScenario, count: Int) -> String? {
        guard scenario.faultShard < 0 || scenario.faultShard >= count else { return nil }
        let source = scenario.faultShardSource.isEmpty ? scenario.file.path : scenario.faultShardSource
        return "\(source): fault_shard: \(scenario.faultShard) is not a shard of \(count) (0..<\(count)): the faults "
            + "would run in no shard"
    }

    /// Why `scenario` cannot run as `count` shards, or nil. Closed phases need a worker per shard; a bulk phase must
    /// not follow a closed phase that writes a store it loads (after a closed phase each shard's row count is its
    /// own, so the shards could not agree on where the bulk range starts).
    public static func refusal(_ scenario: LoadScenario, count: Int, knownWrites: Set<String>) -> String? {
        var unsettled: Set<String> = []
        for phase in scenario.phases {
            switch phase.executor {
            case .closed:
                if phase.workers < count {
                    return "phase '\(phase.name)': a closed phase of \(phase.workers) workers cannot run as \(count) shards "
                        + "(each shard needs at least one worker)"
                }
                for operation in phase.mix where operation.weight > 0 && knownWrites.contains(operation.name) {
                    unsettled.insert(String(operation.name.split(separator: ".")[0]))
                }
            case .bulk(_, _, let operations, _, _):
                for store in operations.map({ String($0.split(separator: ".")[0]) }) where unsettled.contains(store) {
                    return "phase '\(phase.name)': a bulk load of \(store) after a closed phase that writes it cannot "
                        + "be sharded (each shard's rows after a closed phase are its own)"
                }
            default:
                continue
            }
        }
        return nil
    }
}

/// `shard.json` of a shard's run directory: what `kiln merge` needs to refuse shards that do not belong together
/// (with the run directory's `scenario.yaml`, whose bytes must be equal across shards).
public struct ShardHeader: Codable, Sendable, Equatable {
    public static let fileName = "shard.json"
    public static let schemaVersion = "kiln.shard/1"

    public var schema = ShardHeader.schemaVersion
    public var index: Int
    public var count: Int
    public var scenario: String
    public var seed: UInt64
    public var datasetRows: Int64
    public var namespace: String
    /// The shard that runs the scenario's faults (`fault_shard`); the others run none.
    public var faultShard: Int
    /// The phases this shard ran (a `--phase` selection), in order.
    public var phases: [String]
    /// The fault proxies this shard's clients went through, listen address → the server behind it. Only the fault
    /// shard has them; `kiln merge` writes the server into the merged history, so the shards' ops on one server are
    /// one server's (the dual-primary check would otherwise see the proxy and the server as two primaries).
    public var proxies: [ProxyRoute]? = nil

    /// A fault proxy of the shard: clients of `store` connected to `listen`, which forwarded to `upstream`.
    public struct ProxyRoute: Codable, Sendable, Equatable {
        public var store: String
        public var listen: String
        public var upstream: String
        public init(store: String, listen: String, upstream: String) {
            self.store = store
            self.listen = listen
            self.upstream = upstream
        }
    }

    public init(
        slice: ShardSlice, scenario: String, seed: UInt64, datasetRows: Int64,
        namespace: String, faultShard: Int, phases: [String]
    ) {
        index = slice.index
        count = slice.count
        self.scenario = scenario
        self.seed = seed
        self.datasetRows = datasetRows
        self.namespace = namespace
        self.faultShard = faultShard
        self.phases = phases
    }

    enum CodingKeys: String, CodingKey {
        case schema, index, count, scenario, seed, namespace, phases, proxies
        case datasetRows = "dataset_rows"
        case faultShard = "fault_shard"
    }

    public func write(to directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: directory.appendingPathComponent(Self.fileName), options: .atomic)
    }

    public static func read(from directory: URL) throws -> ShardHeader {
        try JSONDecoder().decode(
            ShardHeader.self, from: Data(contentsOf: directory.appendingPathComponent(fileName)))
    }
}

extension PhaseContext {
    /// A shard's rows of store `storeIndex` after this phase, the same in every shard where the plan allows it:
    /// bulk `b + R` (the slices tile it); open model `b + n·max_i W_i`, where `W_i` is the number of the phase's ops
    /// in shard i that write the store (a pure function of the plan, so each shard computes every W_i); closed model
    /// `b + n·(this shard's writes)` — still disjoint from other shards (residue classes), but shard-local, which is
    /// why `ShardSlice.refusal` refuses a bulk phase after it. Called after the phase, on the controller's thread.
    func shardRowsAfterPhase(storeIndex: Int) -> Int64 {
        guard let shard else { return writeCursors[storeIndex].value }
        let base = readableRows[storeIndex]
        let n = Int64(shard.count)
        switch phase.executor {
        case .bulk(let rows, _, _, _, _):
            return base + rows
        case .closed:
            return base + n * writeCursors[storeIndex].value
        case .constantArrivalRate(let rate, let duration):
            let times = ArrivalTimes.constant(rate: rate, seconds: Double(duration.nanoseconds) / 1e9)
            return base + n * maxWritesPerShard(storeIndex: storeIndex, ops: times.count, shard: shard)
        case .rampingArrivalRate(let startRate, let stages):
            let times = ArrivalTimes.ramping(
                startRate: startRate, targets: stages.map { ($0.target, Double($0.duration.nanoseconds) / 1e9) })
            return base + n * maxWritesPerShard(storeIndex: storeIndex, ops: times.count, shard: shard)
        }
    }

    /// max over shards of the ops among `0..<ops` that are writes to `storeIndex`.
    func maxWritesPerShard(storeIndex: Int, ops: Int64, shard: ShardSlice) -> Int64 {
        var perShard = Array(repeating: Int64(0), count: shard.count)
        var k: Int64 = 0
        while k < ops {
            let operation = operations[self.operation(of: k)]
            if operation.kind == .write, operation.storeIndex == storeIndex {
                perShard[Int(k % Int64(shard.count))] += 1
            }
            k += 1
        }
        return perShard.max() ?? 0
    }
}

extension LoadRun {
    /// `kiln run SCENARIO --setup-only`: what a run does to its stores before its first phase (teardown when
    /// `fresh`, then setup), once, for the shards of a sharded run (which never tear down: one shard's teardown would
    /// wipe the rows another already wrote). Blocking.
    public static func setUpOnly(
        scenario: LoadScenario, dataset: Dataset, environment: [String: String], logger: Logger,
        drivers: [StoreDriver] = StoreRegistry.drivers
    ) throws(Failure) -> [String] {
        var used: [String] = []
        for phase in scenario.phases {
            for weighted in phase.mix where weighted.weight > 0 {
                let store = String(weighted.name.split(separator: ".")[0])
                if !used.contains(store) { used.append(store) }
            }
        }
        let context = ClientContext(
            stack: scenario.stack, dataset: dataset, namespace: scenario.namespace, timeout: scenario.timeout,
            environment: environment, logger: logger)
        for store in used {
            guard let driver = drivers.first(where: { $0.name == store }) else { continue }
            try setUp(driver, context, fresh: scenario.fresh, logger: logger)
        }
        return used
    }

    /// Opens a client of `driver`'s store and runs its setup (after its teardown when `fresh`), then closes it: what
    /// a run does to each store it uses before its first phase.
    /// - Throws: `Failure` `stackUnavailable` naming the store when it cannot be opened or set up.
    static func setUp(
        _ driver: StoreDriver, _ context: ClientContext, fresh: Bool, logger: Logger
    ) throws(Failure) {
        do {
            let client = try driver.open(context)
            defer { client.close() }
            if fresh { try client.teardown() }
            try client.setup()
            logger.info("\(driver.name): ready (namespace \(context.namespace)\(fresh ? ", fresh" : ""))")
        } catch {
            throw Failure(code: .stackUnavailable, message: "\(driver.name): setup failed: \(error)")
        }
    }
}
