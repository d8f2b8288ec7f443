import Foundation
import KilnCore
import Yams

/// Strict reading of one YAML mapping: every read names its field, every error carries the file, line and
/// dotted field path, and `finish()` rejects keys nobody read (unknown keys are errors, never ignored).
/// Not thread-safe; one reader per parse.
public final class YAMLFields {
    public let file: String
    public let path: String
    private let mapping: Node.Mapping
    private let node: Node
    private var consumed: Set<String> = []

    /// Parses `text` and returns a reader for its top-level mapping.
    public static func document(_ text: String, file: String) throws(SpecError) -> YAMLFields {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            switch error {
            case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
                .composer(_, let problem, let mark, _):
                throw SpecError(file: file, line: mark.line, column: mark.column, field: "", message: problem)
            case .reader(let problem, let offset, _, _):
                // The reader names a character offset; count lines and columns up to it.
                let prefix = text.prefix(offset ?? 0)
                let line = prefix.reduce(1) { $1 == "\n" ? $0 + 1 : $0 }
                let column = prefix.count - (prefix.lastIndex(of: "\n").map { prefix.distance(from: prefix.startIndex, to: $0) + 1 } ?? 0) + 1
                throw SpecError(file: file, line: line, column: column, field: "", message: problem)
            case .duplicatedKeysInMapping(let duplicates, let context):
                throw SpecError(
                    file: file, line: context.mark.line, column: context.mark.column, field: "",
                    message: "duplicate key \(duplicates.joined(separator: ", "))")
            default:
                throw SpecError(file: file, line: 0, column: 0, field: "", message: "not valid YAML (\(error))")
            }
        } catch {
            throw SpecError(file: file, line: 0, column: 0, field: "", message: "not valid YAML (\(error))")
        }
        guard let root else {
            throw SpecError(file: file, line: 1, column: 1, field: "", message: "the file is empty")
        }
        return try YAMLFields(root, file: file, path: "")
    }

    /// Reads the file at `url`; a missing or unreadable file is a SpecError naming it.
    public static func document(contentsOf url: URL) throws(SpecError) -> YAMLFields {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw SpecError(
                file: url.path, line: 0, column: 0, field: "",
                message: "cannot read the file (\((error as NSError).localizedDescription))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Self.notUTF8(data, file: url.path)
        }
        return try document(text, file: url.path)
    }

    /// The error for bytes that are not UTF-8: the line and column (in characters of the valid prefix) of the
    /// first bad byte.
    static func notUTF8(_ data: Data, file: String) -> SpecError {
        let bytes = [UInt8](data)
        var valid = 0
        var index = 0
        while index < bytes.count {
            let lead = bytes[index]
            let length = lead < 0x80 ? 1 : lead >> 5 == 0b110 ? 2 : lead >> 4 == 0b1110 ? 3 : lead >> 3 == 0b11110 ? 4 : 0
            guard length > 0, index + length <= bytes.count,
                String(bytes: bytes[index..<(index + length)], encoding: .utf8) != nil
            else { break }
            index += length
            valid = index
        }
        let prefix = String(decoding: bytes[..<valid], as: UTF8.self)
        let line = prefix.reduce(1) { $1 == "\n" ? $0 + 1 : $0 }
        let column = prefix.count - (prefix.lastIndex(of: "\n").map { prefix.distance(from: prefix.startIndex, to: $0) + 1 } ?? 0) + 1
        let byte = valid < bytes.count ? String(format: "0x%02X", bytes[valid]) : "end of file"
        return SpecError(
            file: file, line: line, column: column, field: "", message: "not UTF-8 text (byte \(byte) cannot start a character here)")
    }

    init(_ node: Node, file: String, path: String) throws(SpecError) {
        guard let mapping = node.mapping else {
            throw SpecError(
                file: file, line: node.line, column: node.column, field: path,
                message: "expected a mapping of keys to values, found \(node.kindName)")
        }
        self.file = file
        self.path = path
        self.node = node
        self.mapping = mapping
    }

    public var line: Int { node.line }

    public func fieldPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// An error located at `key`'s value (or at this mapping when the key is absent).
    public func error(_ key: String, _ message: String) -> SpecError {
        let at = value(key) ?? node
        return SpecError(file: file, line: at.line, column: at.column, field: fieldPath(key), message: message)
    }

    public func contains(_ key: String) -> Bool { value(key) != nil }

    /// True when `key` holds a mapping (as opposed to a single value or a list).
    public func holdsMapping(_ key: String) -> Bool { value(key)?.mapping != nil }

    private func value(_ key: String) -> Node? { mapping.first { $0.key.string == key }?.value }

    private func take(_ key: String) -> Node? {
        consumed.insert(key)
        guard let found = value(key) else { return nil }
        if case .scalar(let scalar) = found, scalar.style == .plain, scalar.string == "null" || scalar.string == "~" {
            return nil
        }
        return found
    }

    private func require(_ key: String) throws(SpecError) -> Node {
        guard let found = take(key) else { throw error(key, "required field is missing") }
        return found
    }

    private func scalar(_ key: String, _ found: Node) throws(SpecError) -> String {
        guard case .scalar(let scalar) = found else {
            throw error(key, "expected a single value, found \(found.kindName)")
        }
        return scalar.string
    }

    public func string(_ key: String) throws(SpecError) -> String { try scalar(key, require(key)) }

    public func optionalString(_ key: String) throws(SpecError) -> String? {
        guard let found = take(key) else { return nil }
        return try scalar(key, found)
    }

    public func bool(_ key: String, default fallback: Bool) throws(SpecError) -> Bool {
        guard let found = take(key) else { return fallback }
        switch try scalar(key, found).lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        case let other: throw error(key, "expected true or false, found '\(other)'")
        }
    }

    public func int(_ key: String, default fallback: Int? = nil, range: ClosedRange<Int>? = nil) throws(SpecError)
        -> Int
    {
        guard let found = take(key) else {
            if let fallback { return fallback }
            throw error(key, "required field is missing")
        }
        let text = try scalar(key, found)
        guard let number = Int(text.replacingOccurrences(of: "_", with: "")) else {
            throw error(key, "expected an integer, found '\(text)'")
        }
        if let range, !range.contains(number) {
            throw error(key, "must be between \(range.lowerBound) and \(range.upperBound), found \(number)")
        }
        return number
    }

    public func enumeration<Value: RawRepresentable & CaseIterable>(_ key: String, default fallback: Value? = nil)
        throws(SpecError) -> Value where Value.RawValue == String
    {
        guard let found = take(key) else {
            if let fallback { return fallback }
            throw error(key, "required field is missing")
        }
        let text = try scalar(key, found)
        guard let value = Value(rawValue: text) else {
            let allowed = Value.allCases.map(\.rawValue).joined(separator: ", ")
            throw error(key, "unknown value '\(text)' (expected one of: \(allowed))")
        }
        return value
    }

    public func hostPort(_ key: String) throws(SpecError) -> HostPort {
        let text = try string(key)
        guard let endpoint = HostPort(parsing: text) else {
            throw error(key, "expected host:port, found '\(text)'")
        }
        return endpoint
    }

    /// A list of `host:port`; a single scalar is accepted as a list of one.
    public func hostPorts(_ key: String, required: Bool = false) throws(SpecError) -> [HostPort] {
        guard let found = take(key) else {
            if required { throw error(key, "required field is missing") }
            return []
        }
        let items: [Node]
        switch found {
        case .sequence(let sequence): items = Array(sequence)
        case .scalar: items = [found]
        case .mapping: throw error(key, "expected a list of host:port")
        case .alias: throw error(key, "YAML aliases are not supported here")
        }
        var endpoints: [HostPort] = []
        for (index, item) in items.enumerated() {
            guard case .scalar(let scalar) = item, let endpoint = HostPort(parsing: scalar.string) else {
                throw SpecError(
                    file: file, line: item.line, column: item.column, field: "\(fieldPath(key))[\(index)]",
                    message: "expected host:port")
            }
            endpoints.append(endpoint)
        }
        if required && endpoints.isEmpty { throw error(key, "needs at least one host:port") }
        return endpoints
    }

    /// A number (integer or decimal).
    public func double(_ key: String, default fallback: Double? = nil, range: ClosedRange<Double>? = nil)
        throws(SpecError) -> Double
    {
        guard let found = take(key) else {
            if let fallback { return fallback }
            throw error(key, "required field is missing")
        }
        let text = try scalar(key, found)
        guard let number = Double(text.replacingOccurrences(of: "_", with: "")), number.isFinite else {
            throw error(key, "expected a number, found '\(text)'")
        }
        if let range, !range.contains(number) {
            throw error(key, "must be between \(range.lowerBound) and \(range.upperBound), found \(text)")
        }
        return number
    }

    /// A count that may carry a K, M or B suffix (`10M` = 10,000,000) or underscores; never negative.
    public func count(_ key: String, default fallback: Int? = nil, range: ClosedRange<Int>? = nil) throws(SpecError)
        -> Int
    {
        guard let found = take(key) else {
            if let fallback { return fallback }
            throw error(key, "required field is missing")
        }
        let text = try scalar(key, found)
        guard let number = CountSuffix.parse(text) else {
            throw error(key, "expected a non-negative count such as 5000, 250K, 10M or 1B, found '\(text)'")
        }
        if let range, !range.contains(number) {
            throw error(key, "must be between \(range.lowerBound) and \(range.upperBound), found \(text)")
        }
        return number
    }

    /// A list of numbers of exactly `length` entries (when given).
    public func doubles(_ key: String, length: Int? = nil) throws(SpecError) -> [Double] {
        let items = try sequence(key)
        if let length, items.count != length {
            throw error(key, "expected \(length) numbers, found \(items.count)")
        }
        var numbers: [Double] = []
        for (index, item) in items.enumerated() {
            guard case .scalar(let scalar) = item, let number = Double(scalar.string), number.isFinite else {
                throw SpecError(
                    file: file, line: item.line, column: item.column, field: "\(fieldPath(key))[\(index)]",
                    message: "expected a number")
            }
            numbers.append(number)
        }
        return numbers
    }

    /// A list of mappings, each read strictly.
    public func mappings(_ key: String) throws(SpecError) -> [YAMLFields] {
        var readers: [YAMLFields] = []
        for (index, item) in try sequence(key).enumerated() {
            readers.append(try YAMLFields(item, file: file, path: "\(fieldPath(key))[\(index)]"))
        }
        return readers
    }

    /// A mapping of free-form names to numbers, in file order (e.g. `{web: 35, mobile: 50}`).
    public func weights(_ key: String) throws(SpecError) -> [(name: String, weight: Double)] {
        let inner = try mapping(key)
        var result: [(String, Double)] = []
        for (name, _) in inner.mapping {
            guard let text = name.string else { throw inner.error("\(name)", "expected a name") }
            result.append((text, try inner.double(text, range: 0...Double.greatestFiniteMagnitude)))
        }
        return result
    }

    /// The keys of this mapping in file order (reading them is up to the caller; `finish()` still checks).
    public var keys: [String] { mapping.compactMap { $0.key.string } }

    /// A list of strings, each with its position; a single string is taken as a list of one.
    public func strings(_ key: String) throws(SpecError) -> [(text: String, line: Int, column: Int)] {
        guard let found = take(key) else { throw error(key, "required field is missing") }
        let items: [Node]
        if case .sequence(let sequence) = found { items = Array(sequence) } else { items = [found] }
        var result: [(String, Int, Int)] = []
        for (index, item) in items.enumerated() {
            guard case .scalar(let scalar) = item else {
                throw SpecError(
                    file: file, line: item.line, column: item.column, field: "\(fieldPath(key))[\(index)]",
                    message: "expected a string, found \(item.kindName) (quote expressions that contain ': ')")
            }
            result.append((scalar.string, item.line, item.column))
        }
        return result
    }

    /// A list of lists of strings (`[[a, b], [c]]`), each string with its position.
    public func stringLists(_ key: String) throws(SpecError) -> [[(text: String, line: Int, column: Int)]] {
        var result: [[(String, Int, Int)]] = []
        for (index, list) in try sequence(key).enumerated() {
            guard case .sequence(let items) = list else {
                throw SpecError(
                    file: file, line: list.line, column: list.column, field: "\(fieldPath(key))[\(index)]",
                    message: "expected a list of names, found \(list.kindName)")
            }
            var group: [(String, Int, Int)] = []
            for (position, item) in items.enumerated() {
                guard case .scalar(let scalar) = item else {
                    throw SpecError(
                        file: file, line: item.line, column: item.column,
                        field: "\(fieldPath(key))[\(index)][\(position)]",
                        message: "expected a name, found \(item.kindName)")
                }
                group.append((scalar.string, item.line, item.column))
            }
            result.append(group)
        }
        return result
    }

    /// A duration such as `250ms`, `30s`, `5m`, `1h`, `1.5s` or `100us`; a bare number is seconds.
    public func duration(_ key: String, default fallback: Duration? = nil) throws(SpecError) -> Duration {
        guard let found = take(key) else {
            if let fallback { return fallback }
            throw error(key, "required field is missing")
        }
        let text = try scalar(key, found)
        guard let value = DurationText.parse(text) else {
            throw error(key, "expected a duration such as 250ms, 30s, 5m or 1h (at most 366 days), found '\(text)'")
        }
        return value
    }

    /// The position of `key`'s value (or of this mapping when absent), for errors raised after parsing.
    public func location(_ key: String) -> (line: Int, column: Int) {
        let at = value(key) ?? node
        return (at.line, at.column)
    }

    private func sequence(_ key: String) throws(SpecError) -> [Node] {
        guard let found = take(key) else { throw error(key, "required field is missing") }
        guard case .sequence(let sequence) = found else { throw error(key, "expected a list, found \(found.kindName)") }
        return Array(sequence)
    }

    public func mapping(_ key: String) throws(SpecError) -> YAMLFields {
        try YAMLFields(require(key), file: file, path: fieldPath(key))
    }

    public func optionalMapping(_ key: String) throws(SpecError) -> YAMLFields? {
        guard let found = take(key) else { return nil }
        return try YAMLFields(found, file: file, path: fieldPath(key))
    }

    /// Rejects keys that no read asked for, naming the first one and the keys that are allowed.
    public func finish() throws(SpecError) {
        for (key, _) in mapping {
            let name = key.string ?? "\(key)"
            if !consumed.contains(name) {
                let allowed = consumed.sorted().joined(separator: ", ")
                throw SpecError(
                    file: file, line: key.line, column: key.column, field: fieldPath(name),
                    message: "unknown field (allowed here: \(allowed))")
            }
        }
    }
}

extension Node {
    var line: Int { mark?.line ?? 0 }
    var column: Int { mark?.column ?? 0 }
    var kindName: String {
        switch self {
        case .scalar: "a single value"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }
}

/// Counts written for people: `5000`, `1_000_000`, `250K`, `10M`, `1B` (decimal multiples).
public enum CountSuffix {
    public static func parse(_ text: String) -> Int? {
        var digits = text.replacingOccurrences(of: "_", with: "").trimmingCharacters(in: .whitespaces)
        var multiplier = 1
        switch digits.last {
        case "K", "k": multiplier = 1_000
        case "M", "m": multiplier = 1_000_000
        case "B", "b", "G", "g": multiplier = 1_000_000_000
        default: break
        }
        if multiplier > 1 { digits.removeLast() }
        guard let number = Int(digits), number >= 0 else { return nil }
        let (product, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }
}

/// Durations written for people: `100us`, `250ms`, `30s`, `5m`, `1h`, `1.5s`; a bare number is seconds. Values
/// above `limit` (366 days) are rejected, so sums and multiples of parsed durations (a schedule's `at + every ×
/// times`, a phase list) stay far from `Duration`'s Int64 nanosecond range.
public enum DurationText {
    /// The longest duration a scenario may name: 366 days.
    public static let limit: Duration = .seconds(366 * 86_400)

    public static func parse(_ text: String) -> Duration? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
        var number = trimmed
        var scale = 1.0
        for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
            number = String(trimmed.dropLast(suffix.count))
            scale = factor
            break
        }
        guard let value = Double(number.replacingOccurrences(of: "_", with: "")), value.isFinite, value >= 0,
            value * scale <= limit.seconds
        else {
            return nil
        }
        return .nanoseconds(Int64((value * scale * 1e9).rounded()))
    }
}
