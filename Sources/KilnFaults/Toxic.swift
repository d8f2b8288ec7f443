import Foundation

/// Which way a toxic acts, as in Toxiproxy: `upstream` is client -> server data, `downstream` server -> client.
public enum ToxicStream: String, Codable, Sendable, CaseIterable {
    case upstream
    case downstream
}

/// The behaviour of a toxic (Toxiproxy's toxic set). Times are milliseconds unless named otherwise.
public enum ToxicKind: Equatable, Sendable {
    /// Delay every chunk by `latency` ± a uniform `jitter` (order is kept: a chunk never overtakes an earlier one).
    case latency(latency: Int, jitter: Int)
    /// Limit the rate to `rate` KB/s (1 KB = 1000 bytes, as Toxiproxy).
    case bandwidth(rate: Int)
    /// Accept but never forward; with `timeout > 0`, close the connection after `timeout` ms.
    case timeout(timeout: Int)
    /// Reset the client connection (TCP RST) `timeout` ms after the toxic applies to it.
    case resetPeer(timeout: Int)
    /// Delay the end of the stream (FIN) by `delay` ms.
    case slowClose(delay: Int)
    /// Split data into pieces of `averageSize` ± `sizeVariation` bytes, `delay` microseconds apart.
    case slicer(averageSize: Int, sizeVariation: Int, delay: Int)
    /// Forward `bytes` bytes, then close the connection.
    case limitData(bytes: Int)

    /// Toxiproxy's type name (`blackhole` is accepted as another name for `timeout`).
    public var typeName: String {
        switch self {
        case .latency: "latency"
        case .bandwidth: "bandwidth"
        case .timeout: "timeout"
        case .resetPeer: "reset_peer"
        case .slowClose: "slow_close"
        case .slicer: "slicer"
        case .limitData: "limit_data"
        }
    }

    public var attributes: [String: Int] {
        switch self {
        case .latency(let latency, let jitter): ["latency": latency, "jitter": jitter]
        case .bandwidth(let rate): ["rate": rate]
        case .timeout(let timeout): ["timeout": timeout]
        case .resetPeer(let timeout): ["timeout": timeout]
        case .slowClose(let delay): ["delay": delay]
        case .slicer(let size, let variation, let delay):
            ["average_size": size, "size_variation": variation, "delay": delay]
        case .limitData(let bytes): ["bytes": bytes]
        }
    }

    public static let typeNames = [
        "latency", "bandwidth", "timeout", "blackhole", "reset_peer", "slow_close", "slicer",
        "limit_data",
    ]

    /// Builds a kind from Toxiproxy's type name and attributes; unknown attributes and negative values are errors.
    public init(type: String, attributes: [String: Int]) throws(ToxicError) {
        func value(_ key: String, default fallback: Int? = nil) throws(ToxicError) -> Int {
            guard let value = attributes[key] ?? fallback else {
                throw ToxicError("toxic \(type): attribute \(key) is required")
            }
            guard value >= 0 else { throw ToxicError("toxic \(type): attribute \(key) must be >= 0, got \(value)") }
            return value
        }
        let allowed: [String]
        switch type {
        case "latency":
            allowed = ["latency", "jitter"]
            self = .latency(latency: try value("latency"), jitter: try value("jitter", default: 0))
        case "bandwidth":
            allowed = ["rate"]
            let rate = try value("rate")
            guard rate > 0 else { throw ToxicError("toxic bandwidth: attribute rate must be > 0") }
            self = .bandwidth(rate: rate)
        case "timeout", "blackhole":
            allowed = ["timeout"]
            self = .timeout(timeout: try value("timeout", default: 0))
        case "reset_peer":
            allowed = ["timeout"]
            self = .resetPeer(timeout: try value("timeout", default: 0))
        case "slow_close":
            allowed = ["delay"]
            self = .slowClose(delay: try value("delay"))
        case "slicer":
            allowed = ["average_size", "size_variation", "delay"]
            let size = try value("average_size")
            guard size > 0 else { throw ToxicError("toxic slicer: attribute average_size must be > 0") }
            let variation = try value("size_variation", default: 0)
            guard variation < size else {
                throw ToxicError("toxic slicer: size_variation must be smaller than average_size")
            }
            self = .slicer(averageSize: size, sizeVariation: variation, delay: try value("delay", default: 0))
        case "limit_data":
            allowed = ["bytes"]
            self = .limitData(bytes: try value("bytes"))
        default:
            throw ToxicError("unknown toxic type \(type) (known: \(Self.typeNames.joined(separator: ", ")))")
        }
        if let unknown = attributes.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw ToxicError("toxic \(type): unknown attribute \(unknown) (known: \(allowed.joined(separator: ", ")))")
        }
    }
}

/// One named toxic of a proxy, in Toxiproxy's JSON shape:
/// `{"name": "lag", "type": "latency", "stream": "downstream", "toxicity": 1.0, "attributes": {"latency": 100}}`.
/// `toxicity` is the probability that a connection gets the toxic (drawn once per connection).
public struct Toxic: Codable, Sendable, Equatable {
    public var name: String
    public var kind: ToxicKind
    public var stream: ToxicStream
    public var toxicity: Double

    public init(name: String? = nil, kind: ToxicKind, stream: ToxicStream = .downstream, toxicity: Double = 1) {
        self.name = name ?? "\(kind.typeName)_\(stream.rawValue)"
        self.kind = kind
        self.stream = stream
        self.toxicity = toxicity
    }

    enum CodingKeys: String, CodingKey {
        case name, type, stream, toxicity, attributes
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let type = try container.decode(String.self, forKey: .type)
        let attributes = try container.decodeIfPresent([String: Int].self, forKey: .attributes) ?? [:]
        kind = try ToxicKind(type: type, attributes: attributes)
        stream = try container.decodeIfPresent(ToxicStream.self, forKey: .stream) ?? .downstream
        toxicity = try container.decodeIfPresent(Double.self, forKey: .toxicity) ?? 1
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? "\(kind.typeName)_\(stream.rawValue)"
        try validate()
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(kind.typeName, forKey: .type)
        try container.encode(stream, forKey: .stream)
        try container.encode(toxicity, forKey: .toxicity)
        try container.encode(kind.attributes, forKey: .attributes)
    }

    func validate() throws(ToxicError) {
        guard (0...1).contains(toxicity) else { throw ToxicError("toxic \(name): toxicity must be in 0...1") }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
        guard !name.isEmpty, name.allSatisfy({ allowed.contains($0) }) else {
            throw ToxicError("toxic name \(name.debugDescription) must be non-empty letters, digits, _ - .")
        }
    }

    /// Parses the command-line form `TYPE[=VALUE][,KEY=VALUE...]`, e.g. `latency=100ms,jitter=10ms`,
    /// `bandwidth=64` (KB/s), `blackhole`, `timeout=2s`, `reset_peer=500ms`, `slow_close=1s`,
    /// `slicer=64,size_variation=16,delay=1ms`, `limit_data=1000`. Extra keys: `stream=upstream|downstream`
    /// (default downstream), `name=NAME`, `toxicity=0.5`. Durations take `us`, `ms` or `s` (bare numbers are
    /// milliseconds; slicer's `delay` is stored in microseconds).
    public static func parse(_ text: String) throws(ToxicError) -> Toxic {
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard let first = items.first, !first.isEmpty else { throw ToxicError("empty toxic") }
        let head = first.split(separator: "=", maxSplits: 1).map(String.init)
        let type = head[0]
        guard ToxicKind.typeNames.contains(type) else {
            throw ToxicError("unknown toxic type \(type) (known: \(ToxicKind.typeNames.joined(separator: ", ")))")
        }
        var pairs: [(String, String)] = []
        if head.count == 2 {
            let primary: String =
                switch type {
                case "latency": "latency"
                case "bandwidth": "rate"
                case "timeout", "blackhole", "reset_peer": "timeout"
                case "slow_close": "delay"
                case "slicer": "average_size"
                default: "bytes"
                }
            pairs.append((primary, head[1]))
        }
        for item in items.dropFirst() {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ToxicError("toxic \(type): expected KEY=VALUE, got \(item)") }
            pairs.append((parts[0], parts[1]))
        }
        var name: String?
        var stream = ToxicStream.downstream
        var toxicity = 1.0
        var attributes: [String: Int] = [:]
        for (key, value) in pairs {
            switch key {
            case "name": name = value
            case "stream":
                guard let parsed = ToxicStream(rawValue: value) else {
                    throw ToxicError("toxic \(type): stream must be upstream or downstream, got \(value)")
                }
                stream = parsed
            case "toxicity":
                guard let parsed = Double(value) else { throw ToxicError("toxic \(type): bad toxicity \(value)") }
                toxicity = parsed
            case "latency", "jitter", "timeout":
                attributes[key] = try parseDuration(value, unit: 1_000, key: key)
            case "delay":
                attributes[key] = try parseDuration(value, unit: type == "slicer" ? 1 : 1_000, key: key)
            default:
                let digits = value.hasSuffix("KB/s") ? String(value.dropLast(4)) : value
                guard let number = Int(digits) else { throw ToxicError("toxic \(type): \(key) must be an integer") }
                attributes[key] = number
            }
        }
        let toxic = Toxic(
            name: name, kind: try ToxicKind(type: type, attributes: attributes), stream: stream, toxicity: toxicity)
        try toxic.validate()
        return toxic
    }

    /// `value` in the unit `1/unit` ms: unit 1_000 gives milliseconds, unit 1 microseconds.
    private static func parseDuration(_ value: String, unit: Int, key: String) throws(ToxicError) -> Int {
        let scales: [(String, Double)] = [("us", 0.001), ("ms", 1), ("s", 1000)]
        for (suffix, milliseconds) in scales where value.hasSuffix(suffix) {
            guard let number = Double(value.dropLast(suffix.count)), number >= 0 else { break }
            return Int((number * milliseconds * 1000 / Double(unit)).rounded())
        }
        if let number = Int(value), number >= 0 { return unit == 1 ? number * 1000 : number }
        throw ToxicError("\(key): bad duration \(value) (use e.g. 100ms, 2s, 500us)")
    }
}

public struct ToxicError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
