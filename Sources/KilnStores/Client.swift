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
    /// The operations `invoke` accepts, by position: `invoke(i, ...)` runs `operations[i]`.
    static var operations: [OperationDescriptor] { get }

    func setup() throws
    func invoke(_ operation: Int, _ request: Request) -> Outcome
    func teardown() throws
    /// Frees the connection; the client is not used afterwards. Must be safe to call twice.
    func close()
    /// The server the last `invoke` went to (its connection's address), nil when the client cannot say or no op ran.
    /// The history keeps it beside each write, so a check can tell which primary acknowledged what (two primaries
    /// acknowledging writes in the same window is split-brain).
    var servedBy: HostPort? { get }
}

extension Client {
    public var servedBy: HostPort? { nil }
}

/// A store whose bulk load runs faster without its secondary indexes (PostgreSQL at 100M rows: random inserts into
/// two B-trees that outgrow memory). For a bulk phase with `defer_indexes: true` the load run calls
/// `dropSecondaryIndexes` once before the phase's workers start and `buildSecondaryIndexes` once after they all
/// stop — also after an interrupted phase, so a table is never left without its indexes. Both are idempotent.
public protocol SecondaryIndexes: Client {
    func dropSecondaryIndexes() throws
    func buildSecondaryIndexes() throws
}

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
    public var name: String
    public var kind: Kind
    /// One line for `kiln run --list-operations` and the docs.
    public var summary: String

    public init(_ name: String, _ kind: Kind, _ summary: String) {
        self.name = name
        self.kind = kind
        self.summary = summary
    }
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
/// busy (the open-model multiplexer), each with at most one op outstanding — no pipelining.
/// Protocol: `begin` sends op `operation` (one of `multiplexedOperations`) and returns nil while its reply is
/// outstanding, or the outcome when the op ended at once (no connection, send failed). While an op is
/// outstanding the caller waits for `descriptor` to turn readable, then calls `poll`, which returns the outcome
/// once the reply is complete and nil while it is not. `abandon` ends an outstanding op the caller gave up on (its
/// timeout): the connection is dropped (its stream is out of step) and the outcome is the one `invoke` gives a
/// timeout. Outcomes are exactly those `invoke` gives for the same op.
public protocol MultiplexedClient: Client {
    static var multiplexedOperations: Set<Int> { get }
    /// The socket of the outstanding op, -1 when there is none to wait on.
    var descriptor: Int32 { get }
    func begin(_ operation: Int, _ request: Request) -> Outcome?
    func poll() -> Outcome?
    func abandon() -> Outcome
    /// Makes the connection ready for `begin` (e.g. prepares statements) before the phase clock starts; blocking.
    func prepareMultiplexed()
}

extension MultiplexedClient {
    public func prepareMultiplexed() {}
}

/// A store Kiln can drive: its name in scenarios, its operations and how to open a client.
public struct StoreDriver: Sendable {
    public var name: String
    public var operations: [OperationDescriptor]
    public var open: ClientFactory
    /// The operations its client runs multiplexed (`MultiplexedClient`); empty for a blocking-only client.
    public var multiplexedOperations: Set<Int>

    public init<C: Client>(_ name: String, _ type: C.Type, open: @escaping ClientFactory) {
        self.name = name
        self.operations = C.operations
        self.multiplexedOperations = (C.self as? any MultiplexedClient.Type)?.multiplexedOperations ?? []
        self.open = open
    }
}
