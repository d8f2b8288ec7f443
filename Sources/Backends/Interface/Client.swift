import KilnCore
import KilnData
import KilnScenario
import Logging

/// One connection to one store, driven by one worker thread (Jepsen's client). Not Sendable: it is created,
/// used and closed on the worker's own OS thread, and blocking C calls are fine there.
///
/// Contract for every implementation:
/// - `invoke` never throws and never retries: each error becomes `.fail` (definitely not applied) or `.info`
///   (maybe applied — timeouts, a connection lost after sending). After a connection-level error the client
///   reconnects on the next `invoke` (that reconnect is part of the next op's latency).
/// - `setup` is idempotent (CREATE ... IF NOT EXISTS and the like) and is called on one client before any worker
///   starts a phase that uses the store; `teardown` removes what `setup` created and is only called when asked.
/// - Write operations write dataset rows given by `Request.row` / `Request.rows`; the engine hands each row to
///   exactly one write per store and run, so the stores can be reconciled against the oracle (issue 5).
public protocol Client: AnyObject {
    /// The closed set of operations `invoke` accepts. Their names in scenarios, kinds and summaries come from the
    /// enum itself, so no list position can pick or check a different operation.
    associatedtype Operation: StoreOperation

    func setup() throws
    func invoke(_ operation: Operation, _ request: Request) -> Outcome
    func teardown() throws
    /// Frees the connection; the client is not used afterwards. Must be safe to call twice.
    func close()
    /// The server the last `invoke` went to (its connection's address), nil when the client cannot say or no op ran.
    /// The history keeps it beside each write, so a check can tell which primary acknowledged what (two primaries
    /// acknowledging writes in the same window is split-brain).
    var servedBy: HostPort? { get }
    /// The part of the key space the last `invoke` wrote, for a store with several primaries each owning a part
    /// (Redis Cluster: `slot 1234`); nil when the op touched several parts, was not a write, or the store has one
    /// primary. The history keeps it beside `servedBy`, so the split-brain check can judge each part on its own.
    var servedPartition: String? { get }
}

extension Client {
    public var servedBy: HostPort? { nil }
    public var servedPartition: String? { nil }

    /// The operations of this client's store, in the enum's declaration order (for listings only: nothing is looked
    /// up by position).
    public static var operations: [OperationDescriptor] { Operation.descriptors }

    /// Runs the operation `descriptor` names: the engine's entry point, which holds clients as `any Client`. A
    /// descriptor of another store's operation runs nothing and ends `fail("unknown-operation")`.
    public func invoke(_ descriptor: OperationDescriptor, _ request: Request) -> Outcome {
        guard let operation = descriptor.operation as? Operation else { return .fail("unknown-operation") }
        return invoke(operation, request)
    }
}

/// One store's closed set of operations, as an enum: the raw value is the operation's name in scenarios after the
/// store (`set` in `redis.set`), `store` the store's name. Everything else — the registry's operation list, the
/// places a write fills, `--list-operations` — is derived from the cases, never from a list position.
public protocol StoreOperation: RawRepresentable<String>, CaseIterable, Hashable, Sendable {
    /// The store's name in scenarios (`redis`).
    static var store: String { get }
    var kind: OperationDescriptor.Kind { get }
    /// One line for `kiln run --list-operations` and the docs.
    var summary: String { get }
}

extension StoreOperation {
    /// The operation's full name in scenarios and histories: `redis.set`.
    public var id: String { "\(Self.store).\(rawValue)" }

    public static var descriptors: [OperationDescriptor] { allCases.map { OperationDescriptor($0) } }
}

/// A store whose bulk load runs faster without its secondary indexes (PostgreSQL at 100M rows: random inserts into
/// two B-trees that outgrow memory). For a bulk phase with `defer_indexes: true` the load run calls
/// `dropSecondaryIndexes` once before the phase's workers start and `buildSecondaryIndexes` once after they all
/// stop — also after an interrupted phase, so a table is never left without its indexes. Both are idempotent.
public protocol SecondaryIndexes: Client {
    func dropSecondaryIndexes() throws
    func buildSecondaryIndexes() throws
}

/// One operation of a store, with its typed case erased (the engine plans phases over several stores).
public struct OperationDescriptor: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// Loads `Request.rows` (many rows per op).
        case bulk
        /// Writes the dataset row `Request.row` (once per store and run).
        case write
        /// Reads something about the already-written row `Request.row` (its txn, user, merchant or device).
        case read
    }

    /// The name in scenarios, after the store: `postgres.point-read` is operation `point-read` of `postgres`.
    public let name: String
    public let kind: Kind
    /// One line for `kiln run --list-operations` and the docs.
    public let summary: String
    /// The typed case; `Client.invoke(_: OperationDescriptor, _:)` casts it back to the client's `Operation`.
    public let operation: any StoreOperation

    public init<Operation: StoreOperation>(_ operation: Operation) {
        self.name = operation.rawValue
        self.kind = operation.kind
        self.summary = operation.summary
        self.operation = operation
    }

    /// `redis.set`.
    public var id: String { operation.id }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.id == rhs.id }
    public func hash(into hasher: inout Hasher) { hasher.combine(id) }
}

/// The arguments of one op. Plain values, built by the executor on the worker thread.
public struct Request: Sendable, Hashable {
    /// write: the dataset row to write; read: a row already written to this store in this run (its keys are
    /// what the read looks up).
    public var row: Int64
    /// bulk: the rows to load, in order.
    public var rows: Range<Int64>
    /// 64 random bits from the run's seed, for choices inside an op (a window, a k, a score delta).
    public var random: UInt64

    public init(row: Int64 = 0, rows: Range<Int64> = 0..<0, random: UInt64 = 0) {
        self.row = row
        self.rows = rows
        self.random = random
    }
}

/// Everything a client needs to connect and to build its requests. Shared by all workers of a run.
public struct ClientContext: Sendable {
    public var stack: StackDefinition
    public var dataset: Dataset
    /// Prefix of every table, key, topic and graph label Kiln creates, e.g. `kiln` -> table `kiln_transactions`,
    /// key `kiln:user:42:features`, topic `kiln.transactions`.
    public var namespace: String
    /// Per-op timeout where the library supports one; an op that exceeds it ends `info("timeout")` for writes,
    /// `fail("timeout")` for reads.
    public var timeout: Duration
    public var environment: [String: String]
    public var logger: Logger
    /// The current primaries when a failover fault runs: clients that support it (PostgreSQL) connect to the
    /// service's entry here instead of the stack file's primary on every (re)connect. Nil: the stack file only.
    public var primaries: PrimaryDirectory?

    public init(
        stack: StackDefinition, dataset: Dataset, namespace: String = "kiln", timeout: Duration = .seconds(10),
        environment: [String: String], logger: Logger, primaries: PrimaryDirectory? = nil
    ) {
        self.stack = stack
        self.dataset = dataset
        self.namespace = namespace
        self.timeout = timeout
        self.environment = environment
        self.logger = logger
        self.primaries = primaries
    }
}

/// Opens a client for one worker; called on that worker's thread.
public typealias ClientFactory = @Sendable (ClientContext) throws -> any Client

/// A client that runs some operations without blocking its thread, so that one thread keeps many connections
/// busy (the open-model multiplexer), each with one op outstanding — or, for a client that `pipelines` and a phase
/// with `pipeline_depth` > 1, up to that many.
/// Protocol: `begin` sends op `operation` (one of `multiplexedOperations`) and returns nil while its reply is
/// outstanding, or the outcome when the op ended at once (no connection, send failed). While an op is
/// outstanding the caller waits for `descriptor` to turn readable, then calls `poll`, which returns the outcome
/// once the reply is complete and nil while it is not. `abandon` ends an outstanding op the caller gave up on (its
/// timeout): the connection is dropped (its stream is out of step) and the outcome is the one `invoke` gives a
/// timeout. Outcomes are exactly those `invoke` gives for the same op.
/// Pipelining (after `enablePipelining()`): `begin` may be called while earlier ops are outstanding, and only queues
/// the op; `endBatch` sends the ops begun since the last one together (the caller calls it after each round of
/// `begin`s on the connection). `poll` returns the oldest outstanding op's outcome once complete (call it again for
/// the next); `abandon` drops the connection and its outcome ends every outstanding op. An op that `begin` ends at
/// once leaves the earlier ones to `poll`.
public protocol MultiplexedClient: Client {
    static var multiplexedOperations: Set<Operation> { get }
    /// Whether the client can keep several ops outstanding on its connection (`enablePipelining`).
    static var pipelines: Bool { get }
    /// From now on `begin` may be called with ops outstanding (only for a client that `pipelines`; called before
    /// `prepareMultiplexed`).
    func enablePipelining()
    /// Pipelining: sends the ops begun since the last call. Nil when sent (or nothing to send); else the outcome of
    /// every op outstanding on the connection, which the client dropped.
    func endBatch() -> Outcome?
    /// `multiplexedOperations` as the engine's descriptors (derived; do not implement).
    static var multiplexedDescriptors: Set<OperationDescriptor> { get }
    /// The socket of the outstanding op, -1 when there is none to wait on. The multiplexing loop keeps it
    /// registered in epoll across ops and registers again when the number changes or after an op that did not end
    /// `.ok`: a client that replaces its connection between two `.ok` ops (e.g. the primary moved) must open the new
    /// one before closing the old, so the new socket never reuses the old number.
    var descriptor: Int32 { get }
    func begin(_ operation: Operation, _ request: Request) -> Outcome?
    func poll() -> Outcome?
    func abandon() -> Outcome
    /// Makes the connection ready for `begin` (e.g. prepares statements) before the phase clock starts; blocking.
    func prepareMultiplexed()
}

extension MultiplexedClient {
    public func prepareMultiplexed() {}
    public static var pipelines: Bool { false }
    public func enablePipelining() {
        preconditionFailure("\(Self.self) does not pipeline")
    }
    public func endBatch() -> Outcome? { nil }

    public static var multiplexedDescriptors: Set<OperationDescriptor> {
        Set(multiplexedOperations.map(OperationDescriptor.init))
    }

    /// The engine's entry point (it holds clients as `any MultiplexedClient`): an operation of another store, or
    /// one this client does not multiplex, ends at once as `fail("unknown-operation")` — nothing is sent.
    public func begin(_ descriptor: OperationDescriptor, _ request: Request) -> Outcome? {
        guard let operation = descriptor.operation as? Operation, Self.multiplexedOperations.contains(operation) else {
            return .fail("unknown-operation")
        }
        return begin(operation, request)
    }
}

/// A store Kiln can drive: its name in scenarios, its operations and how to open a client.
public struct StoreDriver: Sendable {
    public var name: String
    public var operations: [OperationDescriptor]
    public var open: ClientFactory
    /// The operations its client runs multiplexed (`MultiplexedClient`); empty for a blocking-only client.
    public var multiplexedOperations: Set<OperationDescriptor>
    /// The reads among them it can also pipeline (`MultiplexedClient.pipelines`): a phase's `pipeline_depth` > 1
    /// needs them.
    public var pipelinedOperations: Set<OperationDescriptor>

    /// The store's name is its operations' `store`, so a driver cannot list another store's operations.
    public init<C: Client>(_ type: C.Type, open: @escaping ClientFactory) {
        self.init(C.Operation.store, type, open: open)
    }

    /// The client's operations under another store name (a second instance of a store; tests' stand-in stores).
    public init<C: Client>(_ name: String, _ type: C.Type, open: @escaping ClientFactory) {
        self.name = name
        self.operations = C.Operation.descriptors
        let multiplexed = C.self as? any MultiplexedClient.Type
        self.multiplexedOperations = multiplexed?.multiplexedDescriptors ?? []
        // Only reads pipeline: they are summarised by the stats, never written to the history, so no history shows a
        // worker with two ops outstanding.
        self.pipelinedOperations = multiplexed?.pipelines == true
            ? self.multiplexedOperations.filter { $0.kind == .read } : []
        self.open = open
    }

    /// The operation named `name` (after the store), or nil.
    public func operation(named name: String) -> OperationDescriptor? { operations.first { $0.name == name } }
}
