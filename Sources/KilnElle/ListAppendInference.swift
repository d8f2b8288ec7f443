/// What a list-append history says about each key, inferred once (Elle's list-append analysis):
///
/// - the version order of each key is its longest committed read; every other committed read must be a prefix of
///   it (else `incompatible-order`);
/// - the writer of each element is the transaction that appended that value to that key (values are unique per
///   key; an element nobody appended is a `garbage-read`);
/// - the non-cycle anomalies (G1a, G1b, internal, lost update, duplicate elements, garbage reads, incompatible
///   orders) are reported to `report`;
/// - `enumerateEdges` yields the ww, wr and rw edges (and process and real-time edges when asked) of the
///   dependency graph whose nodes are the transactions (then real-time barrier nodes).
///
/// Committed reads are the reads of `ok` transactions; an `info` transaction's reads are unknown, its appends may
/// have happened; a `fail` transaction is no node of the graph, and reading its append is G1a.
struct ListAppendInference {
    let history: ListAppendHistory
    /// Key slot of op `o` = `keys[o] - keyBase`: the keys themselves when they are dense, else a remapped copy.
    let keys: [Int32]
    let keyBase: Int32
    let keyCount: Int
    /// Slot `key` holds its appends sorted by value in `appendStart[key] ..< appendStart[key + 1]`.
    var appendStart: [Int32] = []
    var appendValue: [Int32] = []
    var appendTransaction: [Int32] = []
    /// Whether the append was followed, in its transaction, by another append to the same key.
    var appendIntermediate: [Bool] = []
    /// Version order of slot `key`: `versionStart[key] ..< versionStart[key + 1]` of `versionValue`, with its
    /// writer (-1 when nobody appended it).
    var versionStart: [Int32] = []
    var versionValue: [Int32] = []
    var versionWriter: [Int32] = []
    /// Whether the element's append was intermediate in its transaction (a read ending there is G1b).
    var versionIntermediate: [Bool] = []
    /// The read (a `readStart` index) that defines each key's version order, -1 when the key was never read.
    var longestRead: [Int32] = []
    /// Reads that are not prefixes of their key's version order (sorted); they make no edges.
    var incompatibleReads: Set<Int32> = []

    init(history: ListAppendHistory) {
        self.history = history
        let slots = KeySlots(opKey: history.opKey)
        keys = slots.keys
        keyBase = slots.keyBase
        keyCount = slots.keyCount
    }

    @inline(__always) func slot(_ op: Int) -> Int { Int(keys[op] &- keyBase) }

    /// The writer slot (index into the append arrays) of `value` in key slot `key`, or -1.
    @inline(__always) func appendSlot(key: Int, value: Int32) -> Int {
        sortedIndex(of: value, in: appendValue, from: appendStart[key], to: appendStart[key + 1])
    }

    /// Is op `op` of transaction `transaction` the first op on its key in that transaction?
    @inline(__always) func isFirstOnKey(op: Int, transaction: Int) -> Bool {
        history.isFirstOnKey(op: op, transaction: transaction)
    }

    /// Indexes appends by key and value; throws when one key gets the same value twice.
    mutating func indexAppends() throws {
        let opIsAppend = history.opIsAppend
        let opKey = history.opKey
        let opArgument = history.opArgument
        let opStart = history.opStart
        let keys = keys
        let keyBase = keyBase
        var start = [Int32](repeating: 0, count: keyCount + 1)
        var appends = 0
        for op in 0..<history.opCount where opIsAppend[op] {
            start[Int(keys[op] &- keyBase) + 1] += 1
            appends += 1
        }
        for key in 0..<keyCount { start[key + 1] += start[key] }
        var cursor = start
        appendValue = [Int32](repeating: 0, count: appends)
        appendTransaction = [Int32](repeating: 0, count: appends)
        appendIntermediate = [Bool](repeating: false, count: appends)
        for transaction in 0..<history.count {
            let end = Int(opStart[transaction + 1])
            for op in Int(opStart[transaction])..<end where opIsAppend[op] {
                let key = Int(keys[op] &- keyBase)
                let position = Int(cursor[key])
                cursor[key] += 1
                appendValue[position] = opArgument[op]
                appendTransaction[position] = Int32(transaction)

                var later = op + 1
                while later < end {
                    if opIsAppend[later] && opKey[later] == opKey[op] {
                        appendIntermediate[position] = true
                        break
                    }
                    later += 1
                }
            }
        }
        appendStart = start
        // Sort each key's appends by value (they are few per key; insertion sort keeps the common
        // already-ascending case linear).
        for key in 0..<keyCount {
            let lower = Int(start[key])
            let upper = Int(start[key + 1])
            if upper - lower < 2 { continue }
            for index in (lower + 1)..<upper {
                let value = appendValue[index]
                let transaction = appendTransaction[index]
                let intermediate = appendIntermediate[index]
                var hole = index
                while hole > lower && appendValue[hole - 1] > value {
                    appendValue[hole] = appendValue[hole - 1]
                    appendTransaction[hole] = appendTransaction[hole - 1]
                    appendIntermediate[hole] = appendIntermediate[hole - 1]
                    hole -= 1
                }
                appendValue[hole] = value
                appendTransaction[hole] = transaction
                appendIntermediate[hole] = intermediate
            }
            for index in (lower + 1)..<upper where appendValue[index] == appendValue[index - 1] {
                throw HistoryFormatError(
                    message: "value \(appendValue[index]) appended twice to key \(Int(key) + Int(keyBase)) "
                        + "(T\(appendTransaction[index - 1]) and T\(appendTransaction[index])); "
                        + "list-append needs unique values per key")
            }
        }
    }

    /// Picks each key's longest committed read as its version order and resolves the writers of its elements.
    mutating func inferVersionOrders() {
        longestRead = [Int32](repeating: -1, count: keyCount)
        var longestLength = [Int32](repeating: -1, count: keyCount)
        let outcome = history.outcome
        let opStart = history.opStart
        let opIsAppend = history.opIsAppend
        let opArgument = history.opArgument
        let readStart = history.readStart
        let keys = keys
        let keyBase = keyBase
        for transaction in 0..<history.count where outcome[transaction] == .ok {
            for op in Int(opStart[transaction])..<Int(opStart[transaction + 1]) where !opIsAppend[op] {
                let read = opArgument[op]
                if read == ListAppendHistory.unknownRead { continue }
                let length = Int32(bitPattern: readStart[Int(read) + 1] &- readStart[Int(read)])
                let key = Int(keys[op] &- keyBase)
                if length > longestLength[key] {
                    longestLength[key] = length
                    longestRead[key] = read
                }
            }
        }
        versionStart = [Int32](repeating: 0, count: keyCount + 1)
        for key in 0..<keyCount { versionStart[key + 1] = versionStart[key] + max(0, longestLength[key]) }
        let total = Int(versionStart[keyCount])
        versionValue = [Int32](repeating: 0, count: total)
        versionWriter = [Int32](repeating: -1, count: total)
        versionIntermediate = [Bool](repeating: false, count: total)
        for key in 0..<keyCount where longestRead[key] >= 0 {
            var position = Int(versionStart[key])
            for element in history.readRange(longestRead[key]) {
                let value = history.readValues[element]
                versionValue[position] = value
                let writer = appendSlot(key: key, value: value)
                if writer >= 0 {
                    versionWriter[position] = appendTransaction[writer]
                    versionIntermediate[position] = appendIntermediate[writer]
                }
                position += 1
            }
        }
    }

    /// Frees what only the non-cycle checks need (the append index and the intermediate flags): the dependency
    /// graph and cycle explanations use version orders alone. Lowers the peak memory of the graph build.
    mutating func releaseAppendIndex() {
        appendStart = []
        appendValue = []
        appendTransaction = []
        appendIntermediate = []
        versionIntermediate = []
    }

    /// Is `read` of key slot `key` a prefix of the key's version order?
    func isPrefix(read: Int32, key: Int) -> Bool {
        let range = history.readRange(read)
        let order = Int(versionStart[key])
        if range.count > Int(versionStart[key + 1]) - order { return false }
        var position = order
        for element in range {
            if history.readValues[element] != versionValue[position] { return false }
            position += 1
        }
        return true
    }

    /// A writer that is a node of the graph (not failed, known), or -1.
    @inline(__always) func graphWriter(_ position: Int) -> Int32 {
        let writer = versionWriter[position]
        return writer >= 0 && history.outcome[Int(writer)] != .fail ? writer : -1
    }
}
