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

/// The files a list-append workload writes into a run directory, and what the run promised.
public struct ListAppendRunDescription: Sendable, Codable {
    public static let fileName = "elle-run.json"
    public static let historyFileName = "elle-history.jsonl"

    /// `postgres` or `redis`.
    public var store: String
    /// The isolation level the transactions ran at (`serializable`, `repeatable-read`, `read-committed`, `multi-exec`).
    public var isolation: String
    /// The model the history is judged against: what the store promises at that level.
    public var model: ConsistencyModel
    public var transactions: Int
    public var seed: UInt64

    public init(store: String, isolation: String, model: ConsistencyModel, transactions: Int, seed: UInt64) {
        self.store = store
        self.isolation = isolation
        self.model = model
        self.transactions = transactions
        self.seed = seed
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
        try encoder.encode(self).write(to: directory.appendingPathComponent(Self.fileName), options: .atomic)
    }
}

/// `elle.list-append`: Elle's list-append checker as one more place of `kiln check`, on a run directory holding
/// `elle-history.jsonl`. Guarantees: an unreadable history, a missing description or a search that ran out of time
/// gives `unknown`, never `valid`.
public enum ListAppendPlace {
    public static let id = "elle.list-append"

    /// True when `directory` holds a list-append history.
    public static func present(in directory: URL) -> Bool {
        FileManager.default.fileExists(
            atPath: directory.appendingPathComponent(ListAppendRunDescription.historyFileName).path)
    }

    /// The place's result for the run in `directory`.
    public static func check(
        directory: URL, searchTimeLimit: Duration = .seconds(60), witnessesPerKind: Int = 3
    ) -> PlaceResult {
        let started = Date()
        let description: ListAppendRunDescription
        let transactions: [ListAppendTransaction]
        do {
            description = try JSONDecoder().decode(
                ListAppendRunDescription.self,
                from: Data(contentsOf: directory.appendingPathComponent(ListAppendRunDescription.fileName)))
            transactions = try ListAppendTransaction.parseJSONLines(
                Data(contentsOf: directory.appendingPathComponent(ListAppendRunDescription.historyFileName)))
        } catch {
            return .undecided(id, source: ListAppendRunDescription.historyFileName, error: error, since: started)
        }
        let checker = ListAppendChecker(
            model: description.model, searchTimeLimit: searchTimeLimit,
            allowedSearchTimeLimit: min(.seconds(5), searchTimeLimit), witnessesPerKind: witnessesPerKind)
        return result(checker.check(transactions), description: description, since: started)
    }

    /// A checker's answer as a place result.
    public static func result(
        _ result: ListAppendCheckResult, description: ListAppendRunDescription, since started: Date
    ) -> PlaceResult {
        let validity: Validity =
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
            place: id, source: "\(promised) as \(result.model.rawValue)",
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
