import KilnCore

/// Random list-append histories that are strict serializable by construction: `concurrency` processes each run
/// transactions one after another; each transaction takes effect atomically at an instant between its invocation
/// and its completion, and transactions are applied to an in-memory store in the order of those instants. So the
/// serial order explains every read and respects real time: the checker must find nothing, under every model.
///
/// Keys are chosen uniformly among `activeKeys` live keys; a key that has received `maxWritesPerKey` appends is
/// retired and replaced by a fresh one (lists stay short, as in Elle's generator). Values are 1, 2, 3… per key.
/// Keys are `0 ..< nextKey`, processes `0 ..< concurrency`, times (ns) `0 ..< endNanos`: a test planting an anomaly
/// uses keys, processes and times beyond those.
public struct SerialListAppendGenerator: Sendable {
    public var transactions: Int
    public var concurrency: Int
    public var opsPerTransaction: Int
    public var activeKeys: Int
    public var maxWritesPerKey: Int
    /// Share of micro-ops that are reads (the rest append).
    public var readShare: Double
    /// Share of reads that miss the key's last append (a planted stale-read bug; 0 keeps the history valid).
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
        public var history: ListAppendHistory
        public var nextKey: Int
        public var endNanos: Int64
    }

    public func generate() -> Output {
        var random = SplitMixStream(seed: seed)
        var history = ListAppendHistory()
        history.reserveCapacity(
            transactions: transactions, ops: transactions * opsPerTransaction,
            readElements: Int(Double(transactions * opsPerTransaction) * readShare) * maxWritesPerKey / 2)
        var liveKey = (0..<activeKeys).map { Int32($0) }
        var liveList = [[Int32]](repeating: [], count: activeKeys)
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
                    let stale = staleThreshold > 0 && random.next() < staleThreshold && !liveList[slot].isEmpty
                    liveList[slot].withUnsafeBufferPointer {
                        history.addRead(
                            key: liveKey[slot], values: stale ? UnsafeBufferPointer(rebasing: $0.dropLast()) : $0)
                    }
                } else {
                    let value = Int32(liveList[slot].count + 1)
                    liveList[slot].append(value)
                    history.addAppend(key: liveKey[slot], value: value)
                }
            }
            history.endTransaction()
            // Retire full keys after the transaction (its own later reads still see the whole list).
            for slot in 0..<activeKeys where liveList[slot].count >= maxWritesPerKey {
                liveKey[slot] = nextKey
                nextKey += 1
                liveList[slot] = []
            }
            end = max(end, complete)
            invoke[process] = complete + Int64(random.next() % 1_000)
            effect[process] = invoke[process] + 1 + Int64(random.next() % 5_000)
        }
        return Output(history: history, nextKey: Int(nextKey), endNanos: end + 1)
    }
}

/// A sequential stream over KilnCore's counter-based SplitMix64: value `i` is `mix(seed + i·γ)`.
struct SplitMixStream {
    private var counter: UInt64
    init(seed: UInt64) { counter = seed }
    mutating func next() -> UInt64 {
        counter &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(counter)
    }
}
