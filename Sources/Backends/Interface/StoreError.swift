/// A store's client or scanner could not connect, was refused, or got an answer it cannot use: the one error type
/// of the backends' clients and scanners (`RedisClient.ConnectError`, `RedisScanner.ScanError` and the like name
/// it). `description` names the store and `host:port` (or a Kafka bootstrap list) and the underlying error's own
/// (redacted) description; never a password.
public struct StoreError: Error, CustomStringConvertible {
    public var store: String
    public var address: String
    public var detail: String

    public init(store: String, address: String, detail: String) {
        self.store = store
        self.address = address
        self.detail = detail
    }

    public init(store: String, address: String, underlying: any Error) {
        self.init(store: store, address: address, detail: String(describing: underlying))
    }

    public var description: String { "\(store) at \(address): \(detail)" }

    /// `name` when it is a safe SQL identifier part (`[a-z0-9_]`, starting with a letter or `_`, at most 40 bytes),
    /// else throws an error calling it `naming` (what the name is: a namespace, a database).
    public static func identifier(
        _ name: String, store: String, naming: String = "namespace"
    ) throws(StoreError) -> String {
        let valid =
            !name.isEmpty && name.utf8.count <= 40
            && name.utf8.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 95 }
            && !(48...57).contains(name.utf8.first ?? 48)
        guard valid else {
            throw StoreError(
                store: store, address: "-", detail: "\(naming) \(String(reflecting: name)) is not [a-z_][a-z0-9_]*")
        }
        return name
    }
}
