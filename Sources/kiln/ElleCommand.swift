import ArgumentParser
import Foundation
import KilnCheck
import KilnCore
import KilnElle
import KilnLoad
import KilnPostgres
import KilnScenario
import KilnStores

/// Elle's list-append workload and checker: run the workload on PostgreSQL, or check a history file.
struct ElleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elle",
        abstract: "Transactional anomalies (Elle's list-append): run the workload on PostgreSQL, check a history.",
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

    /// Prints one line per model and the first witnesses of the forbidden kinds; the exit code is the worst verdict
    /// among the models asked.
    static func report(_ history: ListAppendHistory, models: [ConsistencyModel], json: String?) throws -> KilnExitCode {
        var results: [ListAppendCheckResult] = []
        for model in models {
            let result = ListAppendChecker(model: model).check(history)
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
            let started = ContinuousClock.now
            let startedAt = MonotonicClock.wallMillis()
            let transactions = try run()
            let seconds = started.duration(to: .now) / .seconds(1)
            let byOutcome = Dictionary(grouping: transactions, by: \.outcome).mapValues(\.count)
            print(
                String(
                    format: "%@ %@: %d transactions in %.1f s (ok %d, fail %d, info %d)", store, isolation,
                    transactions.count, seconds, byOutcome[.ok] ?? 0, byOutcome[.fail] ?? 0, byOutcome[.info] ?? 0))
            if let history {
                try ListAppendTransaction.jsonLines(transactions).write(to: URL(fileURLWithPath: history))
            }
            if let recordRun {
                return try ElleCommand.recordRun(
                    transactions, in: recordRun, store: store, isolation: isolation, seed: seed, startedAt: startedAt)
            }
            return try ElleCommand.report(try ListAppendHistory(transactions), models: models, json: json)
        }
    }

    static func recordRun(
        _ transactions: [ListAppendTransaction], in path: String, store: String, isolation: String, seed: UInt64,
        startedAt: Int64
    ) throws -> KilnExitCode {
        guard let model = ListAppendRunDescription.promisedModel(store: store, isolation: isolation) else {
            throw Failure(code: .invalidInput, message: "\(store) \(isolation): no model to judge it against")
        }
        let directory = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try ListAppendTransaction.jsonLines(transactions).write(
            to: directory.appendingPathComponent(ListAppendRunDescription.historyFileName), options: .atomic)
        try ListAppendRunDescription(
            store: store, isolation: isolation, model: model, transactions: transactions.count, seed: seed
        ).write(to: directory)
        let report = RunReport.standalone(
            id: directory.lastPathComponent, scenario: "elle list-append \(store) \(isolation)", seed: seed,
            stack: store, startedAt: startedAt, endedAt: MonotonicClock.wallMillis())
        try RunReport.encoder.encode(report).write(
            to: directory.appendingPathComponent("report.json"), options: .atomic)
        // No per-second samples: the workload is measured by its history, not by a timeline.
        try Data().write(to: directory.appendingPathComponent("timeline.jsonl"), options: .atomic)
        return try CheckCommand.checkTransactionsOnly(directory, show: 20)
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
            abstract: "Check a list-append history (JSON lines) against consistency models.",
            discussion: "Exit 0 valid under every model asked, 1 anomaly, 3 unknown, 64 unreadable history.")
        @Argument(help: "History file, one transaction per line.") var file: String
        @Option(help: "Models to check, comma-separated, or all.") var models = "all"
        @Option(help: "Write the check results (JSON) here.") var json: String?

        func run() throws {
            try exiting {
                let models = try ElleCommand.parseModels(self.models)
                let data: Data
                let history: ListAppendHistory
                do {
                    data = try Data(contentsOf: URL(fileURLWithPath: file))
                    history = try ListAppendHistory(try ListAppendTransaction.parseJSONLines(data))
                } catch {
                    throw Failure(code: .invalidInput, message: "\(file): \(error)")
                }
                return try ElleCommand.report(history, models: models, json: json)
            }
        }
    }
}
