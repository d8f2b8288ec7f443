import Foundation
import KilnLoad
import KilnReplay
import KilnScenario
import Logging
import Testing
import KilnTestSupport

/// The reproduction verdict and the shrinker, driven by an in-process launcher that plays a store with a planted
/// cause: the anomaly appears exactly when the causal fault is in the candidate (and the dataset is big enough),
/// whatever else the candidate holds. The real `kiln run` path is ReplayCommandTests'.
@Suite struct ShrinkTests {
    static func outcome(
        sites: [AnomalySite: Int64] = [:], thresholds: Set<String> = [], checked: Bool = true, keys: [AnomalySite: Set<String>] = [:]
    ) -> RunOutcome {
        ReplayOutcomeFixture.outcome(sites: sites, thresholds: thresholds, checked: checked, keys: keys)
    }

    static let lost = ReplayOutcomeFixture.lost
    static let duplicated = AnomalySite(place: "clickhouse.rows", kind: "duplicated")

    @Test func theVerdictNeverSaysReproducedWithoutAJudgedReplay() {
        let original = Self.outcome(sites: [Self.lost: 40], keys: [Self.lost: ["txn 1", "txn 2", "txn 3"]])
        let same = Reproduction.judge(original: original, replay: Self.outcome(sites: [Self.lost: 12], keys: [Self.lost: ["txn 2", "txn 3", "txn 9"]]))
        #expect(same == .reproduced(sameKeys: 2, originalKeys: 3, extra: []))
        #expect(same.matches)
        // The same anomaly in another place, or another class in the same place, is not the same outcome.
        let elsewhere = Reproduction.judge(
            original: original, replay: Self.outcome(sites: [AnomalySite(place: "postgres.rows", kind: "duplicated"): 3]))
        #expect(!elsewhere.matches)
        // A replay whose check did not run (or was interrupted) is never reproduced, even with the same anomalies
        // recorded somewhere.
        var unchecked = Self.outcome(sites: [Self.lost: 40], checked: false)
        #expect(Reproduction.judge(original: original, replay: unchecked) == .notJudged(reason: "--no-check given"))
        unchecked = Self.outcome(sites: [Self.lost: 40])
        unchecked.interrupted = true
        #expect(!Reproduction.judge(original: original, replay: unchecked).matches)
        // A passing original stays valid only when the replay passes and decides every place.
        let valid = Self.outcome()
        #expect(Reproduction.judge(original: valid, replay: valid) == .stayedValid)
        #expect(!Reproduction.judge(original: valid, replay: Self.outcome(sites: [Self.duplicated: 1])).matches)
        var undecided = valid
        undecided.unknownPlaces = ["redis.features"]
        #expect(!Reproduction.judge(original: valid, replay: undecided).matches)
        // A threshold failure must fail again.
        let slow = Self.outcome(thresholds: ["stream phase: p99 < 5ms"])
        #expect(Reproduction.judge(original: slow, replay: slow).matches)
        #expect(!Reproduction.judge(original: slow, replay: valid).matches)
    }

    /// Plays a store with one planted cause: `postgres.rows lost` iff the candidate has the fault `causal` and at
    /// least `minimumRows` rows. Writes a run directory like `kiln run --check` would.
    struct PlantedCauseLauncher: RunLauncher {
        var causal: String
        var minimumRows: Int64
        /// Reproduces only on these tries of a candidate (1-based, by the run id's `try-N`); nil: every try.
        var onlyOnTry: Int? = nil
        func launch(_ request: RunRequest) throws -> LaunchedRun {
            let document = try ScenarioDocument(contentsOf: request.scenario)
            let faults = document.faults.compactMap { $0["name"]?.string }
            let rows = Int64(document.root["dataset"]?["rows"]?.string ?? "0") ?? 0
            var anomalous = faults.contains(causal) && rows >= minimumRows
            if let onlyOnTry, !request.id.hasSuffix("try-\(onlyOnTry)") { anomalous = false }
            let directory = request.runsDirectory.appendingPathComponent(request.id)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let report = #"{"verdict":"\#(anomalous ? "anomaly" : "passed")","interrupted":false,"phases":[{"name":"steady","started_at":1,"thresholds":[]}]}"#
            try report.write(to: directory.appendingPathComponent("report.json"), atomically: true, encoding: .utf8)
            let counts = anomalous ? #"{"lost":7}"# : "{}"
            let check = #"{"validity":"\#(anomalous ? "invalid" : "valid")","places":[{"place":"postgres.rows","validity":"\#(anomalous ? "invalid" : "valid")","counts":\#(counts),"anomalies":[]}]}"#
            try check.write(to: directory.appendingPathComponent("check.json"), atomically: true, encoding: .utf8)
            return LaunchedRun(
                exitCode: anomalous ? 1 : 0, directory: directory, seconds: 0,
                log: request.runsDirectory.appendingPathComponent("\(request.id).log"))
        }
    }

    /// The async pg-failover plus 7 decoys on a 100K-row dataset, as a bundle with an original that lost writes.
    static func failingBundle() throws -> (URL, ReplayBundle, RunOutcome) {
        let home = TestStack.paths.home
        let yaml = """
            name: shrink-me
            stack: \(home.path)/Scenarios/stacks/embedded.yaml
            dataset: {spec: \(home.path)/Generators/fraud-platform.yaml, seed: 19, rows: 100K}
            namespace: shrink_me
            faults:
              - {name: pause-replica, kind: pause, target: postgres-replica, at: 5s, duration: 2s, every: 10s, times: 3}
              - {name: pause-redis-replica, kind: pause, target: redis-replica, at: 8s, duration: 2s}
              - {name: restart-sentinel, kind: restart, target: sentinel-1, at: 12s, duration: 1s}
              - {name: failover, kind: pg-failover, replication: async, fence: kill, heal: rebuild, lag: 300ms, at: 15s, duration: 15s}
              - {name: pause-falkordb, kind: pause, target: falkordb, at: 20s, duration: 2s}
              - {name: pause-clickhouse, kind: pause, target: clickhouse, at: 25s, duration: 2s}
            phases:
              - {name: steady, executor: constant-arrival-rate, rate: 200, duration: 45s, workers: 64, mix: {postgres.insert: 3, postgres.point-read: 1}}
            """
        let file = try TestStack.temporaryFile("shrink-me.yaml", yaml)
        let scenario = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
        let directory = file.deletingLastPathComponent().appendingPathComponent("original")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let bundle = try BundleWriter.writePlan(
            scenario: scenario, scenarioFile: file, stackFile: nil, datasetRows: 100_000, runDirectory: directory,
            kiln: .init(version: KilnVersion.current, commit: nil))
        #expect(bundle.faultsPlanned.count == 8)
        return (directory, bundle, Self.outcome(sites: [Self.lost: 1800]))
    }

    @Test func shrinkFindsTheOneCausalFaultAmongEightAndAQuarterOfTheRows() throws {
        let (directory, bundle, original) = try Self.failingBundle()
        let launcher = PlantedCauseLauncher(causal: "failover", minimumRows: 20_000)
        let shrinker = Shrinker(
            bundleDirectory: directory, bundle: bundle, original: original, launcher: launcher,
            workDirectory: directory.deletingLastPathComponent().appendingPathComponent("shrink"),
            options: ShrinkOptions(budgetSeconds: 600, tries: 2, target: nil, stack: nil),
            knownOperations: LoadRun.knownOperations(), logger: Logger(label: "test"))
        let result = try shrinker.run()
        #expect(result.faultsOriginal.count == 8)
        #expect(result.faultsKept == ["failover"])
        #expect(result.rowsOriginal == 100_000)
        let rows = try #require(result.rowsKept)
        #expect(rows <= 25_000 && rows >= 20_000, "rows \(rows)")
        // Every step is in the table; the minimal bundle is a run directory whose scenario holds only the cause.
        #expect(result.steps.first?.stage == .baseline && result.steps.first?.reproduced == true)
        #expect(result.steps.contains { $0.stage == .faults && $0.reproduced })
        #expect(result.steps.contains { $0.stage == .rows && !$0.reproduced })
        #expect(result.steps.contains { $0.stage == .mix && $0.reproduced })   // point-read is not needed
        let minimal = try ScenarioDocument(contentsOf: try #require(result.minimalScenario))
        #expect(minimal.faults.map { $0["name"]?.string } == ["failover"])
        #expect(minimal.faults.first?["at"]?.string == "15000ms")
        #expect(result.table.contains("| 0 | baseline |"))
        #expect(!result.budgetSpent)
    }

    @Test func aCandidateIsKeptWhenTheAnomalyAppearsInAnyOfItsTries() throws {
        let (directory, bundle, original) = try Self.failingBundle()
        // The anomaly shows only on the second try of every candidate: with --tries 1 nothing reproduces.
        let once = Shrinker(
            bundleDirectory: directory, bundle: bundle, original: original,
            launcher: PlantedCauseLauncher(causal: "failover", minimumRows: 1, onlyOnTry: 2),
            workDirectory: directory.deletingLastPathComponent().appendingPathComponent("shrink-1"),
            options: ShrinkOptions(budgetSeconds: 600, tries: 1, target: nil, stack: nil),
            knownOperations: LoadRun.knownOperations(), logger: Logger(label: "test"))
        let none = try once.run()
        #expect(none.minimalRun == nil && none.steps.count == 1 && none.steps[0].reproduced == false)
        let twice = Shrinker(
            bundleDirectory: directory, bundle: bundle, original: original,
            launcher: PlantedCauseLauncher(causal: "failover", minimumRows: 1, onlyOnTry: 2),
            workDirectory: directory.deletingLastPathComponent().appendingPathComponent("shrink-2"),
            options: ShrinkOptions(budgetSeconds: 600, tries: 2, target: nil, stack: nil),
            knownOperations: LoadRun.knownOperations(), logger: Logger(label: "test"))
        let found = try twice.run()
        #expect(found.faultsKept == ["failover"])
        #expect(found.steps.filter(\.reproduced).allSatisfy { $0.tries == 2 })
        // Rows, durations, rates and the mix must reproduce in every try: a candidate matching once of two is
        // reported as flaky, never made the minimal bundle.
        #expect(found.rowsKept == 100_000)
        let rows = try #require(found.steps.first { $0.stage == .rows })
        #expect(!rows.reproduced && !rows.flaky && rows.tries == 1)   // try 1 missed: no second try needed
        let firstOnly = Shrinker(
            bundleDirectory: directory, bundle: bundle, original: original,
            launcher: PlantedCauseLauncher(causal: "failover", minimumRows: 1, onlyOnTry: 1),
            workDirectory: directory.deletingLastPathComponent().appendingPathComponent("shrink-3"),
            options: ShrinkOptions(budgetSeconds: 600, tries: 2, target: nil, stack: nil),
            knownOperations: LoadRun.knownOperations(), logger: Logger(label: "test"))
        let flakyResult = try firstOnly.run()
        #expect(flakyResult.faultsKept == ["failover"])
        #expect(flakyResult.rowsKept == 100_000)
        let flaky = try #require(flakyResult.steps.first { $0.stage == .rows })
        #expect(flaky.flaky && !flaky.reproduced && flaky.tries == 2)
        #expect(flakyResult.table.contains("flaky: not in every try, not adopted"))
    }

    @Test func aSpentBudgetStopsWithTheSmallestBundleSoFar() throws {
        let (directory, bundle, original) = try Self.failingBundle()
        let shrinker = Shrinker(
            bundleDirectory: directory, bundle: bundle, original: original,
            launcher: PlantedCauseLauncher(causal: "failover", minimumRows: 1),
            workDirectory: directory.deletingLastPathComponent().appendingPathComponent("shrink-0"),
            options: ShrinkOptions(budgetSeconds: 0, tries: 3, target: nil, stack: nil),
            knownOperations: LoadRun.knownOperations(), logger: Logger(label: "test"))
        let result = try shrinker.run()
        #expect(result.budgetSpent)
        #expect(result.minimalRun == nil)
        #expect(result.steps.allSatisfy { $0.skipped })
    }
}
