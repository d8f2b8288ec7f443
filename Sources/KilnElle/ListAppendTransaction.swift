import Foundation

/// One micro-operation of an Elle transaction: list-append's `[:append k v]` and `[:r k [v…]]`, or rw-register's
/// `[:w k v]` and `[:r k v]`. A history holds the ops of one workload only (the histories' initialisers reject the
/// others).
///
/// Every value appended or written to a key is unique for that key: the checker identifies the writer of an element
/// or a register value by its `(key, value)` pair. Keys and values must fit in 32 bits (the checker stores them as
/// `Int32`); rw-register values must be non-negative.
public enum MicroOp: Sendable, Hashable {
    /// Append `value` to the end of the list stored at `key`.
    case append(key: Int, value: Int)
    /// Read the list at `key`; `values` is nil when the result is unknown (the operation was invoked but its
    /// transaction never answered), `[]` for an absent or empty list.
    case read(key: Int, values: [Int]?)
    /// rw-register: set the register at `key` to `value`.
    case write(key: Int, value: Int)
    /// rw-register: read the register at `key`; `value` is nil when the register was never written (its initial
    /// state). The reads of a transaction that is not `ok` are not used.
    case readRegister(key: Int, value: Int?)

    public var key: Int {
        switch self {
        case .append(let key, _), .read(let key, _), .write(let key, _), .readRegister(let key, _): key
        }
    }

    /// Whether the op writes (an append or a register write).
    public var isWrite: Bool {
        switch self {
        case .append, .write: true
        case .read, .readRegister: false
        }
    }
}

/// How a transaction ended (ARCHITECTURE.md, Outcomes): `ok` committed, `fail` definitely did not commit, `info`
/// may or may not have committed (its reads are then treated as unknown).
public enum TransactionOutcome: String, Sendable, Codable, Hashable {
    case ok, fail, info
}

/// One Elle transaction (list-append or rw-register) as it appears in a run's history: which process ran it, when it was invoked and
/// when its answer arrived (nanoseconds on one monotonic clock), how it ended, and its micro-operations in order.
///
/// JSON (one line per transaction in `history.jsonl`):
/// `{"process":3,"invoke":1200,"complete":1900,"outcome":"ok","ops":[["append",7,3],["r",7,[1,2,3]]]}`.
public struct ElleTransaction: Sendable, Hashable, Codable {
    public var process: Int
    public var invokeNanos: Int64
    /// Nil when no answer arrived (an `info` transaction whose client timed out may still carry its timeout here).
    public var completeNanos: Int64?
    public var outcome: TransactionOutcome
    public var ops: [MicroOp]

    public init(process: Int, invokeNanos: Int64, completeNanos: Int64?, outcome: TransactionOutcome, ops: [MicroOp]) {
        self.process = process
        self.invokeNanos = invokeNanos
        self.completeNanos = completeNanos
        self.outcome = outcome
        self.ops = ops
    }

    enum CodingKeys: String, CodingKey {
        case process
        case invokeNanos = "invoke"
        case completeNanos = "complete"
        case outcome, ops
    }
}

extension ElleTransaction {
    /// Decodes the JSON form. `["r", k, null]` is ambiguous between list-append's unknown read and rw-register's
    /// read of the never-written register; only the outcome tells them apart: a committed (`ok`) transaction's reads
    /// are all known (a list read is at least `[]`), so there it is a register read of the initial state
    /// (`.readRegister(k, nil)`, shown `r k nil`), elsewhere an unknown read (`.read(k, nil)`, shown `r k ?`).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        process = try container.decode(Int.self, forKey: .process)
        invokeNanos = try container.decode(Int64.self, forKey: .invokeNanos)
        completeNanos = try container.decodeIfPresent(Int64.self, forKey: .completeNanos)
        outcome = try container.decode(TransactionOutcome.self, forKey: .outcome)
        let decoded = try container.decode([MicroOp].self, forKey: .ops)
        guard outcome == .ok else {
            ops = decoded
            return
        }
        ops = decoded.map { op in
            if case .read(let key, nil) = op { return .readRegister(key: key, value: nil) }
            return op
        }
    }
}

/// The list-append name of `ElleTransaction` (its first workload).
public typealias ListAppendTransaction = ElleTransaction

extension MicroOp: Codable {
    /// Elle's vector form: `["append", key, value]`, `["r", key, [values…] | null]`, `["w", key, value]` or
    /// `["r", key, value]` (a register read; a register read of the initial state is `["r", key, null]`, which
    /// decodes as `.read(key, nil)`: `RWRegisterHistory` takes it as a read of the initial state).
    public init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        let function = try container.decode(String.self)
        let key = try container.decode(Int.self)
        switch function {
        case "append":
            self = .append(key: key, value: try container.decode(Int.self))
        case "w":
            self = .write(key: key, value: try container.decode(Int.self))
        case "r":
            if let value = try? container.decode(Int.self) {
                self = .readRegister(key: key, value: value)
            } else {
                self = .read(key: key, values: try container.decodeIfPresent([Int].self))
            }
        default:
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "micro-op \(function): expected \"append\", \"w\" or \"r\"")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        switch self {
        case .append(let key, let value):
            try container.encode("append")
            try container.encode(key)
            try container.encode(value)
        case .read(let key, let values):
            try container.encode("r")
            try container.encode(key)
            if let values { try container.encode(values) } else { try container.encodeNil() }
        case .write(let key, let value):
            try container.encode("w")
            try container.encode(key)
            try container.encode(value)
        case .readRegister(let key, let value):
            try container.encode("r")
            try container.encode(key)
            if let value { try container.encode(value) } else { try container.encodeNil() }
        }
    }
}

extension MicroOp: CustomStringConvertible {
    /// `append 7 3` or `r 7 [1 2 3]` (`r 7 ?` when unknown); `w 7 3` or `r 7 3` (`r 7 nil`: initial state).
    public var description: String {
        switch self {
        case .append(let key, let value): "append \(key) \(value)"
        case .read(let key, let values): "r \(key) \(values.map(ListAppendTransaction.render) ?? "?")"
        case .write(let key, let value): "w \(key) \(value)"
        case .readRegister(let key, let value): "r \(key) \(value.map(String.init) ?? "nil")"
        }
    }
}

extension MicroOp {
    /// Like `description`, but a read of more than 10 elements shows its first 2 and last 6 (witness text).
    public var shortDescription: String {
        switch self {
        case .append, .write, .readRegister: description
        case .read(let key, let values): "r \(key) \(values.map(ListAppendTransaction.renderShort) ?? "?")"
        }
    }
}

extension ElleTransaction {
    /// `[1 2 … (40 elements) … 35 36 37 38 39 40]`: lists of more than 10 elements abridged.
    static func renderShort<Element: BinaryInteger>(_ values: [Element]) -> String {
        if values.count <= 10 { return "[" + values.map { "\($0)" }.joined(separator: " ") + "]" }
        return "[" + values.prefix(2).map { "\($0)" }.joined(separator: " ") + " … (\(values.count) elements) … "
            + values.suffix(6).map { "\($0)" }.joined(separator: " ") + "]"
    }

    /// `[1 2 3]`, Elle's notation for a list.
    static func render(_ values: [Int]) -> String { "[" + values.map(String.init).joined(separator: " ") + "]" }

    /// Encodes transactions as JSON lines, one transaction per line, in history order.
    public static func jsonLines(_ transactions: [ListAppendTransaction]) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data = Data()
        for transaction in transactions {
            data.append(try encoder.encode(transaction))
            data.append(0x0A)
        }
        return data
    }

    /// Decodes JSON lines written by `jsonLines` (empty lines are skipped); an error names the line.
    public static func parseJSONLines(_ data: Data) throws -> [ListAppendTransaction] {
        let decoder = JSONDecoder()
        var transactions: [ListAppendTransaction] = []
        var lineNumber = 0
        for line in data.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) { continue }
            do {
                transactions.append(try decoder.decode(ListAppendTransaction.self, from: Data(line)))
            } catch {
                throw HistoryFormatError(line: lineNumber, message: "\(error)")
            }
        }
        return transactions
    }
}

/// A history that cannot be checked as given: a malformed line, a key or value outside 32 bits, a value appended
/// twice to one key.
public struct HistoryFormatError: Error, CustomStringConvertible, Sendable {
    /// 1-based line of the JSON lines input, or 0 when the problem is not about one line.
    public var line: Int
    public var message: String

    public init(line: Int = 0, message: String) {
        self.line = line
        self.message = message
    }

    public var description: String { line > 0 ? "history line \(line): \(message)" : "history: \(message)" }
}
