import KilnBackend
import Foundation
import KilnCore
import KilnElle
import KilnRedis

/// Elle's list-append workload on Redis: each transaction is one `MULTI; RPUSH k v | LRANGE k 0 -1 …; EXEC`
/// pipeline on one node (keys `<prefix>:<k>`, deleted before and after the run). Reads inside MULTI are answered at
/// EXEC, so a committed transaction's reads come from the EXEC reply.
///
/// Outcomes: EXEC answered with results → `ok`; an error reply or a nil EXEC (aborted) → `fail`; the connection
/// failed or timed out with the pipeline sent → `info` (EXEC may have run), and the worker stops (Jepsen's crashed
/// process). Every appended value is unique (`worker × 10^6 + sequence`).
public struct ListAppendRedisWorkload: Sendable {
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

    public enum Form: String, Sendable, CaseIterable {
        /// `MULTI; RPUSH … | LRANGE …; EXEC`: queued commands run together; EXEC's reply holds each result.
        case multiExec = "multi-exec"
        /// `EVAL script n k1 … kn f1 v1 … fn vn`: the script runs atomically. A script error leaves the effects of
        /// the calls before it (Redis does not roll scripts back), so an error reply is `info`, never `fail`.
        case lua
    }

    /// KEYS[i] is micro-op i's key; ARGV[2i-1] is `a` (append ARGV[2i]) or `r` (read). Returns one entry per op:
    /// 0 for an append, the list for a read.
    static let script = """
        local out = {}
        for i = 1, #KEYS do
          if ARGV[2 * i - 1] == 'a' then
            redis.call('RPUSH', KEYS[i], ARGV[2 * i])
            out[i] = 0
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
        let names = (0..<keys).map { "\(prefix):\($0)" }
        try admin.command(["DEL"] + names)
        defer { _ = try? admin.command(["DEL"] + names) }
        let results = WorkerResults(count: concurrency)
        let perWorker = (transactions + concurrency - 1) / concurrency
        let done = DispatchGroup()
        for worker in 0..<concurrency {
            let count = min(perWorker, max(0, transactions - worker * perWorker))
            let workload = self
            done.enter()
            Thread {
                results.set(worker, Result { try workload.runWorker(worker, count: count) })
                done.leave()
            }.start()
        }
        done.wait()
        var history: [ListAppendTransaction] = []
        for worker in 0..<concurrency { history += try results.get(worker).get() }
        history.sort { $0.invokeNanos < $1.invokeNanos }
        return history
    }

    private func runWorker(_ worker: Int, count: Int) throws -> [ListAppendTransaction] {
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
                let key = picker.key(random.next())
                if random.next() % 1_000_000 < readThreshold {
                    planned.append(.read(key: key, values: nil))
                    commands.append(["LRANGE", "\(prefix):\(key)", "0", "-1"])
                } else {
                    sequence += 1
                    let value = worker * 1_000_000 + sequence
                    planned.append(.append(key: key, value: value))
                    commands.append(["RPUSH", "\(prefix):\(key)", String(value)])
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
            for (index, op) in planned.enumerated() {
                guard case .read(let key, _) = op else { continue }
                guard case .array(let elements) = results[index] else { continue }
                ops[index] = .read(key: key, values: elements.compactMap { $0.string.flatMap { Int($0) } })
            }
            history.append(record(worker, invoke, .ok, ops))
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
