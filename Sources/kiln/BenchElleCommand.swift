import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnElle
import KilnScenario

extension BenchCommand {
    /// The list-append or rw-register checker's speed on one core (release build): generate a strict-serializable history of
    /// N transactions in memory, then check it; prints transactions/s of the check alone, peak memory, and the
    /// ratio to Elle's published 100–160K transactions/s.
    struct Elle: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Transactions/s of the Elle-grade list-append or rw-register checker on one core, and peak memory.",
            discussion: "Build with -c release for numbers worth recording. The check runs on the calling thread.")
        @Option(help: "Transactions (K/M allowed).") var transactions = "1M"
        @Option(help: "Processes running transactions concurrently.") var concurrency = 10
        @Option(help: "Micro-operations per transaction.") var ops = 4
        @Option(help: "Live keys at any time.") var activeKeys = 10
        @Option(help: "Writes (appends) after which a key is retired.") var maxWritesPerKey = 16
        @Option(help: "Consistency model: \(ConsistencyModel.allCases.map(\.rawValue).joined(separator: ", ")).")
        var model = ConsistencyModel.strictSerializable.rawValue
        @Option(help: "Share of reads that miss the key's last append (planted anomalies; 0: a valid history).")
        var staleReads = 0.0
        @Option(help: "Seed of the generator.") var seed: UInt64 = 42
        @Option(help: "Repetitions of the check; the fastest is reported.") var repetitions = 1
        @Option(help: "Workload: list-append or rw-register.") var workload = "list-append"

        func run() throws {
            try exiting {
                guard let count = CountSuffix.parse(transactions), count > 0 else {
                    throw Failure(code: .invalidInput, message: "--transactions: expected a count such as 1M")
                }
                guard let model = ConsistencyModel(rawValue: model) else {
                    throw Failure(code: .invalidInput, message: "--model: unknown model \(self.model)")
                }
                let workload = try ElleRun.parseWorkload(workload)
                for (name, value) in [
                    ("--concurrency", concurrency), ("--ops", ops), ("--active-keys", activeKeys),
                    ("--max-writes-per-key", maxWritesPerKey), ("--repetitions", repetitions),
                ] where value < 1 {
                    throw Failure(code: .invalidInput, message: "\(name): expected at least 1, not \(value)")
                }
                guard (0...1).contains(staleReads) else {
                    throw Failure(code: .invalidInput, message: "--stale-reads: expected a share in 0...1")
                }
                let generateStart = ContinuousClock.now
                let check: () -> ElleCheckResult
                let historyBytes: Int
                switch workload {
                case .listAppend:
                    let history = SerialListAppendGenerator(
                        transactions: count, concurrency: concurrency, opsPerTransaction: ops, activeKeys: activeKeys,
                        maxWritesPerKey: maxWritesPerKey, staleReadShare: staleReads, seed: seed
                    ).generate().history
                    historyBytes = history.approximateBytes
                    check = { ListAppendChecker(model: model).check(history) }
                case .rwRegister:
                    let history = SerialRWRegisterGenerator(
                        transactions: count, concurrency: concurrency, opsPerTransaction: ops, activeKeys: activeKeys,
                        maxWritesPerKey: maxWritesPerKey, staleReadShare: staleReads, seed: seed
                    ).generate().history
                    historyBytes = history.approximateBytes
                    check = { RWRegisterChecker(model: model).check(history) }
                }
                let generateSeconds = generateStart.duration(to: .now) / .seconds(1)
                let generatedResidentMiB = Self.peakResidentMiB()
                var fastest = Double.infinity
                var fastestCPU = Double.infinity
                var result: ElleCheckResult?
                for _ in 0..<max(1, repetitions) {
                    let start = ContinuousClock.now
                    let startCPU = Self.processCPUSeconds()
                    result = check()
                    fastest = min(fastest, start.duration(to: .now) / .seconds(1))
                    fastestCPU = min(fastestCPU, Self.processCPUSeconds() - startCPU)
                }
                let rate = Double(count) / fastest
                print(
                    "elle \(workload.rawValue) benchmark: \(count) transactions, \(ops) micro-ops each, concurrency \(concurrency), "
                        + "\(activeKeys) live keys retired after \(maxWritesPerKey) writes, seed \(seed)")
                print(
                    String(
                        format: "generate   %.2f s  (history %.0f MiB, peak RSS %.0f MiB after generating)",
                        generateSeconds, Double(historyBytes) / 1_048_576, generatedResidentMiB))
                print(
                    String(
                        format: "check      %.2f s  %.0f transactions/s on one core  (Elle: 100-160K/s -> %.1f-%.1fx)",
                        fastest, rate, rate / 160_000, rate / 100_000))
                // On a shared machine the wall clock includes time other processes held the core; the CPU time of
                // this (single-threaded) check is what one core spent on it.
                print(
                    String(
                        format: "check CPU  %.2f s  %.0f transactions per CPU-second  (Elle: %.1f-%.1fx)",
                        fastestCPU, Double(count) / fastestCPU, Double(count) / fastestCPU / 160_000,
                        Double(count) / fastestCPU / 100_000))
                if let result {
                    let statistics = result.statistics
                    print(
                        "graph      \(statistics.edges) edges, \(statistics.keys) keys, "
                            + "\(statistics.cyclicComponents) cyclic components "
                            + "(largest \(statistics.largestComponent) nodes)"
                    )
                    print("verdict    \(result.summary)")
                }
                print(String(format: "peak RSS   %.0f MiB (history and checker)", Self.peakResidentMiB()))
                switch result?.validity {
                case .valid: return .ok
                case .invalid: return .anomaly
                default: return .unknown
                }
            }
        }

        /// User + system CPU seconds of this process so far.
        static func processCPUSeconds() -> Double {
            var usage = rusage()
            guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
            return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
                + Double(usage.ru_stime.tv_usec) / 1e6
        }

        static func peakResidentMiB() -> Double {
            var usage = rusage()
            guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
            return Double(usage.ru_maxrss) / 1024
        }
    }
}
