import Foundation
import Histogram
import KilnCore
import KilnData
import KilnHTTP
import KilnLoad
import KilnScenario
import KilnStores
import Logging
import Synchronization
import Testing

/// A test double for the *engine* (not for a server): an op that takes `serviceMillis`, or blocks while the
/// shared gate is closed — the way a SIGSTOPped server stalls its clients. Server clients are tested against
/// the real servers in their own suites.
final class EngineProbe: Sendable {
    let serviceMicros: Int
    let gateClosed = Atomic<Bool>(false)
    let invocations = Atomic<Int>(0)
    /// Bulk ranges received, in arrival order.
    let bulkRanges = Mutex<[Range<Int64>]>([])
    let writtenRows = Mutex<[Int64]>([])

    /// Secondary indexes (`defer_indexes`): how long a build takes, whether it fails, and — with `logsEvents` — the
    /// order of drops, builds and ops, each as "<name>:<event>".
    let indexBuildMicros: Int
    let indexBuildFails: Bool
    let logsEvents: Bool
    let events = Mutex<[String]>([])

    init(serviceMicros: Int, indexBuildMicros: Int = 0, indexBuildFails: Bool = false, logsEvents: Bool = false) {
        self.serviceMicros = serviceMicros
        self.indexBuildMicros = indexBuildMicros
        self.indexBuildFails = indexBuildFails
        self.logsEvents = logsEvents
    }

    func log(_ event: String) {
        if logsEvents { events.withLock { $0.append(event) } }
    }

    var driver: StoreDriver { driver(named: "probe") }
    func driver(named name: String) -> StoreDriver {
        StoreDriver(name, EngineProbeClient.self) { _ in EngineProbeClient(probe: self, name: name) }
    }
    var failingDriver: StoreDriver {
        StoreDriver("down", EngineProbeClient.self) { _ in throw CannotConnect() }
    }
    /// Opens once (for setup), then never again: the server died after setup.
    let opens = Atomic<Int>(0)
    var diesAfterSetupDriver: StoreDriver {
        StoreDriver("down", EngineProbeClient.self) { _ in
            if self.opens.add(1, ordering: .relaxed).oldValue > 0 { throw CannotConnect() }
            return EngineProbeClient(probe: self, name: "down")
        }
    }

    struct CannotConnect: Error {}
}

enum EngineProbeOperation: String, StoreOperation {
    case wait, write, bulk

    static let store = "probe"

    var kind: OperationDescriptor.Kind {
        switch self {
        case .wait: .read
        case .write: .write
        case .bulk: .bulk
        }
    }

    var summary: String {
        switch self {
        case .wait: "takes the probe's service time"
        case .write: "records the row"
        case .bulk: "records the range"
        }
    }
}

final class EngineProbeClient: SecondaryIndexes {
    let probe: EngineProbe
    let name: String

    init(probe: EngineProbe, name: String) {
        self.probe = probe
        self.name = name
    }

    struct IndexBuildFailed: Error {}

    func dropSecondaryIndexes() throws { probe.log("\(name):drop") }

    func buildSecondaryIndexes() throws {
        probe.log("\(name):build-start")
        usleep(UInt32(probe.indexBuildMicros))
        probe.log("\(name):build-end")
        if probe.indexBuildFails { throw IndexBuildFailed() }
    }

    func setup() throws {}
    func teardown() throws {}
    func close() {}

    func invoke(_ operation: EngineProbeOperation, _ request: Request) -> Outcome {
        probe.invocations.add(1, ordering: .relaxed)
        probe.log("\(name):op")
        while probe.gateClosed.load(ordering: .acquiring) { usleep(200) }
        switch operation {
        case .write: probe.writtenRows.withLock { $0.append(request.row) }
        case .bulk: probe.bulkRanges.withLock { $0.append(request.rows) }
        case .wait: break
        }
        if probe.serviceMicros > 0 { usleep(UInt32(probe.serviceMicros)) }
        return .ok
    }
}

enum EngineFixture {
    static let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    static func scenario(_ phases: String, operations: Set<String>, rows: String = "200K") throws -> LoadScenario {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("scn"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("scenario.yaml")
        let text = """
            name: engine-test
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset:
              spec: \(Fixtures.specURL.path)
              seed: 3
              rows: \(rows)
            phases:
            \(phases)
            """
        try text.write(to: file, atomically: true, encoding: .utf8)
        return try LoadScenario.load(contentsOf: file, knownOperations: operations)
    }

    static func run(
        _ scenario: LoadScenario, drivers: [StoreDriver], stop: StopFlag = StopFlag(), observer: PhaseObserver? = nil
    ) throws -> (RunReport, URL) {
        let dataset = try Dataset(spec: Fixtures.spec, seed: scenario.dataset.seed, rows: scenario.dataset.rows)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let directory = try RunDirectory(root: root, id: "run", scenarioFile: scenario.file)
        let run = try LoadRun(
            scenario: scenario, dataset: dataset, directory: directory, stop: stop, environment: [:], revision: nil,
            logger: logger, progress: observer, drivers: drivers)
        return (try run.run(), directory.url)
    }
}

@Suite("Arrival times of open-model phases")
struct ArrivalTimesTests {
    @Test func aConstantRateSpacesOpsEvenly() {
        let times = ArrivalTimes.constant(rate: 500, seconds: 2)
        #expect(times.count == 1000)
        #expect(times.time(of: 0) == 0)
        #expect(times.time(of: 1) == 2_000_000)
        #expect(times.time(of: 999) == 1_998_000_000)
    }

    @Test func aRampPlacesOpsWhereTheRateIntegralReachesThem() {
        // 0 -> 100/s over 10 s: 500 ops; op k at t = sqrt(2k/10) (rate 10·t, integral 5 t²).
        let times = ArrivalTimes.ramping(startRate: 0, targets: [(100, 10), (100, 5)])
        #expect(times.count == 500 + 500)
        for k: Int64 in [1, 20, 125, 320, 499] {
            let expected = (Double(k) / 5).squareRoot()
            #expect(abs(Double(times.time(of: k)) / 1e9 - expected) < 1e-6)
        }
        // The flat stage after the ramp: op 500 + j at 10 s + j/100.
        #expect(abs(Double(times.time(of: 750)) / 1e9 - 12.5) < 1e-6)
        let all = (0..<times.count).map { times.time(of: $0) }
        #expect(zip(all, all.dropFirst()).allSatisfy { $0 <= $1 })
    }
}

@Suite("Operation statistics merge")
struct OperationStatsTests {
    @Test func mergingPerWorkerStatsEqualsRecordingEverythingInOne() {
        var workers = [OperationStats(), OperationStats(), OperationStats()]
        var single = OperationStats()
        for value in 1...30_000 {
            let nanos = UInt64(value * value % 9_973 + 1) * 1_000
            let outcome: OutcomeKind = value % 97 == 0 ? .fail : (value % 89 == 0 ? .info : .ok)
            let errorClass = outcome == .ok ? nil : "boom"
            workers[value % 3].record(outcome, errorClass: errorClass, latencyNanos: nanos, start: 10, end: 10 + nanos, rows: 1)
            single.record(outcome, errorClass: errorClass, latencyNanos: nanos, start: 10, end: 10 + nanos, rows: 1)
        }
        var merged = OperationStats()
        for stats in workers { merged.add(stats) }
        #expect(merged.ok == single.ok && merged.fail == single.fail && merged.info == single.info)
        #expect(merged.errors == single.errors)
        for percentile in [50.0, 90, 99, 99.9, 100] {
            #expect(merged.latencySeconds(percentile: percentile) == single.latencySeconds(percentile: percentile))
        }
        #expect(merged.latency.totalCount == 30_000)
        #expect(single.latencySeconds(percentile: 100)! > 9.9e-3)
    }
}

@Suite("Load scenario validation")
struct LoadScenarioValidationTests {
    static let operations: Set<String> = ["probe.wait", "probe.write", "probe.bulk"]

    func error(_ phases: String) -> SpecError? {
        do {
            _ = try EngineFixture.scenario(phases, operations: Self.operations)
            return nil
        } catch let error as SpecError {
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    @Test func aValidScenarioParses() throws {
        let scenario = try EngineFixture.scenario(
            """
              - name: load
                executor: bulk
                rows: 1K
                batch: 100
                stores: [probe]
              - name: mixed
                executor: ramping-arrival-rate
                start_rate: 10
                stages:
                  - {target: 100, duration: 2s}
                workers: 4
                mix: {probe.wait: 3, probe.write: 1}
                thresholds:
                  probe.wait: ["p99 < 200ms", "error_rate < 0.1%"]
                  phase: dropped == 0
            """, operations: Self.operations)
        #expect(scenario.phases.count == 2)
        #expect(scenario.phases[1].mix.map(\.name) == ["probe.wait", "probe.write"])
        #expect(scenario.phases[1].thresholds.count == 3)
        #expect(scenario.phases[1].thresholds[1].expression.value == 0.001)
        #expect(scenario.phases[1].thresholds[0].expression.value == 0.2)
    }

    @Test func anUnknownKeyNamesFileLineAndField() throws {
        let found = try #require(
            error(
                """
                  - name: mixed
                    executor: closed
                    duration: 1s
                    wrokers: 4
                    mix: {probe.wait: 1}
                """))
        #expect(found.line == 11)
        #expect(found.field == "phases[0].wrokers")
        #expect(found.description.contains("scenario.yaml:11"))
        #expect(found.message.contains("unknown field"))
    }

    @Test func anUnknownOperationListsTheStoresOperations() throws {
        let found = try #require(error("  - {name: m, executor: closed, duration: 1s, mix: {probe.wiat: 1}}"))
        #expect(found.field == "phases[0].mix.probe.wiat")
        #expect(found.message.contains("probe.wait"))
    }

    @Test(arguments: [
        ("  - {name: m, executor: closed, duration: 1s, mix: {probe.wait: 1}, thresholds: {phase: [p99 < soon]}}",
         "phases[0].thresholds.phase", "cannot read the value"),
        ("  - {name: m, executor: closed, duration: 1s, mix: {probe.wait: 1}, thresholds: {phase: [p42 < 1s]}}",
         "phases[0].thresholds.phase", "unknown metric"),
        ("  - {name: m, executor: open, duration: 1s, mix: {probe.wait: 1}}", "phases[0].executor", "unknown executor"),
        ("  - {name: m, executor: constant-arrival-rate, rate: -5, duration: 1s, mix: {probe.wait: 1}}",
         "phases[0].rate", "between"),
        ("  - {name: m, executor: constant-arrival-rate, rate: 5, duration: 0s, mix: {probe.wait: 1}}",
         "phases[0].duration", "longer than zero"),
        ("  - {name: m, executor: closed, duration: 1s, mix: {probe.wait: 0}}", "phases[0].mix", "positive weight"),
        ("  - {name: m, executor: bulk, rows: 10, stores: [nowhere]}", "phases[0].stores[0]", "unknown store"),
        ("  - {name: m, executor: closed, duration: 1s, mix: {probe.bulk: 1}}", "phases[0].mix.probe.bulk",
         "bulk phase"),
    ])
    func badPhasesAreRejectedWithTheField(phase: String, field: String, message: String) throws {
        let found = try #require(error(phase))
        #expect(found.field == field)
        #expect(found.message.contains(message), "\(found)")
        #expect(found.line == 8)
    }

    @Test func bulkBeyondTheDatasetIsRejectedBeforeAnythingRuns() throws {
        let probe = EngineProbe(serviceMicros: 0)
        let scenario = try EngineFixture.scenario(
            "  - {name: b, executor: bulk, rows: 300K, stores: [probe]}", operations: Self.operations, rows: "200K")
        #expect(throws: LoadRun.Failure.self) { try EngineFixture.run(scenario, drivers: [probe.driver]) }
        #expect(probe.invocations.load(ordering: .relaxed) == 0)
    }
}

@Suite("Deferred index builds")
struct DeferredIndexBuildTests {
    static let operations: Set<String> = ["probe.wait", "probe.bulk", "other.wait"]

    static func scenario(indexBuild: String) throws -> LoadScenario {
        try EngineFixture.scenario(
            """
              - {name: load, executor: bulk, rows: 1K, batch: 100, stores: [probe], defer_indexes: true\(indexBuild)}
              - {name: elsewhere, executor: closed, duration: 300ms, workers: 1, mix: {other.wait: 1}}
              - {name: reads, executor: closed, duration: 200ms, workers: 1, mix: {probe.wait: 1}}
            """, operations: operations, rows: "2K")
    }

    /// The order of one store's events, with each run of ops collapsed to one "op".
    static func order(_ events: [String], of store: String) -> [String] {
        events.filter { $0.hasPrefix(store + ":") }.map { String($0.dropFirst(store.count + 1)) }
            .reduce(into: []) { if !($1 == "op" && $0.last == "op") { $0.append($1) } }
    }

    @Test func aBackgroundBuildRunsBesideTheNextPhaseAndThePhaseThatUsesTheStoreWaitsForIt() throws {
        let probe = EngineProbe(serviceMicros: 1_000, indexBuildMicros: 800_000, logsEvents: true)
        let (report, _) = try EngineFixture.run(
            try Self.scenario(indexBuild: ", index_build: background"),
            drivers: [probe.driver(named: "probe"), probe.driver(named: "other")])
        let events = probe.events.withLock { $0 }
        // probe: the bulk load's ops, then the build, then (only after it ended) the reads phase's ops.
        #expect(Self.order(events, of: "probe") == ["drop", "op", "build-start", "build-end", "op"], "\(events)")
        // The other store's phase ran while the build was going.
        let start = try #require(events.firstIndex(of: "probe:build-start"))
        let end = try #require(events.firstIndex(of: "probe:build-end"))
        #expect(events[start..<end].contains("other:op"), "\(events)")
        let load = report.phases[0]
        #expect(load.indexBuildInBackground == true)
        #expect((load.indexBuildSeconds ?? 0) >= 0.8)
        #expect(load.seconds < 0.8, "a background build is not part of the phase's seconds")
        #expect(report.verdict == .passed)
    }

    @Test func theDefaultBuildsAtTheEndOfThePhaseBeforeTheNextOne() throws {
        let probe = EngineProbe(serviceMicros: 1_000, indexBuildMicros: 300_000, logsEvents: true)
        let (report, _) = try EngineFixture.run(
            try Self.scenario(indexBuild: ""), drivers: [probe.driver(named: "probe"), probe.driver(named: "other")])
        let events = probe.events.withLock { $0 }
        let end = try #require(events.firstIndex(of: "probe:build-end"))
        let firstOther = try #require(events.firstIndex(of: "other:op"))
        #expect(end < firstOther, "\(events)")
        #expect(report.phases[0].indexBuildInBackground == nil)
        #expect((report.phases[0].seconds) >= 0.3, "the build is part of the phase's seconds")
    }

    @Test func aFailedBackgroundBuildMakesTheRunPartialEvenWhenNoLaterPhaseUsesTheStore() throws {
        let probe = EngineProbe(serviceMicros: 1_000, indexBuildMicros: 100_000, indexBuildFails: true)
        let scenario = try EngineFixture.scenario(
            """
              - {name: load, executor: bulk, rows: 1K, batch: 100, stores: [probe], defer_indexes: true, index_build: background}
              - {name: elsewhere, executor: closed, duration: 50ms, workers: 1, mix: {other.wait: 1}}
            """, operations: Self.operations, rows: "2K")
        let (report, _) = try EngineFixture.run(
            scenario, drivers: [probe.driver(named: "probe"), probe.driver(named: "other")])
        #expect(report.phases[0].indexBuildError != nil)
        #expect(report.verdict != .passed)
    }

    @Test(arguments: [
        ("index_build: background", "needs `defer_indexes: true`"),
        ("defer_indexes: true, index_build: later", "later"),
    ])
    func aBadIndexBuildIsRejectedWithTheField(field: String, message: String) throws {
        do {
            _ = try EngineFixture.scenario(
                "  - {name: load, executor: bulk, rows: 1K, stores: [probe], \(field)}", operations: Self.operations)
            Issue.record("accepted: \(field)")
        } catch let error as SpecError {
            #expect(error.field == "phases[0].index_build")
            #expect(error.line == 8)
            #expect(error.message.contains(message), "\(error)")
        }
    }
}

@Suite("Executors", .serialized)
struct ExecutorTests {
    static let operations: Set<String> = ["probe.wait", "probe.write", "probe.bulk", "down.wait", "other.wait"]

    /// Records when the run started the fault schedule's clock (`RunCompanion.phasesStarting`).
    final class FaultClockRecorder: RunCompanion, @unchecked Sendable {
        // Invariant: `startedAt` is read or written with `lock` held.
        let lock = NSLock()
        var startedAt: Int64?
        func phasesStarting(sinkProcesses: SinkProcessControl?) {
            lock.withLock { startedAt = MonotonicClock.wallMillis() }
        }
        func phasesEnded() {}
        var faultTimeline: [RunReport.Fault] { [] }
    }

    @Test func theFaultClockAndThePhaseStartOnceTheWorkersHaveConnected() throws {
        // Each client takes 300 ms to connect. A fault `at: 1s` must fall 1 s after the phase clock (whose second k
        // ends k s after the phase's started_at), not 1 s after a moment before the connections: then the second
        // before the fault is whole in the timeline (a drill's baseline). Both clocks start once every worker is
        // connected, together.
        let probe = EngineProbe(serviceMicros: 100)
        let connected = Mutex<Int64>(0)
        let slow = StoreDriver("probe", EngineProbeClient.self) { _ in
            usleep(300_000)
            connected.withLock { $0 = max($0, MonotonicClock.wallMillis()) }
            return EngineProbeClient(probe: probe, name: "probe")
        }
        let scenario = try EngineFixture.scenario(
            "  - {name: open, executor: constant-arrival-rate, rate: 100, duration: 300ms, workers: 4, mix: {probe.wait: 1}}",
            operations: Self.operations)
        let dataset = try Dataset(spec: Fixtures.spec, seed: scenario.dataset.seed, rows: scenario.dataset.rows)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let directory = try RunDirectory(root: root, id: "run", scenarioFile: scenario.file)
        let run = try LoadRun(
            scenario: scenario, dataset: dataset, directory: directory, stop: StopFlag(), environment: [:],
            revision: nil, logger: EngineFixture.logger, progress: nil, drivers: [slow])
        let recorder = FaultClockRecorder()
        run.companion = recorder
        let report = try run.run()
        let faultClock = try #require(recorder.lock.withLock { recorder.startedAt })
        let lastConnected = connected.withLock { $0 }
        let phaseStart = report.phases[0].startedAt
        #expect(faultClock >= lastConnected, "fault clock \(faultClock) before the last connection \(lastConnected)")
        #expect(phaseStart >= lastConnected, "started_at \(phaseStart) before the last connection \(lastConnected)")
        #expect(abs(faultClock - phaseStart) <= 50, "fault clock \(faultClock), phase \(phaseStart)")
        #expect(report.phases[0].operations[0].ok == 30)
    }

    @Test func openModelLatencyCountsTheStallFromTheIntendedTime() throws {
        // 500 ops/s for 2 s; the "server" stalls for 400 ms at 0.6 s. Every op still runs (drop_after 2 s), and
        // the ops due during the stall report ~up to 400 ms from their intended time, while their service time
        // (from the actual start) stays small for all but the ones caught inside the stall.
        let probe = EngineProbe(serviceMicros: 200)
        let scenario = try EngineFixture.scenario(
            """
              - name: open
                executor: constant-arrival-rate
                rate: 500
                duration: 2s
                workers: 8
                mix: {probe.wait: 1}
            """, operations: Self.operations)
        let stall = Thread {
            usleep(600_000)
            probe.gateClosed.store(true, ordering: .releasing)
            usleep(400_000)
            probe.gateClosed.store(false, ordering: .releasing)
        }
        stall.start()
        let (report, _) = try EngineFixture.run(scenario, drivers: [probe.driver])
        let operation = try #require(report.phases.first?.operations.first)
        #expect(report.phases[0].plannedOps == 1000)
        #expect(operation.ok == 1000)
        #expect(operation.dropped == 0)
        let maxLatency = try #require(operation.latencyMs.max)
        #expect(maxLatency > 300 && maxLatency < 1000, "max \(maxLatency) ms")
        // ~200 ops were due during the stall; all of them are late.
        #expect(operation.late >= 150 && operation.late <= 400, "late \(operation.late)")
        let p50 = try #require(operation.latencyMs.p50)
        #expect(p50 < 20)
        #expect(report.verdict == .passed)
    }

    @Test func opsThatCannotStartInTimeAreDroppedNotRun() throws {
        let probe = EngineProbe(serviceMicros: 0)
        let scenario = try EngineFixture.scenario(
            """
              - name: open
                executor: constant-arrival-rate
                rate: 400
                duration: 1500ms
                workers: 4
                drop_after: 100ms
                mix: {probe.wait: 1}
                thresholds:
                  phase: [dropped == 0]
            """, operations: Self.operations)
        let stall = Thread {
            usleep(300_000)
            probe.gateClosed.store(true, ordering: .releasing)
            usleep(600_000)
            probe.gateClosed.store(false, ordering: .releasing)
        }
        stall.start()
        let (report, _) = try EngineFixture.run(scenario, drivers: [probe.driver])
        let operation = try #require(report.phases.first?.operations.first)
        #expect(operation.ok + operation.dropped == 600)
        // ~240 ops were due in the 600 ms stall; those more than 100 ms overdue when a worker got free are dropped.
        #expect(operation.dropped > 100 && operation.dropped < 260, "dropped \(operation.dropped)")
        #expect(report.phases[0].thresholds.first?.passed == false)
        #expect(report.verdict == .thresholdsFailed)
        #expect(report.exitCode == KilnExitCode.thresholdFailed.rawValue)
    }

    @Test func bulkHandsOutEveryRowOnceAndWritesContinueAfterIt() throws {
        let probe = EngineProbe(serviceMicros: 300)
        let scenario = try EngineFixture.scenario(
            """
              - {name: load, executor: bulk, rows: 10_007, batch: 100, workers: 3, stores: [probe]}
              - {name: more, executor: closed, duration: 300ms, workers: 2, mix: {probe.write: 1}}
            """, operations: Self.operations)
        let (report, directory) = try EngineFixture.run(scenario, drivers: [probe.driver])
        let ranges = probe.bulkRanges.withLock { $0 }.sorted { $0.lowerBound < $1.lowerBound }
        #expect(ranges.first?.lowerBound == 0)
        #expect(ranges.last?.upperBound == 10_007)
        #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
        #expect(report.phases[0].operations[0].rows == 10_007)
        let written = probe.writtenRows.withLock { $0 }.sorted()
        #expect(!written.isEmpty)
        #expect(written == Array(10_007..<(10_007 + Int64(written.count))))
        #expect(report.storeRows["probe"] == 10_007 + Int64(written.count))
        // The history has one line per bulk batch and per write.
        let history = try String(contentsOf: directory.appendingPathComponent("history.jsonl"), encoding: .utf8)
        let lines = history.split(separator: "\n")
        #expect(lines.count == ranges.count + written.count)
        #expect(lines.first?.contains(#""op":"probe.bulk""#) == true)
    }

    @Test func writesBeyondTheDatasetFailAsExhaustedInsteadOfInventingRows() throws {
        let probe = EngineProbe(serviceMicros: 0)
        let scenario = try EngineFixture.scenario(
            "  - {name: more, executor: closed, duration: 400ms, workers: 2, mix: {probe.write: 1}}",
            operations: Self.operations, rows: "20K")
        let (report, _) = try EngineFixture.run(scenario, drivers: [probe.driver])
        let operation = report.phases[0].operations[0]
        #expect(operation.ok == 20_000)
        #expect(operation.fail > 0)
        #expect(operation.errors["dataset-exhausted"] == operation.fail)
        #expect(probe.writtenRows.withLock { $0.count } == 20_000)
        #expect(report.storeRows["probe"] == 20_000)
    }

    @Test func aStoreThatCannotBeSetUpStopsTheRunBeforeAnyLoad() throws {
        let probe = EngineProbe(serviceMicros: 0)
        let scenario = try EngineFixture.scenario(
            "  - {name: m, executor: constant-arrival-rate, rate: 200, duration: 500ms, mix: {probe.wait: 1, down.wait: 1}}",
            operations: Self.operations)
        let failure = #expect(throws: LoadRun.Failure.self) {
            try EngineFixture.run(scenario, drivers: [probe.driver, probe.failingDriver])
        }
        #expect(failure?.code == .stackUnavailable)
        #expect(failure?.message.contains("down") == true)
        #expect(probe.invocations.load(ordering: .relaxed) == 0)
    }

    @Test func aStoreThatDiesMidRunIsRecordedAsFailedOpsNotFatal() throws {
        let probe = EngineProbe(serviceMicros: 0)
        let scenario = try EngineFixture.scenario(
            "  - {name: m, executor: constant-arrival-rate, rate: 200, duration: 500ms, mix: {probe.wait: 1, down.wait: 1}}",
            operations: Self.operations)
        let (report, _) = try EngineFixture.run(scenario, drivers: [probe.driver, probe.diesAfterSetupDriver])
        let operations = report.phases[0].operations
        let down = try #require(operations.first { $0.name == "down.wait" })
        let up = try #require(operations.first { $0.name == "probe.wait" })
        #expect(down.ok == 0 && down.fail > 20)
        #expect(down.errors["connect"] == down.fail)
        #expect(up.ok > 20 && up.fail == 0)
        #expect(up.ok + down.fail == 100)
    }

    @Test func aStopEndsTheRunWithinTwoSecondsAndTheReportSaysPartial() throws {
        let probe = EngineProbe(serviceMicros: 100)
        let scenario = try EngineFixture.scenario(
            """
              - {name: long, executor: constant-arrival-rate, rate: 200, duration: 60s, workers: 4, mix: {probe.wait: 1}}
              - {name: never, executor: closed, duration: 60s, mix: {probe.wait: 1}}
            """, operations: Self.operations)
        let stop = StopFlag()
        let started = Date()
        Thread {
            usleep(1_000_000)
            stop.raise()
        }.start()
        let (report, directory) = try EngineFixture.run(scenario, drivers: [probe.driver], stop: stop)
        #expect(Date().timeIntervalSince(started) < 3.5)
        #expect(report.interrupted)
        #expect(!report.complete)
        #expect(report.phases.count == 1)
        #expect(report.phases[0].complete == false)
        #expect(report.verdict == .interrupted)
        let written = try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        #expect(written.interrupted && written.phases.count == 1)
        #expect(written.phases[0].operations[0].ok > 100)
    }

    @Test func theMetricsEndpointServesPrometheusTextDuringTheRun() throws {
        let probe = EngineProbe(serviceMicros: 100)
        let scenario = try EngineFixture.scenario(
            "  - {name: m, executor: constant-arrival-rate, rate: 300, duration: 1500ms, mix: {probe.wait: 1}}",
            operations: Self.operations)
        let endpoint = try MetricsEndpoint(port: 0, next: nil, logger: EngineFixture.logger)
        defer { endpoint.close() }
        let scraped = Mutex<String?>(nil)
        let port = endpoint.port
        let scraper = Thread {
            usleep(1_300_000)
            let client = try? HTTPClient()
            let response = try? client?.get("http://127.0.0.1:\(port)/metrics")
            scraped.withLock { $0 = response.map { String(decoding: $0.body, as: UTF8.self) } }
        }
        scraper.start()
        _ = try EngineFixture.run(scenario, drivers: [probe.driver], observer: endpoint)
        let text = try #require(scraped.withLock { $0 })
        #expect(text.contains(#"kiln_ops_total{phase="m",op="probe.wait",outcome="ok"}"#), "\(text)")
        #expect(text.contains("kiln_latency_seconds"))
        #expect(text.contains("# TYPE kiln_ops_total counter"))
    }

    @Test func aStalledStoreDoesNotStarveTheOtherStoresOps() throws {
        // `probe` stalls for 1.2 s; `other` keeps answering in 0.2 ms. With one pool per store, other's ops keep
        // their own latency and none of them is dropped, while probe's ops show the stall.
        let stalled = EngineProbe(serviceMicros: 200)
        let healthy = EngineProbe(serviceMicros: 200)
        let scenario = try EngineFixture.scenario(
            """
              - name: open
                executor: constant-arrival-rate
                rate: 400
                duration: 2500ms
                workers: 8
                drop_after: 500ms
                mix: {probe.wait: 1, other.wait: 1}
            """, operations: Self.operations)
        Thread {
            usleep(500_000)
            stalled.gateClosed.store(true, ordering: .releasing)
            usleep(1_200_000)
            stalled.gateClosed.store(false, ordering: .releasing)
        }.start()
        let (report, _) = try EngineFixture.run(
            scenario, drivers: [stalled.driver(named: "probe"), healthy.driver(named: "other")])
        let operations = report.phases[0].operations
        let other = try #require(operations.first { $0.name == "other.wait" })
        let probe = try #require(operations.first { $0.name == "probe.wait" })
        #expect(other.dropped == 0)
        #expect(try #require(other.latencyMs.p99) < 100, "other p99 \(other.latencyMs.p99 ?? -1) ms")
        #expect(probe.dropped > 50, "probe dropped \(probe.dropped)")
        #expect(try #require(probe.latencyMs.max) > 400)
        #expect(other.ok + probe.ok + other.dropped + probe.dropped == 1_000)
    }
}
