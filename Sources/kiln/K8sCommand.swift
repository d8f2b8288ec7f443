import ArgumentParser
import Foundation
import KilnRunner
import KilnLoad
import KilnScenario

struct K8sCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "k8s",
        abstract: "Write the Kubernetes manifests of a sharded run: ConfigMap, runs volume, setup Job, Indexed Job of N shards, merge Job, Chaos Mesh faults.",
        discussion: """
            Apply them in order (README.md, "Running on Kubernetes"): kubectl apply -f DIR/00-configmap.yaml -f
            DIR/01-runs-pvc.yaml -f DIR/02-setup-job.yaml; kubectl wait --for=condition=complete job/NAME-setup;
            with faults, kubectl apply -f DIR/03-chaos-rbac-*.yaml; kubectl apply -f DIR/10-shards-job.yaml -f
            DIR/20-merge-job.yaml. The merge Job waits for every shard, merges them exactly (kiln merge), checks and
            reports the merged run under /kiln/runs/NAME/merged. Faults are Chaos Mesh's: one Workflow (each chaos
            only in its fault's window) that the pod of the scenario's fault_shard applies before its kiln run.
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
            let loaded = try LoadScenario.load(contentsOf: url, knownOperations: LoadRun.knownOperations())
            if let refusal = ShardSlice.refusal(
                loaded, count: shards, knownWrites: Set(LoadRun.knownOperations().filter { LoadRun.isWrite($0) }))
            {
                throw Failure(code: .invalidInput, message: "\(url.path): \(refusal)")
            }
            if loaded.faults != nil, let refusal = ShardSlice.faultShardRefusal(loaded, count: shards) {
                throw Failure(code: .invalidInput, message: refusal)
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
                storage: storage, faultShard: loaded.faultShard, seed: loaded.dataset.seed)
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
