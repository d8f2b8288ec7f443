import Foundation
import KilnElle
import Testing

/// `kiln elle check` and `kiln check` on Elle histories through the built `kiln` binary (a process each, so these
/// live in the integration target; the checkers themselves are tested in KilnUnitTests). Each history is the
/// write skew (G2-item) of the unit tests: two transactions read both keys empty and each writes one.
@Suite struct ElleCommandLineTests {
    /// Each transaction on its own process, all overlapping in time.
    static func concurrent(_ ops: [[MicroOp]]) -> [ElleTransaction] {
        ops.enumerated().map { index, ops in
            ElleTransaction(process: index, invokeNanos: 0, completeNanos: 1_000, outcome: .ok, ops: ops)
        }
    }

    static let listAppendG2Item = concurrent([
        [.read(key: 1, values: []), .read(key: 2, values: []), .append(key: 1, value: 1)],
        [.read(key: 1, values: []), .read(key: 2, values: []), .append(key: 2, value: 1)],
        [.read(key: 1, values: [1]), .read(key: 2, values: [1])],
    ])

    static let registerG2Item = concurrent([
        [.readRegister(key: 1, value: nil), .readRegister(key: 2, value: nil), .write(key: 1, value: 1)],
        [.readRegister(key: 1, value: nil), .readRegister(key: 2, value: nil), .write(key: 2, value: 1)],
    ])

    @Test func kilnElleCheckExitsByVerdict() throws {
        let skew = try CommandLineTests.temporaryFile(
            "skew.jsonl", String(decoding: try ListAppendTransaction.jsonLines(Self.listAppendG2Item), as: UTF8.self))
        let snapshot = try CommandLineTests.kiln(["elle", "check", skew.path, "--models", "snapshot-isolation"])
        #expect(snapshot.status == 0, "\(snapshot.output)")
        let serializable = try CommandLineTests.kiln(["elle", "check", skew.path, "--models", "serializable"])
        #expect(serializable.status == 1)
        #expect(serializable.output.contains("serializable: invalid (G2-item×1)"), "\(serializable.output)")
        #expect(serializable.output.contains("T0 -rw-> T1"), "\(serializable.output)")
        let broken = try CommandLineTests.temporaryFile("broken.jsonl", "{\"process\": 1}\n")
        #expect(try CommandLineTests.kiln(["elle", "check", broken.path]).status == 64)
    }

    /// Zero, negative and unknown values of the workload and bench options exit 64 naming the option, before any
    /// server is contacted; a value beyond 32 bits in a history names its transaction.
    @Test func invalidOptionsExit64NamingTheField() throws {
        let cases: [([String], String)] = [
            (["elle", "redis", "--concurrency", "0"], "--concurrency"),
            (["elle", "postgres", "--keys", "0"], "--keys"),
            (["elle", "postgres", "--workload", "bogus"], "--workload"),
            (["elle", "redis", "--max-writes-per-key", "0"], "--max-writes-per-key"),
            (["elle", "redis", "--max-writes-per-key", "-4"], "--max-writes-per-key"),
            (["bench", "elle", "--transactions", "10", "--ops", "0"], "--ops"),
            (["bench", "elle", "--transactions", "10", "--workload", "x"], "--workload"),
            (["bench", "elle", "--transactions", "10", "--stale-reads", "2"], "--stale-reads"),
        ]
        for (arguments, field) in cases {
            let outcome = try CommandLineTests.kiln(arguments)
            #expect(outcome.status == 64, "\(arguments): \(outcome.output)")
            #expect(outcome.output.contains(field), "\(arguments): \(outcome.output)")
        }
        let huge = try CommandLineTests.temporaryFile(
            "rw-huge.jsonl",
            #"{"process":0,"invoke":1,"complete":2,"outcome":"ok","ops":[["w",1,99999999999]]}"# + "\n")
        let outcome = try CommandLineTests.kiln(["elle", "check", huge.path, "--workload", "rw-register"])
        #expect(outcome.status == 64, "\(outcome.output)")
        #expect(outcome.output.contains("transaction 1") && outcome.output.contains("99999999999"), "\(outcome.output)")
    }

    @Test func kilnElleCheckReadsRegisterHistories() throws {
        let skew = try CommandLineTests.temporaryFile(
            "rw-skew.jsonl", String(decoding: try ElleTransaction.jsonLines(Self.registerG2Item), as: UTF8.self))
        let snapshot = try CommandLineTests.kiln([
            "elle", "check", skew.path, "--workload", "rw-register", "--models", "snapshot-isolation",
        ])
        #expect(snapshot.status == 0, "\(snapshot.output)")
        let serializable = try CommandLineTests.kiln([
            "elle", "check", skew.path, "--workload", "rw-register", "--models", "serializable",
        ])
        #expect(serializable.status == 1, "\(serializable.output)")
        #expect(serializable.output.contains("serializable: invalid (G2-item×1)"), "\(serializable.output)")
        let wrong = try CommandLineTests.kiln(["elle", "check", skew.path, "--workload", "list-append"])
        #expect(wrong.status == 64, "\(wrong.output)")
        let unknown = try CommandLineTests.kiln(["elle", "check", skew.path, "--workload", "bank"])
        #expect(unknown.status == 64, "\(unknown.output)")
    }
}

/// The same through the `kiln` binary against the shared stack's PostgreSQL: `kiln elle postgres --record-run DIR`
/// writes a run directory that `kiln check` and `kiln report` take like any other.
@Suite(.serialized) struct ElleRunDirectoryCommandLineTests {
    @Test func aRecordedRunIsCheckedAndReported() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-elle"))
        let run = try CommandLineTests.kiln([
            "elle", "postgres", "--isolation", "serializable", "--transactions", "400", "--keys", "6",
            "--table", "kiln_elle_record_run_test", "--record-run", directory.path,
        ])
        #expect(run.status == 0, "\(run.output)")
        for file in ["elle-history.jsonl", "elle-run.json", "report.json", "check.json", "summary.md", "report.html"] {
            #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent(file).path), "\(file)")
        }
        let check = try CommandLineTests.kiln(["check", directory.path])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("postgres serializable as serializable"), "\(check.output)")
        let report = try CommandLineTests.kiln(["report", directory.path])
        #expect(report.status == 0, "\(report.output)")
        let summary = try String(contentsOf: directory.appendingPathComponent("summary.md"), encoding: .utf8)
        #expect(summary.contains("`elle.list-append` | valid"), "\(summary)")
    }

    @Test func anAnomalousHistoryExitsWithTheAnomalyCode() throws {
        let directory = try ElleRunFixture.directory(ElleCommandLineTests.listAppendG2Item)
        let check = try CommandLineTests.kiln(["check", directory.path])
        #expect(check.status == 1, "\(check.output)")
        #expect(check.output.contains("forbidden: G2-item"), "\(check.output)")
        #expect(check.output.contains("-rw->"), "\(check.output)")
        let data = try Data(contentsOf: directory.appendingPathComponent("check.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(json["validity"] as? String == "invalid")
        let places = try #require(json["places"] as? [[String: Any]])
        let transactional = try #require(places.first?["transactional"] as? [String: Any])
        let witnesses = try #require(transactional["witnesses"] as? [[String: Any]])
        #expect(witnesses.contains { $0["kind"] as? String == "G2-item" && ($0["steps"] as? [Any])?.count == 2 })
    }
}
