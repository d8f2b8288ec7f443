import Foundation
import KilnCheck
import KilnCore
import KilnElle
import KilnLoad
import KilnScenario
import KilnStores

/// `kiln elle`: Elle's workloads (list-append, rw-register) run and checked, histories checked against consistency
/// models, a workload's run recorded as a run directory `kiln check` reads.
public enum ElleRun {
    public static func parseModels(_ text: String) throws -> [ConsistencyModel] {
        if text == "all" { return ConsistencyModel.allCases }
        return try text.split(separator: ",").map {
            guard let model = ConsistencyModel(rawValue: String($0)) else {
                throw Failure(code: .invalidInput, message: "--models: unknown model \($0)")
            }
            return model
        }
    }

    public static func parseWorkload(_ text: String) throws -> ElleWorkload {
        guard let workload = ElleWorkload(rawValue: text) else {
            throw Failure(code: .invalidInput, message: "--workload: expected list-append or rw-register, not \(text)")
        }
        return workload
    }

    /// Prints one line per model and the first witnesses of the forbidden kinds; the exit code is the worst verdict
    /// among the models asked.
    public static func report(
        _ transactions: [ElleTransaction], workload: ElleWorkload, models: [ConsistencyModel], json: String?
    ) throws -> KilnExitCode {
        // Parse once: a history of the other workload's ops, or values outside 32 bits, is invalid input.
        var listAppend: ListAppendHistory?
        var registers: RWRegisterHistory?
        do {
            switch workload {
            case .listAppend: listAppend = try ListAppendHistory(transactions)
            case .rwRegister: registers = try RWRegisterHistory(transactions)
            }
        } catch {
            throw Failure(code: .invalidInput, message: "\(workload.rawValue) history: \(error)")
        }
        var results: [ElleCheckResult] = []
        for model in models {
            let result =
                if let listAppend { ListAppendChecker(model: model).check(listAppend) } else {
                    RWRegisterChecker(model: model).check(registers!)
                }
            results.append(result)
            print(result.summary)
        }
        for result in results where result.validity == .invalid {
            for kind in result.forbiddenFound {
                if let witness = result.witnesses.first(where: { $0.kind == kind }) {
                    print("\n[\(result.model.rawValue)] " + witness.text)
                }
            }
        }
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(results).write(to: URL(fileURLWithPath: json))
        }
        if results.contains(where: { $0.validity == .invalid }) { return .anomaly }
        if results.contains(where: { $0.validity == .unknown }) { return .unknown }
        return .ok
    }

    /// Runs the workload, prints its one-line summary (`STORE ISOLATION: N transactions in S s (ok, fail,
    /// info)`), writes its history when asked, then records the run (`--record-run`) or checks it.
    public static func runAndCheck(
        store: String, isolation: String, workload: ElleWorkload, models: [ConsistencyModel], history: String?,
        recordRun: String?, seed: UInt64, json: String?, run: () throws -> [ListAppendTransaction]
    ) throws -> KilnExitCode {
        let started = ContinuousClock.now
        let startedAt = MonotonicClock.wallMillis()
        let transactions = try run()
        let seconds = started.duration(to: .now) / .seconds(1)
        let byOutcome = Dictionary(grouping: transactions, by: \.outcome).mapValues(\.count)
        print(
            String(
                format: "%@ %@ %@: %d transactions in %.1f s (ok %d, fail %d, info %d)", store, isolation,
                workload.rawValue, transactions.count, seconds, byOutcome[.ok] ?? 0, byOutcome[.fail] ?? 0, byOutcome[.info] ?? 0))
        if let history {
            try ListAppendTransaction.jsonLines(transactions).write(to: URL(fileURLWithPath: history))
        }
        if let recordRun {
            return try Self.recordRun(
                transactions, workload: workload, in: recordRun, store: store, isolation: isolation, seed: seed,
                startedAt: startedAt)
        }
        return try report(transactions, workload: workload, models: models, json: json)
    }

    /// Writes the run directory of a list-append run (elle-history.jsonl, elle-run.json, a phase-less report.json)
    /// and checks it as `kiln check DIR` does, judged against the model the store promises at that level.
    public static func recordRun(
        _ transactions: [ListAppendTransaction], workload: ElleWorkload, in path: String, store: String,
        isolation: String, seed: UInt64, startedAt: Int64
    ) throws -> KilnExitCode {
        guard let model = ListAppendRunDescription.promisedModel(store: store, isolation: isolation) else {
            throw Failure(code: .invalidInput, message: "\(store) \(isolation): no model to judge it against")
        }
        let directory = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try ListAppendTransaction.jsonLines(transactions).write(
            to: directory.appendingPathComponent(ListAppendRunDescription.historyFileName(workload)), options: .atomic)
        try ListAppendRunDescription(
            store: store, isolation: isolation, model: model, transactions: transactions.count, seed: seed,
            workload: workload
        ).write(to: directory)
        // A directory that already holds a run (a `kiln run`'s ledger history, or the other workload's history)
        // keeps its report and timeline: the Elle history is one more input of its check.
        let reportFile = directory.appendingPathComponent("report.json")
        let ledgerRun = FileManager.default.fileExists(atPath: directory.appendingPathComponent("history.jsonl").path)
        if !FileManager.default.fileExists(atPath: reportFile.path) {
            let report = RunReport.standalone(
                id: directory.lastPathComponent, scenario: "elle \(workload.rawValue) \(store) \(isolation)",
                seed: seed, stack: store, startedAt: startedAt, endedAt: MonotonicClock.wallMillis())
            try RunReport.encoder.encode(report).write(to: reportFile, options: .atomic)
            // No per-second samples: the workload is measured by its history, not by a timeline.
            try Data().write(to: directory.appendingPathComponent("timeline.jsonl"), options: .atomic)
        }
        if ledgerRun {
            // The run's own check.json is `kiln check DIR`'s to write (every place composed); here only the verdict
            // of this history against the promised model is printed, and is the exit code.
            print("recorded \(ListAppendRunDescription.historyFileName(workload)) beside the run's history.jsonl: "
                + "`kiln check \(path)` checks the whole run")
            return try report(transactions, workload: workload, models: [model], json: nil)
        }
        return try CheckRun.checkTransactionsOnly(directory, show: 20)
    }
}
