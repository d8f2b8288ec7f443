import Foundation
import KilnFaults
import KilnStack

public enum StatusTable {
    public static func render(_ statuses: [ServerStatus]) -> String {
        let namespaces = statuses.contains { $0.namespace != nil }
        var rows = [["SERVER", "ADDRESS", "ROLE", "PID", "HEALTH"]]
        for status in statuses {
            let health: String
            switch status.health {
            case .up: health = "up"
            case .down: health = "down"
            case .unhealthy(let reason): health = "unhealthy: \(reason)"
            }
            rows.append([
                status.name, status.endpoint.description, status.role ?? "-", status.pid.map(String.init) ?? "-", health,
            ])
        }
        if namespaces {
            rows[0].insert("NAMESPACE", at: 2)
            for (index, status) in statuses.enumerated() { rows[index + 1].insert(status.namespace ?? "-", at: 2) }
        }
        return TextTable.render(rows)
    }

    /// The hosts of a hosts stack: name, address, namespace, and whether the namespace exists.
    public static func render(hosts: [(host: NetworkHost, present: Bool)]) -> String {
        var rows = [["HOST", "ADDRESS", "NAMESPACE", "BRIDGE PORT", "STATE"]]
        for (host, present) in hosts {
            rows.append([
                host.name, host.address.description, host.namespace, host.bridgePort, present ? "present" : "missing",
            ])
        }
        return TextTable.render(rows)
    }
}

