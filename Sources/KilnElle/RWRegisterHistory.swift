/// An rw-register history in columns (struct of arrays), the form the rw-register checker works on: one write or
/// read of a single-value register per micro-op.
///
/// Guarantees: those of `TransactionColumns`; `opValue` of a write is the value written, of a read the value read
/// or `initialValue` (the register was never written). Values are non-negative.
public struct RWRegisterHistory: Sendable, ElleHistory {
    /// Process, times, outcome, op keys and op starts (`TransactionColumns`).
    public private(set) var columns = TransactionColumns()
    public private(set) var opValue: [Int32] = []
    public private(set) var opIsWrite: [Bool] = []

    /// The value of a read that found the register never written (Elle's `nil`).
    public static let initialValue: Int32 = -1

    public init() {}

    /// Accepts `.write` and `.readRegister` ops (and `.read(key, nil)` / `.read(key, [])`, the decoded form of a
    /// read of the initial state); throws `HistoryFormatError` on list-append ops, negative values and values or
    /// keys beyond 32 bits.
    public init(_ transactions: [ElleTransaction]) throws {
        reserveCapacity(transactions: transactions.count, ops: transactions.reduce(0) { $0 + $1.ops.count })
        for (index, transaction) in transactions.enumerated() {
            do {
                try append(transaction)
            } catch let error as HistoryFormatError {
                throw HistoryFormatError(message: "transaction \(index + 1) (T\(index)): \(error.message)")
            }
        }
    }

    public mutating func reserveCapacity(transactions: Int, ops: Int) {
        columns.reserveCapacity(transactions: transactions, ops: ops)
        opValue.reserveCapacity(ops)
        opIsWrite.reserveCapacity(ops)
    }

    public mutating func append(_ transaction: ElleTransaction) throws {
        guard let process = Int32(exactly: transaction.process) else {
            throw HistoryFormatError(message: "process \(transaction.process) does not fit in 32 bits")
        }
        // Validate every op before adding any, so a throw leaves the history unchanged.
        var parsed: [(key: Int32, value: Int32, write: Bool)] = []
        parsed.reserveCapacity(transaction.ops.count)
        for op in transaction.ops {
            guard let key = Int32(exactly: op.key) else {
                throw HistoryFormatError(message: "key \(op.key) does not fit in 32 bits")
            }
            let value: Int?
            let write: Bool
            switch op {
            case .write(_, let written): (value, write) = (written, true)
            case .readRegister(_, let read): (value, write) = (read, false)
            case .read(_, let values) where values == nil || values == []: (value, write) = (nil, false)
            case .read, .append:
                throw HistoryFormatError(message: "list-append micro-op \(op) in an rw-register history")
            }
            if write && value == nil {
                throw HistoryFormatError(message: "a write of key \(key) without a value")
            }
            guard let value else {
                parsed.append((key, Self.initialValue, false))
                continue
            }
            guard let narrow = Int32(exactly: value), narrow >= 0 else {
                throw HistoryFormatError(message: "value \(value) of key \(key): expected 0 ..< 2^31")
            }
            parsed.append((key, narrow, write))
        }
        beginTransaction(
            process: process, invokeNanos: transaction.invokeNanos,
            completeNanos: transaction.completeNanos ?? Self.unknownTime, outcome: transaction.outcome)
        for op in parsed {
            if op.write { addWrite(key: op.key, value: op.value) } else { addRead(key: op.key, value: op.value) }
        }
        endTransaction()
    }

    /// Starts a transaction; add its micro-ops with `addWrite` / `addRead`, then call `endTransaction`.
    public mutating func beginTransaction(
        process: Int32, invokeNanos: Int64, completeNanos: Int64, outcome: TransactionOutcome
    ) {
        columns.beginTransaction(process: process, invokeNanos: invokeNanos, completeNanos: completeNanos, outcome: outcome)
    }

    /// `value` must be non-negative.
    public mutating func addWrite(key: Int32, value: Int32) {
        columns.addOp(key: key)
        opValue.append(value)
        opIsWrite.append(true)
    }

    /// `value` is `initialValue` for a read of the never-written register.
    public mutating func addRead(key: Int32, value: Int32) {
        columns.addOp(key: key)
        opValue.append(value)
        opIsWrite.append(false)
    }

    public mutating func endTransaction() { columns.endTransaction() }

    /// Transaction `index` in its JSON form (for explanations).
    public func transaction(_ index: Int) -> ElleTransaction {
        let ops: [MicroOp] = self.ops(of: index).map { op in
            let key = Int(opKey[op])
            if opIsWrite[op] { return .write(key: key, value: Int(opValue[op])) }
            return .readRegister(key: key, value: opValue[op] == Self.initialValue ? nil : Int(opValue[op]))
        }
        return transaction(index, ops: ops)
    }

    /// Approximate bytes held by the columns (capacity not counted).
    public var approximateBytes: Int { columns.approximateBytes + opCount * (4 + 1) }
}
