import Foundation
import Logging

/// Log lines for a person at a terminal: `kiln: message key=value …` on stderr, nothing else.
public struct ConsoleLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]

    public init(logLevel: Logger.Level) {
        self.logLevel = logLevel
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let fields = merged.sorted { $0.key < $1.key }.map { key, value in
            "\(key.hasPrefix("kiln.") ? String(key.dropFirst(5)) : key)=\(value)"
        }
        let level = event.level >= .warning ? "\(event.level): " : ""
        let line = (["kiln: \(level)\(event.message)"] + fields).joined(separator: " ") + "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
