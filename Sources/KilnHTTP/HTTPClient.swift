import CCurl

/// The answer to one request. Non-2xx statuses are returned, not thrown; `expectOK()` turns them into errors.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
    /// Where the request went (scheme://host:port), for error messages.
    public var origin: String
    public var operation: String

    public var text: String { String(decoding: body, as: UTF8.self) }

    /// Returns the response when its status is 2xx; otherwise throws `HTTPError` of kind `.status`.
    @discardableResult
    public func expectOK() throws(HTTPError) -> HTTPResponse {
        guard (200...299).contains(status) else {
            throw HTTPError(
                kind: .status(status), operation: operation, origin: origin,
                bodyExcerpt: String(decoding: body.prefix(200), as: UTF8.self))
        }
        return self
    }
}

/// One libcurl easy handle, reused for every request so that keep-alive connections are reused too.
///
/// Ownership: owns the `CURL` handle, freed in `deinit`. Threading: not `Sendable`; every call blocks the
/// calling thread (use it from one worker thread). Timeouts: a request fails with CURLE_OPERATION_TIMEDOUT
/// after `timeoutSeconds` in total, or CURLE_COULDNT_CONNECT / CURLE_OPERATION_TIMEDOUT after
/// `connectTimeoutSeconds` when nothing accepts the connection.
public final class HTTPClient {
    private let handle: UnsafeMutableRawPointer
    private let timeoutMilliseconds: Int
    private let connectTimeoutMilliseconds: Int
    private let user: String?
    private let password: String?
    /// The CA certificate file (PEM) that https:// servers' certificates must chain to; nil: the system's CAs.
    private let caFile: String?
    /// Receives the body of the request in flight; reset before each request.
    private let sink = ResponseSink()

    /// Initialises libcurl once per process (curl_global_init is not thread-safe; a static let is).
    private static let globalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

    /// - Parameters:
    ///   - user: when set, every request sends HTTP basic credentials (`password` defaults to empty). They never
    ///     appear in an `HTTPError`; neither do credentials written into a URL.
    ///   - caFile: for https:// URLs, the CA certificate (PEM) the server's certificate must chain to; the peer and
    ///     its host name are always verified (libcurl's defaults), against the system's CAs when nil.
    /// - Throws: `HTTPError` when libcurl cannot be initialised.
    public init(
        timeoutSeconds: Double = 30, connectTimeoutSeconds: Double = 5, user: String? = nil, password: String? = nil,
        caFile: String? = nil
    ) throws(HTTPError) {
        let initCode = Self.globalInit
        guard initCode == CURLE_OK, let handle = curl_easy_init() else {
            throw HTTPError(
                kind: .curl(code: Int32(initCode.rawValue), name: "curl_easy_init failed"), operation: "init",
                origin: "-")
        }
        self.handle = handle
        self.timeoutMilliseconds = Int(timeoutSeconds * 1000)
        self.connectTimeoutMilliseconds = Int(connectTimeoutSeconds * 1000)
        self.user = user
        self.password = user == nil ? nil : password ?? ""
        self.caFile = caFile
    }

    deinit {
        curl_easy_cleanup(handle)
    }

    /// How many new TCP connections the requests of this client opened (`CURLINFO_NUM_CONNECTS` summed). With
    /// keep-alive working, many requests to one server open one connection.
    public private(set) var connectionsOpened = 0

    /// Sends a GET and returns whatever status the server answered (see `HTTPResponse.expectOK()`).
    /// - Throws: `HTTPError` of kind `.curl` when no complete response arrived (connect failure, timeout, reset).
    public func get(_ url: String, headers: [String: String] = [:]) throws(HTTPError) -> HTTPResponse {
        try perform(url, method: "GET", body: nil, contentType: nil, headers: headers)
    }

    /// Sends `body` as a POST (e.g. ClickHouse `INSERT … FORMAT TabSeparated` rows) and returns whatever status the
    /// server answered. The body is sent from the array in place, without a copy.
    /// - Throws: `HTTPError` of kind `.curl` when no complete response arrived (connect failure, timeout, reset).
    public func post(
        _ url: String, body: [UInt8], contentType: String = "application/octet-stream", headers: [String: String] = [:]
    ) throws(HTTPError) -> HTTPResponse {
        try perform(url, method: "POST", body: body, contentType: contentType, headers: headers)
    }

    /// Sends a GET and hands the response body to `receive` chunk by chunk as it arrives, without accumulating it.
    /// See ``streamPost(_:body:contentType:headers:stallTimeoutSeconds:_:)`` for the guarantees.
    /// - Returns: the (2xx) status.
    @discardableResult
    public func streamGet(
        _ url: String, headers: [String: String] = [:], stallTimeoutSeconds: Double? = nil,
        _ receive: (UnsafeRawBufferPointer) throws -> Void
    ) throws -> Int {
        try stream(
            url, method: "GET", body: nil, contentType: nil, headers: headers, stall: stallTimeoutSeconds, receive)
    }

    /// Sends `body` as a POST (e.g. a ClickHouse `SELECT … FORMAT RowBinary`) and hands the response body to
    /// `receive` chunk by chunk as libcurl reads it from the socket (at most 512 KiB per call, any split: a record
    /// can straddle two chunks), so memory stays flat whatever the response size.
    ///
    /// Chunks: valid only during the call; `receive` runs on the calling thread, inside `curl_easy_perform`.
    /// Status: only a 2xx response is streamed. Any other status throws `HTTPError` of kind `.status` (with up to
    /// 64 KiB of its body kept for `debugDescription`) and `receive` is never called.
    /// Timeouts: with `stallTimeoutSeconds` nil the client's total timeout bounds the request; otherwise there is
    /// no total limit and the request fails with CURLcode 28 (CURLE_OPERATION_TIMEDOUT) once fewer than 1 byte
    /// per second has arrived for `stallTimeoutSeconds` (for long scans). The connect timeout applies either way.
    /// If `receive` throws, the transfer is aborted (the connection is closed, not reused) and that error is
    /// rethrown; chunks already delivered stay delivered.
    /// - Returns: the (2xx) status.
    /// - Throws: the error of `receive`, or `HTTPError` (`.curl` when no complete response arrived, `.status`).
    @discardableResult
    public func streamPost(
        _ url: String, body: [UInt8], contentType: String = "application/octet-stream", headers: [String: String] = [:],
        stallTimeoutSeconds: Double? = nil, _ receive: (UnsafeRawBufferPointer) throws -> Void
    ) throws -> Int {
        try stream(
            url, method: "POST", body: body, contentType: contentType, headers: headers, stall: stallTimeoutSeconds,
            receive)
    }

    private func stream(
        _ url: String, method: String, body: [UInt8]?, contentType: String?, headers: [String: String],
        stall: Double?, _ receive: (UnsafeRawBufferPointer) throws -> Void
    ) throws -> Int {
        let response = try withoutActuallyEscaping(receive) { receive in
            sink.startStreaming(handle, receive)
            defer { sink.stopStreaming() }
            do {
                return try perform(
                    url, method: method, body: body, contentType: contentType, headers: headers, stall: stall)
            } catch {
                // An abort caused by `receive` surfaces from libcurl as CURLE_WRITE_ERROR; report the real cause.
                if let failure = sink.receiveError {
                    throw failure
                }
                throw error
            }
        }
        try response.expectOK()
        return response.status
    }

    private func perform(
        _ url: String, method: String, body: [UInt8]?, contentType: String?, headers: [String: String],
        stall: Double? = nil
    ) throws(HTTPError) -> HTTPResponse {
        let origin = HTTPError.origin(of: url)
        // Options are set afresh for every request; the handle keeps only its connection cache between them.
        curl_easy_reset(handle)
        sink.bytes.removeAll(keepingCapacity: true)
        var headerList: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headerList) }
        if let contentType { headerList = curl_slist_append(headerList, "Content-Type: \(contentType)") }
        // libcurl sends "Expect: 100-continue" for large POST bodies and waits for the server; ClickHouse does not
        // need it and the wait costs a round trip.
        headerList = curl_slist_append(headerList, "Expect:")
        for (name, value) in headers { headerList = curl_slist_append(headerList, "\(name): \(value)") }

        // libcurl copies every string option when it is set (since 7.17), so these pointers need not outlive the
        // setopt call; only POSTFIELDS is read in place, during curl_easy_perform.
        var result = url.withCString { kiln_curl_setopt_pointer(handle, CURLOPT_URL, $0) }
        func set(_ next: @autoclosure () -> CURLcode) { if result == CURLE_OK { result = next() } }
        set(kiln_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        if let stall {
            set(kiln_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, 0))
            set(kiln_curl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1))
            set(kiln_curl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, max(1, Int(stall.rounded(.up)))))
        } else {
            set(kiln_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, timeoutMilliseconds))
        }
        if sink.isStreaming {
            set(kiln_curl_setopt_long(handle, CURLOPT_BUFFERSIZE, 1 << 19))
        }
        set(kiln_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, connectTimeoutMilliseconds))
        set(kiln_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList))
        set(kiln_curl_setopt_write_function(handle, httpClientWrite))
        set(kiln_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, Unmanaged.passUnretained(sink).toOpaque()))
        if let caFile {
            set(caFile.withCString { kiln_curl_setopt_pointer(handle, CURLOPT_CAINFO, $0) })
        }
        if let user {
            // CURLAUTH_BASIC is a macro Swift does not import. USERNAME and PASSWORD rather than USERPWD, so a colon
            // in the user name cannot move the split.
            set(kiln_curl_setopt_long(handle, CURLOPT_HTTPAUTH, 1))
            set(user.withCString { kiln_curl_setopt_pointer(handle, CURLOPT_USERNAME, $0) })
            set((password ?? "").withCString { kiln_curl_setopt_pointer(handle, CURLOPT_PASSWORD, $0) })
        }
        let code: CURLcode
        if let body {
            code = body.withUnsafeBytes { bytes in
                set(kiln_curl_setopt_long(handle, CURLOPT_POST, 1))
                set(kiln_curl_setopt_offset(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bytes.count)))
                // An empty array has no base address; a null POSTFIELDS would make libcurl read the body from
                // stdin, so any valid pointer stands in (POSTFIELDSIZE_LARGE is 0).
                set(kiln_curl_setopt_pointer(handle, CURLOPT_POSTFIELDS, bytes.baseAddress ?? UnsafeRawPointer(handle)))
                return result == CURLE_OK ? curl_easy_perform(handle) : result
            }
        } else {
            set(kiln_curl_setopt_long(handle, CURLOPT_HTTPGET, 1))
            code = result == CURLE_OK ? curl_easy_perform(handle) : result
        }
        var connects = 0
        if kiln_curl_getinfo_long(handle, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK {
            connectionsOpened += connects
        }
        guard code == CURLE_OK else {
            throw HTTPError(
                kind: .curl(code: Int32(code.rawValue), name: String(cString: curl_easy_strerror(code))),
                operation: method, origin: origin)
        }
        var status = 0
        _ = kiln_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, body: sink.bytes, origin: origin, operation: method)
    }
}

/// Where libcurl's write callback puts the body: appended to `bytes`, or, while streaming, handed to `receive`
/// (a non-2xx body is still appended, up to `errorBodyLimit`, for the error). Only touched by the thread inside
/// `perform`.
final class ResponseSink {
    var bytes: [UInt8] = []
    /// Set only for the duration of one streaming request (see `HTTPClient.stream`).
    private(set) var receive: ((UnsafeRawBufferPointer) throws -> Void)?
    /// The error `receive` threw, which aborted the transfer.
    private(set) var receiveError: (any Error)?
    private var handle: UnsafeMutableRawPointer?
    /// The response status, read from libcurl with the first chunk (headers are complete by then); 0 before.
    private var status = 0
    static let errorBodyLimit = 1 << 16

    var isStreaming: Bool { receive != nil }

    func startStreaming(
        _ handle: UnsafeMutableRawPointer, _ receive: @escaping (UnsafeRawBufferPointer) throws -> Void
    ) {
        self.handle = handle
        self.receive = receive
        receiveError = nil
        status = 0
    }

    func stopStreaming() {
        receive = nil
        handle = nil
    }

    /// Consumes one chunk; returns false to make libcurl abort the transfer.
    func accept(_ chunk: UnsafeRawBufferPointer) -> Bool {
        guard let receive, let handle else {
            bytes.append(contentsOf: chunk)
            return true
        }
        if status == 0 {
            _ = kiln_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        }
        guard (200...299).contains(status) else {
            bytes.append(contentsOf: chunk.prefix(max(0, Self.errorBodyLimit - bytes.count)))
            return true
        }
        do {
            try receive(chunk)
            return true
        } catch {
            receiveError = error
            return false
        }
    }
}

private func httpClientWrite(
    _ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?
) -> Int {
    guard let data, let context else { return 0 }
    let total = size * count
    let sink = Unmanaged<ResponseSink>.fromOpaque(context).takeUnretainedValue()
    return sink.accept(UnsafeRawBufferPointer(start: data, count: total)) ? total : 0
}
