import ArgumentParser
import Foundation
import KilnLoad
import KilnScenario

struct K8sCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "k8s",
        abstract: "Write the Kubernetes manifests of a sharded run: ConfigMap, runs volume, setup Job, Indexed Job of N shards, merge Job, Chaos Mesh faults.",
        discussion: """
            Apply them in order (README.md, "Running on Kubernetes"): kubectl apply -f DIR/00-configmap.yaml -f
            DIR/01-runs-pvc.yaml -f DIR/02-setup-job.yaml; kubectl wait --for=condition=complete job/NAME-setup;
            kubectl apply -f DIR/10-shards-job.yaml -f DIR/20-merge-job.yaml. The merge Job waits for every shard,
            merges them exactly (kiln merge), checks and reports the merged run under /kiln/runs/NAME/merged.
            Exit codes: 0 written; 64 invalid scenario, stack or option.
            """
    )

    @Argument(help: "Scenario file.")
    var scenario: String

    @Option(help: "Number of shards (pods of the Indexed Job), 1...1000.")
    var shards: Int

    @Option(help: "Container image holding the kiln binary on its PATH.")
    var image = "ghcr.io/kiln/kiln:latest"

    @Option(name: .shortAndLong, help: "Directory to write the manifests to (default: k8s/<scenario name>).")
    var output: String?

    @Option(help: "Kubernetes namespace of the objects.")
    var namespace = "kiln"

    @Option(help: "Stack file naming the stores as the pods reach them (default: the scenario's `stack:` file).")
    var stack: String?

    @Option(help: "Size of the runs volume (ReadWriteMany).")
    var storage = "10Gi"

    func run() throws {
        try exiting {
            guard (1...1000).contains(shards) else {
                throw Failure(code: .invalidInput, message: "--shards: expected 1...1000, found \(shards)")
            }
            guard KubernetesManifests.label(namespace) == namespace else {
                throw Failure(code: .invalidInput, message: "--namespace: '\(namespace.prefix(64))' is not a DNS-1123 label")
            }
            guard storage.range(of: #"^[0-9]+(Ki|Mi|Gi|Ti)$"#, options: .regularExpression) != nil else {
                throw Failure(code: .invalidInput, message: "--storage: expected a quantity such as 10Gi, found '\(storage.prefix(40))'")
            }
            guard !image.isEmpty, image.count <= 512, !image.contains(where: { $0.isWhitespace }) else {
                throw Failure(code: .invalidInput, message: "--image: expected an image reference without spaces")
            }
            let url = URL(fileURLWithPath: scenario)
            let loaded = try LoadScenario.load(contentsOf: url, knownOperations: LoadRun.knownOperations(),
                knownSinks: LoadRun.knownSinks())
            if let refusal = ShardSlice.refusal(
                loaded, count: shards, knownWrites: Set(LoadRun.knownOperations().filter { LoadRun.isWrite($0) }))
            {
                throw Failure(code: .invalidInput, message: "\(url.path): \(refusal)")
            }
            if loaded.pipeline != nil {
                throw Failure(code: .invalidInput, message: "\(url.path): pipeline: a scenario with a reference pipeline cannot be sharded")
            }
            let text = try String(contentsOf: url, encoding: .utf8)
            let rewritten = ScenarioForPods.rewrite(text)
            let stackURL: URL
            if let stack {
                stackURL = URL(fileURLWithPath: stack)
            } else if let path = rewritten.stackPath {
                stackURL = URL(fileURLWithPath: path, relativeTo: url.deletingLastPathComponent()).standardizedFileURL
            } else {
                throw Failure(
                    code: .invalidInput,
                    message: "\(url.path): stack: give --stack FILE, the stack as the pods reach it (the scenario names no stack file)")
            }
            guard let stackText = try? String(contentsOf: stackURL, encoding: .utf8) else {
                throw Failure(code: .invalidInput, message: "--stack: cannot read \(stackURL.path)")
            }
            let datasetText = try String(contentsOf: loaded.dataset.spec, encoding: .utf8)
            let name = KubernetesManifests.label("kiln-" + loaded.name)
            let manifests = KubernetesManifests(
                name: String(name.prefix(40)), namespace: namespace, image: image, shards: shards,
                scenarioText: rewritten.text, datasetText: datasetText, stackText: stackText, faults: loaded.faults,
                storage: storage)
            // The pods' scenario must load exactly as written into the ConfigMap.
            try ScenarioForPods.verify(scenario: rewritten.text, dataset: datasetText, stack: stackText)
            let directory = URL(fileURLWithPath: output ?? "k8s/\(loaded.name)")
            for (path, body) in try manifests.files() {
                let file = directory.appendingPathComponent(path)
                try FileManager.default.createDirectory(
                    at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(body.utf8).write(to: file)
                print(file.path)
            }
            return .ok
        }
    }
}

/// The scenario as the pods run it: `stack:` → `stack.yaml`, `dataset.spec:` → `dataset.yaml` (the ConfigMap's
/// neighbouring keys), and the fault blocks (`faults:`, `proxy:`, `chaos:`, `heal_wait:`) removed — on Kubernetes faults are Chaos Mesh's.
enum ScenarioForPods {
    static func rewrite(_ text: String) -> (text: String, stackPath: String?) {
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
    static func verify(scenario: String, dataset: String, stack: String) throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-k8s-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        try Data(scenario.utf8).write(to: scratch.appendingPathComponent("scenario.yaml"))
        try Data(dataset.utf8).write(to: scratch.appendingPathComponent("dataset.yaml"))
        try Data(stack.utf8).write(to: scratch.appendingPathComponent("stack.yaml"))
        let loaded: LoadScenario
        do {
            loaded = try LoadScenario.load(
                contentsOf: scratch.appendingPathComponent("scenario.yaml"), knownOperations: LoadRun.knownOperations(),
                knownSinks: LoadRun.knownSinks())
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
