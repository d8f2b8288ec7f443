import Foundation
import KilnScenario

/// Real queries that prove a server answers, and what role it plays now: the probe its backend describes
/// (`EmbeddedServerDescription.probe`). Each probe opens its own short-lived connection, blocks the calling thread
/// for at most about `timeoutSeconds`, and throws when the server does not answer correctly.
public struct StackProbe: Sendable {
    public var definition: StackDefinition
    public var timeoutSeconds: Int

    public init(definition: StackDefinition, timeoutSeconds: Int = 2) {
        self.definition = definition
        self.timeoutSeconds = timeoutSeconds
    }

    /// Returns the server's current role (primary, replica, sentinel, broker, graph, timeseries…).
    public func role(of server: EmbeddedServer) throws -> String {
        try server.description.probe(server.endpoint, timeoutSeconds)
    }
}
