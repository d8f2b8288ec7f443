import CCurl

/// The one error of KilnHTTP: a libcurl failure (its CURLcode) or a non-2xx status from `expectOK()`.
/// `description` names the operation and `scheme://host:port` only — never credentials, the query string
/// (ClickHouse queries travel there) or a body. `debugDescription` adds up to 200 bytes of the response body.
public struct HTTPError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// libcurl failed; the CURLcode as an integer (e.g. 7 = CURLE_COULDNT_CONNECT, 28 = CURLE_OPERATION_TIMEDOUT).
        case curl(code: Int32, name: String)
        /// The server answered with a status outside 200...299.
        case status(Int)
    }

    public var kind: Kind
    public var operation: String
    /// scheme://host:port of the request.
    public var origin: String
    var bodyExcerpt: String?

    public var curlCode: Int32? {
        if case .curl(let code, _) = kind { return code }
        return nil
    }

    public var status: Int? {
        if case .status(let status) = kind { return status }
        return nil
    }

    public var description: String {
        switch kind {
        case .curl(let code, let name): "HTTP \(operation) \(origin) failed: \(name) (CURLcode \(code))"
        case .status(let status): "HTTP \(operation) \(origin) returned status \(status)"
        }
    }

    public var debugDescription: String {
        guard let bodyExcerpt, !bodyExcerpt.isEmpty else { return description }
        return "\(description): \(bodyExcerpt)"
    }

    /// `scheme://host:port` of `url`, without user info, path or query.
    static func origin(of url: String) -> String {
        guard let colon = url.firstIndex(of: ":"), url[colon...].hasPrefix("://") else { return "(invalid URL)" }
        let schemeEnd = url.index(colon, offsetBy: 3)
        let afterScheme = url[schemeEnd...]
        let authority = afterScheme.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let hostPort = authority.split(separator: "@", omittingEmptySubsequences: false).last ?? authority
        return "\(url[..<schemeEnd])\(hostPort)"
    }
}
