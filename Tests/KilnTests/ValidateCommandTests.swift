import Foundation
import Testing

/// `kiln validate`: every shipped file is valid; a broken one is named at its line, column and field (exit 64),
/// whatever the breakage — never a crash.
@Suite("kiln validate")
struct ValidateCommandTests {
    @Test func everyShippedScenarioStackAndSpecIsValid() throws {
        let home = TestStack.paths.home
        var files: [String] = []
        for directory in ["Scenarios", "Scenarios/bugs", "Scenarios/drills", "Scenarios/stacks", "Scenarios/selfcheck", "Generators"] {
            let url = home.appendingPathComponent(directory)
            for name in try FileManager.default.contentsOfDirectory(atPath: url.path).sorted() where name.hasSuffix(".yaml") {
                files.append(url.appendingPathComponent(name).path)
            }
        }
        #expect(files.count > 25)
        let outcome = try CommandLineTests.kiln(["validate"] + files)
        #expect(outcome.status == 0, "\(outcome.output)")
        #expect(outcome.output.split(separator: "\n").filter { $0.hasPrefix("ok ") }.count == files.count)
    }

    @Test func brokenFilesAreNamedAtLineColumnAndField() throws {
        let spec = TestStack.paths.home.appendingPathComponent("Generators/fraud-platform.yaml").path
        let stack = TestStack.paths.embeddedStackFile.path
        let cases: [(String, String, String)] = [
            // (file text, expected location, expected words)
            ("name: x\nstack: \(stack)\ndataset: {spec: \(spec), seed: 1, rows: 1K}\nphases:\n  - {name: a, executor: bulk, rows: 1K, stores: [postgres]}\ntimeout: 909090909090s\n",
             ":6:10: timeout:", "at most 366 days"),
            ("name: x\nstack: \(stack)\ndataset: {spec: \(spec), seed: -4, rows: 1K}\nphases: []\n", ":3:", "dataset.seed"),
            ("name: x\ndataset: {spec: \(spec), seed: 4, rows: 1K}\nphases: []\n", ":1:1: stack:", "no `stack:` given"),
            ("name: x\nphases: [\n", ":3:1:", ""),
            ("name: x\nstack: \(stack)\ndataset: {spec: \(spec), seed: 1, rows: 1K}\nphases:\n  - name: a\n    executor: bulk\n    rows: 2K\n    stores: [postgres]\n",
             ":7:11: phases.rows:", "but the dataset has 1000"),
            ("kind: embedded\npostgres: {primary: 127.0.0.1:99999}\n", ":2:", "postgres.primary"),
            ("name: x\nentities: {users: 0, merchants: 1, devices: 1, locations: 1}\n", ":2:", "entities.users"),
            ("just: a mapping\n", ":1:1:", "cannot tell what this file is"),
        ]
        for (text, location, words) in cases {
            let file = try CommandLineTests.temporaryFile("broken.yaml", text)
            let outcome = try CommandLineTests.kiln(["validate", file.path])
            #expect(outcome.status == 64, "\(text): \(outcome.output)")
            #expect(outcome.output.contains(file.path + location), "\(text): \(outcome.output)")
            #expect(words.isEmpty || outcome.output.contains(words), "\(text): \(outcome.output)")
        }
    }

    @Test func bytesThatAreNotUTF8AreNamedAtTheirPosition() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-utf8"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("latin1.yaml")
        try Data("name: x\nphases: [caf".utf8 + [0xE9] + Array("]\n".utf8)).write(to: file)
        let outcome = try CommandLineTests.kiln(["validate", file.path])
        #expect(outcome.status == 64)
        #expect(outcome.output.contains("\(file.path):2:13: not UTF-8 text (byte 0xE9"), "\(outcome.output)")
    }

    @Test func helpAndUsageErrorsKeepArgumentParsersExitCodes() throws {
        for arguments in [["--help"], ["run", "--help"], ["stack", "--help"], ["stack"]] {
            let outcome = try CommandLineTests.kiln(arguments)
            #expect(outcome.status == 0, "\(arguments): \(outcome.output)")
            #expect(outcome.output.contains("USAGE") || outcome.output.contains("OVERVIEW"), "\(arguments)")
            #expect(!outcome.output.contains("kiln: internal error"), "\(arguments): \(outcome.output)")
        }
        let unknown = try CommandLineTests.kiln(["run", "--no-such-option"])
        #expect(unknown.status == 64, "\(unknown.output)")
    }
}
