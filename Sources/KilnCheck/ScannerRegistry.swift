import KilnBackend
import KilnBackends

/// Every place Kiln can read back, by place id (`postgres.rows`, `kafka.messages`, …): derived from the backends'
/// `scanners` and `featureScanner` (`Backends.all`). A new scanner lives in its store's folder and is listed by its
/// backend's descriptor.
public enum ScannerRegistry {
    public static let drivers: [ScannerDriver] = Backends.all.flatMap(\.scanners)

    /// Per-user aggregates (Redis features and scores, checked together as `redis.features`).
    public static let featureDrivers: [FeatureScannerDriver] = Backends.all.compactMap(\.featureScanner)

    public static func driver(for placeID: String) -> ScannerDriver? { drivers.first { $0.place.id == placeID } }
}
