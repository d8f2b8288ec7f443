import ArgumentParser
import Foundation
import KilnCheck
import KilnCore
import KilnRunner
import KilnScenario
import KilnSmoke
import KilnStack
import KilnStores

struct SmokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "smoke",
        abstract: "Write the generator's rows to every store the stack serves, read each place back, and reconcile.",
        discussion: "Each backend's own client writes the rows (its bulk operation), its scanners read them back and the "
            + "reconcile checker compares every copy with the generator. Prints one row per place; exits 0 only when "
            + "all agree (1 when one disagrees, 69 when a store cannot be reached — the others are still checked)."
    )

    @Argument(help: "Smoke scenario file (default: Scenarios/smoke.yaml).")
    var scenario: String?

    @Option(name: .customLong("stack"), help: "Stack file overriding the scenario's `stack`.")
    var stackFile: String?

    @Option(help: "Number of rows overriding the scenario's.")
    var transactions: Int?

    @Option(help: "Seconds any one blocking call to a store may take.")
    var timeout = 10

    @Flag(help: "Keep what the run wrote (tables, topic, keys, graph of its namespace) for inspection.")
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
            let spec = smoke.datasetSpec ?? paths.home.appendingPathComponent("Generators/fraud-platform.yaml")
            let dataset = try SmokeRun.dataset(spec: spec, seed: smoke.seed, rows: smoke.transactions)
            var options = StackOptions()
            options.verbose = verbose
            let run = SmokeRun(
                stack: smoke.stack, dataset: dataset, logger: options.logger("kiln.smoke"), timeout: .seconds(timeout),
                keep: keep)
            let results = run.run()
            var rows = [["STORE", "PLACE", "ENDPOINT", "WRITTEN", "READ BACK", "EQUAL", "RESULT"]]
            for result in results {
                rows.append([
                    result.store, result.place.name, result.endpoint, String(result.written), String(result.readBack),
                    String(result.equal), result.summary,
                ])
            }
            print(TextTable.render(rows))
            for result in results where result.verdict == .disagrees {
                for anomaly in result.check?.anomalies.prefix(3) ?? [] {
                    print("\(result.place.id): \(anomaly.kind.rawValue) txn \(anomaly.txnID): \(anomaly.detail)")
                }
            }
            let code = results.exitCode
            let stores = Set(results.map(\.store)).count
            switch code {
            case .ok:
                print("all \(results.count) places of \(stores) stores agree with the generator on \(smoke.transactions) "
                    + "rows (stack \(smoke.stack.name), namespace \(run.namespace)\(keep ? ", kept" : ""))")
            case .unknown:
                print("nothing to smoke: stack \(smoke.stack.name) serves no store with places Kiln can read back")
            default:
                print("namespace \(run.namespace)\(keep ? " (kept)" : "")")
            }
            return code
        }
    }
}
