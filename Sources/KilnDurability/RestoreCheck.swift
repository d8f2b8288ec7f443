import KilnData

/// Checks a point-in-time restore against the write history and the oracle (the generator). With target time T
/// (Unix microseconds, the time the restore was asked to stop at, commits at or before it included):
/// - an `ok` write that completed before T must be present (else `lost`);
/// - a write invoked after T must be absent, whatever its outcome (else `phantom`): its commit is later than T;
/// - a `fail` write must be absent; a row whose txn_id was never written is `phantom`;
/// - an `ok` write straddling T (invoked at or before, completed after) and every `info` write invoked at or before
///   T may be present or absent;
/// - every present row must equal the generator's transaction in every field (else `mismatched`, naming fields).
/// Pure: no I/O, so it is tested on hand-built histories.
public struct RestoreCheck: Sendable {
    public struct Result: Sendable, Codable, Equatable {
        public var targetMicros: Int64
        /// `ok` writes completed before T: all must be present.
        public var required: Int
        /// Writes that may go either way (straddling `ok`, `info` invoked before T).
        public var undecided: Int
        public var undecidedPresent: Int
        public var present: Int
        public var findings: [LedgerFinding]
        public var lost: Int { findings.filter { $0.kind == .lost }.count }
        public var phantom: Int { findings.filter { $0.kind == .phantom }.count }
        public var mismatched: Int { findings.filter { $0.kind == .mismatched }.count }
        /// Valid only when nothing was required-and-lost, phantom or mismatched, and the check had evidence
        /// (at least one required write).
        public var valid: Bool { findings.isEmpty && required > 0 }

        enum CodingKeys: String, CodingKey {
            case targetMicros = "target_us"
            case required, undecided
            case undecidedPresent = "undecided_present"
            case present, findings
        }
    }

    public let dataset: Dataset

    public init(dataset: Dataset) { self.dataset = dataset }

    public func check(history: [WriteRecord], target: Int64, restored: StoredLedger, limit: Int = 1000) -> Result {
        var result = Result(
            targetMicros: target, required: 0, undecided: 0, undecidedPresent: 0, present: restored.rows.count,
            findings: [])
        func add(_ kind: LedgerFinding.Kind, _ txn: Int64, _ detail: String) {
            if result.findings.count < limit { result.findings.append(LedgerFinding(kind: kind, txnID: txn, detail: detail)) }
        }
        var written: Set<Int64> = []
        for record in history {
            written.insert(record.txnID)
            let isPresent = restored.rows[record.txnID] != nil
            if record.invokedMicros > target {
                if isPresent { add(.phantom, record.txnID, "\(record.outcome.rawValue) write invoked \(record.invokedMicros - target) us after the target") }
                continue
            }
            switch record.outcome {
            case .fail:
                if isPresent { add(.phantom, record.txnID, "failed write present") }
            case .ok where record.completedMicros < target:
                result.required += 1
                if !isPresent { add(.lost, record.txnID, "acknowledged \(target - record.completedMicros) us before the target, absent") }
            case .ok, .info:
                result.undecided += 1
                if isPresent { result.undecidedPresent += 1 }
            }
        }
        for (txn, fields) in restored.rows.sorted(by: { $0.key < $1.key }) {
            guard written.contains(txn), txn >= 1, txn <= dataset.rows else {
                add(.phantom, txn, "never written")
                continue
            }
            let differing = LedgerFields.differences(stored: fields, expected: dataset.transaction(txn - 1))
            if !differing.isEmpty { add(.mismatched, txn, "fields differ from the generator: \(differing.joined(separator: ", "))") }
        }
        return result
    }
}
