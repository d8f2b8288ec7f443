import KilnCore

/// One fixed transaction of the smoke set: a pure function of (seed, index), so every store's copy can be
/// compared with a recomputed expectation. (The full dataset generator replaces this in `KilnData`.)
public struct SmokeTransaction: Sendable, Hashable {
    public var txnID: Int64
    public var userID: Int64
    public var merchantID: Int64
    public var amountCents: Int64
    public var currency: String
    /// Seconds since the Unix epoch (whole seconds: every store keeps them exactly).
    public var timestamp: Int64

    public init(txnID: Int64, userID: Int64, merchantID: Int64, amountCents: Int64, currency: String, timestamp: Int64) {
        self.txnID = txnID
        self.userID = userID
        self.merchantID = merchantID
        self.amountCents = amountCents
        self.currency = currency
        self.timestamp = timestamp
    }

    static let currencies = ["EUR", "USD", "GBP", "CHF"]

    public static func make(seed: UInt64, index: Int) -> SmokeTransaction {
        let i = UInt64(index)
        func draw(_ stream: UInt64, _ bound: UInt64) -> Int64 {
            Int64(SplitMix64.value(seed: seed, index: i, stream: stream) % bound)
        }
        return SmokeTransaction(
            txnID: Int64(index) + 1,
            userID: draw(1, 1_000) + 1,
            merchantID: draw(2, 200) + 1,
            amountCents: draw(3, 500_000) + 1,
            currency: currencies[Int(draw(4, UInt64(currencies.count)))],
            timestamp: 1_767_225_600 + Int64(index) * 3 + draw(5, 3))
    }

    public static func set(seed: UInt64, count: Int) -> [SmokeTransaction] {
        (0..<count).map { make(seed: seed, index: $0) }
    }

    /// `12.34` for 1234 cents; exact, no floating point.
    public var amountText: String {
        let units = amountCents / 100
        let cents = amountCents % 100
        return "\(units).\(cents < 10 ? "0" : "")\(cents)"
    }

    public var json: String {
        #"{"txn_id":\#(txnID),"user_id":\#(userID),"merchant_id":\#(merchantID),"amount_cents":\#(amountCents),"#
            + #""currency":"\#(currency)","ts":\#(timestamp)}"#
    }
}

/// How one store's copy of the smoke set compares with the expected set.
public struct SmokeStoreResult: Sendable {
    public var store: String
    public var endpoint: String
    public var written = 0
    public var readBack = 0
    /// Read-back rows equal, field by field, to the expected transaction with the same id.
    public var equal = 0
    /// Ids written but not read back.
    public var missing = 0
    /// Ids read back more than once.
    public var duplicated = 0
    /// Rows read back whose fields differ from the expectation (or whose id was never written).
    public var different = 0
    /// Why the store could not be written or read; nil when the comparison ran.
    public var error: String?

    public init(store: String, endpoint: String) {
        self.store = store
        self.endpoint = endpoint
    }

    public var agrees: Bool {
        error == nil && written > 0 && readBack == written && equal == written && missing == 0 && duplicated == 0
            && different == 0
    }

    /// Fills in the comparison of `actual` rows against `expected`.
    public mutating func compare(expected: [SmokeTransaction], actual: [SmokeTransaction]) {
        readBack = actual.count
        let byID = Dictionary(uniqueKeysWithValues: expected.map { ($0.txnID, $0) })
        var seen: [Int64: Int] = [:]
        for row in actual {
            seen[row.txnID, default: 0] += 1
            if seen[row.txnID] == 1 {
                if byID[row.txnID] == row { equal += 1 } else { different += 1 }
            }
        }
        duplicated = seen.values.filter { $0 > 1 }.count
        missing = expected.filter { seen[$0.txnID] == nil }.count
    }

    public var summary: String {
        if let error { return "error: \(error)" }
        if agrees { return "ok" }
        var problems: [String] = []
        if missing > 0 { problems.append("\(missing) missing") }
        if duplicated > 0 { problems.append("\(duplicated) duplicated") }
        if different > 0 { problems.append("\(different) different") }
        return "MISMATCH: " + (problems.isEmpty ? "read back \(readBack) of \(written)" : problems.joined(separator: ", "))
    }
}
