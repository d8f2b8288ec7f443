/// What an rw-register history says about each key, inferred once (Elle's rw-register analysis, conservatively):
///
/// - the writer of a value is the transaction that wrote it to that key (values are unique per key; a value nobody
///   wrote is a `garbage-read`); a transaction's versions of a key are its last write to it (earlier writes are
///   intermediate: reading one is G1b);
/// - the version order of a key is only what the history proves: the initial state (never written) precedes every
///   version, and a committed transaction that read `v1` of a key and then wrote `v2` to it puts `v1` right before
///   `v2` (write follows read). Registers carry less information than lists: versions no read-then-write relates
///   stay unordered, and make no ww or rw edge;
/// - edges: `T1 -ww-> T2` when T2 read T1's version and overwrote it; `T1 -wr-> T2` when T2 read T1's version;
///   `T1 -rw-> T2` when T1 read a version that T2 overwrote (for the initial state: that T2 wrote a version nothing
///   but the initial state is known to precede).
///
/// Reads are used only from `ok` transactions (an `info` transaction's reads are unknown); `fail` transactions are
/// no node of the graph, and reading their writes is G1a.
struct RWRegisterInference {
    let history: RWRegisterHistory
    let keys: [Int32]
    let keyBase: Int32
    let keyCount: Int
    /// Slot `key`'s writes sorted by value: `writeStart[key] ..< writeStart[key + 1]`.
    private(set) var writeStart: [Int32] = []
    private(set) var writeValue: [Int32] = []
    private(set) var writeTransaction: [Int32] = []
    /// Whether the write is its transaction's last write to the key (a version others may read).
    private(set) var writeFinal: [Bool] = []
    /// Whether some version is known to precede this one (other than the initial state).
    private(set) var hasPredecessor: [Bool] = []
    /// Version successors of write `w` (write indices): `successorStart[w] ..< successorStart[w + 1]` of
    /// `successorWrite`.
    private(set) var successorStart: [Int32] = []
    private(set) var successorWrite: [Int32] = []
    /// For each read op of an `ok` transaction that is the first op on its key in the transaction (an external
    /// read): the write index of the value read, `initialRead` for the initial state, `noWriter` when nobody wrote
    /// it (or the read is not external / not from an `ok` transaction).
    private(set) var opWrite: [Int32] = []

    static let initialRead: Int32 = -2
    static let noWriter: Int32 = -1

    init(history: RWRegisterHistory) {
        self.history = history
        let slots = KeySlots(opKey: history.opKey)
        keys = slots.keys
        keyBase = slots.keyBase
        keyCount = slots.keyCount
    }

    @inline(__always) func slot(_ op: Int) -> Int { Int(keys[op] &- keyBase) }

    /// The history's key of slot `slot` (for explanations).
    func keyOf(slot: Int) -> Int {
        guard let op = keys.firstIndex(of: Int32(slot) &+ keyBase) else { return slot }
        return Int(history.opKey[op])
    }

    /// The write index of `value` in key slot `slot`, or -1.
    @inline(__always) func writeIndex(slot: Int, value: Int32) -> Int {
        sortedIndex(of: value, in: writeValue, from: writeStart[slot], to: writeStart[slot + 1])
    }

    /// Is op `op` the first op on its key in `transaction`?
    @inline(__always) func isFirstOnKey(op: Int, transaction: Int) -> Bool {
        history.isFirstOnKey(op: op, transaction: transaction)
    }

    /// Is op `op` the last write to its key in `transaction`?
    @inline(__always) func isLastWriteOnKey(op: Int, transaction: Int) -> Bool {
        let key = history.opKey[op]
        var later = op + 1
        let end = Int(history.opStart[transaction + 1])
        while later < end {
            if history.opIsWrite[later] && history.opKey[later] == key { return false }
            later += 1
        }
        return true
    }

    /// A write that is a version a graph edge may use: its transaction did not fail and it was its last write.
    @inline(__always) func isVersion(_ write: Int) -> Bool {
        writeFinal[write] && history.outcome[Int(writeTransaction[write])] != .fail
    }

    /// Indexes writes by key and value; throws when one key gets the same value twice.
    mutating func indexWrites() throws {
        let opIsWrite = history.opIsWrite
        let opValue = history.opValue
        let opStart = history.opStart
        var start = [Int32](repeating: 0, count: keyCount + 1)
        var writes = 0
        for op in 0..<history.opCount where opIsWrite[op] {
            start[slot(op) + 1] += 1
            writes += 1
        }
        for key in 0..<keyCount { start[key + 1] += start[key] }
        // Pass 1: each slot's writes as `value << 32 | serial` (serial: the write's number in history order), then
        // sorted per slot; pass 2 gathers value, transaction and finality in that order.
        var serialTransaction = [Int32](repeating: 0, count: writes)
        var serialFinal = [Bool](repeating: false, count: writes)
        var packed = [UInt64](repeating: 0, count: writes)
        var cursor = start
        var serial = 0
        for transaction in 0..<history.count {
            for op in Int(opStart[transaction])..<Int(opStart[transaction + 1]) where opIsWrite[op] {
                let key = slot(op)
                packed[Int(cursor[key])] = UInt64(UInt32(bitPattern: opValue[op])) << 32 | UInt64(serial)
                cursor[key] += 1
                serialTransaction[serial] = Int32(transaction)
                serialFinal[serial] = isLastWriteOnKey(op: op, transaction: transaction)
                serial += 1
            }
        }
        for key in 0..<keyCount where start[key + 1] - start[key] > 1 {
            packed[Int(start[key])..<Int(start[key + 1])].sort()
        }
        writeValue = [Int32](repeating: 0, count: writes)
        writeTransaction = [Int32](repeating: 0, count: writes)
        writeFinal = [Bool](repeating: false, count: writes)
        for position in 0..<writes {
            let entry = packed[position]
            let serial = Int(entry & 0xFFFF_FFFF)
            writeValue[position] = Int32(truncatingIfNeeded: entry >> 32)
            writeTransaction[position] = serialTransaction[serial]
            writeFinal[position] = serialFinal[serial]
        }
        writeStart = start
        for key in 0..<keyCount {
            let lower = Int(start[key])
            let upper = Int(start[key + 1])
            if upper - lower < 2 { continue }
            for index in (lower + 1)..<upper where writeValue[index] == writeValue[index - 1] {
                throw HistoryFormatError(
                    message: "value \(writeValue[index]) written twice to key \(keyOf(slot: key)) "
                        + "(T\(writeTransaction[index - 1]) and T\(writeTransaction[index])); "
                        + "rw-register needs unique values per key")
            }
        }
    }

    /// Resolves the writer of every external read of an `ok` transaction and the write-follows-read version order;
    /// returns the (read write or `initialRead` per slot, transaction, op) of each external read followed by a write
    /// of the same key in its transaction (lost-update candidates).
    mutating func inferVersionOrders() -> [(slot: Int32, read: Int32, transaction: Int32, op: Int32)] {
        let outcome = history.outcome
        let opStart = history.opStart
        let opIsWrite = history.opIsWrite
        let opValue = history.opValue
        let opKey = history.opKey
        var opWrite = [Int32](repeating: Self.noWriter, count: history.opCount)
        var versionEdges: [UInt64] = []
        var candidates: [(slot: Int32, read: Int32, transaction: Int32, op: Int32)] = []
        for transaction in 0..<history.count where outcome[transaction] == .ok {
            let first = Int(opStart[transaction])
            let end = Int(opStart[transaction + 1])
            for op in first..<end where !opIsWrite[op] {
                if !isFirstOnKey(op: op, transaction: transaction) { continue }
                let key = slot(op)
                let read: Int32
                if opValue[op] == RWRegisterHistory.initialValue {
                    read = Self.initialRead
                } else {
                    read = Int32(writeIndex(slot: key, value: opValue[op]))
                }
                opWrite[op] = read
                // Write follows read: the transaction's last write to this key comes right after what it read.
                var lastWrite = -1
                for later in (op + 1)..<end where opIsWrite[later] && opKey[later] == opKey[op] { lastWrite = later }
                if lastWrite < 0 { continue }
                // A garbage read (nobody wrote it) is no version two transactions could both have read.
                if read != Self.noWriter { candidates.append((Int32(key), read, Int32(transaction), Int32(op))) }
                if read >= 0 && isVersion(Int(read)) && Int(writeTransaction[Int(read)]) != transaction {
                    let written = writeIndex(slot: key, value: opValue[lastWrite])
                    versionEdges.append(UInt64(UInt32(read)) << 32 | UInt64(UInt32(written)))
                }
            }
        }
        self.opWrite = opWrite
        versionEdges.sort()
        let writes = writeValue.count
        var successorStart = [Int32](repeating: 0, count: writes + 1)
        var successorWrite = [Int32](repeating: 0, count: versionEdges.count)
        var hasPredecessor = [Bool](repeating: false, count: writes)
        for (index, edge) in versionEdges.enumerated() {
            successorStart[Int(edge >> 32) + 1] += 1
            successorWrite[index] = Int32(truncatingIfNeeded: edge & 0xFFFF_FFFF)
            hasPredecessor[Int(edge & 0xFFFF_FFFF)] = true
        }
        for write in 0..<writes { successorStart[write + 1] += successorStart[write] }
        self.successorStart = successorStart
        self.successorWrite = successorWrite
        self.hasPredecessor = hasPredecessor
        return candidates
    }

    /// Node count of the graph (transactions, then real-time barriers).
    func graphNodeCount(order: OrderEdges) -> Int { history.count + order.barrierCount }

    /// Calls `emit(from, to, label)` for every ww, wr and rw edge, then the process and real-time edges of `order`;
    /// the same edges in the same order on every call.
    func enumerateEdges(order: OrderEdges, _ emit: (Int32, Int32, UInt8) -> Void) {
        let ww = EdgeLabels.ww.rawValue
        let wr = EdgeLabels.wr.rawValue
        let rw = EdgeLabels.rw.rawValue
        let outcome = history.outcome
        let writeTransaction = writeTransaction
        let successorStart = successorStart
        let successorWrite = successorWrite
        let writeCount = writeValue.count
        for write in 0..<writeCount where successorStart[write] != successorStart[write + 1] {
            let from = writeTransaction[write]
            for successor in Int(successorStart[write])..<Int(successorStart[write + 1]) {
                let to = writeTransaction[Int(successorWrite[successor])]
                if from != to { emit(from, to, ww) }
            }
        }
        let opStart = history.opStart
        let opIsWrite = history.opIsWrite
        let opWrite = opWrite
        let writeFinal = writeFinal
        let hasPredecessor = hasPredecessor
        let writeStart = writeStart
        for transaction in 0..<history.count where outcome[transaction] == .ok {
            let reader = Int32(transaction)
            for op in Int(opStart[transaction])..<Int(opStart[transaction + 1]) where !opIsWrite[op] {
                let read = opWrite[op]
                if read == Self.initialRead {
                    let key = slot(op)
                    for write in Int(writeStart[key])..<Int(writeStart[key + 1])
                    where writeFinal[write] && !hasPredecessor[write] {
                        let writer = writeTransaction[write]
                        if writer != reader && outcome[Int(writer)] != .fail { emit(reader, writer, rw) }
                    }
                    continue
                }
                if read < 0 || !isVersion(Int(read)) { continue }
                let writer = writeTransaction[Int(read)]
                if writer == reader { continue }
                emit(writer, reader, wr)
                for successor in Int(successorStart[Int(read)])..<Int(successorStart[Int(read) + 1]) {
                    let next = writeTransaction[Int(successorWrite[successor])]
                    if next != reader { emit(reader, next, rw) }
                }
            }
        }
        order.enumerate(emit)
    }
}
