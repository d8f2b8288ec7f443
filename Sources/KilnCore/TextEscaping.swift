/// Text as the content of a JSON string: `"` and `\` escaped, control characters as `\u00XX`, everything else as
/// UTF-8. The one JSON escaper of the history writer, the timelines and the HTTP clients' hand-built bodies.
public enum JSONText {
    /// Appends the escaped UTF-8 of `text` (without quotes) to `buffer`; allocation-free for the caller's buffer.
    public static func appendEscaped(_ text: String, to buffer: inout [UInt8]) {
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0..<0x20:
                buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                buffer.append(hexDigits[Int(byte >> 4)])
                buffer.append(hexDigits[Int(byte & 0xF)])
            default: buffer.append(byte)
            }
        }
    }

    /// `text` escaped, without quotes.
    public static func escaped(_ text: String) -> String {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(text.utf8.count)
        appendEscaped(text, to: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    /// `text` as a JSON string literal, quotes included.
    public static func quoted(_ text: String) -> String { "\"\(escaped(text))\"" }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
}

/// Text as XML 1.0 attribute or element content (JUnit reports): the five predefined entities, newline and tab as
/// character references (kept in attributes), and the other control characters, which XML 1.0 cannot carry, as
/// spaces. The one XML escaper of the report writers.
public enum XMLText {
    public static func escaped(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&apos;"
            case "\n": result += "&#10;"
            case "\t": result += "&#9;"
            case _ where scalar.value < 0x20: result += " "
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
