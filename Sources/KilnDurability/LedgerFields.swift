import KilnData

/// The fields of one ledger transaction as a durability drill stores and compares them: every field of the
/// generator's `Transaction`, as canonical text. Stores keep the joined text (Redis, FalkorDB) or one column per
/// field (PostgreSQL, read back as text in the same canonical form), and the checks compare field by field with the
/// oracle, so a mismatch names the field.
public enum LedgerFields {
    public static let names = [
        "user_id", "merchant_id", "device_id", "location_id", "amount_cents", "ts_ms", "currency", "channel",
        "declined", "is_fraud", "fraud_score", "ring_id",
    ]

    /// The canonical values of `row`, in `names` order (booleans `t`/`f`, as PostgreSQL prints them).
    public static func values(_ row: Transaction) -> [String] {
        [
            String(row.userID), String(row.merchantID), String(row.deviceID), String(row.locationID),
            String(row.amountCents), String(row.timestampMillis), String(row.currency), String(row.channel),
            row.declined ? "t" : "f", row.isFraud ? "t" : "f", String(row.fraudScoreMillis), String(row.ringID),
        ]
    }

    public static func text(_ row: Transaction) -> String { values(row).joined(separator: "|") }

    /// The names of the fields where `stored` (joined or split text) differs from `expected`; a stored value with
    /// the wrong number of fields differs in all of them.
    public static func differences(stored: [String], expected: Transaction) -> [String] {
        let want = values(expected)
        guard stored.count == want.count else { return names }
        return names.indices.filter { stored[$0] != want[$0] }.map { names[$0] }
    }

    public static func differences(storedText: String, expected: Transaction) -> [String] {
        differences(stored: storedText.split(separator: "|", omittingEmptySubsequences: false).map(String.init),
                    expected: expected)
    }

    /// PostgreSQL's table for the drills (one column per field; txn_id the primary key).
    public static func postgresTable(_ name: String) -> String {
        """
        CREATE TABLE IF NOT EXISTS \(name) (txn_id bigint PRIMARY KEY, user_id bigint NOT NULL,
          merchant_id bigint NOT NULL, device_id bigint NOT NULL, location_id bigint NOT NULL,
          amount_cents bigint NOT NULL, ts_ms bigint NOT NULL, currency smallint NOT NULL, channel smallint NOT NULL,
          declined boolean NOT NULL, is_fraud boolean NOT NULL, fraud_score smallint NOT NULL, ring_id integer NOT NULL)
        """
    }

    public static func postgresInsert(_ name: String) -> String {
        "INSERT INTO \(name) (txn_id, " + names.joined(separator: ", ") + ") VALUES ("
            + (1...13).map { "$\($0)" }.joined(separator: ", ") + ")"
    }

    public static func postgresSelect(_ name: String) -> String {
        "SELECT txn_id, " + names.joined(separator: ", ") + " FROM \(name) ORDER BY txn_id"
    }
}
