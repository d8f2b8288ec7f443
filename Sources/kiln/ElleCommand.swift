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

/// Elle's workloads (list-append, rw-register) and checkers: run a workload on PostgreSQL or Redis, or check a
/// history file.
struct ElleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elle",
        abstract:
            "Transactional anomalies (Elle's list-append, rw-register): run a workload on PostgreSQL or Redis, check a history.",
        subcommands: [Postgres.self, Redis.self, Check.self]
    )

    static func parseModels(_ text: String) throws -> [ConsistencyModel] {
        if text == "all" { return ConsistencyModel.allCases }
        return try text.split(separator: ",").map {
            guard let model = ConsistencyModel(rawValue: String($0)) else {
                throw Failure(code: .invalidInput, message: "--models: unknown model \($0)")
            }
            return model
        }
    }

    static func parseWorkload(_ text: String) throws -> ElleWorkload {
        guard let workload = ElleWorkload(rawValue: text) else {
            throw Failure(code: .invalidInput, message: "--workload: expected list-append or rw-register, not \(text)")
        }
        return workload
    }

    /// Prints one line per model and the first witnesses of the forbidden kinds; the exit code is the worst verdict
    /// among the models asked.
    static func report(
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

    /// Writes the run directory of a list-append run (elle-history.jsonl, elle-run.json, a phase-less report.json)
    /// and checks it as `kiln check DIR` does, judged against the model the store promises at that level.
    /// The options both workloads share: size, models, outputs, seed and key choice.
    struct WorkloadOptions: ParsableArguments {
        @Option(help: "Transactions (K allowed).") var transactions = "2000"
        @Option(help: "Worker threads, one connection each.") var concurrency = 10
        @Option(help: "Keys (rows in PostgreSQL).") var keys = 8
        @Option(help: "Models to check, comma-separated, or all.") var models = "all"
        @Option(help: "Write the history as JSON lines here.") var history: String?
        @Option(help: "Write the check results (JSON) here.") var json: String?
        @Option(help: "Seed.") var seed: UInt64 = 42
        @Option(help: "Workload: list-append (appends to lists) or rw-register (writes of single-value registers).")
        var workload = "list-append"
        @Option(
            help:
                "Retire a key after this many writes and use a fresh one (Elle's max-writes-per-key; keeps lists short under Zipf). Default: never."
        )
        var maxWritesPerKey: Int?
        @Option(help: "Key choice: uniform, exponential[:RATE] (0.5) or zipf[:EXPONENT] (1).") var keyChoice = "uniform"
        @Option(
            help: "Write the run into DIR (elle-history.jsonl, report.json…) and check it as `kiln check DIR` does.")
        var recordRun: String?

        func count() throws -> Int {
            guard let count = CountSuffix.parse(transactions), count > 0 else {
                throw Failure(code: .invalidInput, message: "--transactions: expected a count")
            }
            return count
        }

        func parsedWorkload() throws -> ElleWorkload { try ElleCommand.parseWorkload(workload) }

        /// Counts below 1 would divide by zero or create no keys: rejected before anything runs (exit 64).
        func validate() throws {
            if concurrency < 1 { throw ValidationError("--concurrency: expected at least 1, not \(concurrency)") }
            if keys < 1 { throw ValidationError("--keys: expected at least 1, not \(keys)") }
            if let maxWritesPerKey, maxWritesPerKey < 1 {
                throw ValidationError("--max-writes-per-key: expected at least 1, not \(maxWritesPerKey)")
            }
            if ElleWorkload(rawValue: workload) == nil {
                throw ValidationError("--workload: expected list-append or rw-register, not \(workload)")
            }
        }

        func parsedMaxWritesPerKey() throws -> Int? {
            if let maxWritesPerKey, maxWritesPerKey < 1 {
                throw Failure(code: .invalidInput, message: "--max-writes-per-key: expected at least 1")
            }
            return maxWritesPerKey
        }

        func parsedKeyChoice() throws -> ListAppendKeyChoice {
            guard let choice = ListAppendKeyChoice(keyChoice) else {
                throw Failure(code: .invalidInput, message: "--key-choice: expected uniform, exponential or zipf")
            }
            return choice
        }

        /// Runs the workload, prints its one-line summary (`STORE ISOLATION: N transactions in S s (ok, fail,
        /// info)`), writes its history when asked, then records the run (`--record-run`) or checks it.
        func runAndCheck(store: String, isolation: String, run: () throws -> [ListAppendTransaction]) throws
            -> KilnExitCode
        {
            let models = try ElleCommand.parseModels(self.models)
            let workload = try parsedWorkload()
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
                return try ElleCommand.recordRun(
                    transactions, workload: workload, in: recordRun, store: store, isolation: isolation, seed: seed,
                    startedAt: startedAt)
            }
            return try ElleCommand.report(transactions, workload: workload, models: models, json: json)
        }
    }

    static func recordRun(
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

    struct Postgres: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run list-append transactions on the stack's PostgreSQL at an isolation level, then check them.",
            discussion: "Table `--table` is created and dropped. Exit 0 valid under every model asked, 1 anomaly.")
        @OptionGroup var options: StackOptions
        @Option(help: "read-committed, repeatable-read or serializable.") var isolation = "serializable"
        @OptionGroup var workload: WorkloadOptions
        @Option(help: "Table name.") var table = "kiln_elle_list_append"

        func run() throws {
            try exiting {
                guard let isolation = ListAppendPostgresWorkload.Isolation(rawValue: isolation) else {
                    throw Failure(code: .invalidInput, message: "--isolation: unknown level \(self.isolation)")
                }
                let pg = try options.loadStack().postgres
                let endpoint = PostgresEndpoint(
                    host: pg.primary.host, port: pg.primary.port, database: pg.database, user: pg.user)
                var run = ListAppendPostgresWorkload(
                    endpoint: endpoint, isolation: isolation, table: table, transactions: try workload.count(),
                    concurrency: workload.concurrency, keys: workload.keys, seed: workload.seed)
                run.keyChoice = try workload.parsedKeyChoice()
                run.workload = try workload.parsedWorkload()
                run.maxWritesPerKey = try workload.parsedMaxWritesPerKey()
                return try workload.runAndCheck(store: "postgres", isolation: isolation.rawValue, run: run.run)
            }
        }
    }

    struct Redis: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run list-append transactions as MULTI/EXEC on the stack's Redis primary, then check them.",
            discussion:
                "Keys `--prefix:N` are deleted before and after. Exit 0 valid under every model asked, 1 anomaly.")
        @OptionGroup var options: StackOptions
        @OptionGroup var workload: WorkloadOptions
        @Option(help: "Key prefix.") var prefix = "kiln:elle:list-append"
        @Option(help: "Transaction form: multi-exec or lua (one EVAL per transaction).") var form = "multi-exec"

        func run() throws {
            try exiting {
                let primary = try options.loadStack().redis.primary
                var run = ListAppendRedisWorkload(
                    host: primary.host, port: primary.port, prefix: prefix, transactions: try workload.count(),
                    concurrency: workload.concurrency, keys: workload.keys, seed: workload.seed)
                run.keyChoice = try workload.parsedKeyChoice()
                run.workload = try workload.parsedWorkload()
                run.maxWritesPerKey = try workload.parsedMaxWritesPerKey()
                guard let form = ListAppendRedisWorkload.Form(rawValue: self.form) else {
                    throw Failure(code: .invalidInput, message: "--form: expected multi-exec or lua")
                }
                run.form = form
                return try workload.runAndCheck(store: "redis", isolation: form.rawValue, run: run.run)
            }
        }
    }

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
                let models = try ElleCommand.parseModels(self.models)
                let workload = try ElleCommand.parseWorkload(self.workload)
                let transactions: [ElleTransaction]
                do {
                    transactions = try ListAppendTransaction.parseJSONLines(
                        try Data(contentsOf: URL(fileURLWithPath: file)))
                } catch {
                    throw Failure(code: .invalidInput, message: "\(file): \(error)")
                }
                do {
                    return try ElleCommand.report(transactions, workload: workload, models: models, json: json)
                } catch let failure as Failure {
                    throw Failure(code: failure.code, message: "\(file): \(failure.message)")
                }
            }
        }
    }
}
