/// The transactional workloads Kiln's Elle checkers understand: which micro-ops a history holds and which checker
/// judges it.
public enum ElleWorkload: String, Sendable, Codable, CaseIterable {
    /// Appends to lists and reads of whole lists (`ListAppendChecker`).
    case listAppend = "list-append"
    /// Writes and reads of single-value registers (`RWRegisterChecker`).
    case rwRegister = "rw-register"

    /// A write micro-op of this workload.
    public func write(key: Int, value: Int) -> MicroOp {
        switch self {
        case .listAppend: .append(key: key, value: value)
        case .rwRegister: .write(key: key, value: value)
        }
    }

    /// A read micro-op of this workload whose result is not known yet.
    public func plannedRead(key: Int) -> MicroOp {
        switch self {
        case .listAppend: .read(key: key, values: nil)
        case .rwRegister: .readRegister(key: key, value: nil)
        }
    }

    /// Checks `transactions` with this workload's checker.
    public func check(
        _ transactions: [ElleTransaction], model: ConsistencyModel, searchTimeLimit: Duration = .seconds(60),
        allowedSearchTimeLimit: Duration = .seconds(5), witnessesPerKind: Int = 10
    ) -> ElleCheckResult {
        switch self {
        case .listAppend:
            ListAppendChecker(
                model: model, searchTimeLimit: searchTimeLimit, allowedSearchTimeLimit: allowedSearchTimeLimit,
                witnessesPerKind: witnessesPerKind
            ).check(transactions)
        case .rwRegister:
            RWRegisterChecker(
                model: model, searchTimeLimit: searchTimeLimit, allowedSearchTimeLimit: allowedSearchTimeLimit,
                witnessesPerKind: witnessesPerKind
            ).check(transactions)
        }
    }
}
