import Foundation
import KilnCore
import KilnElle

/// What a transactional checker found, as check.json carries it: the model judged, what it found, and each
/// anomaly's minimal witness (transactions, their ops, and why each edge of a cycle exists).
public struct TransactionalFindings: Sendable, Codable {
    /// The consistency model the history was judged against, e.g. `serializable`.
    public var model: String
    /// What the run promised: e.g. `postgres serializable`, `redis multi/exec`.
    public var promised: String
    /// Found kinds the model forbids, in severity order (Elle's names).
    public var forbiddenFound: [String]
    /// Cycle kinds whose search hit the time limit before one was found.
    public var searchesTimedOut: [String]
    /// The first witnesses of each kind found, forbidden or not.
    public var witnesses: [AnomalyWitness]
    public var statistics: ListAppendCheckResult.Statistics
}

/// The files a transactional workload writes into a run directory, and what the run promised. list-append writes
/// `elle-run.json` and `elle-history.jsonl`; rw-register `elle-rw-register-run.json` and
/// `elle-rw-register-history.jsonl`, so one run directory may hold both (and a ledger `history.jsonl` besides).
public struct ElleRunDescription: Sendable, Codable {
    public static let fileName = "elle-run.json"
    public static let historyFileName = "elle-history.jsonl"

    /// The description file of `workload`'s history.
    public static func fileName(_ workload: ElleWorkload) -> String {
        workload == .listAppend ? fileName : "elle-\(workload.rawValue)-run.json"
    }

    /// The history file of `workload`.
    public static func historyFileName(_ workload: ElleWorkload) -> String {
        workload == .listAppend ? historyFileName : "elle-\(workload.rawValue)-history.jsonl"
    }

    /// `postgres` or `redis`.
    public var store: String
    /// The isolation level the transactions ran at (`serializable`, `repeatable-read`, `read-committed`, `multi-exec`).
    public var isolation: String
    /// The model the history is judged against: what the store promises at that level.
    public var model: ConsistencyModel
    public var transactions: Int
    public var seed: UInt64
    /// Nil in descriptions written before rw-register existed: list-append.
    public var workload: ElleWorkload?

    public init(
        store: String, isolation: String, model: ConsistencyModel, transactions: Int, seed: UInt64,
        workload: ElleWorkload = .listAppend
    ) {
        self.store = store
        self.isolation = isolation
        self.model = model
        self.transactions = transactions
        self.seed = seed
        self.workload = workload
    }

    /// What each level promises: PostgreSQL's repeatable read is snapshot isolation; a single Redis server runs
    /// MULTI/EXEC one at a time, in real-time order (strict serializable).
    public static func promisedModel(store: String, isolation: String) -> ConsistencyModel? {
        switch (store, isolation) {
        case ("postgres", "serializable"): .serializable
        case ("postgres", "repeatable-read"): .snapshotIsolation
        case ("postgres", "read-committed"): .readCommitted
        case ("redis", _): .strictSerializable
        default: nil
        }
    }

    public func write(to directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(
            to: directory.appendingPathComponent(Self.fileName(workload ?? .listAppend)), options: .atomic)
    }
}

/// The list-append names of `ElleRunDescription` and `ElleHistoryPlace` (their first workload).
public typealias ListAppendRunDescription = ElleRunDescription
public typealias ListAppendPlace = ElleHistoryPlace

/// `elle.list-append` and `elle.rw-register`: Elle's checkers as places of `kiln check`, on a run directory holding
/// that workload's history (`ListAppendRunDescription.historyFileName(_:)`). Guarantees: an unreadable history, a
/// missing description or a search that ran out of time gives `unknown`, never `valid`.
public enum ElleHistoryPlace {
    public static let id = "elle.list-append"

    /// `elle.list-append` or `elle.rw-register`.
    public static func id(_ workload: ElleWorkload) -> String { "elle.\(workload.rawValue)" }

    /// True when `directory` holds a history of `workload`.
    public static func present(in directory: URL, workload: ElleWorkload = .listAppend) -> Bool {
        FileManager.default.fileExists(
            atPath: directory.appendingPathComponent(ListAppendRunDescription.historyFileName(workload)).path)
    }

    /// The workloads whose histories `directory` holds.
    public static func workloads(in directory: URL) -> [ElleWorkload] {
        ElleWorkload.allCases.filter { present(in: directory, workload: $0) }
    }

    /// The place's result for the `workload` run in `directory`.
    public static func check(
        directory: URL, workload: ElleWorkload = .listAppend, searchTimeLimit: Duration = .seconds(60),
        witnessesPerKind: Int = 3
    ) -> PlaceResult {
        let started = Date()
        let description: ListAppendRunDescription
        let transactions: [ListAppendTransaction]
        let historyFile = ListAppendRunDescription.historyFileName(workload)
        do {
            description = try JSONDecoder().decode(
                ListAppendRunDescription.self,
                from: Data(contentsOf: directory.appendingPathComponent(ListAppendRunDescription.fileName(workload))))
            transactions = try ListAppendTransaction.parseJSONLines(
                Data(contentsOf: directory.appendingPathComponent(historyFile)))
        } catch {
            return .undecided(id(workload), source: historyFile, error: error, since: started)
        }
        let result = workload.check(
            transactions, model: description.model, searchTimeLimit: searchTimeLimit,
            allowedSearchTimeLimit: min(.seconds(5), searchTimeLimit), witnessesPerKind: witnessesPerKind)
        return Self.result(result, description: description, since: started, workload: workload)
    }

    /// A checker's answer as a place result.
    public static func result(
        _ result: ListAppendCheckResult, description: ListAppendRunDescription, since started: Date,
        workload: ElleWorkload = .listAppend
    ) -> PlaceResult {        let validity: Validity =
            switch result.validity {
            case .valid: .valid
            case .invalid: .invalid
            case .unknown: .unknown
            }
        var counts: [String: Int64] = [:]
        for (kind, count) in result.counts { counts[kind.rawValue] = Int64(count) }
        var error = result.error
        if error == nil, validity == .unknown {
            error = "search timed out for " + result.searchesTimedOut.map(\.rawValue).joined(separator: " ")
        }
        let promised = "\(description.store) \(description.isolation)"
        return PlaceResult(
            place: id(workload), source: "\(promised) as \(result.model.rawValue)",
            validity: validity, expected: Int64(result.statistics.transactions), indeterminate: 0, failedWrites: 0,
            scanned: Int64(result.statistics.microOps), indeterminatePresent: 0, counts: counts, anomalies: [],
            error: error, seconds: Date().timeIntervalSince(started),
            transactional: TransactionalFindings(
                model: result.model.rawValue, promised: promised,
                forbiddenFound: result.forbiddenFound.map(\.rawValue),
                searchesTimedOut: result.searchesTimedOut.map(\.rawValue), witnesses: result.witnesses,
                statistics: result.statistics))
    }
}
