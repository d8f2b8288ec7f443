import Foundation
import KilnCore
import KilnLoad
import KilnRunner
import KilnScenario
import KilnTestSupport
import Testing

/// `pipeline_depth:` of an open-model phase: malformed values are refused at the field (exit 64), and only
/// operations whose client pipelines may be in a pipelined phase's mix.
@Suite("pipeline_depth")
struct PipelineDepthTests {
    static func scenario(_ phase: String) throws -> URL {
        try TestStack.temporaryFile(
            "pipelined.yaml",
            """
            name: pipelined
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), rows: 10K}
            phases:
              - {name: load, executor: bulk, rows: 1K, stores: [postgres]}
            \(phase)
            """)
    }

    /// The error loading `file` gives, nil when it loads.
    static func refusal(_ file: URL) -> SpecError? {
        do {
            _ = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [
        ("pipeline_depth: 0", "phases[1].pipeline_depth"),
        ("pipeline_depth: 65", "phases[1].pipeline_depth"),
        ("pipeline_depth: -3", "phases[1].pipeline_depth"),
        ("pipeline_depth: 99999999999999999999999", "phases[1].pipeline_depth"),
        ("pipeline_depth: deep", "phases[1].pipeline_depth"),
        ("pipeline_depth: 2.5", "phases[1].pipeline_depth"),
    ])
    func malformedDepthsAreRefusedAtTheField(field: String, path: String) throws {
        let file = try Self.scenario(
            "  - {name: open, executor: constant-arrival-rate, rate: 100, duration: 1s, \(field), mix: {postgres.point-read: 1}}")
        let error = try #require(Self.refusal(file), "accepted: \(field)")
        #expect(error.field == path, "\(error)")
        #expect(error.line == 6, "\(error)")
        #expect(error.column > 1, "\(error)")
    }

    @Test func aClosedOrBulkPhaseCannotPipeline() throws {
        for phase in [
            "  - {name: c, executor: closed, duration: 1s, pipeline_depth: 4, mix: {postgres.point-read: 1}}",
            "  - {name: b, executor: bulk, rows: 1K, stores: [postgres], pipeline_depth: 4}",
        ] {
            let error = try #require(Self.refusal(try Self.scenario(phase)), "accepted: \(phase)")
            #expect(error.field == "phases[1].pipeline_depth", "\(error)")
            #expect(error.message.contains("open-model"), "\(error)")
        }
    }

    @Test func anOperationWhoseClientDoesNotPipelineIsRefusedAtTheField() throws {
        let file = try Self.scenario(
            "  - {name: open, executor: constant-arrival-rate, rate: 100, duration: 1s, pipeline_depth: 8, mix: {postgres.point-read: 1, redis.feature-read: 1}}")
        let scenario = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
        #expect(scenario.phases[1].pipelineDepth == 8)
        let problem = try #require(LoadRun.pipelineProblem(scenario))
        #expect(problem.field == "phases.pipeline_depth")
        #expect(problem.line == 6 && problem.column > 1, "\(problem)")
        #expect(problem.message.contains("redis.feature-read"), "\(problem)")
        #expect(problem.message.contains("postgres.point-read"), "names what does pipeline: \(problem)")
    }

    @Test func pointReadsPipelineAndTheDefaultIsOneOpPerConnection() throws {
        let pipelined = try LoadScenario.load(
            contentsOf: try Self.scenario(
                "  - {name: open, executor: constant-arrival-rate, rate: 100, duration: 1s, pipeline_depth: 64, mix: {postgres.point-read: 1}}"),
            knownOperations: LoadRun.knownOperations())
        #expect(pipelined.phases[1].pipelineDepth == 64)
        #expect(LoadRun.pipelineProblem(pipelined) == nil)
        let plain = try LoadScenario.load(
            contentsOf: try Self.scenario(
                "  - {name: open, executor: constant-arrival-rate, rate: 100, duration: 1s, mix: {redis.feature-read: 1}}"),
            knownOperations: LoadRun.knownOperations())
        #expect(plain.phases[1].pipelineDepth == 1)
        #expect(LoadRun.pipelineProblem(plain) == nil)
    }

    @Test(arguments: ["pipeline=0", "pipeline=1", "pipeline=65", "pipeline=", "pipeline=x", "window=-1", "window=2000000", "fast", "threads=2"])
    func malformedBenchModesAreRefused(text: String) {
        #expect(throws: Failure.self) { try CapacityEngineMode(parsing: text) }
    }

    @Test func benchModesSayTheirEnvironmentAndDepth() throws {
        #expect(try CapacityEngineMode(parsing: "pipeline=8") == .pipeline(depth: 8))
        #expect(try CapacityEngineMode(parsing: "pipeline=8").pipelineDepth == 8)
        #expect(try CapacityEngineMode(parsing: "pipeline=8").environment.isEmpty)
        #expect(try CapacityEngineMode(parsing: "threads").environment == ["KILN_OPEN_MULTIPLEX": "0"])
        #expect(try CapacityEngineMode(parsing: "window=300").environment == ["KILN_OPEN_BATCH_WINDOW_US": "300"])
        #expect(try CapacityEngineMode(parsing: "multiplexed").pipelineDepth == 1)
    }
}
