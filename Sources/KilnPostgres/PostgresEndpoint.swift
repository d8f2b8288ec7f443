/// Where and as whom to connect to a PostgreSQL server.
///
/// `description`, `debugDescription` and the reflection mirror (`dump`, `Mirror`) never contain the password;
/// only ``conninfo(connectTimeoutSeconds:)`` does, and its result must not be logged.
public struct PostgresEndpoint: Sendable, Hashable {
    public var host: String
    public var port: Int
    public var database: String
    public var user: String
    public var password: String?
    /// libpq's `sslmode` (nil: libpq's default, or `PGSSLMODE`).
    public var sslMode: SSLMode?
    /// When true the connection never takes a password from `PGPASSWORD` or a password file (a `passfile` that cannot exist):
    /// a login then succeeds without a password only when the server asks for none.
    public var ignoresPasswordSources = false

    /// libpq's `sslmode` values Kiln uses.
    public enum SSLMode: String, Sendable, Hashable {
        case disable
        case require
        case verifyFull = "verify-full"
    }

    public init(host: String, port: Int, database: String, user: String, password: String? = nil) {
        self.host = host
        self.port = port
        self.database = database
        self.user = user
        self.password = password
    }

    /// A libpq connection string (`key='value' …`) for this endpoint. Every value is quoted, with `\` and `'`
    /// escaped, so no value can inject another keyword.
    ///
    /// - Parameter connectTimeoutSeconds: libpq's `connect_timeout`, applied per host address while connecting.
    ///   Values below 2 are raised to 2 (libpq's own minimum), so the result never means "wait forever".
    /// - Parameter networkTimeoutMilliseconds: when given, how long sent data may stay unacknowledged and a silent
    ///   peer may go unnoticed before the kernel closes the connection (`tcp_user_timeout`, and TCP keepalives
    ///   every second after one idle second): a request on a connection whose network was cut then fails within
    ///   about this time instead of waiting for TCP's own ~15 minutes. Nil: the kernel's defaults.
    /// - Returns: a string that contains the password in clear text; never log it.
    public func conninfo(connectTimeoutSeconds: Int = 5, networkTimeoutMilliseconds: Int? = nil) -> String {
        var pairs: [(String, String)] = [
            ("host", host),
            ("port", String(port)),
            ("dbname", database),
            ("user", user),
        ]
        if let password {
            pairs.append(("password", password))
        } else if ignoresPasswordSources {
            pairs.append(("password", ""))
        }
        if ignoresPasswordSources {
            // A path that cannot exist (libpq warns about /dev/null, "not a plain file").
            pairs.append(("passfile", "/dev/null/kiln-no-password-file"))
        }
        if let sslMode {
            pairs.append(("sslmode", sslMode.rawValue))
        }
        pairs.append(("connect_timeout", String(max(2, connectTimeoutSeconds))))
        if let networkTimeoutMilliseconds {
            let milliseconds = max(1000, networkTimeoutMilliseconds)
            pairs.append(("tcp_user_timeout", String(milliseconds)))
            pairs.append(("keepalives", "1"))
            pairs.append(("keepalives_idle", "1"))
            pairs.append(("keepalives_interval", "1"))
            pairs.append(("keepalives_count", String(max(1, milliseconds / 1000))))
        }
        pairs.append(("application_name", "kiln"))
        return pairs.map { key, value in "\(key)=\(Self.quoted(value))" }.joined(separator: " ")
    }

    /// `value` as a single-quoted conninfo value: `\` becomes `\\` and `'` becomes `\'`.
    static func quoted(_ value: String) -> String {
        var result = "'"
        for character in value {
            if character == "\\" || character == "'" {
                result.append("\\")
            }
            result.append(character)
        }
        result.append("'")
        return result
    }

    /// `host:port`, as used in error descriptions.
    var address: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

extension PostgresEndpoint: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// `postgres://user@host:port/database`, without the password.
    public var description: String {
        "postgres://\(user)@\(address)/\(database)"
    }

    public var debugDescription: String {
        "PostgresEndpoint(\(description), password: \(password == nil ? "none" : "<redacted>"))"
    }

    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "host": host, "port": port, "database": database, "user": user,
                "password": password == nil ? "none" : "<redacted>",
            ],
            displayStyle: .struct
        )
    }
}
