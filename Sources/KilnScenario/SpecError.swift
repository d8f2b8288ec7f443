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

    public var description: String {
        let location = line > 0 ? "\(file):\(line):\(column)" : file
        return field.isEmpty ? "\(location): \(message)" : "\(location): \(field): \(message)"
    }
}
