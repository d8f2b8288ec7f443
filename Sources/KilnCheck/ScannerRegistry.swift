/// Every place Kiln can read back, by place id (`postgres.rows`, `kafka.messages`, …). A new scanner is one file
/// plus one line here.
public enum ScannerRegistry {
    public static let drivers: [ScannerDriver] = []

    public static func driver(for placeID: String) -> ScannerDriver? { drivers.first { $0.place.id == placeID } }
}
