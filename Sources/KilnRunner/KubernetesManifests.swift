import Foundation
import KilnCore
import KilnFaults
import KilnLoad
import KilnScenario

/// The Kubernetes objects of a sharded run (`kiln k8s`), as k6-operator lays out a TestRun, plus the exact merge:
/// - `00-configmap.yaml`: ConfigMap `<name>-files` holding `scenario.yaml` (its `stack:` and `dataset.spec:` pointed at
///   the neighbouring keys, its `faults:` removed: on Kubernetes the faults are Chaos Mesh's), `dataset.yaml` and
///   `stack.yaml`; every pod mounts it at `/kiln/scenario`, so every shard runs byte-identical files.
/// - `01-runs-pvc.yaml`: PersistentVolumeClaim `<name>-runs` (ReadWriteMany) mounted at `/kiln/runs`.
/// - `02-setup-job.yaml`: Job `<name>-setup`: `kiln run … --setup-only` (the teardown of a `fresh` scenario, once).
/// - `10-shards-job.yaml`: Indexed Job `<name>-shards`: completions = parallelism = N; each pod runs
///   `kiln run … --shards N --id shard-$(JOB_COMPLETION_INDEX)`; the Job controller sets JOB_COMPLETION_INDEX and
///   the kubelet expands `$(…)` in args. backoffLimit 0: a retried shard would write its rows twice.
/// - `20-merge-job.yaml`: Job `<name>-merge`: `kiln merge … --wait` (until every shard's report.json has ended), then
///   `kiln check` and `kiln report` of the merged run.
/// - Faults: on Kubernetes they are Chaos Mesh's, never Kiln's own fault runner (a pod can neither signal nor
///   partition the stores' pods, and a fault proxy in one shard's pod would carry that shard's clients only). The
///   scenario's fault schedule (`FaultScheduleSpec.plan`, the same instances and jitter as `kiln run`) becomes one
///   Chaos Mesh `Workflow` (`chaos-workflow.yaml` in the ConfigMap, a copy in `chaos/workflow.yaml`): per instance a
///   Serial of a Suspend for its `at` and the chaos for its `duration`, all in Parallel — each chaos object exists only
///   in its fault's window. Only the pod of the scenario's `fault_shard` applies it (`kubectl apply`, through the
///   ServiceAccount `<name>-chaos` allowed to create Workflows: `03-chaos-rbac-*.yaml`), right before its `kiln run`,
///   so the windows are the fault shard's; the other pods apply nothing. Faults the generator cannot map (failovers,
///   proxy toxics, clock skew, …) are listed in `chaos/UNMAPPED.txt`, never dropped silently.
public struct KubernetesManifests {
    public var name: String
    public var namespace: String
    public var image: String
    public var shards: Int
    public var scenarioText: String
    public var datasetText: String
    public var stackText: String
    public var faults: FaultScheduleSpec?
    public var storage: String = "10Gi"
    /// The shard whose pod applies the Chaos Mesh Workflow (the scenario's `fault_shard`).
    public var faultShard: Int = 0
    /// The dataset seed: the fault plan's jitter is drawn from it, as `kiln run` draws it.
    public var seed: UInt64 = 0

    public init(
        name: String, namespace: String, image: String, shards: Int, scenarioText: String, datasetText: String,
        stackText: String, faults: FaultScheduleSpec?, storage: String = "10Gi", faultShard: Int = 0, seed: UInt64 = 0
    ) {
        self.faultShard = faultShard
        self.seed = seed
        self.name = name
        self.namespace = namespace
        self.image = image
        self.shards = shards
        self.scenarioText = scenarioText
        self.datasetText = datasetText
        self.stackText = stackText
        self.faults = faults
        self.storage = storage
    }

    static let scenarioMount = "/kiln/scenario"
    static let runsMount = "/kiln/runs"

    var labels: [(String, YAMLValue)] {
        [("app.kubernetes.io/name", .string("kiln")), ("app.kubernetes.io/instance", .string(name)),
         ("app.kubernetes.io/managed-by", .string("kiln"))]
    }

    func metadata(_ objectName: String) -> YAMLValue {
        .map([("name", .string(objectName)), ("namespace", .string(namespace)), ("labels", .map(labels))])
    }

    /// The run directory of the merged run, and of shard i.
    var runRoot: String { "\(Self.runsMount)/\(name)" }

    public func files() throws -> [(path: String, text: String)] {
        let (workflow, unmapped) = chaosWorkflow()
        var result: [(String, String)] = [
            ("00-configmap.yaml", configMap(workflow: workflow).text()),
            ("01-runs-pvc.yaml", runsClaim().text()),
            ("02-setup-job.yaml", job("\(name)-setup", arguments: ["run", "\(Self.scenarioMount)/scenario.yaml", "--setup-only"]).text()),
        ]
        if let workflow {
            result += chaosAccess().map { ($0.file, $0.object.text()) }
            result.append(("chaos/workflow.yaml", workflow))
        }
        result += [
            ("10-shards-job.yaml", shardsJob(appliesChaos: workflow != nil).text()),
            ("20-merge-job.yaml", mergeJob().text()),
        ]
        if !unmapped.isEmpty { result.append(("chaos/UNMAPPED.txt", unmapped.joined(separator: "\n") + "\n")) }
        return result
    }

    /// The ConfigMap key of the Chaos Mesh Workflow the fault shard's pod applies.
    static let workflowKey = "chaos-workflow.yaml"

    func configMap(workflow: String? = nil) -> YAMLValue {
        var data: [(String, YAMLValue)] = [
            ("scenario.yaml", .string(scenarioText)), ("dataset.yaml", .string(datasetText)),
            ("stack.yaml", .string(stackText)),
        ]
        if let workflow { data.append((Self.workflowKey, .string(workflow))) }
        return .map([
            ("apiVersion", .string("v1")), ("kind", .string("ConfigMap")), ("metadata", metadata("\(name)-files")),
            ("data", .map(data)),
        ])
    }

    /// The ServiceAccount the shards' pods run as when the scenario has faults, allowed to create and read Chaos Mesh
    /// Workflows in the namespace (only the fault shard's pod uses it), and nothing else.
    func chaosAccess() -> [(file: String, object: YAMLValue)] {
        let account = "\(name)-chaos"
        return [
            ("03-chaos-rbac-serviceaccount.yaml", .map([
                ("apiVersion", .string("v1")), ("kind", .string("ServiceAccount")), ("metadata", metadata(account)),
            ])),
            ("03-chaos-rbac-role.yaml", .map([
                ("apiVersion", .string("rbac.authorization.k8s.io/v1")), ("kind", .string("Role")),
                ("metadata", metadata(account)),
                ("rules", .list([.map([
                    ("apiGroups", .list([.string("chaos-mesh.org")])),
                    ("resources", .list([.string("workflows")])),
                    ("verbs", .list(["create", "get", "list", "patch"].map(YAMLValue.string))),
                ])])),
            ])),
            ("03-chaos-rbac-rolebinding.yaml", .map([
                ("apiVersion", .string("rbac.authorization.k8s.io/v1")), ("kind", .string("RoleBinding")),
                ("metadata", metadata(account)),
                ("subjects", .list([.map([
                    ("kind", .string("ServiceAccount")), ("name", .string(account)), ("namespace", .string(namespace)),
                ])])),
                ("roleRef", .map([
                    ("apiGroup", .string("rbac.authorization.k8s.io")), ("kind", .string("Role")), ("name", .string(account)),
                ])),
            ])),
        ]
    }

    func runsClaim() -> YAMLValue {
        .map([
            ("apiVersion", .string("v1")), ("kind", .string("PersistentVolumeClaim")), ("metadata", metadata("\(name)-runs")),
            ("spec", .map([
                ("accessModes", .list([.string("ReadWriteMany")])),
                ("resources", .map([("requests", .map([("storage", .string(storage))]))])),
            ])),
        ])
    }

    /// A pod template running `kiln ARGUMENTS` (or `sh -c SCRIPT`) with the files and the runs volume mounted.
    func podTemplate(command: [String], arguments: [String], serviceAccount: String? = nil) -> YAMLValue {
        .map([
            ("metadata", .map([("labels", .map(labels))])),
            ("spec", .map((serviceAccount.map { [("serviceAccountName", YAMLValue.string($0))] } ?? []) + [
                ("restartPolicy", .string("Never")),
                ("containers", .list([.map([
                    ("name", .string("kiln")), ("image", .string(image)),
                    ("command", .list(command.map(YAMLValue.string))),
                    ("args", .list(arguments.map(YAMLValue.string))),
                    ("volumeMounts", .list([
                        .map([("name", .string("files")), ("mountPath", .string(Self.scenarioMount)), ("readOnly", .bool(true))]),
                        .map([("name", .string("runs")), ("mountPath", .string(Self.runsMount))]),
                    ])),
                ])])),
                ("volumes", .list([
                    .map([("name", .string("files")), ("configMap", .map([("name", .string("\(name)-files"))]))]),
                    .map([("name", .string("runs")), ("persistentVolumeClaim", .map([("claimName", .string("\(name)-runs"))]))]),
                ])),
            ])),
        ])
    }

    func job(
        _ jobName: String, arguments: [String], command: [String] = ["kiln"], extra: [(String, YAMLValue)] = [],
        serviceAccount: String? = nil
    ) -> YAMLValue {
        .map([
            ("apiVersion", .string("batch/v1")), ("kind", .string("Job")), ("metadata", metadata(jobName)),
            ("spec", .map(extra + [
                ("backoffLimit", .int(0)),
                ("template", podTemplate(command: command, arguments: arguments, serviceAccount: serviceAccount)),
            ])),
        ])
    }

    /// The Indexed Job. With faults (`appliesChaos`), each pod runs a shell that applies the Chaos Mesh Workflow when
    /// its index is `fault_shard` (a failed apply ends the pod with 69 before any load: a drill without its faults
    /// must not pass as one) and then execs the same `kiln run`.
    func shardsJob(appliesChaos: Bool = false) -> YAMLValue {
        let extra: [(String, YAMLValue)] = [
            ("completionMode", .string("Indexed")), ("completions", .int(shards)), ("parallelism", .int(shards)),
        ]
        guard appliesChaos else {
            return job(
                "\(name)-shards",
                arguments: [
                    "run", "\(Self.scenarioMount)/scenario.yaml", "--shards", String(shards), "--runs-directory", runRoot,
                    "--id", "shard-$(JOB_COMPLETION_INDEX)",
                ],
                extra: extra)
        }
        let script = """
            if [ "$JOB_COMPLETION_INDEX" = "\(faultShard)" ]; then \
            kubectl apply -f \(Self.scenarioMount)/\(Self.workflowKey) || exit 69; fi; \
            exec kiln run \(Self.scenarioMount)/scenario.yaml --shards \(shards) --runs-directory \(runRoot) \
            --id "shard-$JOB_COMPLETION_INDEX"
            """
        return job(
            "\(name)-shards", arguments: ["-c", script], command: ["/bin/sh"], extra: extra,
            serviceAccount: "\(name)-chaos")
    }

    func mergeJob() -> YAMLValue {
        let shardDirectories = (0..<shards).map { "\(runRoot)/shard-\($0)" }.joined(separator: " ")
        let merged = "\(runRoot)/merged"
        // kiln merge exits 3 for a drill until it is checked; anything above 3 is a refusal or an error.
        let script = """
            kiln merge \(shardDirectories) -o \(merged) --wait 86400 --scenario \(Self.scenarioMount)/scenario.yaml; \
            code=$?; [ "$code" -le 3 ] || exit "$code"; \
            kiln check \(merged); checked=$?; kiln report \(merged); exit "$checked"
            """
        return job("\(name)-merge", arguments: ["-c", script], command: ["/bin/sh"])
    }

    /// The Chaos Mesh Workflow of the scenario's fault plan (nil when nothing maps), and what it cannot map. Each
    /// planned instance is a Serial of a Suspend (`deadline`: its start offset; none at 0 s) and its chaos
    /// (`deadline`: its duration, whole seconds rounded up, at least 1), so the chaos object exists only in the
    /// fault's window; the instances run in Parallel.
    func chaosWorkflow() -> (text: String?, unmapped: [String]) {
        guard let faults else { return (nil, []) }
        let controller = ChaosMeshController(namespace: namespace)
        var branches: [String] = []
        var templates: [String] = []
        var unmapped: [String] = []
        // Template names must be unique in a Workflow (its webhook refuses duplicates): `a#1` and a fault named `a-1`
        // would both be `a-1`, so a taken name gets a numeric suffix.
        var taken: Set<String> = ["faults"]
        for instance in faults.plan(seed: seed) {
            let entry = instance.entry
            var label = String(Self.label(instance.name).prefix(50))
            let base = label
            var suffix = 2
            while !taken.isDisjoint(with: [label, "\(label)-wait", "\(label)-chaos"]) {
                label = "\(base)-\(suffix)"
                suffix += 1
            }
            taken.formUnion([label, "\(label)-wait", "\(label)-chaos"])
            guard let spec = Self.chaosSpec(entry),
                let manifest = try? controller.manifest(for: spec, name: label, durationSeconds: Self.wholeSeconds(entry.duration))
            else {
                unmapped.append(
                    "\(instance.name): \(entry.kind.rawValue) on \(entry.target) has no Chaos Mesh manifest here (\(entry.source))")
                continue
            }
            let lines = manifest.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            guard let specLine = lines.firstIndex(of: "spec:") else { continue }
            let kind = manifest.contains("kind: PodChaos") ? "PodChaos" : "NetworkChaos"
            let field = kind == "PodChaos" ? "podChaos" : "networkChaos"
            // The chaos's own spec, less its `duration` (a Workflow node lasts its `deadline`).
            let body = lines[(specLine + 1)...].filter { !$0.isEmpty && !$0.hasPrefix("  duration:") }
                .map { "    " + $0 }
            var children: [String] = []
            let start = Self.wholeSeconds(instance.start, roundUp: false)
            if start > 0 {
                templates += ["  - name: \(label)-wait", "    templateType: Suspend", "    deadline: \"\(start)s\""]
                children.append("\(label)-wait")
            }
            templates += [
                "  - name: \(label)-chaos", "    templateType: \(kind)",
                "    deadline: \"\(Self.wholeSeconds(entry.duration))s\"", "    \(field):",
            ] + body
            children.append("\(label)-chaos")
            templates += [
                "  - name: \(label)", "    templateType: Serial",
                "    children: [\(children.map { "\"\($0)\"" }.joined(separator: ", "))]",
            ]
            branches.append(label)
        }
        guard !branches.isEmpty else { return (nil, unmapped) }
        let text = [
            "apiVersion: chaos-mesh.org/v1alpha1",
            "kind: Workflow",
            "metadata:",
            "  name: \(name)-faults",
            "  namespace: \"\(namespace)\"",
            "  labels:",
            "    app.kubernetes.io/managed-by: kiln",
            "    app.kubernetes.io/instance: \"\(name)\"",
            "spec:",
            "  entry: faults",
            "  templates:",
            "  - name: faults",
            "    templateType: Parallel",
            "    children: [\(branches.map { "\"\($0)\"" }.joined(separator: ", "))]",
        ] + templates
        return (text.joined(separator: "\n") + "\n", unmapped)
    }

    /// The service-level fault of a scenario entry, when Chaos Mesh has one (kill, pause, restart, partitions).
    static func chaosSpec(_ entry: FaultScheduleSpec.Entry) -> FaultSpec? {
        switch entry.kind {
        case .kill: return .process(.kill, service: entry.target)
        case .pause: return .process(.pause, service: entry.target)
        case .restart: return .process(.restart, service: entry.target)
        case .partition:
            switch entry.hostFault {
            case nil where entry.shape == nil || entry.shape == "isolate": return .partition(.isolate(entry.target))
            case .partition(.isolate(let host?), _)?: return .partition(.isolate(host))
            case .partition(.sides(let sides), _)? where sides.count == 2: return .partition(.split(sides[0], sides[1]))
            case .partition(.oneWay(let from, let to), _)? where from.count == 1 && to.count == 1:
                return .partition(.oneWay(from: from[0], to: to[0]))
            default: return nil
            }
        default: return nil
        }
    }

    /// `duration` in whole seconds: rounded up (at least 1) for a chaos's length, down for a start offset.
    static func wholeSeconds(_ duration: Duration, roundUp: Bool = true) -> Int {
        let parts = duration.components
        guard roundUp else { return Int(parts.seconds) }
        return max(1, Int(parts.seconds) + (parts.attoseconds > 0 ? 1 : 0))
    }

    /// `text` as a DNS-1123 label (lower case, `-` for anything else, at most 63).
    public static func label(_ text: String) -> String {
        var result = String(text.lowercased().map { ("a"..."z").contains($0) || ("0"..."9").contains($0) ? $0 : "-" })
        while result.hasPrefix("-") { result.removeFirst() }
        result = String(result.prefix(63))
        while result.hasSuffix("-") { result.removeLast() }
        return result.isEmpty ? "kiln" : result
    }
}

/// A YAML value written in block style: strings double-quoted (JSON escapes, valid YAML) unless they are multi-line
/// text that a literal block keeps byte for byte.
indirect enum YAMLValue {
    case string(String)
    case int(Int)
    case bool(Bool)
    case list([YAMLValue])
    case map([(String, YAMLValue)])

    func text() -> String { lines(indent: "").joined(separator: "\n") + "\n" }

    /// A mapping key: plain when it cannot be read as anything but a string, else quoted.
    static func key(_ text: String) -> String {
        let reserved: Set<String> = ["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"]
        let plain = text.range(of: #"^[A-Za-z][A-Za-z0-9_./-]*$"#, options: .regularExpression) != nil
            && !reserved.contains(text.lowercased())
        return plain ? text : quoted(text)
    }

    static func quoted(_ text: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [text], options: [.withoutEscapingSlashes])
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }

    /// A literal block keeps the text exactly when it ends in one newline, has no line starting with a space first
    /// and no carriage returns or tabs at line starts.
    static func literal(_ text: String) -> Bool {
        text.hasSuffix("\n") && !text.hasSuffix("\n\n") && !text.hasPrefix(" ") && !text.hasPrefix("\n")
            && !text.contains("\r") && text.unicodeScalars.allSatisfy { $0 == "\n" || $0 == "\t" || $0.value >= 0x20 }
            && !text.split(separator: "\n", omittingEmptySubsequences: false).contains { $0.hasPrefix("\t") }
    }

    func lines(indent: String) -> [String] {
        switch self {
        case .map(let pairs):
            return pairs.flatMap { key, value -> [String] in
                let head = indent + Self.key(key) + ":"
                switch value {
                case .map(let inner) where !inner.isEmpty: return [head] + value.lines(indent: indent + "  ")
                case .list(let inner) where !inner.isEmpty: return [head] + value.lines(indent: indent + "  ")
                case .string(let text) where text.contains("\n") && Self.literal(text):
                    return [head + " |"] + text.dropLast().split(separator: "\n", omittingEmptySubsequences: false)
                        .map { $0.isEmpty ? "" : indent + "  " + $0 }
                default: return [head + " " + value.scalar]
                }
            }
        case .list(let items):
            return items.flatMap { item -> [String] in
                switch item {
                case .map, .list:
                    let inner = item.lines(indent: indent + "  ")
                    guard let first = inner.first else { return [indent + "- " + item.scalar] }
                    return [indent + "- " + first.dropFirst(indent.count + 2)] + inner.dropFirst()
                default: return [indent + "- " + item.scalar]
                }
            }
        default:
            return [indent + scalar]
        }
    }

    var scalar: String {
        switch self {
        case .string(let text): Self.quoted(text)
        case .int(let value): String(value)
        case .bool(let value): value ? "true" : "false"
        case .list(let items) where items.isEmpty: "[]"
        case .map(let pairs) where pairs.isEmpty: "{}"
        default: ""
        }
    }
}

/// The scenario as the pods run it: `stack:` → `stack.yaml`, `dataset.spec:` → `dataset.yaml` (the ConfigMap's
/// neighbouring keys), and the fault blocks (`faults:`, `proxy:`, `chaos:`, `heal_wait:`) removed — on Kubernetes faults are Chaos Mesh's.
public enum ScenarioForPods {
    public static func rewrite(_ text: String) -> (text: String, stackPath: String?) {
        var output: [String] = []
        var stackPath: String?
        var block: String?
        var skipping = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            let topLevel = !line.isEmpty && !line.hasPrefix(" ") && !line.hasPrefix("#") && !line.hasPrefix("-")
            if topLevel {
                block = line.split(separator: ":", maxSplits: 1).first.map(String.init)
                skipping = ["faults", "proxy", "chaos", "heal_wait"].contains(block ?? "")
                if skipping { continue }
                if block == "stack", let value = line.split(separator: ":", maxSplits: 1).last {
                    let path = value.split(separator: "#").first?.trimmingCharacters(in: .whitespaces) ?? ""
                    if !path.isEmpty, !path.hasPrefix("{") {
                        stackPath = path
                        output.append("stack: stack.yaml")
                        continue
                    }
                }
                if block == "dataset", line.contains("{") {
                    // A flow mapping: `dataset: {spec: PATH, seed: 1}`.
                    output.append(
                        line.replacingOccurrences(
                            of: #"spec:\s*[^,}]+"#, with: "spec: dataset.yaml", options: .regularExpression))
                    continue
                }
            } else if skipping {
                continue
            } else if block == "dataset", line.trimmingCharacters(in: .whitespaces).hasPrefix("spec:") {
                let indent = line.prefix { $0 == " " }
                output.append("\(indent)spec: dataset.yaml")
                continue
            }
            output.append(line)
        }
        return (output.joined(separator: "\n"), stackPath)
    }

    /// Loads the rewritten scenario from a scratch directory holding the three ConfigMap files.
    public static func verify(scenario: String, dataset: String, stack: String) throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-k8s-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        try Data(scenario.utf8).write(to: scratch.appendingPathComponent("scenario.yaml"))
        try Data(dataset.utf8).write(to: scratch.appendingPathComponent("dataset.yaml"))
        try Data(stack.utf8).write(to: scratch.appendingPathComponent("stack.yaml"))
        let loaded: LoadScenario
        do {
            loaded = try LoadScenario.load(
                contentsOf: scratch.appendingPathComponent("scenario.yaml"), knownOperations: LoadRun.knownOperations())
        } catch {
            throw Failure(code: .invalidInput, message: "the scenario as the pods would run it does not load: \(error)")
        }
        // Every file it names must be one of the ConfigMap's (a path of this machine would not exist in the pod).
        guard loaded.dataset.spec.standardizedFileURL.path
            == scratch.appendingPathComponent("dataset.yaml").standardizedFileURL.path
        else {
            throw Failure(
                code: .invalidInput,
                message: "the scenario's dataset.spec could not be pointed at the ConfigMap's dataset.yaml (write it as "
                    + "`spec: PATH` on its own line or in `dataset: {spec: PATH}`)")
        }
    }
}
