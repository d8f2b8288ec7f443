import KilnCore

/// One fixed transaction: a pure function of (seed, index). `kiln smoke` no longer uses it (it writes the dataset
/// generator's rows through the backends' clients); `kiln bench store` (StoreBench, KilnRunner) still builds its
/// CSV and JSON rows from it, and it should move there or to the generator.
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
