/// A list-append history in columns (struct of arrays), the form the checker works on: no object per transaction,
/// no array per read. 10M transactions of 4 micro-ops take about 25 bytes per transaction, 9 per micro-op, 4 per
/// read element and 4 per read.
///
/// Guarantees: those of `TransactionColumns`; a read's elements are `readStart[r] ..< readStart[r + 1]` of
/// `readValues`.
public struct ListAppendHistory: Sendable, ElleHistory {
    /// Process, times, outcome, op keys and op starts (`TransactionColumns`).
    public private(set) var columns = TransactionColumns()
    /// An append's value; a read's index into `readStart`, or `unknownRead` for a read whose result is unknown.
    public private(set) var opArgument: [Int32] = []
    public private(set) var opIsAppend: [Bool] = []
    public private(set) var readStart: [UInt32] = [0]
    public private(set) var readValues: [Int32] = []

    public static let unknownRead: Int32 = -1

    public init() {}

    public init(_ transactions: [ListAppendTransaction]) throws {
        reserveCapacity(transactions: transactions.count, ops: transactions.reduce(0) { $0 + $1.ops.count })
        for transaction in transactions { try append(transaction) }
    }

    public mutating func reserveCapacity(transactions: Int, ops: Int, readElements: Int = 0) {
        columns.reserveCapacity(transactions: transactions, ops: ops)
        opArgument.reserveCapacity(ops)
        opIsAppend.reserveCapacity(ops)
        readStart.reserveCapacity(ops / 2 + 1)
        readValues.reserveCapacity(readElements)
    }

    public mutating func append(_ transaction: ListAppendTransaction) throws {
        guard let process = Int32(exactly: transaction.process) else {
            throw HistoryFormatError(message: "process \(transaction.process) does not fit in 32 bits")
        }
        beginTransaction(
            process: process, invokeNanos: transaction.invokeNanos,
            completeNanos: transaction.completeNanos ?? Self.unknownTime, outcome: transaction.outcome)
        for op in transaction.ops {
            guard let key = Int32(exactly: op.key) else {
                throw HistoryFormatError(message: "key \(op.key) does not fit in 32 bits")
            }
            switch op {
            case .append(_, let value):
                guard let value = Int32(exactly: value) else {
                    throw HistoryFormatError(message: "value \(value) of key \(key) does not fit in 32 bits")
                }
                addAppend(key: key, value: value)
            case .read(_, let values):
                guard let values else {
                    addUnknownRead(key: key)
                    continue
                }
                let narrow = values.compactMap { Int32(exactly: $0) }
                guard narrow.count == values.count else {
                    throw HistoryFormatError(message: "a value read from key \(key) does not fit in 32 bits")
                }
                narrow.withUnsafeBufferPointer { addRead(key: key, values: $0) }
            case .readRegister(_, nil):
                // `["r", k, null]` of a committed transaction as decoded: no list was read back.
                addUnknownRead(key: key)
            case .write, .readRegister:
                throw HistoryFormatError(message: "rw-register micro-op \(op) in a list-append history")
            }
        }
        endTransaction()
    }

    /// Starts a transaction; add its micro-ops with `addAppend` / `addRead`, then call `endTransaction`.
    public mutating func beginTransaction(
        process: Int32, invokeNanos: Int64, completeNanos: Int64, outcome: TransactionOutcome
    ) {
        columns.beginTransaction(process: process, invokeNanos: invokeNanos, completeNanos: completeNanos, outcome: outcome)
    }

    public mutating func addAppend(key: Int32, value: Int32) {
        columns.addOp(key: key)
        opArgument.append(value)
        opIsAppend.append(true)
    }

    public mutating func addRead(key: Int32, values: UnsafeBufferPointer<Int32>) {
        columns.addOp(key: key)
        opArgument.append(Int32(readStart.count - 1))
        opIsAppend.append(false)
        readValues.append(contentsOf: values)
        precondition(readValues.count <= Int(UInt32.max), "more than 4G read elements")
        readStart.append(UInt32(readValues.count))
    }

    public mutating func addUnknownRead(key: Int32) {
        columns.addOp(key: key)
        opArgument.append(Self.unknownRead)
        opIsAppend.append(false)
    }

    public mutating func endTransaction() { columns.endTransaction() }

    /// The elements of read `read` (an `opArgument` of a read), as a range of `readValues`.
    @inline(__always)
    public func readRange(_ read: Int32) -> Range<Int> { Int(readStart[Int(read)])..<Int(readStart[Int(read) + 1]) }

    /// Transaction `index` in its JSON form (for explanations).
    public func transaction(_ index: Int) -> ListAppendTransaction {
        var ops: [MicroOp] = []
        for op in self.ops(of: index) {
            let key = Int(opKey[op])
            if opIsAppend[op] {
                ops.append(.append(key: key, value: Int(opArgument[op])))
            } else if opArgument[op] == Self.unknownRead {
                ops.append(.read(key: key, values: nil))
            } else {
                ops.append(.read(key: key, values: readValues[readRange(opArgument[op])].map(Int.init)))
            }
        }
        return transaction(index, ops: ops)
    }

    /// Approximate bytes held by the columns (capacity not counted).
    public var approximateBytes: Int {
        columns.approximateBytes + opCount * (4 + 1) + readStart.count * 4 + readValues.count * 4
    }
}
