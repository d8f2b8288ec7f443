import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import KilnCore
import Testing

@Suite("One JSON and one XML escaper")
struct TextEscapingTests {
    static let awkward = "quote \" backslash \\ newline \n tab \t bell \u{07} nul \u{00} é 😀 </x> & 'a'"

    /// Whatever the text, the quoted form parses back to exactly the text (Foundation's parser is the judge).
    @Test(arguments: ["", "plain", awkward, String(repeating: "\u{1F}", count: 3)])
    func aQuotedStringParsesBackToTheSameText(text: String) throws {
        let json = "[\(JSONText.quoted(text))]"
        let parsed = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String]
        #expect(parsed == [text])
        var buffer: [UInt8] = []
        JSONText.appendEscaped(text, to: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == JSONText.escaped(text))
    }

    /// An escaped attribute value is well-formed XML and reads back with every character XML 1.0 can carry.
    @Test func anEscapedAttributeIsWellFormedXML() throws {
        let xml = "<a v=\"\(XMLText.escaped(Self.awkward))\">\(XMLText.escaped(Self.awkward))</a>"
        let document = try XMLDocument(xmlString: xml)
        let value = document.rootElement()?.attribute(forName: "v")?.stringValue
        let expected = Self.awkward.replacingOccurrences(of: "\u{07}", with: " ").replacingOccurrences(of: "\u{00}", with: " ")
        #expect(value == expected)
        #expect(document.rootElement()?.stringValue == expected)
    }
}
