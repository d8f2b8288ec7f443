import Foundation
import KilnCore
import KilnRunner
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
        // With faults the pod runs a shell (the fault shard applies the Chaos Mesh Workflow first), which expands the
        // index itself.
        #expect(jobText.contains("--shards 5") && jobText.contains(#"--id \"shard-$JOB_COMPLETION_INDEX\""#), "\(jobText)")
        #expect(jobText.contains("registry.example/kiln:1.2") && jobText.contains("namespace: \"load-test\""))

        // The ConfigMap's scenario has no faults (Chaos Mesh carries them) and points at its neighbours.
        let configMap = try #require(try Yams.load(yaml: String(contentsOf: builtIn[0], encoding: .utf8)) as? [String: Any])
        let data = try #require(configMap["data"] as? [String: String])
        #expect(Set(data.keys) == ["scenario.yaml", "dataset.yaml", "stack.yaml", "chaos-workflow.yaml"])
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

        // Chaos Mesh carries the faults: one Workflow, each chaos alive only in its fault's window (a Suspend for
        // its `at`, the chaos for its `duration`); the failover does not map and is listed, never dropped silently.
        let chaos = directory.appendingPathComponent("chaos")
        let names = try FileManager.default.contentsOfDirectory(atPath: chaos.path).sorted()
        #expect(names == ["UNMAPPED.txt", "workflow.yaml"])
        let workflowText = try String(contentsOf: chaos.appendingPathComponent("workflow.yaml"), encoding: .utf8)
        #expect(data["chaos-workflow.yaml"] == workflowText, "the pod applies the ConfigMap's copy of chaos/workflow.yaml")
        let workflow = try #require(try Yams.load(yaml: workflowText) as? [String: Any])
        #expect(workflow["apiVersion"] as? String == "chaos-mesh.org/v1alpha1" && workflow["kind"] as? String == "Workflow")
        let workflowSpec = try #require(workflow["spec"] as? [String: Any])
        let templates = try #require(workflowSpec["templates"] as? [[String: Any]])
        let byName = Dictionary(uniqueKeysWithValues: templates.compactMap { t in (t["name"] as? String).map { ($0, t) } })
        #expect(workflowSpec["entry"] as? String == "faults")
        #expect(byName["faults"]?["templateType"] as? String == "Parallel")
        #expect(Set(byName["faults"]?["children"] as? [String] ?? []) == ["kill-redis", "pause-pg", "isolate-pg"])
        for (fault, at, duration, kind, action) in [
            ("kill-redis", "5s", "5s", "PodChaos", "pod-kill"), ("pause-pg", "12s", "3s", "PodChaos", "pod-failure"),
            ("isolate-pg", "20s", "4s", "NetworkChaos", "partition"),
        ] {
            #expect(byName[fault]?["templateType"] as? String == "Serial")
            #expect(byName[fault]?["children"] as? [String] == ["\(fault)-wait", "\(fault)-chaos"])
            #expect(byName["\(fault)-wait"]?["templateType"] as? String == "Suspend")
            #expect(byName["\(fault)-wait"]?["deadline"] as? String == at, "\(fault) starts at its offset")
            let node = try #require(byName["\(fault)-chaos"])
            #expect(node["templateType"] as? String == kind && node["deadline"] as? String == duration, "\(node)")
            let body = try #require(node[kind == "PodChaos" ? "podChaos" : "networkChaos"] as? [String: Any])
            #expect(body["action"] as? String == action && body["duration"] == nil, "\(body)")
            #expect((body["selector"] as? [String: Any])?["namespaces"] as? [String] == ["load-test"])
        }
        let unmapped = try String(contentsOf: chaos.appendingPathComponent("UNMAPPED.txt"), encoding: .utf8)
        #expect(unmapped.contains("pg-failover"))

        // Only the fault shard's pod (fault_shard: 1) applies the Workflow, before its kiln run, as the ServiceAccount
        // whose Role may create Workflows and nothing else.
        let podSpec = try #require(((spec["template"] as? [String: Any])?["spec"]) as? [String: Any])
        #expect(podSpec["serviceAccountName"] as? String == "kiln-k8s-drill-chaos")
        let script = try #require(ShardedRunTests.pod(builtIn[3]).arguments.last)
        #expect(script.contains(#"if [ "$JOB_COMPLETION_INDEX" = "1" ]; then kubectl apply -f /kiln/scenario/chaos-workflow.yaml || exit 69; fi"#), "\(script)")
        #expect(script.contains(#"exec kiln run /kiln/scenario/scenario.yaml --shards 5"#), "\(script)")
        let access = ["03-chaos-rbac-serviceaccount.yaml", "03-chaos-rbac-role.yaml", "03-chaos-rbac-rolebinding.yaml"]
            .map { directory.appendingPathComponent($0) }
        let accessValidation = try Self.validate(access)
        #expect(accessValidation.status == 0, "\(accessValidation.output)")
        let role = try String(contentsOf: access[1], encoding: .utf8)
        #expect(role.contains("\"chaos-mesh.org\"") && role.contains("\"workflows\"") && !role.contains("\"delete\""))
    }

    /// Template names stay unique when fault names collide after DNS-1123 labelling (`a#2` of a repeated fault and a
    /// fault named `a-2`; `faults`, the entry's own name).
    @Test func workflowTemplateNamesAreUniqueDNSLabels() throws {
        let text = Self.drill.replacingOccurrences(
            of: "  - {name: kill-redis, kind: kill, target: redis-primary, at: 5s, duration: 5s}",
            with: """
                  - {name: a, kind: kill, target: redis-primary, at: 5s, duration: 1s, every: 2s, times: 2}
                  - {name: a-2, kind: kill, target: redis-primary, at: 9s, duration: 1s}
                  - {name: faults, kind: kill, target: redis-primary, at: 11s, duration: 1s}
                  - {name: A_2-wait, kind: kill, target: redis-primary, at: 13s, duration: 1s}
                """)
        let scenario = try CommandLineTests.temporaryFile("k8s-names.yaml", text)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("k8s-names"))
        let result = try CommandLineTests.kiln(["k8s", scenario.path, "--shards", "2", "-o", directory.path])
        try #require(result.status == 0, "\(result.output)")
        let workflow = try #require(
            try Yams.load(yaml: String(contentsOf: directory.appendingPathComponent("chaos/workflow.yaml"), encoding: .utf8))
                as? [String: Any])
        let templates = try #require((workflow["spec"] as? [String: Any])?["templates"] as? [[String: Any]])
        let names = templates.compactMap { $0["name"] as? String }
        #expect(names.count == templates.count && Set(names).count == names.count, "\(names)")
        #expect(names.allSatisfy { KubernetesManifests.label($0) == $0 }, "\(names)")
        let entry = try #require(templates.first { $0["name"] as? String == "faults" })
        #expect((entry["children"] as? [String])?.count == 7, "a#1, a#2, a-2, faults, A_2-wait, pause-pg, isolate-pg")
    }

    /// A scenario without faults: no Workflow, no ServiceAccount, every pod runs kiln itself.
    @Test func aScenarioWithoutFaultsHasNoChaosObjects() throws {
        let text = Self.drill.components(separatedBy: "faults:")[0] + "phases:" + Self.drill.components(separatedBy: "phases:")[1]
        let scenario = try CommandLineTests.temporaryFile("k8s-nofaults.yaml", text.replacingOccurrences(of: "heal_wait: 2s\n", with: ""))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("k8s-nofaults"))
        let result = try CommandLineTests.kiln(["k8s", scenario.path, "--shards", "2", "-o", directory.path])
        try #require(result.status == 0, "\(result.output)")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(names == ["00-configmap.yaml", "01-runs-pvc.yaml", "02-setup-job.yaml", "10-shards-job.yaml", "20-merge-job.yaml"])
        let pod = try ShardedRunTests.pod(directory.appendingPathComponent("10-shards-job.yaml"))
        #expect(pod.command == ["kiln"])
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
            (["--shards", "1"], "fault_shard: 1 is not a shard of 1"),
        ] {
            let result = try CommandLineTests.kiln(["k8s", scenario.path, "-o", "/tmp/shard-k8s-never"] + arguments)
            #expect(result.status == KilnExitCode.invalidInput.rawValue, "\(arguments): \(result.output)")
            #expect(result.output.contains(expected), "\(arguments): \(result.output)")
        }
        #expect(!FileManager.default.fileExists(atPath: "/tmp/shard-k8s-never"))
    }
}
