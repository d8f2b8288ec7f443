import KilnCore
import KilnData

/// One stored copy of a transaction, as read back from a store. Fields the store does not keep are nil; the
/// reconcile checker compares every non-nil field with the oracle's row for `txnID`.
public struct StoredRow: Sendable, Hashable {
    public var txnID: Int64
    public var userID: Int64?
    public var merchantID: Int64?
    public var deviceID: Int64?
    public var locationID: Int64?
    public var amountCents: Int64?
    public var timestampMillis: Int64?
    /// As stored (e.g. `EUR`); the checker maps the oracle's index to the dataset's name.
    public var currency: String?
    public var channel: String?
    /// `approved` or `declined`.
    public var status: String?
    public var fraudScoreMillis: Int64?
    public var isFraud: Bool?
    /// nil when the store keeps no ring column; -1 when it keeps one and the value is NULL/absent.
    public var ringID: Int64?
    /// Where this copy lives, for anomaly reports and order checks: Kafka partition/offset/key, a Redis key, …
    public var partition: Int32?
    public var offset: Int64?
    public var key: String?

    public init(txnID: Int64) { self.txnID = txnID }

    /// The copy a store keeping every column holds for `transaction` (currency, channel and status by name).
    public init(_ transaction: Transaction, in dataset: Dataset) {
        txnID = transaction.txnID
        userID = transaction.userID
        merchantID = transaction.merchantID
        deviceID = transaction.deviceID
        locationID = transaction.locationID
        amountCents = transaction.amountCents
        timestampMillis = transaction.timestampMillis
        currency = dataset.currencyCodes[Int(transaction.currency)]
        channel = dataset.channelNames[Int(transaction.channel)]
        status = transaction.declined ? "declined" : "approved"
        fraudScoreMillis = Int64(transaction.fraudScoreMillis)
        isFraud = transaction.isFraud
        ringID = Int64(transaction.ringID)
    }
}

/// Per-user feature state as a store keeps it (Redis `<ns>:user:<id>:features`, fraud-score sorted set).
public struct StoredUserFeatures: Sendable, Hashable {
    public var userID: Int64
    /// Fields exactly as stored (`txn_count`, `last_txn`, `last_amount_cents`, `last_merchant`, …).
    public var fields: [String: String]
    /// The user's member score in `<ns>:fraud:scores`, nil when absent.
    public var score: Double?

    public init(userID: Int64, fields: [String: String], score: Double?) {
        self.userID = userID
        self.fields = fields
        self.score = score
    }
}

/// Reads back what one store holds for a namespace, in one streaming pass, for the checkers. Not Sendable: one
/// scanner per thread, like a `Client`. Blocking.
///
/// Contract: `scan` delivers every stored copy of every transaction of the namespace exactly as many times as the
/// store holds it (a duplicate is delivered twice, never merged), in any order, without materialising the whole
/// result in memory (stream or page). A row the scanner cannot parse is delivered with `txnID` as stored (or -1
/// when even that is unreadable) and the unparseable fields nil, never dropped. Connection errors throw.
public protocol StoreScanner: AnyObject {
    /// Which part of the store `scan` reads, for reports: `<ns>_transactions`, topic `<ns>.transactions`, …
    var source: String { get }
    func scan(_ body: (StoredRow) throws -> Void) throws
    func close()
}

/// Stores that keep per-user state rather than (or besides) rows.
public protocol UserFeatureScanner: AnyObject {
    var featureSource: String { get }
    func scanUserFeatures(_ body: (StoredUserFeatures) throws -> Void) throws
}

public typealias ScannerFactory = @Sendable (ClientContext) throws -> any StoreScanner

/// A place Kiln can read back, with the scanner that reads it.
public struct ScannerDriver: Sendable {
    public var place: RowPlace
    public var open: ScannerFactory

    public init(place: RowPlace, open: @escaping ScannerFactory) {
        self.place = place
        self.open = open
    }
}

/// The per-user aggregates of a store, with the scanner that reads them.
public struct FeatureScannerDriver: Sendable {
    public var store: String
    public var open: @Sendable (ClientContext) throws -> any UserFeatureScanner

    public init(store: String, open: @escaping @Sendable (ClientContext) throws -> any UserFeatureScanner) {
        self.store = store
        self.open = open
    }
}
