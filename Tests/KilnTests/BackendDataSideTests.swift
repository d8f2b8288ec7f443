import KilnBackend
import KilnBackends
import KilnCheck
import KilnCore
import KilnPipeline
import KilnReport
import KilnScenario
import Testing

/// The data side of the backends (scanners, sinks, drill store names) comes from `Backends.all`: no registry lists a
/// store by hand. Pure: no server.
@Suite("backends' data side: scanners, sinks and drill stores derived from the backend list")
struct BackendDataSideTests {
    @Test func scannersComeFromTheDescriptors() {
        #expect(ScannerRegistry.drivers.map(\.place) == Backends.all.flatMap(\.scanners).map(\.place))
        #expect(ScannerRegistry.featureDrivers.map(\.store) == ["redis"])
        for backend in Backends.all {
            #expect(backend.scanners.map(\.place) == backend.places, "\(backend.name)")
        }
    }

    @Test func sinksComeFromTheDescriptors() {
        #expect(Pipeline.sinkNames == ["postgres", "redis", "falkordb", "clickhouse", "redis-cluster"])
        #expect(Pipeline.knownSinks.filter(\.isDefault).map(\.sink) == [.postgres, .redis, .falkordb, .clickhouse])
        #expect(PipelinePlaces.places(of: PipelineSpec.Sink(rawValue: "redis-cluster")) == [.redisClusterTxnKeys])
        #expect(PipelinePlaces.places(of: .postgres) == [.postgresRows])
        #expect(PipelinePlaces.places(of: .redis) == [.redisFeatures, .redisScores])
        #expect(PipelinePlaces.places(of: .falkordb) == [.falkordbPaidEdges])
        #expect(PipelinePlaces.places(of: .clickhouse) == [.clickhouseRows])
        #expect(PipelinePlaces.places(of: PipelineSpec.Sink(rawValue: "kafka")).isEmpty)
        #expect(Pipeline.driver(for: PipelineSpec.Sink(rawValue: "kafka")) == nil)
    }

    @Test func drillStoresComeFromTheBackendNames() {
        func fault(_ target: String) -> RunReport.Fault {
            RunReport.Fault(name: "f", kind: "pause", target: target, verified: .yes)
        }
        #expect(DrillMetrics.store(of: fault("redis-primary")) == "redis")
        #expect(DrillMetrics.store(of: fault("postgres-primary")) == "postgres")
        #expect(DrillMetrics.store(of: fault("clickhouse")) == "clickhouse")
        #expect(DrillMetrics.store(of: fault("sentinel-1")) == "redis")
        #expect(DrillMetrics.store(of: fault("sink:redis")) == nil)
        #expect(DrillMetrics.store(of: fault("mainframe")) == nil)
    }
}
