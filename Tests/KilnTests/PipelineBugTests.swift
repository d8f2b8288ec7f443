import Foundation
import KilnCheck
import KilnCore
import KilnLoad
import KilnPipeline
import KilnScenario
import Testing

/// The planted-bug matrix (issue 5): every scenario in Scenarios/bugs/ runs the reference pipeline on the embedded
/// stack with one bug (and the modelled sink crashes that trigger it), and `kiln check` must name the bug's anomaly
/// in the bug's place — and nothing outside the places that bug can reach. `correct.yaml`, the same pipeline under
/// the same crashes without a bug, must check valid everywhere.
@Suite("planted pipeline bugs are caught by kiln check", .serialized)
struct PipelineBugTests {
    struct Expectation: Sendable, CustomTestStringConvertible {
        var file: String
        /// The place that must be invalid, and the anomaly kinds of which at least one must be reported there.
        var place: String?
        var kinds: Set<Anomaly.Kind>
        /// Places the bug also reaches through an invariant (may be invalid too).
        var alsoInvalid: Set<String> = []
        /// Derived places checked against the oracle that the bug must make invalid on their own.
        var derivedInvalid: Set<String> = []

        var testDescription: String { file }
    }

    static let matrix: [Expectation] = [
        Expectation(file: "correct.yaml", place: nil, kinds: []),
        Expectation(
            file: "commit-before-write.yaml", place: "clickhouse.rows", kinds: [.lost],
            alsoInvalid: ["invariant.minute-totals"], derivedInvalid: ["clickhouse.merchant-minute"]),
        Expectation(
            file: "non-idempotent.yaml", place: "clickhouse.rows", kinds: [.duplicated],
            alsoInvalid: ["invariant.minute-totals"], derivedInvalid: ["clickhouse.merchant-minute"]),
        Expectation(
            file: "drop-every-n.yaml", place: "falkordb.paid-edges", kinds: [.lost],
            alsoInvalid: ["invariant.graph-ledger"],
            derivedInvalid: ["falkordb.paid-per-user", "falkordb.paid-per-merchant"]),
        Expectation(
            file: "wrong-rounding.yaml", place: "clickhouse.rows", kinds: [.corrupted],
            alsoInvalid: ["invariant.minute-totals"], derivedInvalid: ["clickhouse.merchant-minute"]),
        Expectation(
            file: "phantom.yaml", place: "falkordb.paid-edges", kinds: [.phantom],
            alsoInvalid: ["invariant.graph-ledger"],
            derivedInvalid: ["falkordb.paid-per-user", "falkordb.paid-per-merchant"]),
        Expectation(file: "stale-cache.yaml", place: "redis.features", kinds: [.lost, .corrupted]),
        Expectation(file: "reorder.yaml", place: "redis.features", kinds: [.lost, .corrupted]),
        Expectation(file: "lag.yaml", place: "staleness.redis", kinds: [.stale]),
    ]

    @Test func everyBugScenarioIsInTheMatrix() throws {
        let directory = TestStack.paths.home.appendingPathComponent("Scenarios/bugs")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") }
        #expect(Set(files) == Set(Self.matrix.map(\.file)))
        // Every planted bug the pipeline offers has its scenario.
        for bug in Pipeline.bugs {
            #expect(files.contains("\(bug.name).yaml"), "no scenario for \(bug.name)")
        }
    }

    @Test(arguments: matrix)
    func theCheckNamesTheBugAndNothingElse(expectation: Expectation) throws {
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("bugs"))
        let scenario = TestStack.paths.home.appendingPathComponent("Scenarios/bugs/\(expectation.file)")
        let run = try CommandLineTests.kiln(["run", scenario.path, "--runs-directory", runs.path, "--id", "b"])
        try #require(run.status == 0, "\(run.output)")
        let (check, report) = try CheckCommandTests.check(runs.appendingPathComponent("b"))
        let places = Dictionary(report.places.map { ($0.place, $0) }, uniquingKeysWith: { first, _ in first })
        // The pipeline's own checks ran: every sink place, the balance invariant and the staleness of each path.
        for place in ["postgres.rows", "clickhouse.rows", "falkordb.paid-edges", "redis.features", "invariant.balances",
            "invariant.graph-ledger", "staleness.redis", "staleness.clickhouse", "clickhouse.merchant-minute",
            "postgres.balances", "falkordb.paid-per-user", "falkordb.paid-per-merchant"]
        {
            #expect(places[place] != nil, "\(place) was not checked")
        }
        guard let bugPlace = expectation.place else {
            #expect(check.status == 0, "\(check.output)")
            #expect(report.validity == .valid)
            return
        }
        #expect(check.status == 1, "\(check.output)")
        let found = try #require(places[bugPlace])
        #expect(found.validity == .invalid, "\(bugPlace): \(found.counts)")
        let reported = expectation.kinds.reduce(Int64(0)) { $0 + (found.counts[$1.rawValue] ?? 0) }
        #expect(reported > 0, "\(bugPlace) reports \(found.counts), expected one of \(expectation.kinds)")
        // Anomalies come with their keys.
        #expect(!found.anomalies.isEmpty)
        for place in expectation.derivedInvalid {
            let derived = try #require(places[place])
            #expect(derived.validity == .invalid && !derived.anomalies.isEmpty, "\(place): \(derived.counts)")
        }
        let sinks = (try? RunReport.decode(Data(contentsOf: runs.appendingPathComponent("b/report.json"))))?.pipeline ?? []
        let jumps = sinks.map { "\($0.sink): \($0.offsetJumps ?? 0) jumps \($0.firstJump ?? "")" }
        for place in report.places
        where place.place != bugPlace && !expectation.alsoInvalid.union(expectation.derivedInvalid).contains(place.place)
        {
            #expect(
                place.validity == .valid,
                "\(place.place) is \(place.validity.rawValue): \(place.counts) \(place.anomalies.prefix(3)); sinks: \(jumps)")
        }
    }
}
