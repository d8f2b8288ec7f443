import Foundation
import KilnCore
import Testing
import Yams

/// `kiln k8s`: every object it writes is a valid Kubernetes object by Kubernetes' own OpenAPI schemas
/// (`kubernetes-validate --strict`, offline, installed by scripts/bootstrap), and the validator is proven to catch a
/// field Kiln could get wrong. The Chaos Mesh objects are checked field by field (their CRD schema is not bundled).
@Suite("kiln k8s manifests")
struct K8sManifestTests {
    /// `kubernetes-validate` from the project venv (KILN_KUBERNETES_VALIDATE overrides it).
    static var validator: String {
        ProcessInfo.processInfo.environment["KILN_KUBERNETES_VALIDATE"]
            ?? TestStack.paths.home.appendingPathComponent(".kiln/venv/bin/kubernetes-validate").path
    }

    static func validate(_ files: [URL]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: validator)
        process.arguments = ["--strict"] + files.map(\.path)
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static let drill = """
        name: k8s-drill
        stack: \(TestStack.paths.embeddedStackFile.path)
        dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 10K}
        namespace: k8s_drill
        fault_shard: 1
        faults:
          - {name: kill-redis, kind: kill, target: redis-primary, at: 5s, duration: 5s}
          - {name: pause-pg, kind: pause, target: postgres-primary, at: 12s, duration: 3s}
          - {name: isolate-pg, kind: partition, target: postgres-primary, at: 20s, duration: 4s}
          - {name: pg-failover, kind: pg-failover, target: postgres, at: 30s, duration: 5s}
        heal_wait: 2s
        phases:
          - name: open
            executor: constant-arrival-rate
            rate: 50
            duration: 40s
            mix: {redis.feature-read: 1, postgres.point-read: 1}
        """

    @Test func everyBuiltInObjectIsValidAndAPlantedDefectIsCaught() throws {
        let scenario = try CommandLineTests.temporaryFile("k8s-drill.yaml", Self.drill)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("k8s"))
        let result = try CommandLineTests.kiln([
            "k8s", scenario.path, "--shards", "5", "-o", directory.path, "--image", "registry.example/kiln:1.2",
            "--namespace", "load-test",
        ])
        try #require(result.status == 0, "\(result.output)")
        let builtIn = ["00-configmap.yaml", "01-runs-pvc.yaml", "02-setup-job.yaml", "10-shards-job.yaml", "20-merge-job.yaml"]
            .map { directory.appendingPathComponent($0) }
        let validation = try Self.validate(builtIn)
        #expect(validation.status == 0, "\(validation.output)")
        #expect(validation.output.components(separatedBy: "passed for resource").count - 1 == builtIn.count, "\(validation.output)")

        // The Indexed Job: one pod per shard, the index from the Job controller.
        let job = try #require(try Yams.load(yaml: String(contentsOf: builtIn[3], encoding: .utf8)) as? [String: Any])
        let spec = try #require(job["spec"] as? [String: Any])
        #expect(spec["completionMode"] as? String == "Indexed")
        #expect(spec["completions"] as? Int == 5 && spec["parallelism"] as? Int == 5)
        #expect(spec["backoffLimit"] as? Int == 0)
        let jobText = try String(contentsOf: builtIn[3], encoding: .utf8)
        #expect(jobText.contains(#""--shards""#) && jobText.contains(#""shard-$(JOB_COMPLETION_INDEX)""#))
        #expect(jobText.contains("registry.example/kiln:1.2") && jobText.contains("namespace: \"load-test\""))

        // The ConfigMap's scenario has no faults (Chaos Mesh carries them) and points at its neighbours.
        let configMap = try #require(try Yams.load(yaml: String(contentsOf: builtIn[0], encoding: .utf8)) as? [String: Any])
        let data = try #require(configMap["data"] as? [String: String])
        #expect(Set(data.keys) == ["scenario.yaml", "dataset.yaml", "stack.yaml"])
        let podScenario = try #require(data["scenario.yaml"])
        #expect(podScenario.contains("stack: stack.yaml") && podScenario.contains("spec: dataset.yaml"))
        #expect(!podScenario.contains("faults:") && !podScenario.contains("heal_wait"))
        #expect(data["dataset.yaml"] == (try String(contentsOf: Fixtures.specURL, encoding: .utf8)))

        // Planted defects the validator must find: a misspelt field, a wrong type.
        let misspelt = directory.appendingPathComponent("bad-field.yaml")
        try jobText.replacingOccurrences(of: "completionMode", with: "completionsMode").write(
            to: misspelt, atomically: true, encoding: .utf8)
        let wrongType = directory.appendingPathComponent("bad-type.yaml")
        try jobText.replacingOccurrences(of: "\"parallelism\": 5", with: "\"parallelism\": \"five\"")
            .replacingOccurrences(of: "parallelism: 5", with: "parallelism: \"five\"")
            .write(to: wrongType, atomically: true, encoding: .utf8)
        for file in [misspelt, wrongType] {
            let caught = try Self.validate([file])
            #expect(caught.status != 0, "\(file.lastPathComponent) passed: \(caught.output)")
        }

        // Chaos Mesh: kill, pause and isolate map; the failover does not and is listed, never dropped silently.
        let chaos = directory.appendingPathComponent("chaos")
        let names = try FileManager.default.contentsOfDirectory(atPath: chaos.path).sorted()
        #expect(names == ["UNMAPPED.txt", "isolate-pg.yaml", "kill-redis.yaml", "pause-pg.yaml"])
        let kill = try #require(
            try Yams.load(yaml: String(contentsOf: chaos.appendingPathComponent("kill-redis.yaml"), encoding: .utf8))
                as? [String: Any])
        #expect(kill["apiVersion"] as? String == "chaos-mesh.org/v1alpha1" && kill["kind"] as? String == "PodChaos")
        #expect((kill["spec"] as? [String: Any])?["action"] as? String == "pod-kill")
        let isolate = try String(contentsOf: chaos.appendingPathComponent("isolate-pg.yaml"), encoding: .utf8)
        #expect(isolate.contains("kind: NetworkChaos") && isolate.contains("action: partition"))
        let unmapped = try String(contentsOf: chaos.appendingPathComponent("UNMAPPED.txt"), encoding: .utf8)
        #expect(unmapped.contains("pg-failover"))
    }

    /// The ConfigMap carries the files byte for byte: trailing spaces, tabs, non-ASCII, no final newline, a leading
    /// space — whatever the YAML writer picks (literal block or quoted string), Kubernetes' YAML parser gets them back.
    @Test func configMapFilesRoundTripByteForByte() throws {
        let odd = "# trailing spaces   \n#\ttab inside\n# ünïcödé — “quotes” and 'apostrophes': {not: yaml}\n"
            + Self.drill.replacingOccurrences(of: "faults:", with: "faults:   ")
        for text in [odd, odd + "\n", " " + odd, odd + "# no final newline"] {
            let scenario = try CommandLineTests.temporaryFile("odd.yaml", text)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("k8s-odd"))
            let result = try CommandLineTests.kiln(["k8s", scenario.path, "--shards", "2", "-o", directory.path])
            try #require(result.status == 0, "\(result.output)")
            let yaml = try String(contentsOf: directory.appendingPathComponent("00-configmap.yaml"), encoding: .utf8)
            let configMap = try #require(try Yams.load(yaml: yaml) as? [String: Any])
            let data = try #require(configMap["data"] as? [String: String])
            let podScenario = try #require(data["scenario.yaml"])
            #expect(podScenario.hasPrefix(String(text.prefix(20))), "\(podScenario.prefix(80))")
            #expect(podScenario.contains("# ünïcödé — “quotes” and 'apostrophes': {not: yaml}\n"))
            #expect(podScenario.contains("#\ttab inside\n") && podScenario.contains("# trailing spaces   \n"))
            // Written back out, the pods' files load as a scenario naming only its neighbours.
            let files = directory.appendingPathComponent("files")
            try FileManager.default.createDirectory(at: files, withIntermediateDirectories: true)
            for (key, value) in data { try Data(value.utf8).write(to: files.appendingPathComponent(key)) }
            let validate = try CommandLineTests.kiln(["validate", files.appendingPathComponent("scenario.yaml").path])
            #expect(validate.status == 0, "\(validate.output)")
        }
    }

    @Test func invalidOptionsAreRefusedWithExit64() throws {
        let scenario = try CommandLineTests.temporaryFile("k8s-drill.yaml", Self.drill)
        for (arguments, expected) in [
            (["--shards", "0"], "--shards"), (["--shards", "-3"], "--shards"), (["--shards", "1001"], "--shards"),
            (["--shards", "2", "--namespace", "Bad_NS"], "--namespace"), (["--shards", "2", "--storage", "lots"], "--storage"),
            (["--shards", "2", "--image", "a b"], "--image"),
        ] {
            let result = try CommandLineTests.kiln(["k8s", scenario.path, "-o", "/tmp/shard-k8s-never"] + arguments)
            #expect(result.status == KilnExitCode.invalidInput.rawValue, "\(arguments): \(result.output)")
            #expect(result.output.contains(expected), "\(arguments): \(result.output)")
        }
        #expect(!FileManager.default.fileExists(atPath: "/tmp/shard-k8s-never"))
    }
}
