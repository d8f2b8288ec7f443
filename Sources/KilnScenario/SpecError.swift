/// An error in a scenario, stack or dataset file. `description` is what the user sees:
/// `FILE:LINE:COLUMN: FIELD: MESSAGE`, where FIELD is the dotted path of the offending key
/// (e.g. `postgres.replicas[1]`).
public struct SpecError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var line: Int
    public var column: Int
    public var field: String
    public var message: String

    public init(file: String, line: Int, column: Int, field: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.message = message
    }

    /// An error at a place recorded as `file:line:column` (the `source` fields of parsed scenarios).
    public init(at source: String, field: String, message: String) {
        let parts = source.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count >= 3, let line = Int(parts[parts.count - 2]), let column = Int(parts[parts.count - 1]) {
            self.init(
                file: parts.dropLast(2).joined(separator: ":"), line: line, column: column, field: field,
                message: message)
        } else {
            self.init(file: source, line: 0, column: 0, field: field, message: message)
        }
    }

    public var description: String {
        let location = line > 0 ? "\(file):\(line):\(column)" : file
        return field.isEmpty ? "\(location): \(message)" : "\(location): \(field): \(message)"
    }
}
