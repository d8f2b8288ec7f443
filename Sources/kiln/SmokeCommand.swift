import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnScenario
import KilnSmoke
import KilnStack

struct SmokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "smoke",
        abstract: "Write a fixed transaction set to all five stores, read each back, and compare.",
        discussion: "Prints one row per store; exits 0 only when all five agree (1 when one disagrees, 69 when one "
            + "cannot be reached)."
    )

    @Argument(help: "Smoke scenario file (default: Scenarios/smoke.yaml).")
    var scenario: String?

    @Option(name: .customLong("stack"), help: "Stack file overriding the scenario's `stack`.")
    var stackFile: String?

    @Option(help: "Number of transactions overriding the scenario's.")
    var transactions: Int?

    @Option(help: "Seconds any one blocking call to a store may take.")
    var timeout = 10

    @Flag(help: "Keep the smoke tables, topic, keys and graph for inspection.")
    var keep = false

    @Flag(name: .shortAndLong, help: "Log more detail.")
    var verbose = false

    func validate() throws {
        if let transactions, transactions < 1 { throw ValidationError("--transactions must be at least 1") }
        if timeout < 1 { throw ValidationError("--timeout must be at least 1 second") }
    }

    func run() throws {
        try exiting {
            let paths = KilnPaths.resolve()
            let file = scenario.map { URL(fileURLWithPath: $0) } ?? paths.home.appendingPathComponent("Scenarios/smoke.yaml")
            var smoke = try SmokeScenario.load(contentsOf: file)
            if let stackFile { smoke.stack = try StackDefinition.load(contentsOf: URL(fileURLWithPath: stackFile)) }
            if let transactions { smoke.transactions = transactions }
            var options = StackOptions()
            options.verbose = verbose
            let run = SmokeRun(
                stack: smoke.stack, transactions: SmokeTransaction.set(seed: smoke.seed, count: smoke.transactions),
                logger: options.logger("kiln.smoke"), timeoutSeconds: timeout, keep: keep)
            let results = run.run()
            var rows = [["STORE", "ENDPOINT", "WRITTEN", "READ BACK", "EQUAL", "RESULT"]]
            for result in results {
                rows.append([
                    result.store, result.endpoint, String(result.written), String(result.readBack), String(result.equal),
                    result.summary,
                ])
            }
            print(TextTable.render(rows))
            if results.allSatisfy(\.agrees) {
                print("all \(results.count) stores agree on \(smoke.transactions) transactions (stack \(smoke.stack.name))")
                return .ok
            }
            return results.contains { $0.error != nil } ? .stackUnavailable : .anomaly
        }
    }
}
