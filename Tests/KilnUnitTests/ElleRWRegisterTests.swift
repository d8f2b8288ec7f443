import Foundation
import KilnElle
import KilnCheck
import KilnReport
import Testing
import KilnTestSupport

/// Hand-built rw-register histories for each anomaly class that applies to registers, random serial histories, and
/// the same histories with one planted anomaly.
@Suite struct ElleRWRegisterTests: ElleHistoryExamples {
    static func write(_ key: Int, _ value: Int) -> MicroOp { .write(key: key, value: value) }
    static func read(_ key: Int, _ value: Int?) -> MicroOp { .readRegister(key: key, value: value) }

    static func check(_ transactions: [ElleTransaction], _ model: ConsistencyModel) -> ElleCheckResult {
        RWRegisterChecker(model: model).check(transactions)
    }

    // MARK: the examples, one per anomaly class

    /// G0: each transaction read the other's write of one key and overwrote it (write follows read orders key 1 as
    /// T0's 1 then T1's 2, key 2 as T1's 2 then T0's 1).
    static let g0 = concurrent([
        txn(write(1, 1), read(2, 2), write(2, 1)),
        txn(read(1, 1), write(1, 2), write(2, 2)),
    ])
    static let g1a = concurrent([txn(write(1, 1), outcome: .fail), txn(read(1, 1))])
    /// G1b: T1 read 1, which T0 overwrote with 2 in the same transaction.
    static let g1b = concurrent([txn(write(1, 1), write(1, 2)), txn(read(1, 1))])
    /// G1c: each transaction read the other's write.
    static let g1c = concurrent([txn(write(1, 1), read(2, 1)), txn(write(2, 1), read(1, 1))])
    /// G-single (read skew): T1 saw T0's write of key 2 but key 1 still never written.
    static let gSingle = concurrent([txn(write(1, 1), write(2, 1)), txn(read(1, nil), read(2, 1))])
    /// G-nonadjacent: T0 -rw-> T1 -wr-> T2 -rw-> T3 -wr-> T0.
    static let gNonadjacent = concurrent([
        txn(read(1, nil), read(4, 1)),
        txn(write(1, 1), write(2, 1)),
        txn(read(2, 1), read(3, nil)),
        txn(write(3, 1), write(4, 1)),
    ])
    /// G2-item (write skew): both read keys 1 and 2 never written, each writes a different one.
    static let g2Item = concurrent([
        txn(read(1, nil), read(2, nil), write(1, 1)),
        txn(read(1, nil), read(2, nil), write(2, 1)),
    ])
    /// Lost update: both read 0 of key 1 (T0's) and overwrote it.
    static let lostUpdate = concurrent([
        txn(write(1, 0)), txn(read(1, 0), write(1, 1)), txn(read(1, 0), write(1, 2)),
    ])
    /// Internal: a transaction does not see its own write.
    static let internalInconsistency = concurrent([txn(write(1, 5), read(1, nil))])
    static let garbageRead = concurrent([txn(write(1, 1)), txn(read(1, 9))])
    /// Stale read on one process: T0 wrote, T1 (same process, later) read key 1 never written.
    static let gSingleProcess = [txn(write(1, 1), process: 0, at: 0), txn(read(1, nil), process: 0, at: 100)]
    /// Stale read across processes in real time.
    static let gSingleRealtime = [txn(write(1, 1), process: 0, at: 0), txn(read(1, nil), process: 1, at: 100)]

    static let examples: [(AnomalyKind, [ElleTransaction], ConsistencyModel)] = [
        (.g0, g0, .readCommitted),
        (.g1a, g1a, .readCommitted),
        (.g1b, g1b, .readCommitted),
        (.g1c, g1c, .readCommitted),
        (.gSingle, gSingle, .snapshotIsolation),
        (.gNonadjacent, gNonadjacent, .snapshotIsolation),
        (.g2Item, g2Item, .serializable),
        (.lostUpdate, lostUpdate, .snapshotIsolation),
        (.internalInconsistency, internalInconsistency, .repeatableRead),
        (.garbageRead, garbageRead, .readCommitted),
        (.gSingleProcess, gSingleProcess, .strictSerializable),
        (.gSingleRealtime, gSingleRealtime, .strictSerializable),
    ]

    @Test(arguments: 0..<12)
    func eachExampleIsFoundAndNamed(_ index: Int) {
        let (kind, history, model) = Self.examples[index]
        let witness = ElleCheckerFixtures.expectFoundAndNamed(kind, in: Self.check(history, model))
        #expect(witness.map { !$0.text.contains("no single micro-op pair") } == true, "\(witness?.text ?? "")")
    }

    @Test func exampleCyclesHaveTheExpectedShape() {
        #expect(Self.check(Self.g0, .serializable).witnesses.first { $0.kind == .g0 }?.steps.map(\.relation) == [.ww, .ww])
        let skew = Self.check(Self.g2Item, .serializable)
        #expect(skew.kinds == [.g2Item], "\(skew.summary)")
        #expect(skew.witnesses.first?.steps.map(\.relation) == [.rw, .rw])
        let nonadjacent = Self.check(Self.gNonadjacent, .serializable)
        #expect(nonadjacent.kinds == [.gNonadjacent], "\(nonadjacent.summary)")
        #expect(nonadjacent.witnesses.first?.steps.count == 4)
        let readSkew = Self.check(Self.gSingle, .serializable)
        let why = readSkew.witnesses.first { $0.kind == .gSingle }?.steps.map(\.why).joined(separator: "\n") ?? ""
        #expect(why.contains("T1 read 1 of key 2, which T0 wrote"), "\(why)")
        #expect(why.contains("T1 read key 1 never written (nil), and T0 wrote 1 to it"), "\(why)")
        let lost = Self.check(Self.lostUpdate, .serializable)
        let rw = lost.witnesses.first { $0.kind == .g2Item }?.steps.map(\.why).joined(separator: "\n") ?? ""
        #expect(rw.contains("read 0 of key 1, which T"), "\(rw)")
    }

    @Test func modelsForbidWhatTheyShould() {
        #expect(Self.check(Self.g2Item, .readCommitted).validity == .valid)
        #expect(Self.check(Self.g2Item, .snapshotIsolation).validity == .valid)
        #expect(Self.check(Self.g2Item, .repeatableRead).validity == .invalid)
        #expect(Self.check(Self.gSingle, .readCommitted).validity == .valid)
        #expect(Self.check(Self.gSingle, .readCommitted).counts[.gSingle] == 1)
        #expect(Self.check(Self.gSingle, .snapshotIsolation).validity == .invalid)
        #expect(Self.check(Self.lostUpdate, .readCommitted).validity == .valid)
        #expect(Self.check(Self.lostUpdate, .readCommitted).counts[.lostUpdate] == 1)
        #expect(Self.check(Self.internalInconsistency, .readCommitted).validity == .valid)
        for model in ConsistencyModel.allCases {
            for history in [Self.g0, Self.g1a, Self.g1b, Self.g1c, Self.garbageRead] {
                #expect(Self.check(history, model).validity == .invalid)
            }
        }
        #expect(Self.check(Self.gSingleRealtime, .serializable).validity == .valid)
        #expect(Self.check(Self.gSingleRealtime, .strictSerializable).kinds == [.gSingleRealtime])
    }

    /// Registers carry less information than lists: two blind writes of a key are unordered, so reads of either
    /// make no cycle — the checker infers only what the history proves.
    @Test func blindWritesAreNotOrdered() {
        let blind = Self.concurrent([
            Self.txn(Self.write(1, 1)), Self.txn(Self.write(1, 2)), Self.txn(Self.read(1, 2)),
            Self.txn(Self.read(1, 1)),
        ])
        for model in ConsistencyModel.allCases { #expect(Self.check(blind, model).validity == .valid) }
    }

    /// Two different garbage reads followed by writes are garbage twice, not a lost update.
    @Test func garbageReadsMakeNoLostUpdate() {
        let garbage = Self.concurrent([
            Self.txn(Self.read(1, 8), Self.write(1, 1)), Self.txn(Self.read(1, 9), Self.write(1, 2)),
        ])
        let result = Self.check(garbage, .serializable)
        #expect(result.counts[.garbageRead] == 2, "\(result.summary)")
        #expect(result.counts[.lostUpdate] == nil, "\(result.summary)")
    }

    @Test func infoTransactionsMayOrMayNotHaveCommitted() {
        let seen = Self.concurrent([Self.txn(Self.write(1, 1), outcome: .info), Self.txn(Self.read(1, 1))])
        #expect(Self.check(seen, .strictSerializable).validity == .valid)
        let unseen = Self.concurrent([Self.txn(Self.write(1, 1), outcome: .info), Self.txn(Self.read(1, nil))])
        #expect(Self.check(unseen, .strictSerializable).validity == .valid)
        let unknownRead = Self.concurrent([Self.txn(Self.read(1, 7), outcome: .info)])
        #expect(Self.check(unknownRead, .strictSerializable).validity == .valid)
    }

    @Test func aSearchOutOfTimeIsUnknownNeverValid() {
        let result = RWRegisterChecker(model: .serializable, searchTimeLimit: .zero).check(Self.g2Item)
        #expect(result.validity == .unknown, "\(result.summary)")
        #expect(result.searchesTimedOut.contains(.g2Item))
    }

    @Test func malformedHistoriesAreUnknownOrRejected() {
        let twice = Self.check(Self.concurrent([Self.txn(Self.write(1, 1)), Self.txn(Self.write(1, 1))]), .serializable)
        #expect(twice.validity == .unknown)
        #expect(twice.error?.contains("written twice") == true)
        #expect(throws: HistoryFormatError.self) { try RWRegisterHistory([Self.txn(Self.write(1, -3))]) }
        #expect(throws: HistoryFormatError.self) {
            try RWRegisterHistory([Self.txn(.append(key: 1, value: 1))])
        }
        #expect(throws: HistoryFormatError.self) { try ListAppendHistory([Self.txn(Self.write(1, 1))]) }
    }

    @Test func historiesRoundTripAsJSONLines() throws {
        let transactions = Self.g2Item
        let data = try ElleTransaction.jsonLines(transactions)
        let line = String(decoding: try ElleTransaction.jsonLines([Self.g2Item[0]]), as: UTF8.self)
        #expect(line.contains(#""ops":[["r",1,null],["r",2,null],["w",1,1]]"#), "\(line)")
        let parsed = try ElleTransaction.parseJSONLines(data)
        // A read of the initial state comes back in list-append's null form; the register history reads it alike.
        #expect(Self.check(parsed, .serializable).kinds == Self.check(transactions, .serializable).kinds)
        #expect(Self.check(parsed, .serializable).counts[.g2Item] != nil)
    }

    // MARK: random histories

    static let generators: [SerialRWRegisterGenerator] = ElleCheckerFixtures.serialGenerators()

    @Test(arguments: 0..<4)
    func randomSerialHistoriesAreValidUnderEveryModel(_ index: Int) {
        ElleCheckerFixtures.expectValidUnderEveryModel(RWRegisterChecker.self, Self.generators[index].generate().history)
    }

    /// The fragment shifted past a generated history (fresh keys, processes and times) or into its middle.
    static func plant(
        _ fragment: [ElleTransaction], into output: SerialRWRegisterGenerator.Output, processes: Int,
        middle: Bool
    ) throws -> (RWRegisterHistory, Range<Int>) {
        let generated = (0..<output.history.count).map { output.history.transaction($0) }
        let at = middle ? generated.count / 2 : generated.count
        let shift = middle ? generated[at].invokeNanos : output.endNanos
        let planted = fragment.map { transaction in
            var transaction = transaction
            transaction.process += processes
            transaction.invokeNanos += shift
            transaction.completeNanos = transaction.completeNanos.map { $0 + shift }
            transaction.ops = transaction.ops.map { op in
                switch op {
                case .write(let key, let value): .write(key: key + output.nextKey, value: value)
                case .readRegister(let key, let value): .readRegister(key: key + output.nextKey, value: value)
                default: op
                }
            }
            return transaction
        }
        let all = Array(generated[..<at]) + planted + Array(generated[at...])
        return (try RWRegisterHistory(all), at..<(at + planted.count))
    }

    @Test(arguments: 0..<12)
    func aPlantedAnomalyIsAlwaysFoundWithItsClass(_ index: Int) throws {
        let (kind, fragment, model) = Self.examples[index]
        for (number, generator) in Self.generators.enumerated() {
            let middle = number % 2 == 1
            let (history, planted) = try Self.plant(
                fragment, into: generator.generate(), processes: generator.concurrency, middle: middle)
            let result = RWRegisterChecker(model: middle ? .strictSerializable : model).check(history)
            #expect(result.validity == .invalid, "\(kind.rawValue): \(result.summary)")
            #expect(result.counts[kind] != nil, "\(kind.rawValue) not found: \(result.summary)")
            for witness in result.witnesses {
                #expect(witness.transactions.allSatisfy { planted.contains($0.index) }, "\(witness.text)")
            }
        }
    }

    /// The generator's planted stale-read bug: reads of the key's previous value make anti-dependency cycles when
    /// the history proves the order (a later read-then-write of the key).
    @Test func staleReadsAreFound() {
        let history = SerialRWRegisterGenerator(transactions: 5_000, staleReadShare: 0.02, seed: 7).generate().history
        let result = RWRegisterChecker(model: .serializable).check(history)
        #expect(result.validity == .invalid, "\(result.summary)")
        #expect(result.searchesTimedOut.isEmpty)
    }
}

/// `elle.rw-register` as a place: check.json carries the witness, summary.md and report.html explain it with the
/// register ops and an inline SVG of the cycle; an unreadable history is unknown, never valid.
@Suite struct ElleRWRegisterPlaceTests {
    static func directory(_ transactions: [ElleTransaction], model: ConsistencyModel) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-rw"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try ElleTransaction.jsonLines(transactions).write(
            to: directory.appendingPathComponent(ListAppendRunDescription.historyFileName(.rwRegister)))
        try ListAppendRunDescription(
            store: "postgres", isolation: "serializable", model: model, transactions: transactions.count, seed: 1,
            workload: .rwRegister
        ).write(to: directory)
        return directory
    }

    @Test func aWriteSkewIsExplainedInEveryReport() throws {
        let directory = try Self.directory(ElleRWRegisterTests.gSingle, model: .serializable)
        #expect(ListAppendPlace.workloads(in: directory) == [.rwRegister])
        let place = ListAppendPlace.check(directory: directory, workload: .rwRegister)
        #expect(place.place == "elle.rw-register")
        #expect(place.validity == .invalid)
        let check = try ElleRunDirectoryTests.roundTrip(place)
        let witness = try #require(check.places.first?.transactional?.witnesses.first { $0.kind == .gSingle })
        #expect(witness.transactions.contains { $0.transaction.ops.contains(.write(key: 1, value: 1)) })
        let run = RunData(directory: directory, report: nil, timeline: [], check: check)
        _ = try ReportWriters.writeAll(run)
        let summary = try String(contentsOf: directory.appendingPathComponent("summary.md"), encoding: .utf8)
        #expect(summary.contains("elle.rw-register"), "\(summary)")
        #expect(summary.contains("w 1 1") && summary.contains("r 1 nil"), "\(summary)")
        #expect(summary.contains("-rw->") && summary.contains("-wr->"), "\(summary)")
        let html = try String(contentsOf: directory.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.contains("<svg class=\"cycle\""))
        // The same history is allowed by read committed: reported, valid.
        let allowed = ListAppendPlace.check(
            directory: try Self.directory(ElleRWRegisterTests.gSingle, model: .readCommitted), workload: .rwRegister)
        #expect(allowed.validity == .valid)
        #expect(allowed.counts["G-single"] == 1)
    }

    @Test func anUnreadableOrOutOfTimeHistoryIsUnknown() throws {
        let directory = try Self.directory(ElleRWRegisterTests.g2Item, model: .serializable)
        #expect(ListAppendPlace.check(directory: directory, workload: .rwRegister, searchTimeLimit: .zero).validity == .unknown)
        try Data("{\"process\": 1, \"ops\": [[\"w\"]]}\n".utf8).write(
            to: directory.appendingPathComponent(ListAppendRunDescription.historyFileName(.rwRegister)))
        #expect(ListAppendPlace.check(directory: directory, workload: .rwRegister).validity == .unknown)
        // A list-append history in the register file is unknown too.
        try ElleTransaction.jsonLines(ElleListAppendTests.g2Item).write(
            to: directory.appendingPathComponent(ListAppendRunDescription.historyFileName(.rwRegister)))
        let mixed = ListAppendPlace.check(directory: directory, workload: .rwRegister)
        #expect(mixed.validity == .unknown, "\(mixed.error ?? "")")
    }
}
