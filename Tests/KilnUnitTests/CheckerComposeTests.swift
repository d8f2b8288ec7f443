import Foundation
@testable import KilnCheck
import KilnCore
import KilnStores
import Logging
import Testing
import KilnTestSupport

/// A checker that answers what it is told to (or throws), for the composition's rules.
private struct FixedChecker: Checker {
    struct Broken: Error, CustomStringConvertible {
        var description: String { "the store did not answer" }
    }

    var name: String
    var validity: Validity?

    func check(_ context: CheckContext) throws -> CheckResult {
        guard let validity else { throw Broken() }
        let place = PlaceResult(
            place: name, source: "test", validity: validity, expected: 1, indeterminate: 0, failedWrites: 0, scanned: 1,
            indeterminatePresent: 0, counts: validity == .invalid ? ["lost": 1] : [:],
            anomalies: validity == .invalid ? [Anomaly(kind: .lost, txnID: 7, detail: "absent")] : [], error: nil,
            seconds: 0)
        return CheckResult(validity: validity, places: [place])
    }
}

@Suite("checkers: compose and registry")
struct CheckerComposeTests {
    static let context = CheckContext(
        client: ClientContext(
            stack: TestStack.definition, dataset: ReconcileFixture.dataset, environment: [:],
            logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }),
        written: [:], drivers: [])

    static func compose(_ parts: [Validity?]) -> CheckResult {
        ComposedChecker(parts.enumerated().map { FixedChecker(name: "c\($0.offset)", validity: $0.element) })
            .check(context)
    }

    @Test func aThrowingCheckerIsUnknownWithItsMessageNeverValid() {
        let result = Self.compose([.valid, nil, .valid])
        #expect(result.validity == .unknown)
        #expect(result.places.map(\.place) == ["c0", "c1", "c2"])
        #expect(result.places[1].validity == .unknown)
        #expect(result.places[1].error == "the store did not answer")
    }

    @Test func validAndInvalidIsInvalid() {
        let result = Self.compose([.valid, .invalid])
        #expect(result.validity == .invalid)
        #expect(result.anomalies == [Anomaly(kind: .lost, txnID: 7, detail: "absent")])
    }

    @Test func unknownAndValidIsUnknown() {
        #expect(Self.compose([.unknown, .valid]).validity == .unknown)
        #expect(Self.compose([.valid, .unknown]).validity == .unknown)
    }

    @Test func invalidOutranksUnknownAndAThrow() {
        #expect(Self.compose([.unknown, .invalid, nil]).validity == .invalid)
    }

    @Test func allValidIsValid() {
        #expect(Self.compose([.valid, .valid]).validity == .valid)
    }

    /// Nothing composed means nothing was checked: that may not read as a pass.
    @Test func anEmptyCompositionIsUnknown() {
        let result = Self.compose([])
        #expect(result.validity == .unknown)
        #expect(result.places.isEmpty)
    }

    @Test func validityOrderIsInvalidOverUnknownOverValid() {
        #expect(Validity.worst([.valid, .unknown]) == .unknown)
        #expect(Validity.worst([.unknown, .invalid, .valid]) == .invalid)
        #expect(Validity.worst([Validity]()) == .valid)
    }

    @Test func theRegistryNamesEachCheckerOnce() {
        let names = CheckerRegistry.names
        #expect(Set(names).count == names.count)
        #expect(names.first == "reconcile")
        #expect(names.contains("dual-primary") && names.contains("elle.list-append"))
    }

    /// A context without scanned places and without a run directory has nothing to judge: no checker applies.
    @Test func nothingAppliesToAnEmptyContext() throws {
        #expect(try CheckerRegistry.checker(for: Self.context).parts.isEmpty)
    }

    /// A run directory's black-box staleness file that is not one is invalid input (the factory throws), not a
    /// checker that could not decide.
    @Test func aMalformedStalenessFileIsAnInputErrorNamingIt() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-check-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent(BlackBoxStalenessReport.fileName)
        try Data("{ not json".utf8).write(to: file)
        var context = Self.context
        context.runDirectory = directory
        context.blackbox = true
        let error = #expect(throws: (any Error).self) { try CheckerRegistry.checker(for: context) }
        #expect("\(error.map { "\($0)" } ?? "")".contains(file.path))
    }
}

/// The one function that maps a run's results to its verdict and exit code (README: exit codes).
@Suite("run results: verdict and exit code")
struct RunResultsTests {
    @Test(arguments: [
        (RunResults(), RunVerdict.passed, KilnExitCode.ok),
        (RunResults(check: .valid), .passed, .ok),
        (RunResults(check: .invalid), .anomaly, .anomaly),
        (RunResults(check: .unknown), .unknown, .unknown),
        (RunResults(thresholdsFailed: true), .thresholdsFailed, .thresholdFailed),
        (RunResults(drills: [.passed, .failed]), .thresholdsFailed, .thresholdFailed),
        (RunResults(drills: [.unknown]), .unknown, .unknown),
        (RunResults(drills: [.passed]), .passed, .ok),
        (RunResults(interrupted: true), .interrupted, .unknown),
        (RunResults(notChecked: true), .notChecked, .unknown),
        (RunResults(partial: true), .partial, .unknown),
        // Precedence: an anomaly outranks everything; a definite failure outranks what could not be decided.
        (RunResults(check: .invalid, thresholdsFailed: true, drills: [.failed], notChecked: true), .anomaly, .anomaly),
        (RunResults(check: .unknown, thresholdsFailed: true), .thresholdsFailed, .thresholdFailed),
        (RunResults(thresholdsFailed: true, interrupted: true), .thresholdsFailed, .thresholdFailed),
        (RunResults(interrupted: true, notChecked: true), .interrupted, .unknown),
        (RunResults(check: .unknown, notChecked: true), .notChecked, .unknown),
        (RunResults(check: .valid, drills: [.unknown], partial: true), .unknown, .unknown),
        (RunResults(check: .valid, partial: true), .partial, .unknown),
    ])
    func resultsMapToOneVerdictAndExitCode(results: RunResults, verdict: RunVerdict, code: KilnExitCode) {
        #expect(results.verdict == verdict)
        #expect(results.exitCode == code)
    }

    /// Only a definite pass exits 0: every verdict that is not `passed` exits non-zero.
    @Test func onlyPassedExitsZero() {
        for verdict in RunVerdict.allCases {
            #expect((verdict.exitCode == .ok) == (verdict == .passed), "\(verdict)")
        }
    }

    /// report.json spells each verdict as it always has.
    @Test func verdictsSerializeToTheirReportSpelling() throws {
        let spelled = try RunVerdict.allCases.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        #expect(spelled == [
            #""passed""#, #""anomaly""#, #""thresholds-failed""#, #""not-checked""#, #""unknown""#, #""partial""#,
            #""interrupted""#, #""running""#,
        ])
        #expect("\(RunVerdict.thresholdsFailed)" == "thresholds-failed")
        #expect(try JSONDecoder().decode([Verification].self, from: Data(#"["yes","no","unknown"]"#.utf8))
            == [.yes, .no, .unknown])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([DrillVerdict].self, from: Data(#"["maybe"]"#.utf8)) }
    }
}
