import KilnCore
import KilnScenario

/// One store Kiln can drive, described in one place: the `Backend` descriptor (ARCHITECTURE.md "Target shape").
/// Every registry Kiln keeps is derived from the list of backends (`Backends.all`, Sources/Backends/Backends.swift),
/// never written per store.
///
/// Layering (lower never imports higher):
///
///     C shims ─ wire (KilnPostgres, KilnRedis, KilnKafka, KilnHTTP) ─ model (KilnCore) ─ data (KilnData)
///       ─ scenario (KilnScenario) ─ KilnBackend (this module, Sources/Backends/Interface)
///       ─ KilnBackends (every other folder of Sources/Backends, one target, and `Backends.all`)
///       ─ engines (KilnLoad, KilnPipeline, KilnCheck, KilnFaults, KilnStack, KilnReport) ─ orchestration ─ CLI
///
/// `KilnBackend` holds every protocol a backend implements, so a store's folder depends on it and on wire modules
/// only; the engines run what the descriptors hand them. It holds the load side (`Client`, `StoreOperation`,
/// `StoreDriver`), the reconcile places (`RowPlace`), the read-back side (`StoreScanner`, `UserFeatureScanner`,
/// `StoredRow`, `ScannerDriver`, `FeatureScannerDriver`, and the parsing helpers `TransactionJSON`,
/// `StreamFraming`, `FieldMapping`) and the pipeline side (`Sink`, `SinkMessage`, `ApplyResult`, `SinkDriver`).
/// It also holds the stack side (`BackendStack`, BackendStack.swift): the stack-file section (`StackSectionParser`
/// → a typed `StackSection` config), the embedded servers (`EmbeddedServerDescription`: launch, readiness probe,
/// role, wire protocol, start order, after-ready step; `afterStart` once all answer), the proxied endpoint
/// (`ProxiedEndpoint`) and `kiln stack env` variables. The `graph:` and `timeseries:` configs, each read by two
/// backends, are here too (SharedStackSections.swift).
///
/// A new backend provides, in its own folder: an operation enum (`StoreOperation`), a `Client`, its places, one
/// scanner per place (and a feature scanner when it has aggregate places), optionally a pipeline sink, and its stack
/// side (section, servers, proxy, environment) — then one line in `Backends.all`. No Package.swift edit: every folder but Interface is compiled into `KilnBackends`.
public struct Backend: Sendable {
    /// The store's name in scenarios, stack files and histories (`redis`).
    public let name: String
    /// How the load engine opens a client for the store's operations.
    public let driver: StoreDriver
    /// Where a written dataset row lives (reconcile checker); empty for a store whose copies are not scanned.
    public let places: [RowPlace]
    /// Per-user aggregates the feature checker reads (Redis features and scores); not reconciled row by row.
    public let aggregatePlaces: [RowPlace]
    /// How the reconcile checker reads each of `places` back: one scanner per place, every place has one.
    public let scanners: [ScannerDriver]
    /// How the feature checker reads `aggregatePlaces` back (one scanner for all of them); nil when there are none.
    public let featureScanner: FeatureScannerDriver?
    /// The reference pipeline's sink applying Kafka's transactions to this store; nil when the store has none.
    public let sink: SinkDriver?
    /// The stack side (BackendStack.swift): stack-file section, embedded servers, proxied endpoint, environment.
    public let stack: BackendStack
    /// How many of the store's servers acknowledge writes at once when nothing is wrong (the split-brain check).
    public let writePrimaries: WritePrimaries
    /// The operations `kiln smoke` fills `places` with, for a place whose `writtenBy` does not hold exactly one bulk
    /// operation (`smokeWriter(for:)`); empty for every backend today.
    public let smokeWriters: [OperationDescriptor]
    /// Where the store is reached in a stack, nil when the stack does not serve this backend; nil here: derived
    /// (`endpoint(in:)`). Set by a backend reading a section another store may fill (`graph:` of kind neo4j serves no
    /// FalkorDB).
    private let servedEndpoint: (@Sendable (StackDefinition) -> HostPort?)?

    public init(
        driver: StoreDriver, places: [RowPlace] = [], aggregatePlaces: [RowPlace] = [], scanners: [ScannerDriver] = [],
        featureScanner: FeatureScannerDriver? = nil, sink: SinkDriver? = nil, stack: BackendStack = .none,
        writePrimaries: WritePrimaries = .one,
        smokeWriters: [OperationDescriptor] = [], endpoint: (@Sendable (StackDefinition) -> HostPort?)? = nil
    ) {
        name = driver.name
        self.driver = driver
        self.places = places
        self.aggregatePlaces = aggregatePlaces
        self.scanners = scanners
        self.featureScanner = featureScanner
        self.sink = sink
        self.stack = stack
        self.writePrimaries = writePrimaries
        self.smokeWriters = smokeWriters
        self.servedEndpoint = endpoint
        precondition(
            (places + aggregatePlaces).allSatisfy { $0.store == driver.name },
            "backend \(driver.name) lists a place of another store")
        precondition(
            Set(scanners.map(\.place)) == Set(places) && scanners.count == places.count,
            "backend \(driver.name) needs exactly one scanner per place")
        precondition(
            aggregatePlaces.isEmpty == (featureScanner == nil) && (featureScanner?.store ?? driver.name) == driver.name,
            "backend \(driver.name) needs a feature scanner exactly when it has aggregate places")
        precondition(
            sink.map { $0.name == driver.name && $0.fills.allSatisfy((places + aggregatePlaces).contains) } ?? true,
            "backend \(driver.name)'s sink must carry its name and fill its own places")
    }
}

/// How many servers of a store acknowledge writes at once in a healthy stack: what `kiln check`'s split-brain
/// check (`dual-primary.<store>`) may assume.
public enum WritePrimaries: Sendable {
    /// One primary at a time (PostgreSQL, Redis behind Sentinels): two servers acknowledging writes in overlapping
    /// windows is a split brain.
    case one
    /// Several primaries at once, each owning a part of the key space (Redis Cluster's masters, by slot): writes
    /// acknowledged by several servers are normal, so the dual-primary check judges each part on its own: the client
    /// reports the part of each single-key write (`Client.servedPartition`, Redis Cluster's `slot N`), and two servers
    /// acknowledging one part's writes in overlapping windows is that part's split brain.
    case partitionedByKey
}

extension Backend {
    /// What the names of the store's servers (and so the fault targets naming them) start with: the backend's name
    /// (`redis-primary`, `redis-cluster-3`, `clickhouse`) and its stack side's `serverNamePrefixes` (`sentinel-1`).
    public var serverNamePrefixes: [String] { [name] + stack.serverNamePrefixes }

    /// The store's endpoint in `stack` (for reports: `kiln smoke`'s ENDPOINT column), nil when the stack does not
    /// serve this backend. Derived unless the descriptor gives `endpoint`: the stack lists `stack.sectionKey`, and the
    /// endpoint is the proxied one (`stack.proxy`), else the section's first address.
    public func endpoint(in stackDefinition: StackDefinition) -> HostPort? {
        if let servedEndpoint { return servedEndpoint(stackDefinition) }
        guard let key = stack.sectionKey, let section = stackDefinition.section(key) else { return nil }
        return stack.proxy?.endpoint(stackDefinition) ?? section.addresses.first?.address
    }

    /// The operation that fills `place` with a range of dataset rows in one call (`Request(rows:)`), for `kiln
    /// smoke`: the one of `smokeWriters` that writes the place, else the one bulk operation among `place.writtenBy`.
    /// nil when neither picks exactly one (the backend must then list it in `smokeWriters`).
    public func smokeWriter(for place: RowPlace) -> OperationDescriptor? {
        let chosen = smokeWriters.filter { place.writtenBy.contains($0.id) }
        if chosen.count == 1 { return chosen[0] }
        let bulk = driver.operations.filter { $0.kind == .bulk && place.writtenBy.contains($0.id) }
        return chosen.isEmpty && bulk.count == 1 ? bulk[0] : nil
    }
}
