import Foundation
import KilnCore
import KilnRunner
import KilnScenario
import KilnStack

/// `kiln stack up|down|status --stack FILE` for a `kind: patroni` stack file (etcd + Patroni-managed PostgreSQL on
/// Kiln's host network). StackCommand hands such files here before reading them as a five-store stack.
enum PatroniStackCommands {
    static func isPatroni(_ options: StackOptions) -> Bool {
        guard let file = options.stackFile else { return false }
        return PatroniStackSpec.declaresPatroni(URL(fileURLWithPath: file))
    }

    static func cluster(_ options: StackOptions) throws -> PatroniCluster {
        let spec = try PatroniStackSpec.load(contentsOf: URL(fileURLWithPath: options.stackFile!))
        let paths = options.paths
        return try PatroniCluster(
            spec: spec, home: paths.home, logger: options.logger("kiln.patroni"),
            runDirectory: options.runDirectory.map { URL(fileURLWithPath: $0) })
    }

    static func up(_ options: StackOptions, timeout: Int) throws -> KilnExitCode {
        let cluster = try cluster(options)
        let status = try cluster.up(readyTimeout: .seconds(timeout))
        print(render(status, cluster: cluster))
        return .ok
    }

    static func down(_ options: StackOptions, keepData: Bool) throws -> KilnExitCode {
        let report = try cluster(options).down(keepData: keepData)
        if report.removed.isEmpty { print("nothing was running") }
        for line in report.removed { print("removed: \(line)") }
        for failure in report.failures { print("failed: \(failure)") }
        return report.failures.isEmpty ? .ok : .stackUnavailable
    }

    static func status(_ options: StackOptions) throws -> KilnExitCode {
        let cluster = try cluster(options)
        let status = cluster.status()
        print(render(status, cluster: cluster))
        return status.isHealthy ? .ok : .stackUnavailable
    }

    /// Nodes as Patroni's `/cluster` shows them (leader, replicas, lag) and etcd members as etcd reports them.
    static func render(_ status: PatroniClusterStatus, cluster: PatroniCluster) -> String {
        var rows = [["NODE", "ADDRESS", "NAMESPACE", "ROLE", "STATE", "LAG (bytes)", "TIMELINE"]]
        for (index, node) in status.nodes.enumerated() {
            rows.append([
                node.name, node.endpoint.description, cluster.nodeHosts[index].namespace, node.role ?? "-",
                node.state ?? "unreachable", node.lagBytes.map(String.init) ?? "-", node.timeline.map(String.init) ?? "-",
            ])
        }
        var etcd = [["ETCD MEMBER", "ADDRESS", "NAMESPACE", "HEALTH", "RAFT LEADER"]]
        for (index, member) in status.etcd.enumerated() {
            etcd.append([
                member.name, member.endpoint.description, cluster.etcdHosts[index].namespace,
                member.healthy ? "healthy" : "unhealthy", member.isLeader ? "yes" : "-",
            ])
        }
        let answered = status.answeredBy.map { "(Patroni's /cluster as \($0) answered it)" } ?? "(no node's REST API answered)"
        return TextTable.render(rows) + "\n" + answered + "\n\n" + TextTable.render(etcd)
    }
}
