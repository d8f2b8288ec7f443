import Foundation
import KilnCore
import KilnStack

/// Loss of a Kafka-API broker: `kill` (SIGKILL, started again on `stop`) or `pause` (SIGSTOP/SIGCONT) of its process.
/// Evidence comes from real Kafka requests (ApiVersions v0) on a connection opened before the fault and on a new one
/// (`ProcessFault`'s witness), so a paused broker — whose kernel still accepts the TCP handshake — is proved not to
/// answer, and a restarted one to answer again.
///
/// With the embedded stack's Tansu broker (memory storage) a kill loses every topic and message: the record's note
/// says so, and the reconcile checker must report the acknowledged events as lost. Against a replicated Kafka
/// cluster (docker-compose) the same kill is a partition-leader move instead.
/// Not thread-safe: driven by one caller; calls block.
public final class KafkaBrokerFault: Fault {
    public enum Action: String, Sendable {
        case kill
        case pause
    }

    public let action: Action
    /// Whether the broker keeps its log across a restart; false for Tansu's `memory://` storage.
    public let durableStorage: Bool
    private let process: ProcessFault

    public var name: String { process.name }
    public var kind: String { RecordedFaultKind.kafkaBroker(action == .kill ? .kill : .pause).recorded }
    public var target: String { process.target }

    /// ApiVersions v0, correlation id 1, client id `kiln`: every Kafka-API broker answers it, before any other call.
    public static let apiVersionsRequest: [UInt8] = [0, 0, 0, 14, 0, 18, 0, 0, 0, 0, 0, 1, 0, 4] + Array("kiln".utf8)

    public init(
        name: String? = nil, action: Action, controller: any ProcessController, durableStorage: Bool = false,
        recoveryTimeout: Duration = .seconds(30)
    ) {
        self.action = action
        self.durableStorage = durableStorage
        process = ProcessFault(
            name: name ?? "kafka-\(action.rawValue)-\(controller.name)",
            action: action == .kill ? .kill : .pause, controller: controller, speaking: .kafka,
            recoveryTimeout: recoveryTimeout)
    }

    public func start() throws { try process.start() }
    public func stop() throws { try process.stop() }

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        var evidence = process.verify(phase)
        if action == .kill && !durableStorage {
            evidence.text +=
                phase == .active
                ? "; memory storage: every topic and message of the broker is lost"
                : "; restarted empty (memory storage)"
        }
        return evidence
    }

    public func teardown() { process.teardown() }
}

extension KafkaBrokerFault {
    /// Kill or pause of the embedded stack's Tansu broker (`kafka`), memory storage.
    public static func embedded(_ stack: EmbeddedStack, action: Action) throws -> KafkaBrokerFault {
        KafkaBrokerFault(action: action, controller: try LocalProcessController.embedded("kafka", of: stack))
    }
}
