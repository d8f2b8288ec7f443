import KilnBackend
import Foundation
import KilnCore
import KilnElle
import KilnRedis

/// Elle's transactional workloads on Redis: each transaction is one `MULTI; … ; EXEC` pipeline (or one Lua
/// script) on one node (keys `<prefix>:<k>`, deleted before and after the run): list-append runs
/// `RPUSH k v | LRANGE k 0 -1`, rw-register `SET k v | GET k`. Reads inside MULTI are answered at EXEC, so a
/// committed transaction's reads come from the EXEC reply. With `maxWritesPerKey`, keys are retired after that many
/// writes (`RetiringKeySpace`).
///
/// Outcomes: EXEC answered with results → `ok`; an error reply or a nil EXEC (aborted) → `fail`; the connection
/// failed or timed out with the pipeline sent → `info` (EXEC may have run), and the worker stops (Jepsen's crashed
/// process). Every appended value is unique (`worker × 10^6 + sequence`).
public struct ElleRedisWorkload: Sendable {
    public var host: String
    public var port: Int
    public var prefix: String
    public var transactions: Int
    public var concurrency: Int
    public var keys: Int
    public var opsPerTransaction: Int
    public var readShare: Double
    public var seed: UInt64
    /// How each micro-op's key is picked (uniform unless set).
    public var keyChoice: ListAppendKeyChoice = .uniform
    /// How a transaction is sent: one MULTI/EXEC pipeline, or one Lua script (EVAL) running every micro-op.
    public var form: Form = .multiExec
    /// Which micro-ops the transactions run (list-append unless set).
    public var workload: ElleWorkload = .listAppend
    /// Writes after which a key is retired (nil: never).
    public var maxWritesPerKey: Int? = nil

    public enum Form: String, Sendable, CaseIterable {
        /// `MULTI; RPUSH … | LRANGE …; EXEC`: queued commands run together; EXEC's reply holds each result.
        case multiExec = "multi-exec"
        /// `EVAL script n k1 … kn f1 v1 … fn vn`: the script runs atomically. A script error leaves the effects of
        /// the calls before it (Redis does not roll scripts back), so an error reply is `info`, never `fail`.
        case lua
    }

    /// KEYS[i] is micro-op i's key; ARGV[2i-1] is `a` (append ARGV[2i]), `r` (read the list), `w` (set the
    /// register to ARGV[2i]) or `g` (get the register). Returns one entry per op: 0 for a write, the list or the
    /// value for a read (`false`, answered as nil, for a register never written).
    static let script = """
        local out = {}
        for i = 1, #KEYS do
          local f = ARGV[2 * i - 1]
          if f == 'a' then
            redis.call('RPUSH', KEYS[i], ARGV[2 * i])
            out[i] = 0
          elseif f == 'w' then
            redis.call('SET', KEYS[i], ARGV[2 * i])
            out[i] = 0
          elseif f == 'g' then
            out[i] = redis.call('GET', KEYS[i])
          else
            out[i] = redis.call('LRANGE', KEYS[i], 0, -1)
          end
        end
        return out
        """

    public init(
        host: String, port: Int, prefix: String = "kiln:elle:list-append", transactions: Int = 2_000,
        concurrency: Int = 10, keys: Int = 8, opsPerTransaction: Int = 4, readShare: Double = 0.5, seed: UInt64 = 42
    ) {
        self.host = host
        self.port = port
        self.prefix = prefix
        self.transactions = transactions
        self.concurrency = concurrency
        self.keys = keys
        self.opsPerTransaction = opsPerTransaction
        self.readShare = readShare
        self.seed = seed
    }

    /// Runs the transactions on `concurrency` threads; returns the history in invocation order.
    public func run() throws -> [ListAppendTransaction] {
        let admin = try RedisConnection(host: host, port: port)
        defer { admin.close() }
        let keySpace = RetiringKeySpace(slots: keys, maxWritesPerKey: maxWritesPerKey)
        let names = (0..<keySpace.keyBound(writes: transactions * opsPerTransaction)).map { "\(prefix):\($0)" }
        for batch in stride(from: 0, to: names.count, by: 1_000) {
            try admin.command(["DEL"] + names[batch..<min(batch + 1_000, names.count)])
        }
        defer {
            for batch in stride(from: 0, to: names.count, by: 1_000) {
                _ = try? admin.command(["DEL"] + names[batch..<min(batch + 1_000, names.count)])
            }
        }
        let workload = self
        return try ElleWorkerThreads.history(transactions: transactions, concurrency: concurrency) { worker, count in
            try workload.runWorker(worker, count: count, keySpace: keySpace)
        }
    }

    private func runWorker(_ worker: Int, count: Int, keySpace: RetiringKeySpace) throws -> [ListAppendTransaction] {
        let connection = try RedisConnection(host: host, port: port)
        defer { connection.close() }
        var random = SplitMix64Stream(seed: seed &+ UInt64(worker) &* 0x9E37_79B9)
        let picker = keyChoice.picker(keys: keys)
        var history: [ListAppendTransaction] = []
        var sequence = 0
        let readThreshold = UInt64(readShare * 1_000_000)
        for _ in 0..<count {
            var planned: [MicroOp] = []
            var commands: [[String]] = [["MULTI"]]
            for _ in 0..<opsPerTransaction {
                let slot = picker.key(random.next())
                if random.next() % 1_000_000 < readThreshold {
                    let key = keySpace.keyForRead(slot: slot)
                    planned.append(workload.plannedRead(key: key))
                    commands.append(
                        workload == .listAppend ? ["LRANGE", "\(prefix):\(key)", "0", "-1"] : ["GET", "\(prefix):\(key)"])
                } else {
                    sequence += 1
                    let key = keySpace.keyForWrite(slot: slot)
                    let value = worker * 1_000_000 + sequence
                    planned.append(workload.write(key: key, value: value))
                    commands.append([workload == .listAppend ? "RPUSH" : "SET", "\(prefix):\(key)", String(value)])
                }
            }
            commands.append(["EXEC"])
            if form == .lua {
                var keysAndArguments: [String] = []
                var arguments: [String] = []
                for op in planned {
                    keysAndArguments.append("\(prefix):\(op.key)")
                    switch op {
                    case .append(_, let value): arguments += ["a", String(value)]
                    case .read: arguments += ["r", ""]
                    case .write(_, let value): arguments += ["w", String(value)]
                    case .readRegister: arguments += ["g", ""]
                    }
                }
                commands = [["EVAL", Self.script, String(planned.count)] + keysAndArguments + arguments]
            }
            let invoke = ListAppendPostgresWorkload.now()
            let replies: [RedisReply]
            do {
                replies = try connection.pipeline(commands)
            } catch {
                history.append(record(worker, invoke, .info, planned))
                break
            }
            guard case .array(let results)? = replies.last, results.count == planned.count else {
                // MULTI/EXEC: EXEC aborted (nothing ran). Lua: the script may have run in part.
                history.append(record(worker, invoke, form == .lua ? .info : .fail, planned))
                continue
            }
            var ops = planned
            // A read whose reply is not what the command returns (an error inside EXEC, a non-integer element):
            // the transaction ran, but what it read is unknown, so it is recorded as `info` with planned reads.
            var readsKnown = true
            for (index, op) in planned.enumerated() {
                switch (op, results[index]) {
                case (.read(let key, _), .array(let elements)):
                    let values = elements.compactMap { $0.string.flatMap { Int($0) } }
                    if values.count != elements.count { readsKnown = false }
                    ops[index] = .read(key: key, values: values)
                case (.readRegister(let key, _), .null):
                    ops[index] = .readRegister(key: key, value: nil)
                case (.readRegister(let key, _), let reply):
                    guard let value = reply.string.flatMap({ Int($0) }) else {
                        readsKnown = false
                        continue
                    }
                    ops[index] = .readRegister(key: key, value: value)
                case (.read, _):
                    readsKnown = false
                default: continue
                }
            }
            history.append(record(worker, invoke, readsKnown ? .ok : .info, readsKnown ? ops : planned))
        }
        return history
    }

    private func record(
        _ worker: Int, _ invoke: Int64, _ outcome: TransactionOutcome, _ ops: [MicroOp]
    ) -> ListAppendTransaction {
        ListAppendTransaction(
            process: worker, invokeNanos: invoke, completeNanos: ListAppendPostgresWorkload.now(), outcome: outcome,
            ops: ops)
    }
}

/// The list-append name of `ElleRedisWorkload` (its first workload).
public typealias ListAppendRedisWorkload = ElleRedisWorkload
