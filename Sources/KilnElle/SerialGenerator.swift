import KilnCore

/// Random histories that are strict serializable by construction: `concurrency` processes each run transactions one
/// after another; each transaction takes effect atomically at an instant between its invocation and its completion,
/// and transactions are applied to an in-memory store in the order of those instants. So the serial order explains
/// every read and respects real time: the checker must find nothing, under every model. `Workload` says what a
/// micro-op does to the store (`SerialListAppendGenerator`, `SerialRWRegisterGenerator`).
///
/// Keys are chosen uniformly among `activeKeys` live keys; a key that has received `maxWritesPerKey` writes is
/// retired after the transaction (its own later reads still see it) and replaced by a fresh one (values stay short,
/// as in Elle's generator). Keys are `0 ..< nextKey`, processes `0 ..< concurrency`, times (ns) `0 ..< endNanos`: a
/// test planting an anomaly uses keys, processes and times beyond those. The same parameters and seed give the
/// same history.
public struct SerialGenerator<Workload: SerialWorkload>: Sendable {
    public var transactions: Int
    public var concurrency: Int
    public var opsPerTransaction: Int
    public var activeKeys: Int
    public var maxWritesPerKey: Int
    /// Share of micro-ops that are reads (the rest write).
    public var readShare: Double
    /// Share of reads that see the key's state before its last write (a planted stale-read bug; 0 keeps the history
    /// valid).
    public var staleReadShare: Double
    public var seed: UInt64

    public init(
        transactions: Int, concurrency: Int = 10, opsPerTransaction: Int = 4, activeKeys: Int = 10,
        maxWritesPerKey: Int = 16, readShare: Double = 0.5, staleReadShare: Double = 0, seed: UInt64 = 42
    ) {
        self.transactions = transactions
        self.concurrency = concurrency
        self.opsPerTransaction = opsPerTransaction
        self.activeKeys = activeKeys
        self.maxWritesPerKey = maxWritesPerKey
        self.readShare = readShare
        self.staleReadShare = staleReadShare
        self.seed = seed
    }

    public struct Output: Sendable {
        public var history: Workload.History
        public var nextKey: Int
        public var endNanos: Int64
    }

    public func generate() -> Output {
        var random = SplitMixStream(seed: seed)
        var history = Workload.History()
        Workload.reserve(&history, transactions: transactions, ops: transactions * opsPerTransaction, of: self)
        var liveKey = (0..<activeKeys).map { Int32($0) }
        var live = [Workload.Key](repeating: Workload.Key(), count: activeKeys)
        var nextKey = Int32(activeKeys)
        // Per process: the pending transaction's invocation and effect instants.
        var invoke = [Int64](repeating: 0, count: concurrency)
        var effect = [Int64](repeating: 0, count: concurrency)
        for process in 0..<concurrency {
            invoke[process] = Int64(random.next() % 1_000)
            effect[process] = invoke[process] + 1 + Int64(random.next() % 5_000)
        }
        let readThreshold = UInt64(readShare * Double(UInt64.max >> 11)) << 11
        let staleThreshold = UInt64(staleReadShare * Double(UInt64.max >> 11)) << 11
        var end: Int64 = 0
        for _ in 0..<transactions {
            var process = 0
            for candidate in 1..<concurrency where effect[candidate] < effect[process] { process = candidate }
            let complete = effect[process] + 1 + Int64(random.next() % 5_000)
            history.beginTransaction(
                process: Int32(process), invokeNanos: invoke[process], completeNanos: complete, outcome: .ok)
            for _ in 0..<opsPerTransaction {
                let slot = Int(random.next() % UInt64(activeKeys))
                if random.next() < readThreshold {
                    let stale = staleThreshold > 0 && random.next() < staleThreshold && live[slot].hasBeenWritten
                    live[slot].read(key: liveKey[slot], stale: stale, into: &history)
                } else {
                    live[slot].write(key: liveKey[slot], into: &history)
                }
            }
            history.endTransaction()
            for slot in 0..<activeKeys where live[slot].writes >= maxWritesPerKey {
                liveKey[slot] = nextKey
                nextKey += 1
                live[slot] = Workload.Key()
            }
            end = max(end, complete)
            invoke[process] = complete + Int64(random.next() % 1_000)
            effect[process] = invoke[process] + 1 + Int64(random.next() % 5_000)
        }
        return Output(history: history, nextKey: Int(nextKey), endNanos: end + 1)
    }
}

/// What a micro-op of one workload does to the serial generator's in-memory store.
public protocol SerialWorkload: Sendable {
    associatedtype History: TransactionColumnsBuilder
    /// One live key's state in the store; `init()` is a fresh, never-written key.
    associatedtype Key: SerialKeyState where Key.History == History
    static func reserve(
        _ history: inout History, transactions: Int, ops: Int, of generator: SerialGenerator<Self>)
}

/// What both columnar histories offer a generator: transactions framed by `beginTransaction` / `endTransaction`.
public protocol TransactionColumnsBuilder: Sendable {
    init()
    mutating func beginTransaction(process: Int32, invokeNanos: Int64, completeNanos: Int64, outcome: TransactionOutcome)
    mutating func endTransaction()
}

/// A live key of a serial generator's store: reads see its current state (or, `stale`, the one before its last
/// write), writes change it.
public protocol SerialKeyState {
    associatedtype History
    init()
    /// Writes so far (the key is retired at `maxWritesPerKey`).
    var writes: Int { get }
    var hasBeenWritten: Bool { get }
    mutating func read(key: Int32, stale: Bool, into history: inout History)
    mutating func write(key: Int32, into history: inout History)
}

/// Lists that only grow: values 1, 2, 3… per key; a stale read misses the last append.
public enum SerialListAppend: SerialWorkload {
    public struct Key: SerialKeyState {
        var list: [Int32] = []
        public init() {}
        public var writes: Int { list.count }
        public var hasBeenWritten: Bool { !list.isEmpty }

        @inline(__always)
        public mutating func read(key: Int32, stale: Bool, into history: inout ListAppendHistory) {
            list.withUnsafeBufferPointer {
                history.addRead(key: key, values: stale ? UnsafeBufferPointer(rebasing: $0.dropLast()) : $0)
            }
        }

        @inline(__always)
        public mutating func write(key: Int32, into history: inout ListAppendHistory) {
            let value = Int32(list.count + 1)
            list.append(value)
            history.addAppend(key: key, value: value)
        }
    }

    public static func reserve(
        _ history: inout ListAppendHistory, transactions: Int, ops: Int, of generator: SerialGenerator<Self>
    ) {
        history.reserveCapacity(
            transactions: transactions, ops: ops,
            readElements: Int(Double(ops) * generator.readShare) * generator.maxWritesPerKey / 2)
    }
}

/// Single-value registers: values 0, 1, 2… per key; a stale read returns the value before the last write.
public enum SerialRWRegister: SerialWorkload {
    public struct Key: SerialKeyState {
        var current = RWRegisterHistory.initialValue
        var previous = RWRegisterHistory.initialValue
        var written: Int32 = 0
        public init() {}
        public var writes: Int { Int(written) }
        public var hasBeenWritten: Bool { current != RWRegisterHistory.initialValue }

        @inline(__always)
        public mutating func read(key: Int32, stale: Bool, into history: inout RWRegisterHistory) {
            history.addRead(key: key, value: stale ? previous : current)
        }

        @inline(__always)
        public mutating func write(key: Int32, into history: inout RWRegisterHistory) {
            previous = current
            current = written
            written += 1
            history.addWrite(key: key, value: current)
        }
    }

    public static func reserve(
        _ history: inout RWRegisterHistory, transactions: Int, ops: Int, of generator: SerialGenerator<Self>
    ) {
        history.reserveCapacity(transactions: transactions, ops: ops)
    }
}

/// Random list-append histories that are strict serializable by construction (see `SerialGenerator`).
public typealias SerialListAppendGenerator = SerialGenerator<SerialListAppend>
/// Random rw-register histories that are strict serializable by construction (see `SerialGenerator`).
public typealias SerialRWRegisterGenerator = SerialGenerator<SerialRWRegister>

extension ListAppendHistory: TransactionColumnsBuilder {}
extension RWRegisterHistory: TransactionColumnsBuilder {}

/// A sequential stream over KilnCore's counter-based SplitMix64: value `i` is `mix(seed + i·γ)`.
struct SplitMixStream {
    private var counter: UInt64
    init(seed: UInt64) { counter = seed }
    mutating func next() -> UInt64 {
        counter &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(counter)
    }
}
