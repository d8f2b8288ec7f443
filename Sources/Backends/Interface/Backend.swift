/// One store Kiln can drive, described in one place: the `Backend` descriptor (ARCHITECTURE.md "Target shape").
/// Every registry Kiln keeps is derived from the list of backends (`Backends.all`), never written per store.
///
/// Layering (lower never imports higher):
///
///     C shims ─ wire (KilnPostgres, KilnRedis, KilnKafka, KilnHTTP) ─ model (KilnCore) ─ data (KilnData)
///       ─ scenario (KilnScenario) ─ KilnBackend (this module) ─ one target per store (Sources/Backends/<Store>)
///       ─ engines (KilnLoad, KilnPipeline, KilnCheck, KilnFaults, KilnStack, KilnReport) ─ orchestration ─ CLI
///
/// `KilnBackend` holds every protocol a backend implements, so a store's folder depends on it and on its wire
/// module only; the engines run what the descriptors hand them. Today it holds the load side (`Client`,
/// `StoreOperation`, `StoreDriver`), the reconcile places (`RowPlace`) and the stack side (`BackendStack`,
/// BackendStack.swift): the stack-file section (`StackSectionParser` → a typed `StackSection` config), the embedded
/// servers (`EmbeddedServerDescription`: launch, readiness probe, role, wire protocol, start order, after-ready step;
/// `afterStart` once all answer), the proxied endpoint (`ProxiedEndpoint`) and `kiln stack env` variables. The
/// `graph:` and `timeseries:` configs, each read by two backends, are here too (SharedStackSections.swift).
/// Moving down next: the scanner protocol (`StoreScanner`, `StoredRow`, from KilnCheck) → `scanners`; the pipeline
/// `Sink` protocol and `SinkMessage` (from KilnPipeline) → `sink`; the smoke round trip → `smoke`.
///
/// A new backend provides, in its own folder: an operation enum (`StoreOperation`), a `Client`, its places, its
/// stack side (section, servers, proxy, environment) and (as the fields above move down) its scanners, sink and
/// smoke round trip — then one line in `Backends.all`.
public struct Backend: Sendable {
    /// The store's name in scenarios, stack files and histories (`redis`).
    public let name: String
    /// How the load engine opens a client for the store's operations.
    public let driver: StoreDriver
    /// Where a written dataset row lives (reconcile checker); empty for a store whose copies are not scanned.
    public let places: [RowPlace]
    /// Per-user aggregates the feature checker reads (Redis features and scores); not reconciled row by row.
    public let aggregatePlaces: [RowPlace]
    /// The stack side (BackendStack.swift): stack-file section, embedded servers, proxied endpoint, environment.
    public let stack: BackendStack

    public init(
        driver: StoreDriver, places: [RowPlace] = [], aggregatePlaces: [RowPlace] = [], stack: BackendStack = .none
    ) {
        name = driver.name
        self.driver = driver
        self.places = places
        self.aggregatePlaces = aggregatePlaces
        self.stack = stack
        precondition(
            (places + aggregatePlaces).allSatisfy { $0.store == driver.name },
            "backend \(driver.name) lists a place of another store")
    }
}
