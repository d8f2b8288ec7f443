import Foundation

/// A JSON value that keeps booleans, integers and other numbers apart (JSONSerialization's NSNumber does not).
indirect enum JSONValue: Decodable {
    case null, bool(Bool), integer(Int64), number(Double), string(String), array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    static func parse(_ data: Data) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: data) }

    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .integer: "integer"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// For enum/const comparisons.
    var scalarText: String {
        switch self {
        case .null: "null"
        case .bool(let value): "\(value)"
        case .integer(let value): "\(value)"
        case .number(let value): "\(value)"
        case .string(let value): value
        case .array, .object: "\(self)"
        }
    }

    subscript(key: String) -> JSONValue? {
        get {
            if case .object(let members) = self { return members[key] }
            return nil
        }
        set {
            if case .object(var members) = self {
                members[key] = newValue
                self = .object(members)
            }
        }
    }
}

/// A validator for the subset of JSON Schema that Reports/report.schema.json uses: `type` (one or a list),
/// `properties`, `required`, `additionalProperties` (false or a schema), `items`, `enum`, `const`, `minimum` and
/// local `$ref` (`#/$defs/NAME`). Anything else in a schema is ignored. Returns one message per violation,
/// naming the JSON path.
struct JSONSchemaSubset {
    let root: JSONValue

    init(contentsOf url: URL) throws { root = try JSONValue.parse(Data(contentsOf: url)) }

    func validate(_ value: JSONValue) -> [String] {
        var errors: [String] = []
        check(value, root, path: "$", errors: &errors)
        return errors
    }

    private func resolve(_ schema: JSONValue) -> JSONValue {
        guard case .string(let reference)? = schema["$ref"], reference.hasPrefix("#/$defs/") else { return schema }
        return root["$defs"]?[String(reference.dropFirst("#/$defs/".count))] ?? .object([:])
    }

    private func check(_ value: JSONValue, _ rawSchema: JSONValue, path: String, errors: inout [String]) {
        let schema = resolve(rawSchema)
        let actual = value.typeName
        if let type = schema["type"] {
            let allowed: [String]
            switch type {
            case .string(let one): allowed = [one]
            case .array(let many): allowed = many.map(\.scalarText)
            default: allowed = []
            }
            if !(allowed.contains(actual) || (actual == "integer" && allowed.contains("number"))) {
                errors.append("\(path): expected \(allowed.joined(separator: " or ")), found \(actual)")
                return
            }
        }
        if case .array(let options)? = schema["enum"], !options.contains(where: { $0.scalarText == value.scalarText }) {
            errors.append("\(path): \(value.scalarText) is not one of \(options.map(\.scalarText))")
        }
        if let constant = schema["const"], constant.scalarText != value.scalarText {
            errors.append("\(path): expected \(constant.scalarText), found \(value.scalarText)")
        }
        if let minimum = schema["minimum"] {
            let bound: Double? = switch minimum {
            case .integer(let number): Double(number)
            case .number(let number): number
            default: nil
            }
            let measured: Double? = switch value {
            case .integer(let number): Double(number)
            case .number(let number): number
            default: nil
            }
            if let bound, let measured, measured < bound { errors.append("\(path): \(measured) is below \(bound)") }
        }
        if case .object(let members) = value {
            var required: [String] = []
            if case .array(let names)? = schema["required"] { required = names.map(\.scalarText) }
            for name in required where members[name] == nil {
                errors.append("\(path): required property '\(name)' is missing")
            }
            for (name, member) in members.sorted(by: { $0.key < $1.key }) {
                if let propertySchema = schema["properties"]?[name] {
                    check(member, propertySchema, path: "\(path).\(name)", errors: &errors)
                } else if let additional = schema["additionalProperties"] {
                    if case .bool(let allowed) = additional {
                        if !allowed { errors.append("\(path): property '\(name)' is not in the schema") }
                    } else {
                        check(member, additional, path: "\(path).\(name)", errors: &errors)
                    }
                }
            }
        }
        if case .array(let items) = value, let itemSchema = schema["items"] {
            for (index, item) in items.enumerated() { check(item, itemSchema, path: "\(path)[\(index)]", errors: &errors) }
        }
    }
}
