import Foundation
import KilnCheck
import KilnCore
import KilnReport
import KilnScenario
import KilnStack
import Testing

@testable import KilnRunner

/// The orchestration library called in-process, as `kiln` calls it: a run checked after it ends, and the one
/// error -> exit code mapping every command goes through.
@Suite("KilnRunner: run and check in-process (embedded stack)", .serialized)
struct RunnerLibraryTests {
    /// A small load with a unique namespace, written by `RunController` into a fresh runs directory.
    static func run(_ name: String, _ body: String, check: Bool) throws -> (KilnExitCode, URL) {
        let file = try DrillTests.scenario(name, body)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        var controller = RunController(scenario: file.path)
        controller.runsDirectory = runs.path
        controller.id = "r"
        controller.check = check
        let code = try controller.run()
        return (code, runs.appendingPathComponent("r"))
    }

    @Test func aRunGivenCheckIsCheckedInProcessAndJudgedByItsCheck() throws {
        let name = "rlib_\(UInt32.random(in: 0...UInt32.max))"
        let (code, directory) = try Self.run(
            name,
            """
            phases:
              - {name: load, executor: bulk, rows: 3K, batch: 1K, workers: 2, stores: [postgres, clickhouse, redis]}
            """, check: true)
        #expect(code == .ok)
        let run = try RunData.load(directory)
        let check = try #require(run.check, "the check did not run")
        #expect(check.validity == .valid)
        #expect(check.places.contains { $0.place == "postgres.rows" && $0.scanned == 3_000 }, "\(check.places.map(\.place))")
        #expect(run.report?.verdict == .passed && run.report?.checkRequired == true)
        #expect(ReportResult.of(run).exitCode == code)
        // The same check again, called as `kiln check` calls it, finds the same.
        let again = try CheckRun(runDirectory: directory.path).check()
        #expect(again == .ok)
    }

    @Test func aCheckThatCannotRunLeavesTheRunNotCheckedWithItsReason() throws {
        let name = "rlne_\(UInt32.random(in: 0...UInt32.max))"
        let (code, directory) = try Self.run(
            name,
            """
            blackbox:
              entry: kafka
              places:
                - {store: postgres, table: \(name)_no_such_ledger, key: id}
            phases:
              - {name: stream, executor: constant-arrival-rate, rate: 50, duration: 1s, workers: 2, mix: {kafka.produce: 1}}
            """, check: true)
        #expect(code == .unknown)
        let report = try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        #expect(report.verdict == .notChecked, "\(report.verdict)")
        #expect(report.notChecked?.contains("\(name)_no_such_ledger") == true, "\(String(describing: report.notChecked))")
    }
}

@Suite("KilnRunner: one error handler")
struct ErrorExitTests {
    struct Unexpected: Error, CustomStringConvertible {
        var description: String { "a disk went away" }
    }

    @Test func knownFailuresKeepTheirCodesAndAnythingElseIs70() {
        #expect(ErrorExit.of(Failure(code: .invalidInput, message: "x")).code == .invalidInput)
        #expect(ErrorExit.of(Failure(code: .thresholdFailed, message: "x")).code == .thresholdFailed)
        #expect(ErrorExit.of(StackError(server: "postgres", message: "down")).code == .stackUnavailable)
        #expect(ErrorExit.of(SpecError(file: "f.yaml", line: 1, column: 2, field: "a", message: "bad")).code == .invalidInput)
        let unexpected = ErrorExit.of(Unexpected())
        #expect(unexpected.code == .internalError)
        #expect(unexpected.message == "kiln: internal error: a disk went away")
    }

    /// A run directory whose check.json cannot be written (a directory is in its place): the check's write throws a
    /// Foundation error no command expects.
    static func unwritableCheck() throws -> URL {
        let directory = try ElleRunFixture.directory(ElleCommandLineTests.listAppendG2Item)
        let blocker = directory.appendingPathComponent("check.json")
        try FileManager.default.createDirectory(at: blocker, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: blocker.appendingPathComponent("keep"))
        return directory
    }

    @Test func anUnexpectedErrorOfTheLibraryIsNotAFailure() throws {
        let directory = try Self.unwritableCheck()
        #expect(throws: (any Error).self) { try CheckRun(runDirectory: directory.path).check() }
        do {
            _ = try CheckRun(runDirectory: directory.path).check()
        } catch {
            #expect(!(error is Failure))
            #expect(ErrorExit.of(error).code == .internalError)
        }
    }

    @Test func aCommandHittingAnUnexpectedErrorExits70WithItsMessage() throws {
        let directory = try Self.unwritableCheck()
        let result = try CommandLineTests.kiln(["check", directory.path])
        #expect(result.status == KilnExitCode.internalError.rawValue, "\(result.output)")
        #expect(result.output.contains("kiln: internal error: "), "\(result.output)")
        #expect(result.output.contains("check.json"), "\(result.output)")
    }
}
