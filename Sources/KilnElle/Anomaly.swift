import KilnCore

/// Every anomaly the list-append and rw-register checkers name (Adya's taxonomy as Elle extends it). Raw values are Elle's names.
public enum AnomalyKind: String, Sendable, Codable, CodingKeyRepresentable, CaseIterable, Comparable {
    // Dependency cycles, most severe first; `-process` / `-realtime` need a process or real-time edge to close.
    case g0 = "G0"
    case g1c = "G1c"
    case gSingle = "G-single"
    case gNonadjacent = "G-nonadjacent"
    case g2Item = "G2-item"
    case g0Process = "G0-process"
    case g1cProcess = "G1c-process"
    case gSingleProcess = "G-single-process"
    case gNonadjacentProcess = "G-nonadjacent-process"
    case g2ItemProcess = "G2-item-process"
    case g0Realtime = "G0-realtime"
    case g1cRealtime = "G1c-realtime"
    case gSingleRealtime = "G-single-realtime"
    case gNonadjacentRealtime = "G-nonadjacent-realtime"
    case g2ItemRealtime = "G2-item-realtime"
    // Anomalies seen without a cycle.
    /// A committed read saw an element appended (a value written) by a transaction that failed.
    case g1a = "G1a"
    /// A committed read ended at an element its writer later followed with another append to the same key (read a
    /// register value its writer overwrote in the same transaction).
    case g1b = "G1b"
    /// A transaction's read contradicts its own earlier reads and appends of that key.
    case internalInconsistency = "internal"
    /// Two committed transactions read the same version of a key and both appended to (wrote) it.
    case lostUpdate = "lost-update"
    /// A read holds one element twice.
    case duplicateElements = "duplicate-elements"
    /// A read holds an element nobody appended to that key (a register value nobody wrote).
    case garbageRead = "garbage-read"
    /// Two reads of a key are not prefixes of one another: no single order of appends explains both.
    case incompatibleOrder = "incompatible-order"

    /// Position in `allCases`: severity order for sorting reports.
    public static func < (lhs: AnomalyKind, rhs: AnomalyKind) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }

    /// The cycle class of a cycle anomaly, nil for the others.
    public var cycleClass: CycleClass? {
        switch self {
        case .g0, .g0Process, .g0Realtime: .g0
        case .g1c, .g1cProcess, .g1cRealtime: .g1c
        case .gSingle, .gSingleProcess, .gSingleRealtime: .gSingle
        case .gNonadjacent, .gNonadjacentProcess, .gNonadjacentRealtime: .gNonadjacent
        case .g2Item, .g2ItemProcess, .g2ItemRealtime: .g2Item
        default: nil
        }
    }

    public var cycleVariant: CycleVariant {
        switch self {
        case .g0Process, .g1cProcess, .gSingleProcess, .gNonadjacentProcess, .g2ItemProcess: .process
        case .g0Realtime, .g1cRealtime, .gSingleRealtime, .gNonadjacentRealtime, .g2ItemRealtime: .realtime
        default: .none
        }
    }

    public static func cycle(_ cycleClass: CycleClass, _ variant: CycleVariant) -> AnomalyKind {
        switch (cycleClass, variant) {
        case (.g0, .none): .g0
        case (.g1c, .none): .g1c
        case (.gSingle, .none): .gSingle
        case (.gNonadjacent, .none): .gNonadjacent
        case (.g2Item, .none): .g2Item
        case (.g0, .process): .g0Process
        case (.g1c, .process): .g1cProcess
        case (.gSingle, .process): .gSingleProcess
        case (.gNonadjacent, .process): .gNonadjacentProcess
        case (.g2Item, .process): .g2ItemProcess
        case (.g0, .realtime): .g0Realtime
        case (.g1c, .realtime): .g1cRealtime
        case (.gSingle, .realtime): .gSingleRealtime
        case (.gNonadjacent, .realtime): .gNonadjacentRealtime
        case (.g2Item, .realtime): .g2ItemRealtime
        }
    }
}

/// The shape of a dependency cycle by its anti-dependency (rw) edges.
public enum CycleClass: String, Sendable, Codable, CaseIterable {
    /// Only write-write edges.
    case g0
    /// Write-write and write-read edges, at least one write-read.
    case g1c
    /// Exactly one rw edge.
    case gSingle
    /// Two or more rw edges, no two of them adjacent in the cycle.
    case gNonadjacent
    /// Two or more rw edges, some two adjacent (write skew is the two-transaction case).
    case g2Item
}

/// Which non-data edge a cycle needs: none, a process order edge, or a real-time edge (process edges allowed).
public enum CycleVariant: String, Sendable, Codable, CaseIterable {
    case none, process, realtime
}

/// The consistency models the checker judges a history against.
public enum ConsistencyModel: String, Sendable, Codable, CaseIterable {
    case readCommitted = "read-committed"
    case snapshotIsolation = "snapshot-isolation"
    case repeatableRead = "repeatable-read"
    case serializable = "serializable"
    case strictSerializable = "strict-serializable"

    /// The anomalies this model forbids (Adya PL-2, PL-SI with Cerone–Gotsman's G-nonadjacent, PL-2.99, PL-3,
    /// PL-SS, as Elle's consistency-model graph states them). For list-append and rw-register histories, which have no
    /// predicate reads, repeatable read and serializable forbid the same anomalies. Every model forbids the anomalies that
    /// are not about isolation at all (duplicate elements, garbage reads, incompatible orders) and G1 (read
    /// committed is the weakest model here); internal inconsistency is forbidden from repeatable read and snapshot
    /// isolation up.
    public var forbidden: Set<AnomalyKind> {
        let base: Set<AnomalyKind> = [.g0, .g1a, .g1b, .g1c, .duplicateElements, .garbageRead, .incompatibleOrder]
        switch self {
        case .readCommitted:
            // Each statement may see a newer snapshot: a second read of a key may differ from the first (Elle's
            // PL-2 does not forbid `internal` either).
            return base
        case .snapshotIsolation:
            return base.union([.internalInconsistency, .gSingle, .gNonadjacent, .lostUpdate])
        case .repeatableRead, .serializable:
            // Repeatable read: a transaction re-reading a key sees the same list plus its own appends.
            return base.union([.internalInconsistency, .gSingle, .gNonadjacent, .g2Item, .lostUpdate])
        case .strictSerializable:
            return Set(AnomalyKind.allCases)
        }
    }

    /// Whether the checker adds process and real-time edges to the graph for this model.
    public var needsRealtimeEdges: Bool { self == .strictSerializable }
}

/// Why one edge of a dependency cycle exists.
public enum DependencyRelation: String, Sendable, Codable, CaseIterable {
    /// `from` appended an element and `to` appended the next one of the same key (registers: `to` read `from`'s
    /// version and overwrote it).
    case ww
    /// `to` read a list whose last element `from` appended (registers: `to` read the value `from` wrote).
    case wr
    /// `from` read a list and `to` appended the next element after it (`from` did not see `to`'s append;
    /// registers: `to` overwrote the version `from` read).
    case rw
    /// The same process ran `from`, then `to`.
    case process
    /// `from` completed before `to` was invoked.
    case realtime
}

/// One edge of a cycle witness.
public struct DependencyStep: Sendable, Codable, Hashable {
    /// Transaction indices in the history.
    public var from: Int
    public var to: Int
    public var relation: DependencyRelation
    /// The key the edge is about (nil for process and real-time edges).
    public var key: Int?
    /// E.g. `T2 read [1 2] of key 7, which T1's append of 2 produced`.
    public var why: String
}

/// A transaction as a witness shows it.
public struct WitnessTransaction: Sendable, Codable, Hashable {
    /// Index in the history; text names it `T<index>`.
    public var index: Int
    public var transaction: ElleTransaction
}

/// One anomaly with a minimal witness: the transactions involved, and for a cycle its edges in order (the last
/// step's `to` is the first step's `from`).
public struct AnomalyWitness: Sendable, Codable, Hashable {
    public var kind: AnomalyKind
    public var transactions: [WitnessTransaction]
    public var steps: [DependencyStep]
    /// The key the anomaly is about, for the non-cycle anomalies.
    public var key: Int?
    public var explanation: String

    /// Several lines: the kind, each transaction with its ops, the explanation and each step.
    public var text: String {
        var lines = ["\(kind.rawValue): \(explanation)"]
        for witness in transactions {
            let transaction = witness.transaction
            lines.append(
                "  T\(witness.index) (process \(transaction.process), \(transaction.outcome.rawValue)): "
                    + transaction.ops.map(\.shortDescription).joined(separator: ", "))
        }
        for step in steps { lines.append("  T\(step.from) -\(step.relation.rawValue)-> T\(step.to): \(step.why)") }
        return lines.joined(separator: "\n")
    }
}

/// The list-append name of `ElleCheckResult`.
public typealias ListAppendCheckResult = ElleCheckResult

/// A checker's answer (list-append or rw-register) for one history and one model.
public struct ElleCheckResult: Sendable, Codable {
    public var model: ConsistencyModel
    public var validity: Validity
    /// Every anomaly kind found with how many times (each SCC counts once per cycle kind).
    public var counts: [AnomalyKind: Int]
    /// Found kinds the model forbids, in severity order.
    public var forbiddenFound: [AnomalyKind]
    /// Cycle kinds whose search hit the time limit in some component before finding one.
    public var searchesTimedOut: [AnomalyKind]
    /// The first witnesses of each kind (at most `ListAppendChecker.witnessesPerKind` each), in severity order.
    public var witnesses: [AnomalyWitness]
    /// Why the history could not be checked (then `validity` is `unknown`), e.g. a value appended twice to a key.
    public var error: String?
    public var statistics: Statistics

    public struct Statistics: Sendable, Codable {
        public var transactions: Int
        public var microOps: Int
        public var keys: Int
        public var edges: Int
        /// Strongly connected components of more than one node.
        public var cyclicComponents: Int
        public var largestComponent: Int
        public var seconds: Double
    }

    /// Kinds found, in severity order.
    public var kinds: [AnomalyKind] { counts.keys.sorted() }

    public var summary: String {
        let found = kinds.map { "\($0.rawValue)×\(counts[$0]!)" }.joined(separator: " ")
        var text = "\(model.rawValue): \(validity.rawValue)"
        if let error { return text + " (\(error))" }
        text += found.isEmpty ? ", no anomaly" : " (\(found))"
        if !searchesTimedOut.isEmpty {
            text += "; search timed out for " + searchesTimedOut.map(\.rawValue).joined(separator: " ")
        }
        return text
    }
}
