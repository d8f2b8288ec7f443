import Foundation
import KilnElle
import Testing

/// Hand-built list-append histories for each anomaly class (Adya's and the Elle paper's examples), random
/// serializable histories, and the same histories with one planted anomaly.
@Suite struct ElleListAppendTests: ElleHistoryExamples {
    // MARK: building histories

    static func append(_ key: Int, _ value: Int) -> MicroOp { .append(key: key, value: value) }
    static func read(_ key: Int, _ values: [Int]?) -> MicroOp { .read(key: key, values: values) }

    static func check(_ transactions: [ListAppendTransaction], _ model: ConsistencyModel) -> ListAppendCheckResult {
        ListAppendChecker(model: model).check(transactions)
    }

    // MARK: the examples, one per anomaly class

    /// Adya's G0 (write cycle): T0 and T1 append to keys 1 and 2 in opposite orders.
    static let g0 = concurrent([
        txn(append(1, 1), append(2, 1)),
        txn(append(1, 2), append(2, 2)),
        txn(read(1, [1, 2]), read(2, [2, 1])),
    ])
    /// G1a: a committed read of a failed transaction's append.
    static let g1a = concurrent([txn(append(1, 1), outcome: .fail), txn(read(1, [1]))])
    /// G1b: a read of an intermediate state (T0 appended 1 then 2).
    static let g1b = concurrent([txn(append(1, 1), append(1, 2)), txn(read(1, [1])), txn(read(1, [1, 2]))])
    /// G1c: each transaction reads the other's append (circular information flow).
    static let g1c = concurrent([txn(append(1, 1), read(2, [1])), txn(append(2, 1), read(1, [1]))])
    /// G-single (read skew): T1 sees T0's append to key 2 but not its append to key 1.
    static let gSingle = concurrent([
        txn(append(1, 1), append(2, 1)), txn(read(1, []), read(2, [1])), txn(read(1, [1])),
    ])
    /// G-nonadjacent: T0 -rw-> T1 -wr-> T2 -rw-> T3 -wr-> T0, the two rw edges never adjacent.
    static let gNonadjacent = concurrent([
        txn(read(1, []), read(4, [1])),
        txn(append(1, 1), append(2, 1)),
        txn(read(2, [1]), read(3, [])),
        txn(append(3, 1), append(4, 1)),
        txn(read(1, [1]), read(3, [1])),
    ])
    /// G2-item (write skew): both read keys 1 and 2 empty, each appends to a different one.
    static let g2Item = concurrent([
        txn(read(1, []), read(2, []), append(1, 1)),
        txn(read(1, []), read(2, []), append(2, 1)),
        txn(read(1, [1]), read(2, [1])),
    ])
    /// Lost update without a later read: both read key 1 empty and appended to it.
    static let lostUpdate = concurrent([txn(read(1, []), append(1, 1)), txn(read(1, []), append(1, 2))])
    /// Internal: a transaction does not see its own append.
    static let internalInconsistency = concurrent([txn(append(1, 5), read(1, []))])
    static let duplicateElements = concurrent([txn(append(1, 1)), txn(read(1, [1, 1]))])
    static let garbageRead = concurrent([txn(append(1, 1)), txn(read(1, [1, 9]))])
    static let incompatibleOrder = concurrent([
        txn(append(1, 1)), txn(append(1, 2)), txn(read(1, [1, 2])), txn(read(1, [2, 1])),
    ])
    /// Stale read on one process: T0 appended, T1 (same process, later) read key 1 empty.
    static let gSingleProcess = [
        txn(append(1, 1), process: 0, at: 0), txn(read(1, []), process: 0, at: 20),
        txn(read(1, [1]), process: 1, at: 40),
    ]
    /// Stale read across processes: T0 completed before T1 was invoked, T1 read key 1 empty.
    static let gSingleRealtime = [
        txn(append(1, 1), process: 0, at: 0), txn(read(1, []), process: 1, at: 20),
        txn(read(1, [1]), process: 2, at: 40),
    ]

    static let examples: [(AnomalyKind, [ListAppendTransaction], ConsistencyModel)] = [
        (.g0, g0, .serializable), (.g1a, g1a, .serializable), (.g1b, g1b, .serializable), (.g1c, g1c, .serializable),
        (.gSingle, gSingle, .serializable), (.gNonadjacent, gNonadjacent, .serializable),
        (.g2Item, g2Item, .serializable), (.lostUpdate, lostUpdate, .serializable),
        (.internalInconsistency, internalInconsistency, .serializable),
        (.duplicateElements, duplicateElements, .serializable), (.garbageRead, garbageRead, .serializable),
        (.incompatibleOrder, incompatibleOrder, .serializable),
        (.gSingleProcess, gSingleProcess, .strictSerializable),
        (.gSingleRealtime, gSingleRealtime, .strictSerializable),
    ]

    @Test(arguments: 0..<14)
    func eachExampleIsFoundAndNamed(_ index: Int) {
        let (kind, history, model) = Self.examples[index]
        ElleCheckerFixtures.expectFoundAndNamed(kind, in: Self.check(history, model))
    }

    @Test func exampleCyclesHaveTheExpectedShape() {
        let g0 = Self.check(Self.g0, .serializable)
        #expect(g0.witnesses.first { $0.kind == .g0 }?.steps.map(\.relation) == [.ww, .ww])
        let skew = Self.check(Self.g2Item, .serializable)
        #expect(skew.kinds == [.g2Item])
        #expect(skew.witnesses.first?.steps.map(\.relation) == [.rw, .rw])
        let nonadjacent = Self.check(Self.gNonadjacent, .serializable)
        #expect(nonadjacent.kinds == [.gNonadjacent])
        #expect(nonadjacent.witnesses.first?.steps.count == 4)
        let readSkew = Self.check(Self.gSingle, .serializable)
        let why = readSkew.witnesses.first { $0.kind == .gSingle }?.steps.map(\.why).joined(separator: "\n") ?? ""
        #expect(why.contains("T1 read [1] of key 2, which T0's append of 1 produced"), "\(why)")
        #expect(why.contains("T1 read [] of key 1, which misses 1, appended next by T0"), "\(why)")
    }

    @Test func modelsForbidWhatTheyShould() {
        // Write skew: allowed by read committed and snapshot isolation, forbidden by repeatable read and up.
        #expect(Self.check(Self.g2Item, .readCommitted).validity == .valid)
        #expect(Self.check(Self.g2Item, .snapshotIsolation).validity == .valid)
        #expect(Self.check(Self.g2Item, .repeatableRead).validity == .invalid)
        #expect(Self.check(Self.g2Item, .strictSerializable).validity == .invalid)
        // G-nonadjacent and G-single: allowed by read committed only.
        #expect(Self.check(Self.gNonadjacent, .readCommitted).validity == .valid)
        #expect(Self.check(Self.gNonadjacent, .snapshotIsolation).validity == .invalid)
        #expect(Self.check(Self.gSingle, .readCommitted).validity == .valid)
        #expect(Self.check(Self.gSingle, .readCommitted).counts[.gSingle] == 1)
        #expect(Self.check(Self.gSingle, .snapshotIsolation).validity == .invalid)
        #expect(Self.check(Self.lostUpdate, .readCommitted).validity == .valid)
        #expect(Self.check(Self.lostUpdate, .snapshotIsolation).validity == .invalid)
        // G0, G1 and the data anomalies: forbidden by every model.
        for model in ConsistencyModel.allCases {
            for history in [Self.g0, Self.g1a, Self.g1b, Self.g1c, Self.garbageRead, Self.incompatibleOrder] {
                #expect(Self.check(history, model).validity == .invalid)
            }
        }
        // A stale read is serializable, not strict serializable.
        #expect(Self.check(Self.gSingleRealtime, .serializable).validity == .valid)
        #expect(Self.check(Self.gSingleRealtime, .strictSerializable).kinds == [.gSingleRealtime])
    }

    @Test func infoTransactionsMayOrMayNotHaveCommitted() {
        let seen = Self.concurrent([Self.txn(Self.append(1, 1), outcome: .info), Self.txn(Self.read(1, [1]))])
        #expect(Self.check(seen, .strictSerializable).validity == .valid)
        let unseen = Self.concurrent([Self.txn(Self.append(1, 1), outcome: .info), Self.txn(Self.read(1, []))])
        #expect(Self.check(unseen, .strictSerializable).validity == .valid)
        let unknownRead = Self.concurrent([Self.txn(Self.read(1, [7]), outcome: .info)])
        #expect(Self.check(unknownRead, .strictSerializable).validity == .valid)
    }

    @Test func aSearchOutOfTimeIsUnknownNeverValid() {
        let result = ListAppendChecker(model: .serializable, searchTimeLimit: .zero).check(Self.g2Item)
        #expect(result.validity == .unknown, "\(result.summary)")
        #expect(result.searchesTimedOut.contains(.g2Item))
    }

    @Test func aValueAppendedTwiceIsUnknown() {
        let result = Self.check(
            Self.concurrent([Self.txn(Self.append(1, 1)), Self.txn(Self.append(1, 1))]), .serializable)
        #expect(result.validity == .unknown)
        #expect(result.error?.contains("appended twice") == true)
    }

    @Test func historiesRoundTripAsJSONLines() throws {
        let transactions =
            Self.g2Item + Self.g1a + Self.gSingleRealtime + [
                ListAppendTransaction(
                    process: 3, invokeNanos: 5, completeNanos: nil, outcome: .info, ops: [Self.read(1, nil)])
            ]
        let data = try ListAppendTransaction.jsonLines(transactions)
        #expect(try ListAppendTransaction.parseJSONLines(data) == transactions)
        let line = String(decoding: try ListAppendTransaction.jsonLines([Self.g1b[0]]), as: UTF8.self)
        #expect(line.contains(#""ops":[["append",1,1],["append",1,2]]"#), "\(line)")
        #expect(throws: HistoryFormatError.self) { try ListAppendTransaction.parseJSONLines(Data("{\n".utf8)) }
        let result = ListAppendChecker(model: .serializable).check(Self.g2Item)
        let encoded = try JSONEncoder().encode(result)
        #expect(String(decoding: encoded, as: UTF8.self).contains(#""G2-item":1"#))
    }

    // MARK: random histories

    static let generators: [SerialListAppendGenerator] = ElleCheckerFixtures.serialGenerators()

    @Test(arguments: 0..<4)
    func randomSerialHistoriesAreValidUnderEveryModel(_ index: Int) {
        ElleCheckerFixtures.expectValidUnderEveryModel(ListAppendChecker.self, Self.generators[index].generate().history)
    }

    /// Shifts a hand-built fragment past a generated history: fresh keys, processes and times.
    static func plant(
        _ fragment: [ListAppendTransaction], into output: SerialListAppendGenerator.Output, processes: Int
    ) throws -> ListAppendHistory {
        var history = output.history
        for var transaction in fragment {
            transaction.process += processes
            transaction.invokeNanos += output.endNanos
            transaction.completeNanos = transaction.completeNanos.map { $0 + output.endNanos }
            transaction.ops = transaction.ops.map { op in
                switch op {
                case .append(let key, let value): .append(key: key + output.nextKey, value: value)
                case .read(let key, let values): .read(key: key + output.nextKey, values: values)
                case .write, .readRegister: op
                }
            }
            try history.append(transaction)
        }
        return history
    }

    @Test(arguments: 0..<14)
    func aPlantedAnomalyIsAlwaysFoundWithItsClass(_ index: Int) throws {
        let (kind, fragment, model) = Self.examples[index]
        for generator in Self.generators {
            let output = generator.generate()
            let history = try Self.plant(fragment, into: output, processes: generator.concurrency)
            let result = ListAppendChecker(model: model).check(history)
            #expect(result.validity == .invalid, "\(kind.rawValue): \(result.summary)")
            #expect(result.counts[kind] != nil, "\(kind.rawValue) not found: \(result.summary)")
        }
    }

    @Test func sccOfAMillionNodePathNeedsNoRecursion() {
        let nodes = 1_000_000
        let graph = DependencyGraph(nodeCount: nodes) { emit in
            for node in 0..<Int32(nodes - 1) { emit(node, node + 1, EdgeLabels.ww.rawValue) }
            emit(Int32(nodes - 1), 0, EdgeLabels.ww.rawValue)
        }
        let components = stronglyConnectedComponents(of: graph, labels: .all)
        #expect(components.count == 1)
        #expect(components.first?.count == nodes)
    }
}

extension ElleListAppendTests {
    @Test func witnessesReadAsText() {
        var texts: [String] = []
        for (kind, history, model) in Self.examples {
            let result = Self.check(history, model)
            guard let witness = result.witnesses.first(where: { $0.kind == kind }) else { continue }
            texts.append(witness.text)
        }
        print(texts.joined(separator: "\n\n"))
        #expect(texts.count == Self.examples.count)
        #expect(texts.allSatisfy { !$0.contains("no single micro-op pair") })
    }
}

extension ElleListAppendTests {
    /// The fragment's transactions placed in the middle of the generated history, in history order and in time
    /// (real-time edges run between them and the generated ones), checked as strict serializable.
    @Test(arguments: 0..<14)
    func aPlantedAnomalyIsFoundMidHistory(_ index: Int) throws {
        let (kind, fragment, _) = Self.examples[index]
        let generator = Self.generators[index % Self.generators.count]
        let output = generator.generate()
        let generated = (0..<output.history.count).map { output.history.transaction($0) }
        let middle = generated.count / 2
        let shift = generated[middle].invokeNanos
        let planted = fragment.map { transaction in
            var transaction = transaction
            transaction.process += generator.concurrency
            transaction.invokeNanos += shift
            transaction.completeNanos = transaction.completeNanos.map { $0 + shift }
            transaction.ops = transaction.ops.map { op in
                switch op {
                case .append(let key, let value): .append(key: key + output.nextKey, value: value)
                case .read(let key, let values): .read(key: key + output.nextKey, values: values)
                case .write, .readRegister: op
                }
            }
            return transaction
        }
        let history = Array(generated[..<middle]) + planted + Array(generated[middle...])
        let result = ListAppendChecker(model: .strictSerializable).check(history)
        #expect(result.validity == .invalid, "\(kind.rawValue): \(result.summary)")
        #expect(result.counts[kind] != nil, "\(kind.rawValue) not found: \(result.summary)")
        // The generated transactions take part in no anomaly: every witness is made of planted ones.
        let plantedIndices = Set(middle..<(middle + planted.count))
        for witness in result.witnesses {
            #expect(witness.transactions.allSatisfy { plantedIndices.contains($0.index) }, "\(witness.text)")
        }
    }
}

extension ElleListAppendTests {
    /// The generator's planted stale-read bug: reads that miss the key's last append make anti-dependency cycles.
    @Test func staleReadsAreFound() {
        let history = SerialListAppendGenerator(transactions: 5_000, staleReadShare: 0.01, seed: 7).generate().history
        let result = ListAppendChecker(model: .serializable).check(history)
        #expect(result.validity == .invalid)
        #expect(result.counts[.gSingle] != nil, "\(result.summary)")
        #expect(result.searchesTimedOut.isEmpty)
        #expect(ListAppendChecker(model: .readCommitted).check(history).counts[.gSingle] == result.counts[.gSingle])
    }
}
