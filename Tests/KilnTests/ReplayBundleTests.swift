import Foundation
import KilnLoad
import KilnReplay
import KilnScenario
import Logging
import Testing

/// bundle.json: written from a real scenario, read back strictly; every malformed bundle is an error naming the file
/// and the field; the gate refuses another version or a changed spec.
@Suite struct ReplayBundleTests {
    static let home = TestStack.paths.home

    /// A run directory holding a bundle of `Scenarios/<file>` (no run), plus a report.json and check.json when given.
    static func bundleDirectory(
        _ file: String = "bugs/non-idempotent.yaml", report: String? = nil, check: String? = nil
    ) throws -> (URL, ReplayBundle) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("bundle"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let scenarioFile = home.appendingPathComponent("Scenarios/\(file)")
        let scenario = try LoadScenario.load(contentsOf: scenarioFile, knownOperations: LoadRun.knownOperations())
        let bundle = try BundleWriter.writePlan(
            scenario: scenario, scenarioFile: scenarioFile, stackFile: nil, datasetRows: scenario.dataset.rows ?? 1000,
            runDirectory: directory, kiln: .init(version: KilnVersion.current, commit: "abc1234"))
        if let report { try report.write(to: directory.appendingPathComponent("report.json"), atomically: true, encoding: .utf8) }
        if let check { try check.write(to: directory.appendingPathComponent("check.json"), atomically: true, encoding: .utf8) }
        return (directory, bundle)
    }

    static func edit(_ directory: URL, _ change: (inout [String: Any]) -> Void) throws {
        let file = directory.appendingPathComponent("bundle.json")
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
        change(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: file)
    }

    @Test func sha256MatchesTheStandardVectors() {
        #expect(ContentHash.of(Data()) == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(ContentHash.of(Data("abc".utf8)) == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            ContentHash.of(Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func aBundleRoundTripsAndItsScenarioRunsFromItsOwnCopies() throws {
        let (directory, written) = try Self.bundleDirectory("drills/pg-failover.yaml")
        let (read, at) = try ReplayBundle.read(directory)
        #expect(read == written)
        #expect(at.standardizedFileURL.path == directory.standardizedFileURL.path)
        #expect(read.dataset.seed == 19 && read.dataset.rows == 100_000)
        #expect(read.dataset.specHash == ContentHash.of(try Data(contentsOf: Self.home.appendingPathComponent("Generators/fraud-platform.yaml"))))
        // The plan: one pg-failover event at 15 s for 15 s; a 45 s phase at 200/s = 9000 ops.
        #expect(read.faultsPlanned.map(\.name) == ["pg-failover"])
        #expect(read.faultsPlanned.first?.startMs == 15_000 && read.faultsPlanned.first?.stopMs == 30_000)
        #expect(read.faultsPlanned.first?.options["replication"] == "async")
        #expect(read.phases.first?.plannedOps == 9000)
        #expect(read.phases.first?.mix.map(\.operation) == ["postgres.insert", "postgres.point-read"])
        // The copy of the scenario resolves its stack and spec beside the bundle, wherever the bundle is moved.
        let moved = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("moved"))
        try FileManager.default.moveItem(at: directory, to: moved)
        let scenario = try LoadScenario.load(
            contentsOf: moved.appendingPathComponent(ReplayBundle.scenarioFileName), knownOperations: LoadRun.knownOperations())
        #expect(scenario.dataset.spec.standardizedFileURL.path == moved.appendingPathComponent(ReplayBundle.specFileName).standardizedFileURL.path)
        #expect(scenario.dataset.seed == 19 && scenario.dataset.rows == 100_000 && scenario.fresh)
        #expect(scenario.faults?.entries.count == 1)
    }

    @Test func aTruncatedBundleNamesTheFile() throws {
        let (directory, _) = try Self.bundleDirectory()
        let file = directory.appendingPathComponent("bundle.json")
        let data = try Data(contentsOf: file)
        try data.prefix(data.count / 2).write(to: file)
        let error = try #require(throws: BundleError.self) { try ReplayBundle.read(directory) }
        #expect(error.file == file.path)
        #expect(error.message.contains("not valid JSON"))
    }

    @Test func aMissingOrMistypedFieldIsNamedByItsJSONPath() throws {
        let (directory, _) = try Self.bundleDirectory()
        try Self.edit(directory) { object in
            var dataset = object["dataset"] as! [String: Any]
            dataset.removeValue(forKey: "seed")
            object["dataset"] = dataset
        }
        let missing = try #require(throws: BundleError.self) { try ReplayBundle.read(directory) }
        #expect(missing.path == "dataset.seed" && missing.message == "missing", "\(missing)")
        try Self.edit(directory) { object in
            var dataset = object["dataset"] as! [String: Any]
            dataset["seed"] = -4
            object["dataset"] = dataset
        }
        let negative = try #require(throws: BundleError.self) { try ReplayBundle.read(directory) }
        #expect(negative.path == "dataset.seed", "\(negative)")
        for (key, value, path) in [("rows", 0, "dataset.rows"), ("rows", -5, "dataset.rows")] as [(String, Any, String)] {
            try Self.edit(directory) { object in
                var dataset = object["dataset"] as! [String: Any]
                dataset["seed"] = 7
                dataset[key] = value
                object["dataset"] = dataset
            }
            let error = try #require(throws: BundleError.self) { try ReplayBundle.read(directory) }
            #expect(error.path == path, "\(error)")
        }
        try Self.edit(directory) { object in
            var dataset = object["dataset"] as! [String: Any]
            dataset["rows"] = 10
            dataset["spec_hash"] = "md5:123"
            object["dataset"] = dataset
        }
        let hash = try #require(throws: BundleError.self) { try ReplayBundle.read(directory) }
        #expect(hash.path == "dataset.spec_hash", "\(hash)")
    }

    @Test func aBundleNamingAMissingSpecIsRefused() throws {
        let (directory, _) = try Self.bundleDirectory()
        try FileManager.default.removeItem(at: directory.appendingPathComponent(ReplayBundle.specFileName))
        let error = try #require(throws: BundleError.self) { try ReplayBundle.read(directory) }
        #expect(error.path == "dataset.spec_file" && error.message.contains("missing"), "\(error)")
        try Self.edit(directory) { object in
            var dataset = object["dataset"] as! [String: Any]
            dataset["spec_file"] = "../../etc/passwd"
            object["dataset"] = dataset
        }
        let escape = try #require(throws: BundleError.self) { try ReplayBundle.read(directory) }
        #expect(escape.path == "dataset.spec_file", "\(escape)")
    }

    @Test func theGateRefusesAnotherVersionOrAChangedSpecUnlessForced() throws {
        let (directory, bundle) = try Self.bundleDirectory()
        let same = ReplayBundle.KilnBuild(version: KilnVersion.current, commit: "abc1234")
        #expect(try ReplayGate.check(bundle, directory: directory, current: same, force: false).isEmpty)
        let otherCommit = ReplayBundle.KilnBuild(version: KilnVersion.current, commit: "fff0000")
        #expect(try ReplayGate.check(bundle, directory: directory, current: otherCommit, force: false).count == 1)
        let otherVersion = ReplayBundle.KilnBuild(version: "0.1.0", commit: "abc1234")
        let refused = try #require(throws: BundleError.self) {
            try ReplayGate.check(bundle, directory: directory, current: otherVersion, force: false)
        }
        #expect(refused.path == "kiln.version")
        #expect(try ReplayGate.check(bundle, directory: directory, current: otherVersion, force: true).count == 1)
        let spec = directory.appendingPathComponent(ReplayBundle.specFileName)
        try (String(contentsOf: spec, encoding: .utf8) + "\n# changed\n").write(to: spec, atomically: true, encoding: .utf8)
        let changed = try #require(throws: BundleError.self) {
            try ReplayGate.check(bundle, directory: directory, current: same, force: false)
        }
        #expect(changed.path == "dataset.spec_hash")
    }

    @Test func pinnedFaultEventsKeepTheirPlannedOffsets() throws {
        let yaml = """
            name: pins
            stack: \(Self.home.path)/Scenarios/stacks/embedded.yaml
            dataset: {spec: \(Self.home.path)/Generators/fraud-platform.yaml, seed: 5, rows: 1000}
            faults:
              - {name: p, kind: pause, target: redis-primary, at: 10s, duration: 2s, every: 20s, times: 3, jitter: 4s}
              - {kind: kill, target: postgres-replica, at: 5s}
            phases:
              - {name: s, executor: constant-arrival-rate, rate: 10, duration: 90s, mix: {redis.feature-read: 1}}
            """
        let file = try CommandLineTests.temporaryFile("pins.yaml", yaml)
        let scenario = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
        let spec = try #require(scenario.faults)
        var document = try ScenarioDocument(contentsOf: file)
        document.pinFaultEvents(spec, seed: 5)
        let plan = spec.plan(seed: 5)
        #expect(document.faults.count == 4)
        for (node, instance) in zip(document.faults, plan) {
            let ms = instance.start.components.seconds * 1000 + instance.start.components.attoseconds / 1_000_000_000_000_000
            #expect(node["at"]?.string == "\(ms)ms")
            #expect(node["times"] == nil && node["jitter"] == nil && node["every"] == nil)
        }
        // The pinned file parses to the same plan (one instance per entry now).
        try document.write(to: file)
        let pinned = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
        let again = try #require(pinned.faults?.plan(seed: 99))
        #expect(again.count == plan.count)
        for (a, b) in zip(again, plan) { #expect(abs((a.start - b.start) / .milliseconds(1)) < 1) }
    }
}
