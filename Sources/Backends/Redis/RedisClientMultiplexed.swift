import KilnBackend
import KilnCore
import KilnRedis

/// Multiplexed `feature-read` (HGETALL of the row's user's feature hash): the same command, key and outcomes as
/// `invoke(.featureRead, _)`, sent with `RedisConnection.startCommand` and collected with `readReply` once readable. The
/// reply is inspected in place (its field count), not copied.
extension RedisClient: MultiplexedClient {
    public static let multiplexedOperations: Set<RedisOperation> = [.featureRead]
    private static let hgetall = Array("HGETALL".utf8)

    public var descriptor: Int32 { connection?.descriptor ?? -1 }

    public func begin(_ operation: RedisOperation, _ request: Request) -> Outcome? {
        precondition(Self.multiplexedOperations.contains(operation), "operation \(operation) is not multiplexed")
        let connection: RedisConnection
        do {
            connection = try connected()
        } catch {
            return .fail("connection")
        }
        let user = context.dataset.transaction(request.row).userID
        do {
            try connection.startCommand([Self.hgetall, Array(keys.features(user: user).utf8)])
        } catch {
            return outcome(of: error, kind: .read)
        }
        return nil
    }

    public func poll() -> Outcome? {
        guard let connection else { return .fail("connection") }
        do {
            guard let shape = try connection.readReply() else { return nil }
            guard case .array(let count) = shape else { return .fail("unexpected-reply") }
            lastReadCount = count / 2
            return .ok
        } catch {
            return outcome(of: error, kind: .read)
        }
    }

    public func abandon() -> Outcome {
        dropConnection()
        return .fail("timeout")
    }
}
