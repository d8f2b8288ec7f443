/// A fault described by service names rather than processes or addresses, so that one scenario entry can be
/// carried out on the embedded stack (local processes, iptables), on docker-compose (docker commands) or on
/// Kubernetes (Chaos Mesh manifests).
public enum FaultSpec: Sendable, Equatable {
    case process(ProcessFault.Action, service: String)
    /// The shape's strings are service names here.
    case partition(PartitionShape)
}

public struct ControllerError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// docker command lines for a fault on a docker-compose project (this machine has no Docker engine, so they are
/// built and unit-tested, and run elsewhere). Containers are named as Compose v2 names them,
/// `<project>-<service>-1`, on the network `<project>_default`, unless given.
public struct DockerComposeController: Sendable {
    public var project: String
    public var network: String
    public var stopTimeoutSeconds: Int

    public init(project: String, network: String? = nil, stopTimeoutSeconds: Int = 10) {
        self.project = project
        self.network = network ?? "\(project)_default"
        self.stopTimeoutSeconds = stopTimeoutSeconds
    }

    public func container(_ service: String) -> String { "\(project)-\(service)-1" }

    /// The commands (argv, `docker` first) that start the fault and those that stop it.
    public func commands(for spec: FaultSpec) throws(ControllerError) -> (start: [[String]], stop: [[String]]) {
        switch spec {
        case .process(.kill, let service):
            let name = container(service)
            return ([["docker", "kill", "--signal", "SIGKILL", name]], [["docker", "start", name]])
        case .process(.pause, let service):
            let name = container(service)
            return ([["docker", "pause", name]], [["docker", "unpause", name]])
        case .process(.restart, let service):
            let name = container(service)
            return ([["docker", "stop", "--time", String(stopTimeoutSeconds), name]], [["docker", "start", name]])
        case .partition(.isolate(let service)):
            let name = container(service)
            return (
                [["docker", "network", "disconnect", network, name]],
                [["docker", "network", "connect", "--alias", service, network, name]]
            )
        case .partition(let shape):
            throw ControllerError(
                "docker-compose: \(shape.description) cannot be built from `docker network disconnect`, which cuts a "
                    + "container from every peer; use isolate, or the Kubernetes NetworkChaos manifest")
        }
    }
}

/// Chaos Mesh manifests (chaos-mesh.org/v1alpha1) for a fault on Kubernetes. Pods are selected by the label
/// `labelKey: <service>` in `namespace`. Kill is `PodChaos pod-kill`; restart is `pod-kill` with a grace period;
/// pause has no Chaos Mesh equivalent and maps to `pod-failure` (the pod stops serving for `duration`);
/// partitions are `NetworkChaos` `partition` with direction `both` (`to` for a one-way drop).
public struct ChaosMeshController: Sendable {
    public var namespace: String
    public var labelKey: String
    public var gracePeriodSeconds: Int

    public init(
        namespace: String, labelKey: String = "app.kubernetes.io/name", gracePeriodSeconds: Int = 30
    ) {
        self.namespace = namespace
        self.labelKey = labelKey
        self.gracePeriodSeconds = gracePeriodSeconds
    }

    /// The YAML manifest; `name` must be a DNS-1123 label (lower-case letters, digits, `-`).
    public func manifest(for spec: FaultSpec, name: String, durationSeconds: Int) throws(ControllerError) -> String {
        guard Self.isDNSLabel(name) else {
            throw ControllerError("chaos name \(name.debugDescription) must be lower-case letters, digits and '-'")
        }
        var lines = [
            "apiVersion: chaos-mesh.org/v1alpha1",
            "kind: \(Self.kind(of: spec))",
            "metadata:",
            "  name: \(name)",
            "  namespace: \(Self.quoted(namespace))",
            "  labels:",
            "    app.kubernetes.io/managed-by: kiln",
            "spec:",
        ]
        /// A selector of pods whose label is (or, with `notIn`, is not) one of `services`, at `indent`.
        func selector(_ services: [String], indent: String, notIn: Bool = false) -> [String] {
            [
                "selector:",
                "  namespaces: [\(Self.quoted(namespace))]",
                "  expressionSelectors:",
                "    - key: \(Self.quoted(labelKey))",
                "      operator: \(notIn ? "NotIn" : "In")",
                "      values: [\(services.map(Self.quoted).joined(separator: ", "))]",
            ].map { indent + $0 }
        }
        switch spec {
        case .process(let action, let service):
            switch action {
            case .kill: lines += ["  action: pod-kill", "  mode: all"]
            case .restart: lines += ["  action: pod-kill", "  mode: all", "  gracePeriod: \(gracePeriodSeconds)"]
            case .pause: lines += ["  action: pod-failure", "  mode: all", "  duration: \"\(durationSeconds)s\""]
            }
            lines += selector([service], indent: "  ")
        case .partition(let shape):
            let (from, to, direction): ([String], [String], String)
            switch shape {
            case .isolate(let service): (from, to, direction) = ([service], [service], "both")
            case .split(let a, let b): (from, to, direction) = (a, b, "both")
            case .oneWay(let source, let destination): (from, to, direction) = ([source], [destination], "to")
            case .userToServer, .serverToPort, .all:
                throw ControllerError(
                    "kubernetes: \(shape.description) is a local-stack rule (owner or port match); between pods use "
                        + "split or one-way, which select pods by service")
            }
            lines += [
                "  action: partition", "  mode: all", "  direction: \(direction)",
                "  duration: \"\(durationSeconds)s\"",
            ]
            lines += selector(from, indent: "  ")
            lines += ["  target:", "    mode: all"]
            // Isolation: the target is every other pod of the namespace.
            lines += selector(to, indent: "    ", notIn: shape == .isolate(from[0]))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func kind(of spec: FaultSpec) -> String {
        if case .process = spec { return "PodChaos" }
        return "NetworkChaos"
    }

    static func isDNSLabel(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 63 && name.first != "-" && name.last != "-"
            && name.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
    }

    /// A double-quoted YAML scalar.
    static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
