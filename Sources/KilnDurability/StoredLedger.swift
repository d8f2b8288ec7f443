/// What a store held after a restore or a restart: each transaction's stored fields, by txn_id.
public struct StoredLedger: Sendable {
    public var rows: [Int64: [String]]

    public init(rows: [Int64: [String]]) { self.rows = rows }

    /// Rows kept as joined text (`LedgerFields.text`).
    public init(texts: [Int64: String]) {
        rows = texts.mapValues { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
    }
}

/// One transaction a check found wrong.
public struct LedgerFinding: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        /// Acknowledged (and required by the promise or the target) but absent.
        case lost
        /// Present although it must not be (never acknowledged before the target, failed, or never written).
        case phantom
        /// Present with fields that differ from the generator's.
        case mismatched
    }
    public var kind: Kind
    public var txnID: Int64
    public var detail: String

    enum CodingKeys: String, CodingKey {
        case kind
        case txnID = "txn_id"
        case detail
    }
}
