import Foundation
import KilnAudit
import KilnCore
import KilnRedis
import KilnReplay
import KilnScenario
import KilnStack
import Testing

/// A private stack file never runs against another stack's state.json (StackDirectoryGuard); the bundle records each
/// server's version as a client reads it (ServerVersions); what a replay must show again (Reproduction.required).
@Suite struct ReplayStackGuardTests {
    static let home = TestStack.paths.home

    /// The embedded stack file on 127.0.1.x (ports + 150: not the replay measurements' private stack at + 100), in a
    /// directory of its own.
    static func privateStackFile() throws -> URL {
        var text = try String(contentsOf: home.appendingPathComponent("Scenarios/stacks/embedded.yaml"), encoding: .utf8)
        text = text.replacingOccurrences(of: "127.0.0.", with: "127.0.1.").replacingOccurrences(of: "name: embedded", with: "name: guard-private")
        for port in [15432, 15433, 16379, 16380, 26379, 26380, 26381, 19092, 16390, 18123] {
            text = text.replacingOccurrences(of: ":\(port)", with: ":\(port + 150)")
        }
        return try CommandLineTests.temporaryFile("private-stack.yaml", text)
    }

    static func scratch() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("guard"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    // MARK: the guard (no server)

    @Test func aPrivateStackFileWithTheDefaultRunDirectoryIsRefused() throws {
        let file = try Self.privateStackFile()
        let definition = try StackDefinition.load(contentsOf: file)
        let defaults = KilnPaths(home: Self.home)
        let refusal = try #require(StackDirectoryGuard.refusal(definition, paths: defaults))
        #expect(refusal.contains(file.path) && refusal.contains("KILN_STACK_DIR is unset"), "\(refusal)")
        #expect(refusal.contains("127.0.1.11:15582") && refusal.contains("127.0.0.11:15432"), "\(refusal)")
        #expect(refusal.contains("KILN_STACK_DIR=DIR kiln stack up --stack \(file.path)"), "\(refusal)")
        // Its own (explicit) run directory: accepted, before and after `up` recorded it there.
        let own = try Self.scratch()
        #expect(StackDirectoryGuard.refusal(definition, paths: KilnPaths(home: Self.home, stack: own)) == nil)
        try StackDirectoryOwner(definition).write(own)
        #expect(StackDirectoryGuard.refusal(definition, paths: KilnPaths(home: Self.home, stack: own)) == nil)
        // The default stack file, and a copy of it elsewhere (a bundle's bundle-stack.yaml), with the default directory.
        let standard = try StackDefinition.load(contentsOf: defaults.embeddedStackFile)
        #expect(StackDirectoryGuard.refusal(standard, paths: defaults) == nil)
        let copy = try CommandLineTests.temporaryFile(
            "bundle-stack.yaml", try String(contentsOf: defaults.embeddedStackFile, encoding: .utf8))
        #expect(StackDirectoryGuard.refusal(try StackDefinition.load(contentsOf: copy), paths: defaults) == nil)
        // The default stack file pointed at the private stack's directory (KILN_STACK_DIR left set): refused too.
        let mismatch = try #require(StackDirectoryGuard.refusal(standard, paths: KilnPaths(home: Self.home, stack: own)))
        #expect(mismatch.contains(own.path) && mismatch.contains("belongs to \(file.path)"), "\(mismatch)")
    }

    @Test func runReplayShrinkAndStackUpRefuseAPrivateStackWithoutItsRunDirectory() throws {
        let file = try Self.privateStackFile()
        var environment = ProcessInfo.processInfo.environment
        environment["KILN_STACK_DIR"] = nil
        let failing = #"{"validity":"invalid","places":[{"place":"postgres.rows","validity":"invalid","counts":{"lost":3},"anomalies":[]}]}"#
        let (bundle, _) = try ReplayBundleTests.bundleDirectory(report: ReplayCommandTests.report, check: failing)
        let commands = [
            ["run", Self.home.appendingPathComponent("Scenarios/quick.yaml").path, "--stack", file.path, "--runs-directory", try Self.scratch().path],
            ["replay", bundle.path, "--stack", file.path],
            ["shrink", bundle.path, "--stack", file.path],
            ["stack", "up", "--stack", file.path],
            ["stack", "down", "--stack", file.path],
        ]
        for command in commands {
            let result = try CommandLineTests.kiln(command, environment: environment)
            #expect(result.status == 64, "\(command): \(result.output)")
            #expect(result.output.contains(file.path) && result.output.contains("KILN_STACK_DIR"), "\(command): \(result.output)")
        }
        // Nothing was started: no server listens on the private addresses.
        #expect(!LocalProcess.isListening(host: "127.0.1.11", port: 15582))
    }

    // MARK: what a replay must show again (no server)

    @Test func aReplayMustShowTheStoreAnomaliesAndListsTheSecondaryOnesItLacks() {
        let lost = AnomalySite(place: "kafka.messages", kind: "lost")
        let rows = AnomalySite(place: "postgres.rows", kind: "lost")
        let ledger = AnomalySite(place: "invariant.graph-ledger", kind: "phantom")
        let original = ReplayOutcomeFixture.outcome(sites: [lost: 2003, rows: 1959, ledger: 1])
        var withDrill = original
        withDrill.failedDrills = ["kill-broker on kafka"]
        let required = Reproduction.required(withDrill)
        #expect(required.sites == [lost, rows] && required.drills.isEmpty && required.thresholds.isEmpty)
        let replay = ReplayOutcomeFixture.outcome(sites: [lost: 1990, rows: 1950])
        let judged = Reproduction.judge(original: withDrill, replay: replay)
        #expect(judged.matches)
        #expect(judged.summary.contains("secondary, not again: invariant.graph-ledger phantom, drill kill-broker on kafka"), "\(judged.summary)")
        // --strict: the whole outcome.
        #expect(!Reproduction.judge(original: withDrill, replay: replay, strict: true).matches)
        // A store anomaly missing is never reproduced.
        #expect(!Reproduction.judge(original: withDrill, replay: ReplayOutcomeFixture.outcome(sites: [lost: 5, ledger: 1])).matches)
        // Only invariant anomalies: they are the failure, required.
        let onlyLedger = ReplayOutcomeFixture.outcome(sites: [ledger: 7])
        #expect(Reproduction.required(onlyLedger).sites == [ledger])
        #expect(!Reproduction.judge(original: onlyLedger, replay: ReplayOutcomeFixture.outcome()).matches)
        // Only a failed drill: required.
        var onlyDrill = ReplayOutcomeFixture.outcome()
        onlyDrill.failedDrills = ["failover on postgres"]
        #expect(Reproduction.required(onlyDrill).drills == ["failover on postgres"])
        #expect(!Reproduction.judge(original: onlyDrill, replay: ReplayOutcomeFixture.outcome()).matches)
    }

    /// A launcher whose first starts find the stack unreachable (exit 69), then plays the original's anomaly.
    final class UnreachableFirst: RunLauncher, @unchecked Sendable {
        // @unchecked: `calls` is only touched by the replayer's one thread.
        var calls = 0
        let unreachable: Int
        init(unreachable: Int) { self.unreachable = unreachable }
        func launch(_ request: RunRequest) throws -> LaunchedRun {
            calls += 1
            let directory = request.runsDirectory.appendingPathComponent(request.id)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let log = request.runsDirectory.appendingPathComponent("\(request.id).log")
            guard calls > unreachable else { return LaunchedRun(exitCode: 69, directory: directory, seconds: 0, log: log) }
            try ReplayCommandTests.report.write(to: directory.appendingPathComponent("report.json"), atomically: true, encoding: .utf8)
            let check = #"{"validity":"invalid","places":[{"place":"postgres.rows","validity":"invalid","counts":{"lost":3},"anomalies":[]}]}"#
            try check.write(to: directory.appendingPathComponent("check.json"), atomically: true, encoding: .utf8)
            return LaunchedRun(exitCode: 1, directory: directory, seconds: 0, log: log)
        }
    }

    @Test func aReplayWhoseStackWasUnreachableIsStartedAgain() throws {
        let (directory, bundle) = try ReplayBundleTests.bundleDirectory()
        let original = ReplayOutcomeFixture.outcome(sites: [ReplayOutcomeFixture.lost: 3])
        let launcher = UnreachableFirst(unreachable: 2)
        var replayer = Replayer(launcher: launcher, logger: .init(label: "test.replay"))
        replayer.unreachablePause = 0
        let attempts = replayer.replay(
            bundleDirectory: directory, bundle: bundle, original: original, times: 1, stack: nil,
            runsDirectory: try Self.scratch(), idPrefix: "r")
        #expect(attempts.count == 1 && attempts[0].starts == 3 && attempts[0].reproduction.matches, "\(attempts)")
        // Unreachable every time: not judged after 3 starts, never reproduced.
        var never = Replayer(launcher: UnreachableFirst(unreachable: 99), logger: .init(label: "test.replay"))
        never.unreachablePause = 0
        let failed = never.replay(
            bundleDirectory: directory, bundle: bundle, original: original, times: 1, stack: nil,
            runsDirectory: try Self.scratch(), idPrefix: "n")
        #expect(failed.count == 1 && failed[0].starts == 3 && !failed[0].reproduction.matches)
    }

    // MARK: server versions

    @Test func moduleListAndInfoAndApiVersionsAreReadIntoVersionTexts() {
        let modules = RedisReply.array([
            .array([.bulk(Array("name".utf8)), .bulk(Array("graph".utf8)), .bulk(Array("ver".utf8)), .integer(41204)])
        ])
        #expect(ServerVersions.moduleVersion(modules, name: "graph") == "4.12.4")
        #expect(ServerVersions.moduleVersion(.array([]), name: "graph") == nil)
        #expect(ServerVersions.infoField("# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\n", "redis_version") == "7.2.4")
        #expect(
            ServerVersions.kafkaFingerprint([(0, 0, 9), (1, 0, 12), (3, 0, 12), (18, 0, 3)])
                == "Kafka API: 4 APIs (Produce v0-9, Fetch v0-12, Metadata v0-12)")
    }

    @Test func theBundleRecordsEachServersVersionAndReadsItBack() throws {
        let (directory, _) = try ReplayBundleTests.bundleDirectory()
        var bundle = try ReplayBundle.read(directory).bundle
        #expect(bundle.stack.serverVersions == nil)  // not given: absent, never invented
        bundle.stack.serverVersions = ["postgres-primary": "PostgreSQL 16.4", "kafka": "unknown: connect refused"]
        try bundle.write(to: directory)
        #expect(try ReplayBundle.read(directory).bundle.stack.serverVersions?["postgres-primary"] == "PostgreSQL 16.4")
        let text = try String(contentsOf: directory.appendingPathComponent("bundle.json"), encoding: .utf8)
        #expect(text.contains("\"server_versions\""), "\(text.prefix(2000))")
    }

    /// Read-only queries against the shared stack: every server answers with its product and a version.
    @Test func theSharedStacksServersReportTheirVersions() throws {
        let stack = try StackDefinition.load(contentsOf: TestStack.paths.embeddedStackFile)
        let versions = ServerVersions.query(stack)
        #expect(Set(versions.keys) == Set(ServerVersions.servers(stack).map(\.name)))
        #expect(versions["postgres-primary"]?.range(of: #"^PostgreSQL \d+"#, options: .regularExpression) != nil, "\(versions)")
        #expect(versions["redis-primary"]?.range(of: #"^Redis \d+\.\d+"#, options: .regularExpression) != nil, "\(versions)")
        #expect(versions["sentinel-1"]?.hasPrefix("Redis Sentinel ") == true, "\(versions)")
        #expect(versions["falkordb"]?.range(of: #"^FalkorDB \d+\.\d+\.\d+ \(graph module\)"#, options: .regularExpression) != nil, "\(versions)")
        #expect(versions["clickhouse"]?.range(of: #"^ClickHouse \d+\.\d+"#, options: .regularExpression) != nil, "\(versions)")
        #expect(versions["kafka"]?.range(of: #"^Kafka API: \d+ APIs \(Produce v\d+-\d+"#, options: .regularExpression) != nil, "\(versions)")
        // A server that does not answer is `unknown: …`, never a version.
        var nowhere = stack
        nowhere.timeseries.endpoint = HostPort(host: "127.0.1.99", port: 9)
        #expect(ServerVersions.query(nowhere)["clickhouse"]?.hasPrefix("unknown: ") == true)
    }
}
