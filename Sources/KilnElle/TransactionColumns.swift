/// The columns every Elle history has (struct of arrays): one entry per transaction (process, times, outcome), the
/// key of each micro-op, and where each transaction's micro-ops start. `ListAppendHistory` and `RWRegisterHistory`
/// add the columns of their own micro-ops (appends and read lists; register values) next to these.
///
/// Guarantees: transaction `t`'s micro-ops are `opStart[t] ..< opStart[t + 1]`, in the order the transaction ran
/// them. Transactions are kept in the order they were added; the transactions of one process must be added in the
/// order the process ran them (the process order of the checkers).
public struct TransactionColumns: Sendable {
    public private(set) var process: [Int32] = []
    public private(set) var invokeNanos: [Int64] = []
    /// `unknownTime` when no answer arrived.
    public private(set) var completeNanos: [Int64] = []
    public private(set) var outcome: [TransactionOutcome] = []
    public private(set) var opStart: [Int32] = [0]
    public private(set) var opKey: [Int32] = []

    public static let unknownTime = Int64.max

    public init() {}

    public var count: Int { process.count }
    public var opCount: Int { opKey.count }

    public mutating func reserveCapacity(transactions: Int, ops: Int) {
        process.reserveCapacity(transactions)
        invokeNanos.reserveCapacity(transactions)
        completeNanos.reserveCapacity(transactions)
        outcome.reserveCapacity(transactions)
        opStart.reserveCapacity(transactions + 1)
        opKey.reserveCapacity(ops)
    }

    public mutating func beginTransaction(
        process: Int32, invokeNanos: Int64, completeNanos: Int64, outcome: TransactionOutcome
    ) {
        self.process.append(process)
        self.invokeNanos.append(invokeNanos)
        self.completeNanos.append(completeNanos)
        self.outcome.append(outcome)
    }

    /// Adds a micro-op on `key` to the open transaction (the history adds its other columns).
    @inline(__always)
    public mutating func addOp(key: Int32) { opKey.append(key) }

    public mutating func endTransaction() {
        precondition(opKey.count <= Int(Int32.max), "more than 2G micro-ops")
        opStart.append(Int32(opKey.count))
    }

    /// Approximate bytes held by these columns (capacity not counted).
    public var approximateBytes: Int { count * (4 + 8 + 8 + 1 + 4) + opCount * 4 }
}

/// A history in columns: `columns` and what follows from them, the same for both workloads.
public protocol ColumnarHistory {
    var columns: TransactionColumns { get }
}

extension ColumnarHistory {
    public static var unknownTime: Int64 { TransactionColumns.unknownTime }

    @inline(__always) public var process: [Int32] { columns.process }
    @inline(__always) public var invokeNanos: [Int64] { columns.invokeNanos }
    /// `unknownTime` when no answer arrived.
    @inline(__always) public var completeNanos: [Int64] { columns.completeNanos }
    @inline(__always) public var outcome: [TransactionOutcome] { columns.outcome }
    @inline(__always) public var opStart: [Int32] { columns.opStart }
    @inline(__always) public var opKey: [Int32] { columns.opKey }
    public var count: Int { columns.count }
    public var opCount: Int { columns.opCount }

    @inline(__always)
    public func ops(of transaction: Int) -> Range<Int> {
        Int(columns.opStart[transaction])..<Int(columns.opStart[transaction + 1])
    }

    /// Is op `op` of transaction `transaction` the first op on its key in that transaction?
    @inline(__always)
    public func isFirstOnKey(op: Int, transaction: Int) -> Bool {
        let key = columns.opKey[op]
        var earlier = Int(columns.opStart[transaction])
        while earlier < op {
            if columns.opKey[earlier] == key { return false }
            earlier += 1
        }
        return true
    }

    /// Transaction `index` in its JSON form with micro-ops `ops` (for explanations).
    func transaction(_ index: Int, ops: [MicroOp]) -> ElleTransaction {
        let complete = columns.completeNanos[index]
        return ElleTransaction(
            process: Int(columns.process[index]), invokeNanos: columns.invokeNanos[index],
            completeNanos: complete == Self.unknownTime ? nil : complete, outcome: columns.outcome[index], ops: ops)
    }
}

/// The index of `value` in the sorted segment `start ..< end` of `values`, or -1 (binary search). The inferences
/// index writes per key this way: a key's appended or written values, sorted.
@inline(__always)
func sortedIndex(of value: Int32, in values: [Int32], from start: Int32, to end: Int32) -> Int {
    var low = Int(start)
    var high = Int(end)
    while low < high {
        let middle = (low + high) >> 1
        let found = values[middle]
        if found == value { return middle }
        if found < value { low = middle + 1 } else { high = middle }
    }
    return -1
}
