import KilnCheck
import KilnCore
import KilnStores
import Testing

/// Operations are typed per store: names, kinds and summaries come from the enum, the places the reconcile checker
/// reads are built from the same cases, and a descriptor can only run on its own store's client.
@Suite("Typed store operations")
struct StoreOperationTests {
    /// The names scenarios use today; a renamed case or a changed raw value would break every scenario file.
    @Test func registryNamesAreTheScenarioNamesOfBefore() {
        let names = Set(StoreRegistry.drivers.flatMap { driver in driver.operations.map(\.id) })
        let expected: Set<String> = [
            "postgres.bulk", "postgres.insert", "postgres.point-read", "postgres.user-recent", "postgres.merchant-hourly",
            "timescale.bulk", "timescale.insert-point", "timescale.minute-aggregate",
            "redis.bulk", "redis.set", "redis.feature-update", "redis.feature-read", "redis.score-incr", "redis.top-k",
            "redis.stream-add", "redis.stream-consume", "redis.bulk-set",
            "kafka.bulk", "kafka.produce", "kafka.consume", "kafka.fetch-at",
            "falkordb.bulk", "falkordb.merge-edge", "falkordb.shared-device", "falkordb.user-merchants",
            "clickhouse.bulk", "clickhouse.insert", "clickhouse.minute-aggregate", "clickhouse.point-read",
            "neo4j.bulk", "neo4j.merge-edge", "neo4j.shared-device",
            "redis-cluster.bulk", "redis-cluster.bulk-set", "redis-cluster.set", "redis-cluster.feature-update",
            "redis-cluster.score-incr", "redis-cluster.feature-read",
        ]
        #expect(names == expected)
        for driver in StoreRegistry.drivers {
            #expect(driver.operations.allSatisfy { $0.id.hasPrefix("\(driver.name).") })
        }
    }

    /// A scenario name resolves to the case of that name, whatever the declaration order.
    @Test func namesResolveToTheirOwnCase() throws {
        let redis = try #require(StoreRegistry.driver(named: "redis"))
        let set = try #require(redis.operation(named: "set"))
        #expect(set.operation as? RedisOperation == .set)
        #expect(set.kind == .write)
        let bulkSet = try #require(redis.operation(named: "bulk-set"))
        #expect(bulkSet.operation as? RedisOperation == .bulkSet)
        #expect(bulkSet.kind == .bulk)
        #expect(redis.operation(named: "no-such-op") == nil)
        #expect(OperationDescriptor(PostgresOperation.pointRead).id == "postgres.point-read")
    }

    /// Every place's writers are real operations of its store that write (a renamed op would leave a place that no
    /// history line ever fills: the checker would call every row absent or, worse, check nothing).
    @Test func everyPlaceIsWrittenByWritesOfItsOwnStore() throws {
        let places = RowPlace.all + RowPlace.aggregates
        for place in places {
            let driver = try #require(StoreRegistry.driver(named: place.store))
            #expect(!place.writtenBy.isEmpty)
            for id in place.writtenBy {
                let operation = driver.operations.first { $0.id == id }
                #expect(operation != nil, "\(place.id) is written by \(id), which \(place.store) does not have")
                #expect(operation?.kind != .read, "\(place.id) is written by the read \(id)")
            }
        }
        #expect(RowPlace.redisTxnKeys.writtenBy == ["redis.set", "redis.bulk-set"])
        #expect(RowPlace.postgresRows.writtenBy == ["postgres.bulk", "postgres.insert"])
    }

    /// Every registry comes from the one list of backends: a backend's driver, places and aggregates appear in the
    /// registries exactly once, and nothing appears that no backend declares.
    @Test func registriesAreDerivedFromTheBackendList() {
        #expect(StoreRegistry.drivers.map(\.name) == Backends.all.map(\.name))
        #expect(Set(Backends.all.map(\.name)).count == Backends.all.count)
        #expect(RowPlace.all == Backends.all.flatMap(\.places))
        #expect(Set(RowPlace.all.map(\.id)) == ["postgres.rows", "clickhouse.rows", "kafka.messages", "falkordb.paid-edges", "redis.txn-keys", "redis-cluster.txn-keys"])
        #expect(Set(RowPlace.aggregates.map(\.id)) == ["redis.features", "redis.scores"])
        #expect(Set(ScannerRegistry.drivers.map(\.place)) == Set(RowPlace.all))
    }

    /// Handing a client another store's descriptor runs nothing: `fail("unknown-operation")`, never a different op.
    @Test func anotherStoresDescriptorRunsNothing() {
        let client = RecordingClient()
        #expect(client.invoke(OperationDescriptor(PostgresOperation.insert), Request(row: 1)) == .fail("unknown-operation"))
        #expect(client.invoked.isEmpty)
        #expect(client.invoke(OperationDescriptor(RedisOperation.topK), Request(row: 1)) == .ok)
        #expect(client.invoked == [.topK])
    }

    final class RecordingClient: Client {
        var invoked: [RedisOperation] = []
        func setup() throws {}
        func teardown() throws {}
        func close() {}
        func invoke(_ operation: RedisOperation, _ request: Request) -> Outcome {
            invoked.append(operation)
            return .ok
        }
    }
}
