import ArgumentParser
import Foundation
import KilnCheck
import KilnCore
import KilnRunner
import KilnElle
import KilnLoad
import KilnPostgres
import KilnScenario
import KilnStores

extension ElleCommand {
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a list-append or rw-register history (JSON lines) against consistency models.",
            discussion: "Exit 0 valid under every model asked, 1 anomaly, 3 unknown, 64 unreadable history.")
        @Argument(help: "History file, one transaction per line.") var file: String
        @Option(help: "Models to check, comma-separated, or all.") var models = "all"
        @Option(help: "Write the check results (JSON) here.") var json: String?
        @Option(help: "Workload of the history: list-append or rw-register.") var workload = "list-append"

        func run() throws {
            try exiting {
                let models = try ElleRun.parseModels(self.models)
                let workload = try ElleRun.parseWorkload(self.workload)
                let transactions: [ElleTransaction]
                do {
                    transactions = try ListAppendTransaction.parseJSONLines(
                        try Data(contentsOf: URL(fileURLWithPath: file)))
                } catch {
                    throw Failure(code: .invalidInput, message: "\(file): \(error)")
                }
                do {
                    return try ElleRun.report(transactions, workload: workload, models: models, json: json)
                } catch let failure as Failure {
                    throw Failure(code: failure.code, message: "\(file): \(failure.message)")
                }
            }
        }
    }
}
