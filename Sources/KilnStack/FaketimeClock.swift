import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The wall-clock offset of one embedded server started under libfaketime: the file
/// `<server directory>/faketime.rc` holds the offset (`+600`, `-30`, in seconds) and the server re-reads it at most
/// once a second (FAKETIME_CACHE_DURATION=1), so a write takes effect within about two seconds without a restart.
/// Only CLOCK_REALTIME moves (FAKETIME_DONT_FAKE_MONOTONIC=1), like an NTP step on a real host: timeouts and
/// monotonic timers of the server are unaffected. No shared-memory segment is made (FAKETIME_DONT_USE_SHM=1: a killed
/// server would leave it in /dev/shm). A server runs under it when the file exists at its start
/// (`kiln stack up` writes `+0` for the servers the stack file lists under `faketime:`).
public struct FaketimeClock: Sendable, Equatable {
    public static let library = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
    public let file: URL

    public init(serverDirectory: URL) {
        file = serverDirectory.appendingPathComponent("faketime.rc")
    }

    /// Whether a server started now would run under libfaketime (the offset file exists).
    public var isEnabled: Bool { FileManager.default.fileExists(atPath: file.path) }

    /// `NAME=value` pairs to start the server with (through `env`); empty when the clock is not enabled.
    public var environment: [String] {
        guard isEnabled else { return [] }
        return [
            "LD_PRELOAD=\(Self.library)", "FAKETIME_TIMESTAMP_FILE=\(file.path)", "FAKETIME_CACHE_DURATION=1",
            "FAKETIME_DONT_FAKE_MONOTONIC=1", "FAKETIME_DONT_USE_SHM=1",
        ]
    }

    /// Writes the offset (whole seconds; replaced atomically, readable by the server's user). Throws when the
    /// library is missing (`apt-get install libfaketime`) or the file cannot be written.
    public func set(offsetSeconds: Int64) throws {
        guard FileManager.default.fileExists(atPath: Self.library) else {
            throw StackError(server: file.deletingLastPathComponent().lastPathComponent,
                message: "\(Self.library) is missing (apt-get install faketime)")
        }
        let text = (offsetSeconds < 0 ? "\(offsetSeconds)" : "+\(offsetSeconds)") + "\n"
        let temporary = file.deletingLastPathComponent().appendingPathComponent(".faketime.rc.\(getpid())")
        try Data(text.utf8).write(to: temporary)
        chmod(temporary.path, 0o644)
        if rename(temporary.path, file.path) != 0 {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw StackError(server: file.deletingLastPathComponent().lastPathComponent,
                message: "cannot write \(file.path): \(reason)")
        }
    }

    /// The offset the file holds now (nil when absent or unreadable).
    public var offsetSeconds: Int64? {
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return nil }
        return Int64(text.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "+", with: ""))
    }

    /// Whether process `pid` runs under libfaketime reading this file (its environment names it).
    public func governs(pid: pid_t) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
        let wanted = "FAKETIME_TIMESTAMP_FILE=\(file.path)"
        return data.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == wanted }
    }
}
