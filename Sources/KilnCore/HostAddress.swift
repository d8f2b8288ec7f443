import Foundation

/// One address of Kiln's host network 10.213.7.0/24: `.1` is Kiln's own client host (the bridge, in the root
/// namespace); a host holds one of `.2`–`.254`. Address plan: stack servers `.2`–`.99`, tests' private hosts
/// `.100`–`.199`, client groups `.201`–`.209`.
public struct HostAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    public static let prefix = "10.213.7."
    public static let subnet = "10.213.7.0/24"
    /// The bridge's address in the root namespace: load workers, checkers and fault probes connect from it.
    public static let clientHost = HostAddress(uncheckedOctet: 1)

    public let octet: UInt8

    private init(uncheckedOctet: UInt8) { octet = uncheckedOctet }

    /// A host's address: `octet` in 2...254.
    public init(octet: Int) throws(HostNetworkError) {
        guard (2...254).contains(octet) else {
            throw HostNetworkError("host address \(HostAddress.prefix)\(octet) is outside 10.213.7.2–10.213.7.254")
        }
        self.octet = UInt8(octet)
    }

    /// Parses `10.213.7.N` (N in 2...254); nil for anything else (another network, .0, .1, .255, names).
    public init?(_ text: String) {
        guard text.hasPrefix(HostAddress.prefix), let octet = Int(text.dropFirst(HostAddress.prefix.count)),
            String(octet) == text.dropFirst(HostAddress.prefix.count), (2...254).contains(octet)
        else { return nil }
        self.octet = UInt8(octet)
    }

    /// True for any address of 10.213.7.0/24 (including the client host .1).
    public static func isInSubnet(_ text: String) -> Bool {
        text == clientHost.description || HostAddress(text) != nil
    }

    public var description: String { "\(HostAddress.prefix)\(octet)" }
    public static func < (a: HostAddress, b: HostAddress) -> Bool { a.octet < b.octet }
}

/// A host network operation that failed, or a value outside Kiln's host network.
public struct HostNetworkError: Error, CustomStringConvertible, Equatable, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
