/// Random rw-register histories that are strict serializable by construction (the scheme of
/// `SerialListAppendGenerator`): `concurrency` processes each run transactions one after another; each takes effect
/// atomically at an instant between its invocation and completion, applied to an in-memory store in that order.
/// The checker must find nothing in them, under every model.
///
/// Keys are chosen uniformly among `activeKeys` live keys; a key written `maxWritesPerKey` times is retired and
/// replaced by a fresh one. Values are 0, 1, 2… per key. Keys are `0 ..< nextKey`, processes `0 ..< concurrency`,
/// times (ns) `0 ..< endNanos`: a test planting an anomaly uses keys, processes and times beyond those.
public struct SerialRWRegisterGenerator: Sendable {
    public var transactions: Int
    public var concurrency: Int
    public var opsPerTransaction: Int
    public var activeKeys: Int
    public var maxWritesPerKey: Int
    /// Share of micro-ops that are reads (the rest write).
    public var readShare: Double
    /// Share of reads that return the key's previous value instead of its current one (a planted stale-read bug;
    /// 0 keeps the history valid).
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
        public var history: RWRegisterHistory
        public var nextKey: Int
        public var endNanos: Int64
    }

    public func generate() -> Output {
        var random = SplitMixStream(seed: seed)
        var history = RWRegisterHistory()
        history.reserveCapacity(transactions: transactions, ops: transactions * opsPerTransaction)
        let initial = RWRegisterHistory.initialValue
        var liveKey = (0..<activeKeys).map { Int32($0) }
        var current = [Int32](repeating: initial, count: activeKeys)
        var previous = [Int32](repeating: initial, count: activeKeys)
        var writes = [Int32](repeating: 0, count: activeKeys)
        var nextKey = Int32(activeKeys)
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
                    let stale = staleThreshold > 0 && random.next() < staleThreshold && current[slot] != initial
                    history.addRead(key: liveKey[slot], value: stale ? previous[slot] : current[slot])
                } else {
                    previous[slot] = current[slot]
                    current[slot] = writes[slot]
                    writes[slot] += 1
                    history.addWrite(key: liveKey[slot], value: current[slot])
                }
            }
            history.endTransaction()
            for slot in 0..<activeKeys where Int(writes[slot]) >= maxWritesPerKey {
                liveKey[slot] = nextKey
                nextKey += 1
                current[slot] = initial
                previous[slot] = initial
                writes[slot] = 0
            }
            end = max(end, complete)
            invoke[process] = complete + Int64(random.next() % 1_000)
            effect[process] = invoke[process] + 1 + Int64(random.next() % 5_000)
        }
        return Output(history: history, nextKey: Int(nextKey), endNanos: end + 1)
    }
}
