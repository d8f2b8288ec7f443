import Dispatch
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// Heals active faults when Kiln is interrupted: on the first SIGINT or SIGTERM it runs every registered heal
/// (newest first), removes this process's kiln-fault iptables rules (and those of dead processes; other live
/// runs keep theirs), and exits with 128 + the signal number. A second
/// signal while healing is ignored (healing is bounded by each heal's own timeouts).
/// Thread-safe; the handlers run on a private dispatch queue, never on a signal-handler stack.
// @unchecked Sendable: every mutable property is behind its own lock; dispatch sources are thread-safe.
public final class InterruptHealer: @unchecked Sendable {
    public static let shared = InterruptHealer()

    private let heals = NIOLockedValueBox<[(id: Int, heal: @Sendable () -> Void)]>([])
    private let nextID = NIOLockedValueBox(0)
    private let sources = NIOLockedValueBox<[any DispatchSourceSignal]>([])
    private let healing = NIOLockedValueBox(false)
    private let queue = DispatchQueue(label: "kiln.faults.interrupt")

    private init() {}

    /// Installs the SIGINT/SIGTERM handlers (idempotent).
    public func install() {
        sources.withLockedValue { sources in
            guard sources.isEmpty else { return }
            for signalNumber in [SIGINT, SIGTERM] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
                source.setEventHandler { [self] in self.interrupted(signalNumber) }
                source.resume()
                sources.append(source)
            }
        }
    }

    /// Registers a heal; returns a token for `unregister` (call it once the fault was stopped normally).
    public func register(_ heal: @escaping @Sendable () -> Void) -> Int {
        let id = nextID.withLockedValue { value in
            value += 1
            return value
        }
        heals.withLockedValue { $0.append((id, heal)) }
        return id
    }

    public func unregister(_ id: Int) {
        heals.withLockedValue { $0.removeAll { $0.id == id } }
    }

    private func interrupted(_ signalNumber: Int32) {
        let first = healing.withLockedValue { healing in
            defer { healing = true }
            return !healing
        }
        guard first else { return }
        for (_, heal) in heals.withLockedValue({ $0 }).reversed() { heal() }
        _ = try? PartitionSweeper.removeOrphaned(includingThisProcess: true)
        exit(128 + signalNumber)
    }
}
