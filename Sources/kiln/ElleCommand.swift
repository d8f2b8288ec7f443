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

        func parsedWorkload() throws -> ElleWorkload { try ElleRun.parseWorkload(workload) }

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

        /// Runs the workload and checks it (`ElleRun.runAndCheck`).
        func runAndCheck(store: String, isolation: String, run: () throws -> [ListAppendTransaction]) throws
            -> KilnExitCode
        {
            try ElleRun.runAndCheck(
                store: store, isolation: isolation, workload: try parsedWorkload(), models: try ElleRun.parseModels(models),
                history: history, recordRun: recordRun, seed: seed, json: json, run: run)
        }
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
}
