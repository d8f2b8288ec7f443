import CLibPQ

#if canImport(Glibc)
    import Glibc
#endif

/// One blocking libpq connection.
///
/// Ownership: the connection owns its `PGconn` and frees it in ``close()`` (idempotent) or in `deinit`.
/// Threading: not `Sendable`; every call blocks the calling thread until the server answers, so use it from one
/// dedicated worker thread (never from Swift's cooperative pool), one connection per worker.
/// Timeouts: connecting is bounded (``PostgresEndpoint/conninfo(connectTimeoutSeconds:networkTimeoutMilliseconds:)``);
/// a statement waits as long as the server takes, so bound statements server-side (`SET statement_timeout`, which
/// fails the statement with SQLSTATE `57014`). With `networkTimeoutMilliseconds` a cut network ends a waiting call
/// with a lost connection after about that long (TCP user timeout and keepalives) instead of TCP's ~15 minutes. Server notices (`NOTICE: … skipping`) are discarded, never printed.
public final class PostgresConnection {
    public let endpoint: PostgresEndpoint
    /// The server version as libpq reports it, e.g. `150004` for 15.4.
    public let serverVersion: Int
    private var handle: OpaquePointer?
    /// The outstanding statement's result (or error) while the rest of its response is awaited (in pipeline mode:
    /// the oldest outstanding statement's).
    private var pendingResult: PostgresResult?
    private var pendingError: PostgresError?
    /// In pipeline mode (``enterPipelineMode()``): statements sent and not yet collected by ``readResult()``.
    public private(set) var pipelineOutstanding = 0
    /// In pipeline mode: statements sent since the last ``syncPipeline()`` (they are still in libpq's buffer).
    public private(set) var pipelineUnsynced = 0
    /// Whether the connection is in libpq's pipeline mode (``enterPipelineMode()``); it stays in it until closed.
    public private(set) var isPipelined = false

    /// Connects, blocking for at most about `connectTimeoutSeconds` per address the host resolves to.
    /// - Throws: ``PostgresError`` of kind `connect` when the server is unreachable or rejects the login.
    public init(
        _ endpoint: PostgresEndpoint, connectTimeoutSeconds: Int = 5, networkTimeoutMilliseconds: Int? = nil
    ) throws(PostgresError) {
        self.endpoint = endpoint
        let conninfo = endpoint.conninfo(
            connectTimeoutSeconds: connectTimeoutSeconds, networkTimeoutMilliseconds: networkTimeoutMilliseconds)
        guard let connection = PQconnectdb(conninfo) else {
            throw PostgresError(.connect, .connect, address: endpoint.address, message: "libpq: out of memory")
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.errorMessage(connection)
            PQfinish(connection)
            throw PostgresError(
                .connect, .connect, address: endpoint.address, reason: Self.connectReason(message), message: message
            )
        }
        PQsetNoticeProcessor(connection, { _, _ in }, nil)
        self.handle = connection
        self.serverVersion = Int(PQserverVersion(connection))
    }

    deinit {
        if let handle {
            PQfinish(handle)
        }
    }

    /// Closes the connection. Idempotent; later calls on this connection throw a `closed` error.
    public func close() {
        if let handle {
            PQfinish(handle)
            self.handle = nil
        }
    }

    /// `false` after ``close()`` or once libpq has seen the connection break.
    public var isOpen: Bool {
        guard let handle else {
            return false
        }
        return PQstatus(handle) == CONNECTION_OK
    }

    /// Runs `sql`: with `PQexec` when there are no parameters (several `;`-separated statements allowed; the
    /// last result is returned), else with `PQexecParams` and `$1…$n` text-format parameters (`nil` is NULL).
    /// - Throws: ``PostgresError``; `server` with the SQLSTATE when the server rejects the statement.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> PostgresResult {
        let connection = try open(.execute)
        try validate(sql, parameters, .execute)
        let result: OpaquePointer?
        if parameters.isEmpty {
            result = PQexec(connection, sql)
        } else {
            result = Self.withParameters(parameters) { count, values in
                PQexecParams(connection, sql, count, nil, values, nil, nil, 0)
            }
        }
        return try check(result, connection, .execute)
    }

    /// Creates the named prepared statement `name` for `sql` on this connection (parameter types inferred).
    public func prepare(_ name: String, _ sql: String) throws(PostgresError) {
        let connection = try open(.prepare)
        try validate(sql, [name], .prepare)
        _ = try check(PQprepare(connection, name, sql, 0, nil), connection, .prepare)
    }

    /// Runs the statement prepared as `name` with text-format parameters (`nil` is NULL).
    @discardableResult
    public func executePrepared(_ name: String, _ parameters: [String?]) throws(PostgresError) -> PostgresResult {
        let connection = try open(.executePrepared)
        try validate(name, parameters, .executePrepared)
        let result = Self.withParameters(parameters) { count, values in
            PQexecPrepared(connection, name, count, values, nil, nil, 0)
        }
        return try check(result, connection, .executePrepared)
    }

    /// Runs `sql`, which must be a `COPY … FROM STDIN` statement (any format: text, csv, binary), and streams
    /// what `write` writes as the COPY data.
    ///
    /// If `write` throws, the COPY is ended with a failure (the server rolls it back: no row is copied) and that
    /// error is rethrown. The writer must not be used after `write` returns.
    /// - Returns: the number of rows copied, from the final command tag.
    /// - Throws: the error thrown by `write`, or ``PostgresError`` (kind `server` with the SQLSTATE when the
    ///   server rejects the data, e.g. `22P02`; `unexpectedResult` when `sql` does not start `COPY FROM STDIN`).
    /// Sends `sql` and returns the connection once the server is in the `expected` COPY state; otherwise the
    /// server's error, or `unexpectedResult` for a statement that is not that kind of COPY (its result drained).
    private func startCopy(
        _ sql: String, expecting expected: ExecStatusType, _ operation: PostgresError.Operation, _ kind: String
    ) throws(PostgresError) -> OpaquePointer {
        let connection = try open(operation)
        try validate(sql, [], operation)
        guard let start = PQexec(connection, sql) else {
            throw failure(connection, operation)
        }
        defer { PQclear(start) }
        let status = PQresultStatus(start)
        guard status == expected else {
            if Self.isError(status) {
                throw resultError(start, connection, operation)
            }
            Self.drain(connection)
            throw PostgresError(
                .unexpectedResult, operation, address: endpoint.address,
                message: "statement did not start \(kind) (status \(String(cString: PQresStatus(status))))")
        }
        return connection
    }

    @discardableResult
    public func copyIn(_ sql: String, _ write: (PostgresCopyWriter) throws -> Void) throws -> Int {
        let connection = try startCopy(sql, expecting: PGRES_COPY_IN, .copyIn, "COPY FROM STDIN")

        let writer = PostgresCopyWriter(connection, address: endpoint.address)
        do {
            try write(writer)
            try writer.flush()
        } catch {
            writer.finish()
            _ = PQputCopyEnd(connection, "COPY aborted by the client")
            Self.drain(connection)
            throw error
        }
        writer.finish()
        guard PQputCopyEnd(connection, nil) == 1 else {
            let error = failure(connection, .copyIn)
            Self.drain(connection)
            throw error
        }
        return try copyRowCount(connection, .copyIn)
    }

    /// Runs `sql`, which must be a `COPY … TO STDOUT` statement (any format: text, csv, binary), and hands the COPY
    /// data to `body` block by block, as libpq receives it: one CopyData message per call (PostgreSQL sends one row
    /// per message; in binary format the file header shares the first message and the trailer has its own).
    ///
    /// Memory: `bytes` is libpq's own buffer, valid only during the call and freed (`PQfreemem`) right after it;
    /// nothing is accumulated, whatever the size of the result. A consumer that needs a row split across blocks
    /// must carry the partial bytes itself.
    /// If `body` throws, the statement is cancelled (`PQcancel`), the rest of the data is discarded, the connection
    /// is left idle and usable, and that error is rethrown.
    /// Timeouts: as for every statement, only `statement_timeout` bounds it (the COPY then fails with `57014`).
    /// - Returns: the number of rows copied, from the final command tag.
    /// - Throws: the error thrown by `body`, or ``PostgresError`` (kind `server` with the SQLSTATE when the
    ///   statement fails, before or during the COPY; `connectionLost` when the connection breaks mid-stream;
    ///   `unexpectedResult` when `sql` does not start `COPY TO STDOUT`).
    @discardableResult
    public func copyOut(_ sql: String, _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        let connection = try startCopy(sql, expecting: PGRES_COPY_OUT, .copyOut, "COPY TO STDOUT")

        while true {
            var buffer: UnsafeMutablePointer<CChar>?
            let count = PQgetCopyData(connection, &buffer, 0)
            if count > 0, let data = buffer {
                defer { PQfreemem(data) }
                do {
                    try body(UnsafeRawBufferPointer(start: data, count: Int(count)))
                } catch {
                    Self.cancel(connection)
                    Self.drain(connection)
                    throw error
                }
            } else {
                if let data = buffer {
                    PQfreemem(data)
                }
                if count == -1 {
                    break
                }
                // -2: libpq could not read (the connection broke or the protocol went wrong).
                let error = failure(connection, .copyOut)
                Self.drain(connection)
                guard error.kind == .unexpectedResult else {
                    throw error
                }
                throw PostgresError(
                    .connectionLost, .copyOut, address: endpoint.address, message: error.debugDescription)
            }
        }
        return try copyRowCount(connection, .copyOut)
    }

    /// After a COPY's data (either direction): reads the statement's results and returns the rows copied, from the
    /// final command tag. Results of any other status end the reading (the rest is drained).
    /// - Throws: the first error result (``PostgresError`` of kind `server`), or `unexpectedResult` when no command
    ///   tag arrived.
    private func copyRowCount(_ connection: OpaquePointer, _ operation: PostgresError.Operation) throws -> Int {
        var firstError: PostgresError?
        var rows: Int?
        while let result = PQgetResult(connection) {
            let resultStatus = PQresultStatus(result)
            if resultStatus == PGRES_COMMAND_OK {
                rows = Int(String(cString: PQcmdTuples(result)))
            } else if Self.isError(resultStatus) {
                firstError = firstError ?? resultError(result, connection, operation)
            }
            PQclear(result)
            if resultStatus != PGRES_COMMAND_OK && !Self.isError(resultStatus) {
                Self.drain(connection)
                break
            }
        }
        if let firstError {
            throw firstError
        }
        guard let rows else {
            throw PostgresError(
                .unexpectedResult, operation, address: endpoint.address, message: "COPY ended without a row count")
        }
        return rows
    }

    /// Sends `sql` with the simple query protocol and returns without waiting for the reply; collect the reply with
    /// ``awaitReply(within:)``. Only one statement may be in flight: a fault witness sends `SELECT 1` and waits a
    /// bounded time, where ``execute(_:_:)`` would block as long as a paused server stays paused.
    /// - Throws: ``PostgresError`` `connectionLost` when libpq cannot send it, `closed` after ``close()``.
    public func send(_ sql: String) throws(PostgresError) {
        let connection = try open(.send)
        try validate(sql, [], .send)
        guard PQsendQuery(connection, sql) == 1 else { throw failure(connection, .send) }
    }

    /// Waits at most `timeout` for the whole reply to the statement sent with ``send(_:)``. Returns `true` once
    /// every result of it was read (an error result too: the server answered), `false` when the reply was not
    /// complete in time — the statement stays in flight and a later call keeps waiting for the same reply.
    /// - Throws: ``PostgresError`` `connectionLost` when the connection breaks (e.g. the server process died).
    public func awaitReply(within timeout: Duration) throws(PostgresError) -> Bool {
        let connection = try open(.awaitReply)
        let deadline = ContinuousClock.now + timeout
        while true {
            guard PQconsumeInput(connection) == 1 else { throw failure(connection, .awaitReply) }
            if PQisBusy(connection) == 0 {
                while let result = PQgetResult(connection) { PQclear(result) }
                guard PQstatus(connection) == CONNECTION_OK else { throw failure(connection, .awaitReply) }
                return true
            }
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { return false }
            let milliseconds =
                remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000
            var poller = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, Int32(max(1, min(milliseconds, 60_000))))
        }
    }

    /// Asks the server to cancel the statement in flight (best effort: a statement that already finished is not
    /// affected); the caller still has to consume the results.
    private static func cancel(_ connection: OpaquePointer) {
        guard let cancel = PQgetCancel(connection) else {
            return
        }
        defer { PQfreeCancel(cancel) }
        var message = [CChar](repeating: 0, count: 256)
        _ = PQcancel(cancel, &message, Int32(message.count))
    }

    // MARK: - Helpers

    /// `PG_DIAG_SQLSTATE` and `PG_DIAG_MESSAGE_PRIMARY` are character macros, which Swift does not import.
    private static let diagSQLState = Int32(UInt8(ascii: "C"))
    private static let diagMessagePrimary = Int32(UInt8(ascii: "M"))

    // MARK: - One statement in flight without blocking (open-model multiplexing)

    /// The connection's socket, for a poller to wait on until it is readable; -1 when closed.
    public var descriptor: Int32 {
        guard let handle else { return -1 }
        return PQsocket(handle)
    }

    /// Puts the connection in libpq's pipeline mode: from now on ``startPrepared(_:integer:binaryResults:)`` may be
    /// called while earlier statements are outstanding. It only queues the statement in libpq's buffer:
    /// ``syncPipeline()`` sends every queued statement with one Sync, and the server answers them together. A
    /// statement that fails makes the server skip the rest of its Sync (they throw `notRun`); the next Sync runs
    /// normally. ``readResult()`` returns the results in the order the statements were sent. Only the
    /// `startPrepared`/`syncPipeline`/`readResult` calls may be used afterwards (libpq refuses synchronous calls in
    /// pipeline mode); prepare statements before. Idempotent.
    /// - Throws: ``PostgresError`` (`closed`; `unexpectedResult` when libpq refuses, e.g. a statement is outstanding).
    public func enterPipelineMode() throws(PostgresError) {
        let connection = try open(.executePrepared)
        if isPipelined { return }
        guard PQenterPipelineMode(connection) == 1 else { throw failure(connection, .executePrepared) }
        isPipelined = true
        pipelineOutstanding = 0
        pendingResult = nil
        pendingError = nil
    }

    /// Sends prepared statement `name` without waiting for its result; ``readResult()`` collects it once
    /// ``descriptor`` is readable. At most one statement may be outstanding (the caller's invariant). The
    /// connection stays in blocking mode: libpq writes the few hundred bytes of the request into an empty send
    /// buffer, so the call returns at once.
    /// With `binaryResults` the server sends the row in binary format (its send functions instead of the text
    /// output functions: less server CPU); ``PostgresResult/value(row:column:)`` then holds the raw bytes.
    /// - Throws: ``PostgresError`` (`closed`, `connectionLost`, `invalidArgument`).
    public func startPrepared(
        _ name: String, _ parameters: [String?], binaryResults: Bool = false
    ) throws(PostgresError) {
        let connection = try open(.executePrepared)
        try validate(name, parameters, .executePrepared)
        let sent = Self.withParameters(parameters) { count, values in
            PQsendQueryPrepared(connection, name, count, values, nil, nil, binaryResults ? 1 : 0)
        }
        guard sent == 1 else { throw failure(connection, .executePrepared) }
        pendingResult = nil
        pendingError = nil
    }

    /// ``startPrepared(_:_:binaryResults:)`` with one integer parameter, formatted as decimal text on the stack:
    /// no per-call allocation (the open-model hot path sends one point read per op).
    /// - Throws: ``PostgresError`` (`closed`, `connectionLost`).
    public func startPrepared(_ name: StaticString, integer: Int64, binaryResults: Bool = false) throws(PostgresError) {
        precondition(name.hasPointerRepresentation, "statement name must be a string literal")
        let connection = try open(.executePrepared)
        // 20 digits, a sign and the NUL.
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        let sent = withUnsafeMutableBytes(of: &digits) { raw -> Int32 in
            let buffer = raw.bindMemory(to: CChar.self)
            var magnitude = integer.magnitude
            var end = buffer.count - 1
            buffer[end] = 0
            repeat {
                end -= 1
                buffer[end] = CChar(48 + magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if integer < 0 {
                end -= 1
                buffer[end] = 45  // '-'
            }
            var value: UnsafePointer<CChar>? = UnsafePointer(buffer.baseAddress! + end)
            // A StaticString with a pointer representation is NUL-terminated UTF-8 (a literal).
            let statement = UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self)
            return PQsendQueryPrepared(connection, statement, 1, &value, nil, nil, binaryResults ? 1 : 0)
        }
        guard sent == 1 else { throw failure(connection, .executePrepared) }
        if isPipelined {
            pipelineOutstanding += 1
            pipelineUnsynced += 1
            return
        }
        pendingResult = nil
        pendingError = nil
    }

    /// Reads what the socket holds (call it once ``descriptor`` is readable) and returns the statement's result
    /// when the server's whole response has arrived, nil while it has not. Never blocks.
    /// - Throws: ``PostgresError`` as ``executePrepared(_:_:)`` does.
    /// In pipeline mode it returns the oldest outstanding statement's result once it has arrived (with its batch),
    /// nil while it has not; call it again for the next one: a result already read is returned without reading the
    /// socket again.
    public func readResult() throws(PostgresError) -> PostgresResult? {
        let connection = try open(.executePrepared)
        if isPipelined, let buffered = try readPipelinedResult(connection) { return buffered }
        guard PQconsumeInput(connection) == 1 else { throw failure(connection, .executePrepared) }
        if isPipelined { return try readPipelinedResult(connection) }
        while PQisBusy(connection) == 0 {
            guard let result = PQgetResult(connection) else {
                // The response is complete (ReadyForQuery arrived).
                let (completed, error) = (self.pendingResult, self.pendingError)
                self.pendingResult = nil
                self.pendingError = nil
                if let error { throw error }
                guard let completed else { throw failure(connection, .executePrepared) }
                return completed
            }
            do {
                pendingResult = try check(result, connection, .executePrepared)
            } catch {
                pendingError = error
            }
        }
        return nil
    }

    /// Sends the statements queued since the last Sync, followed by one Sync, and flushes (blocking until libpq's
    /// buffer is written: the caller bounds the statements outstanding, so the socket buffer never fills).
    /// Nothing to send: nothing happens.
    /// - Throws: ``PostgresError`` (`closed`, `connectionLost`): the queued statements' fate is unknown.
    public func syncPipeline() throws(PostgresError) {
        guard isPipelined, pipelineUnsynced > 0 else { return }
        let connection = try open(.executePrepared)
        pipelineUnsynced = 0
        guard PQpipelineSync(connection) == 1 else { throw failure(connection, .executePrepared) }
    }

    /// The oldest statement's response in pipeline mode: its result (or `PGRES_PIPELINE_ABORTED`), then a NULL;
    /// a Sync's result after the last statement of its batch is consumed here.
    private func readPipelinedResult(_ connection: OpaquePointer) throws(PostgresError) -> PostgresResult? {
        var idleNulls = 0
        while pipelineOutstanding > 0, PQisBusy(connection) == 0 {
            guard let result = PQgetResult(connection) else {
                // The end of one statement's results.
                guard pendingResult != nil || pendingError != nil else {
                    // A NULL with no statement result before it: libpq moving past a Sync; a second one in a row
                    // means nothing more is ready.
                    idleNulls += 1
                    if idleNulls > 1 { return nil }
                    continue
                }
                pipelineOutstanding -= 1
                let (completed, error) = (pendingResult, pendingError)
                pendingResult = nil
                pendingError = nil
                if let error { throw error }
                return completed
            }
            idleNulls = 0
            switch PQresultStatus(result) {
            case PGRES_PIPELINE_SYNC:
                PQclear(result)
            case PGRES_PIPELINE_ABORTED:
                // Not run: an earlier statement of the same Sync failed.
                PQclear(result)
                pendingError = pendingError ?? PostgresError(
                    .notRun, .executePrepared, address: endpoint.address,
                    message: "pipeline aborted: the statement was not run")
            default:
                do {
                    pendingResult = try check(result, connection, .executePrepared)
                } catch {
                    pendingError = error
                }
            }
        }
        return nil
    }

    private func open(_ operation: PostgresError.Operation) throws(PostgresError) -> OpaquePointer {
        guard let handle else {
            throw PostgresError(.closed, operation, address: endpoint.address)
        }
        return handle
    }

    /// libpq takes NUL-terminated strings: an embedded NUL would silently truncate the value, so refuse it.
    private func validate(
        _ text: String, _ parameters: [String?], _ operation: PostgresError.Operation
    ) throws(PostgresError) {
        if text.utf8.contains(0) {
            throw PostgresError(
                .invalidArgument, operation, address: endpoint.address, message: "statement contains a NUL byte"
            )
        }
        if parameters.count > Int(UInt16.max) {
            throw PostgresError(
                .invalidArgument, operation, address: endpoint.address,
                message: "\(parameters.count) parameters; the protocol allows at most 65535"
            )
        }
        if let index = parameters.firstIndex(where: { $0?.utf8.contains(0) ?? false }) {
            throw PostgresError(
                .invalidArgument, operation, address: endpoint.address,
                message: "parameter \(index + 1) contains a NUL byte"
            )
        }
    }

    /// Calls `body` with NUL-terminated copies of `parameters` laid out in one buffer (`nil` stays NULL).
    private static func withParameters<R>(
        _ parameters: [String?], _ body: (Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> R
    ) -> R {
        var storage: [UInt8] = []
        var offsets: [Int?] = []
        offsets.reserveCapacity(parameters.count)
        for parameter in parameters {
            guard let parameter else {
                offsets.append(nil)
                continue
            }
            offsets.append(storage.count)
            storage.append(contentsOf: parameter.utf8)
            storage.append(0)
        }
        storage.append(0)
        return storage.withUnsafeBytes { raw in
            let base = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
            let pointers: [UnsafePointer<CChar>?] = offsets.map { offset in offset.map { UnsafePointer(base + $0) } }
            return pointers.withUnsafeBufferPointer { body(Int32(parameters.count), $0.baseAddress) }
        }
    }

    /// Turns a libpq result into a ``PostgresResult`` or throws; takes ownership of `result`.
    private func check(
        _ result: OpaquePointer?, _ connection: OpaquePointer, _ operation: PostgresError.Operation
    ) throws(PostgresError) -> PostgresResult {
        guard let result else {
            throw failure(connection, operation)
        }
        let status = PQresultStatus(result)
        switch status {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return PostgresResult(owning: result)
        case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
            PQclear(result)
            Self.drain(connection)
            throw PostgresError(
                .unexpectedResult, operation, address: endpoint.address, message: "COPY is only supported by copyIn"
            )
        default:
            let error = resultError(result, connection, operation)
            PQclear(result)
            throw error
        }
    }

    private static func isError(_ status: ExecStatusType) -> Bool {
        status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE || status == PGRES_NONFATAL_ERROR
    }

    /// The error described by an error result; `connectionLost` when libpq has seen the connection break.
    private func resultError(
        _ result: OpaquePointer, _ connection: OpaquePointer, _ operation: PostgresError.Operation
    ) -> PostgresError {
        let sqlState = PQresultErrorField(result, Self.diagSQLState).map { String(cString: $0) }
        let primary = PQresultErrorField(result, Self.diagMessagePrimary).map { String(cString: $0) }
        let message = primary ?? String(cString: PQresultErrorMessage(result))
        let kind: PostgresError.Kind
        if PQstatus(connection) != CONNECTION_OK {
            kind = .connectionLost
        } else {
            // A result without SQLSTATE on a healthy connection was produced by libpq itself.
            kind = sqlState == nil ? .unexpectedResult : .server
        }
        return PostgresError(
            kind, operation, address: endpoint.address, sqlState: sqlState.flatMap(Self.validSQLState),
            message: message
        )
    }

    /// The error for a call that produced no result (libpq could not send or read).
    private func failure(_ connection: OpaquePointer, _ operation: PostgresError.Operation) -> PostgresError {
        let kind: PostgresError.Kind = PQstatus(connection) == CONNECTION_OK ? .unexpectedResult : .connectionLost
        return PostgresError(kind, operation, address: endpoint.address, message: Self.errorMessage(connection))
    }

    /// A fixed phrase classifying a libpq connection failure: the message itself can quote the server, so it is
    /// never shown by `description`.
    private static func connectReason(_ message: String) -> String? {
        let phrases: [(needle: String, reason: String)] = [
            ("Connection refused", "connection refused"),
            ("timeout expired", "connect timeout"),
            ("could not translate host name", "unknown host"),
            ("No route to host", "no route to host"),
            ("Network is unreachable", "network unreachable"),
            ("authentication failed", "authentication failed"),
            ("no password supplied", "password required"),
            ("no pg_hba.conf entry", "rejected by pg_hba.conf"),
            ("server does not support SSL", "server offers no TLS"),
            ("certificate verify failed", "TLS certificate not trusted"),
            ("does not exist", "database or role does not exist"),
            ("the database system is starting up", "server starting up"),
            ("the database system is shutting down", "server shutting down"),
            ("the database system is in recovery mode", "server in recovery"),
            ("too many clients", "too many connections"),
            ("server closed the connection unexpectedly", "connection closed by server"),
        ]
        return phrases.first { message.contains($0.needle) }?.reason
    }

    /// A SQLSTATE is five characters of `[0-9A-Z]`; anything else is not shown.
    private static func validSQLState(_ code: String) -> String? {
        let valid = code.utf8.count == 5 && code.utf8.allSatisfy { (48...57).contains($0) || (65...90).contains($0) }
        return valid ? code : nil
    }

    private static func errorMessage(_ connection: OpaquePointer) -> String {
        guard let message = PQerrorMessage(connection) else {
            return ""
        }
        return String(cString: message).trimmingTrailingNewlines()
    }

    /// Consumes every pending result so the connection is idle again: an unwanted COPY IN is ended with a
    /// failure, COPY OUT data is discarded. Stops early when the connection is broken.
    static func drain(_ connection: OpaquePointer) {
        while let result = PQgetResult(connection) {
            let status = PQresultStatus(result)
            PQclear(result)
            if status == PGRES_COPY_IN {
                guard PQputCopyEnd(connection, "COPY abandoned by the client") == 1 else {
                    return
                }
            } else if status == PGRES_COPY_OUT {
                var buffer: UnsafeMutablePointer<CChar>?
                while true {
                    let count = PQgetCopyData(connection, &buffer, 0)
                    if let data = buffer {
                        PQfreemem(data)
                        buffer = nil
                    }
                    if count < 0 {
                        break
                    }
                }
            } else if status == PGRES_COPY_BOTH || PQstatus(connection) != CONNECTION_OK {
                return
            }
        }
    }
}

extension String {
    fileprivate func trimmingTrailingNewlines() -> String {
        var text = Substring(self)
        while let last = text.last, last.isNewline {
            text.removeLast()
        }
        return String(text)
    }
}
