import KilnData

/// What a persistence setting promises about acknowledged writes when its server is SIGKILLed and restarted from
/// its own disk (the server's own documentation):
/// - Redis AOF `appendfsync everysec`: "you can lose one second worth of writes"; fsync may lag up to 2 s when the
///   disk is busy, so writes acknowledged more than 2 s before the kill must survive.
/// - RDB only (Redis, FalkorDB): everything written since the last completed snapshot may be lost; writes
///   acknowledged before that snapshot's fork must survive.
/// - PostgreSQL `synchronous_commit = on`: nothing acknowledged is lost.
/// - PostgreSQL `synchronous_commit = off`: up to 3 × `wal_writer_delay` of acknowledged commits may be lost.
public enum LossPromise: Sendable, Equatable, Codable {
    /// No acknowledged write may be lost.
    case none
    /// Writes acknowledged more than `micros` before the kill must survive.
    case window(micros: Int64)
    /// Writes acknowledged before `micros` (the last snapshot's fork, conservatively) must survive.
    case since(micros: Int64)

    /// The time before which every acknowledged write must have survived.
    public func bound(killedAt: Int64) -> Int64 {
        switch self {
        case .none: killedAt
        case .window(let micros): killedAt - micros
        case .since(let micros): min(micros, killedAt)
        }
    }

    public var text: String {
        switch self {
        case .none: "no acknowledged write lost"
        case .window(let micros): String(format: "writes acknowledged up to %.3f s before the kill may be lost", Double(micros) / 1e6)
        case .since(let micros): "writes acknowledged after the last snapshot (\(WallClock.postgresText(micros))) may be lost"
        }
    }
}

/// Judges one crash-restart: which acknowledged writes the restarted server lost, and whether every loss is within
/// the promise. Pure (no I/O).
/// - `ok` and absent: lost. Lost with completion at or after the promise's bound: within the promise; before it:
///   `beyond` (a broken promise).
/// - present although `fail` or never written: phantom; present with fields unlike the generator's: mismatched.
/// - `info` writes may go either way.
public struct CrashLossJudge: Sendable {
    public struct Result: Sendable, Codable, Equatable {
        public var killedMicros: Int64
        public var boundMicros: Int64
        public var acknowledged: Int
        public var lost: Int
        public var lostWithinPromise: Int
        /// Kill time minus the completion of the oldest lost acknowledged write (0 when nothing was lost).
        public var lossWindowMicros: Int64
        /// Lost beyond the promise, phantom and mismatched transactions (at most `limit`).
        public var findings: [LedgerFinding]
        public var beyondPromise: Int
        public var phantom: Int
        public var mismatched: Int

        public var keptPromise: Bool { beyondPromise == 0 && phantom == 0 && mismatched == 0 }

        enum CodingKeys: String, CodingKey {
            case killedMicros = "killed_us"
            case boundMicros = "bound_us"
            case acknowledged, lost
            case lostWithinPromise = "lost_within_promise"
            case lossWindowMicros = "loss_window_us"
            case findings
            case beyondPromise = "lost_beyond_promise"
            case phantom, mismatched
        }
    }

    public let dataset: Dataset

    public init(dataset: Dataset) { self.dataset = dataset }

    public func judge(
        history: [WriteRecord], killedAt: Int64, promise: LossPromise, stored: StoredLedger, limit: Int = 1000
    ) -> Result {
        let bound = promise.bound(killedAt: killedAt)
        var result = Result(
            killedMicros: killedAt, boundMicros: bound, acknowledged: 0, lost: 0, lostWithinPromise: 0,
            lossWindowMicros: 0, findings: [], beyondPromise: 0, phantom: 0, mismatched: 0)
        func add(_ kind: LedgerFinding.Kind, _ txn: Int64, _ detail: String) {
            if result.findings.count < limit { result.findings.append(LedgerFinding(kind: kind, txnID: txn, detail: detail)) }
        }
        var written: Set<Int64> = []
        var oldestLost: Int64?
        for record in history.sorted(by: { $0.txnID < $1.txnID }) {
            written.insert(record.txnID)
            let isPresent = stored.rows[record.txnID] != nil
            switch record.outcome {
            case .ok:
                result.acknowledged += 1
                guard !isPresent else { continue }
                result.lost += 1
                oldestLost = min(oldestLost ?? record.completedMicros, record.completedMicros)
                if record.completedMicros >= bound {
                    result.lostWithinPromise += 1
                } else {
                    result.beyondPromise += 1
                    add(.lost, record.txnID, String(
                        format: "acknowledged %.3f s before the kill, lost (the promise keeps writes older than %.3f s)",
                        Double(killedAt - record.completedMicros) / 1e6, Double(killedAt - bound) / 1e6))
                }
            case .fail:
                if isPresent {
                    result.phantom += 1
                    add(.phantom, record.txnID, "failed write present")
                }
            case .info:
                continue
            }
        }
        if let oldestLost { result.lossWindowMicros = max(0, killedAt - oldestLost) }
        for (txn, fields) in stored.rows.sorted(by: { $0.key < $1.key }) {
            guard written.contains(txn), txn >= 1, txn <= dataset.rows else {
                result.phantom += 1
                add(.phantom, txn, "never written")
                continue
            }
            let differing = LedgerFields.differences(stored: fields, expected: dataset.transaction(txn - 1))
            if !differing.isEmpty {
                result.mismatched += 1
                add(.mismatched, txn, "fields differ from the generator: \(differing.joined(separator: ", "))")
            }
        }
        return result
    }
}
