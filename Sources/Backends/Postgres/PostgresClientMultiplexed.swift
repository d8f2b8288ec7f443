import KilnBackend
import KilnCore
import KilnData
import KilnPostgres

/// Multiplexed `point-read` (the prepared `kiln_point_read` of the row's txn_id): the same statement and outcomes
/// as `invoke(.pointRead, _)`, sent with `PostgresConnection.startPrepared` and collected with `readResult` once readable.
/// A new connection's statements are prepared (blocking, once) by the first op sent on it.
/// Pipelining: the connection enters libpq's pipeline mode once its statements are prepared; the ops of one batch
/// (`endBatch`) share a Sync, so when one fails the server skips the rest of its batch (`fail("pipeline-aborted")`:
/// not run). A connection replaced while ops are outstanding (the primary moved) leaves them unanswered until the
/// engine abandons them (`fail("timeout")`).
extension PostgresClient: MultiplexedClient {
    public static let multiplexedOperations: Set<PostgresOperation> = [.pointRead]
    public static var pipelines: Bool { true }

    public var descriptor: Int32 { connection?.descriptor ?? -1 }

    public func enablePipelining() { pipelinesMultiplexedOps = true }

    public func endBatch() -> Outcome? {
        guard let connection else { return .fail("connection") }
        do {
            try connection.syncPipeline()
            return nil
        } catch {
            return outcome(error, isRead: true)
        }
    }

    public func begin(_ operation: PostgresOperation, _ request: Request) -> Outcome? {
        precondition(Self.multiplexedOperations.contains(operation), "operation \(operation) is not multiplexed")
        do {
            let connection = try preparedConnection()
            if pipelinesMultiplexedOps { try connection.enterPipelineMode() }
            // txn_id of row `request.row` (`Transaction.txnID`), without generating the row.
            try connection.startPrepared(
                "kiln_point_read", integer: Transaction.txnID(ofIndex: request.row), binaryResults: binaryReadResults)
        } catch {
            return outcome(error, isRead: true)
        }
        return nil
    }

    public func poll() -> Outcome? {
        guard let connection else { return .fail("connection") }
        do {
            guard let result = try connection.readResult() else { return nil }
            return result.rowCount == 0 ? .fail("not-found") : .ok
        } catch {
            return outcome(error, isRead: true)
        }
    }

    /// Prepares the statements now, so the first op on this connection does not block its multiplexing thread.
    public func prepareMultiplexed() {
        guard let connection = try? preparedConnection() else { return }
        if pipelinesMultiplexedOps { _ = try? connection.enterPipelineMode() }
    }

    public func abandon() -> Outcome {
        dropConnection()
        return .fail("timeout")
    }
}
