import Foundation
import Histogram
import KilnCore
import KilnKafka
import KilnScenario
import KilnStores
import Logging
import Synchronization

extension SinkReport {
    /// The report of a sink whose worker process is gone or hung: nothing known, not converged, with why.
    public static func missing(_ sink: PipelineSpec.Sink, spec: PipelineSpec, reason: String) -> SinkReport {
        SinkReport(
            sink: sink.rawValue, bugs: spec.bugs.filter { $0.sink == sink }.map(\.name), messages: 0, applied: 0,
            duplicatesSkipped: 0, skipped: 0, batches: 0, crashes: 0, errors: 1, lastError: reason, converged: false,
            staleness: Staleness(count: 0, p50: nil, p99: nil, max: nil),
            sloMs: spec.stalenessSLO(of: sink).seconds * 1000)
    }

    /// Whether the path met its SLO (p99 within it and converged).
    public var withinSLO: Bool { converged && (staleness.p99 ?? 0) <= sloMs }
}

/// The reference sync workers: one OS thread per sink, each consuming every partition of `<ns>.transactions` and
/// applying it through its `Sink` (Sources/KilnPipeline). Runs beside `kiln run`'s phases, or alone in
/// `kiln pipeline`. Threading: `start`, `markLoadEnded`, `waitForConvergence` and `stop` are called by one
/// controller thread; each worker owns its consumer and sink.
public final class Pipeline: Sendable {
    public let spec: PipelineSpec
    let context: ClientContext
    let logger: Logger
    let workers: [SinkWorker]

    public init(spec: PipelineSpec, context: ClientContext, logger: Logger) {
        self.spec = spec
        self.context = context
        self.logger = logger
        workers = spec.sinks.map { SinkWorker(sink: $0, spec: spec, context: context, logger: logger) }
    }

    /// The sink for `sink`, connected. Throws when its server cannot be reached.
    /// Throws `UnknownSink` for a name no backend provides a sink for (the scenario parser rejects those first).
    public static func makeSink(_ sink: PipelineSpec.Sink, spec: PipelineSpec, context: ClientContext) throws -> any Sink {
        guard let driver = driver(for: sink) else { throw UnknownSink(name: sink.rawValue) }
        return try driver.open(context, spec)
    }

    /// Every backend's pipeline sink (`Backend.sink`), in `Backends.all` order.
    public static let sinkDrivers: [SinkDriver] = Backends.all.compactMap(\.sink)
    /// The sink names a scenario's `pipeline.sinks` may list: derived from the backends.
    public static let sinkNames: [String] = sinkDrivers.map(\.name)
    /// The sinks as the scenario parser knows them (names, planted bugs, default staleness SLOs, default `sinks:`).
    public static let knownSinks: [PipelineSpec.KnownSink] = sinkDrivers.map(\.known)
    /// Every planted bug the sinks implement (`pipeline.bugs`), in `Backends.all` order.
    public static let bugs: [PipelineSpec.Bug] = sinkDrivers.flatMap(\.bugs)

    public static func driver(for sink: PipelineSpec.Sink) -> SinkDriver? {
        sinkDrivers.first { $0.name == sink.rawValue }
    }

    public struct UnknownSink: Error, CustomStringConvertible {
        public var name: String
        public var description: String { "no backend provides a pipeline sink named '\(name)'" }
    }

    /// Creates every sink's tables/keys and offsets (dropping them first when `fresh`).
    public func setUp(fresh: Bool) throws {
        for worker in workers {
            let sink = try Self.makeSink(worker.sink, spec: spec, context: context)
            defer { sink.close() }
            try sink.setup(fresh: fresh)
        }
    }

    public func start() {
        for worker in workers {
            let thread = Thread { worker.run() }
            thread.name = "kiln-sink-\(worker.sink.rawValue)"
            thread.start()
        }
    }

    /// From now on, a worker that reads to the end of the topic has everything the load wrote.
    public func markLoadEnded() {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for worker in workers { worker.loadEndedAt.store(now, ordering: .releasing) }
    }

    /// Waits until every worker has caught up after `markLoadEnded` (or `spec.convergenceTimeout`, or `stop`).
    /// Returns whether all converged.
    public func waitForConvergence(stop: () -> Bool = { false }) -> Bool {
        let deadline = Date().addingTimeInterval(
            spec.convergenceTimeout.seconds)
        while Date() < deadline && !stop() {
            if workers.allSatisfy({ $0.caughtUp }) { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return workers.allSatisfy { $0.caughtUp }
    }

    /// Stops the workers (each finishes its current batch, at most ~`timeout`) and returns their reports.
    public func stop() -> [SinkReport] {
        for worker in workers { worker.stopFlag.store(true, ordering: .releasing) }
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && !workers.allSatisfy({ $0.finished.load(ordering: .acquiring) }) {
            Thread.sleep(forTimeInterval: 0.05)
        }
        return workers.map { $0.report() }
    }

    /// Reports so far, without stopping.
    public func reports() -> [SinkReport] { workers.map { $0.report() } }
}

/// One sink's consume-apply-commit loop. Thread-safe where marked: the controller reads `report()`/`caughtUp`
/// while the worker thread runs `run()`.
final class SinkWorker: Sendable {
    let sink: PipelineSpec.Sink
    let spec: PipelineSpec
    let context: ClientContext
    let logger: Logger
    let stopFlag = Atomic<Bool>(false)
    let finished = Atomic<Bool>(false)
    /// Unix ms when the load ended; 0 while it runs.
    let loadEndedAt = Atomic<Int64>(0)
    /// Unix ms of the last moment the worker had read to the end of every partition, with nothing pending.
    let atEndAt = Atomic<Int64>(0)
    /// Unix ms of the last message consumed.
    let lastMessageAt = Atomic<Int64>(0)
    /// True while a batch is being applied and committed.
    let busy = Atomic<Bool>(false)
    private let state = Mutex(State())

    struct State {
        var messages: Int64 = 0
        var applied: Int64 = 0
        var duplicatesSkipped: Int64 = 0
        var skipped: Int64 = 0
        var batches: Int64 = 0
        var crashes: Int64 = 0
        var errors: Int64 = 0
        var lastError: String?
        var jumps: Int64 = 0
        var firstJump: String?
        var staleness = Histogram<UInt64>(highestTrackableValue: 3_600_000, numberOfSignificantValueDigits: .three)
    }

    struct ModelledCrash: Error {}

    init(sink: PipelineSpec.Sink, spec: PipelineSpec, context: ClientContext, logger: Logger) {
        self.sink = sink
        self.spec = spec
        self.context = context
        self.logger = logger
    }

    static func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Caught up: the load has ended and, after that, the worker read to the end of every partition — or has seen
    /// no message for 5 s (Tansu 0.6 sends no end-of-partition to a reader positioned exactly at the end).
    var caughtUp: Bool {
        let ended = loadEndedAt.load(ordering: .acquiring)
        guard ended > 0, !busy.load(ordering: .acquiring) else { return false }
        if atEndAt.load(ordering: .acquiring) > ended { return true }
        let idleSince = max(ended, lastMessageAt.load(ordering: .acquiring))
        return Self.nowMillis() - idleSince > 5_000
    }

    func run() {
        defer { finished.store(true, ordering: .releasing) }
        var batchNumber = 0
        while !stopFlag.load(ordering: .acquiring) {
            do {
                try consume(&batchNumber)
            } catch is ModelledCrash {
                state.withLock { $0.crashes += 1 }
                logger.debug("pipeline \(sink.rawValue): modelled crash after batch \(batchNumber); restarting")
            } catch {
                state.withLock {
                    $0.errors += 1
                    $0.lastError = "\(error)"
                }
                logger.warning("pipeline \(sink.rawValue): \(error); restarting in 1 s")
                Thread.sleep(forTimeInterval: 1)
            }
        }
    }

    /// One life of the worker: connect, resume from the stored offsets, loop until stopped. Every exit drops the
    /// connections and in-memory state, like a process exit.
    private func consume(_ batchNumber: inout Int) throws {
        let sink = try Pipeline.makeSink(self.sink, spec: spec, context: context)
        defer { sink.close() }
        let topic = "\(context.namespace).transactions"
        let consumer = try KafkaConsumer(
            bootstrapServers: context.stack.kafka.bootstrapServers,
            properties: [
                "fetch.wait.max.ms": "50", "queued.max.messages.kbytes": "8192", "fetch.max.bytes": "4194304",
                "max.partition.fetch.bytes": "1048576",
            ].merging(try context.stack.kafka.clientProperties(in: context.environment)) { $1 })
        defer { consumer.close() }
        let partitions = try consumer.partitionCount(topic: topic, timeoutMilliseconds: 10_000)
        let stored = try sink.storedOffsets()
        var offsets: [Int32: KafkaOffset] = [:]
        for partition in 0..<Int32(partitions) {
            offsets[partition] = stored[partition].map { .offset($0) } ?? .beginning
        }
        try consumer.assign(topic: topic, offsets: offsets)
        // End-of-partition marks seen before the load ended may be stale (more was written since); once it has
        // ended, the worker re-assigns at its positions, which clears them, so every later mark is current.
        var reassigned = loadEndedAt.load(ordering: .acquiring) > 0
        var batch: [SinkMessage] = []
        batch.reserveCapacity(spec.batch)
        /// The next offset expected per partition (a jump would be a consumer skipping messages).
        var positions: [Int32: Int64] = stored
        var refetches: [Int32: (offset: Int64, count: Int)] = [:]
        while !stopFlag.load(ordering: .acquiring) {
            if !reassigned && loadEndedAt.load(ordering: .acquiring) > 0 {
                try consumer.assign(topic: topic, offsets: offsets)
                reassigned = true
                logger.debug("pipeline \(sink.sink.rawValue): re-assigned at \(offsets) after the load ended")
            }
            batch.removeAll(keepingCapacity: true)
            var next: [Int32: Int64] = [:]
            let started = DispatchTime.now().uptimeNanoseconds
            while batch.count < spec.batch {
                guard let message = try consumer.poll(timeoutMilliseconds: batch.isEmpty ? 100 : 20) else {
                    if batch.isEmpty && consumer.partitionsAtEnd.count == partitions {
                        atEndAt.store(Self.nowMillis(), ordering: .releasing)
                    }
                    if batch.isEmpty || DispatchTime.now().uptimeNanoseconds - started > 50_000_000 { break }
                    continue
                }
                if let expected = positions[message.partition], message.offset > expected {
                    // The consumer skipped offsets the log has (seen rarely against Tansu under concurrent
                    // producers): fetch again from the expected offset, up to 3 times per position, before
                    // accepting the jump as a real hole. Every jump is counted in the sink's report.
                    let note = "partition \(message.partition) jumped from offset \(expected) to \(message.offset)"
                    logger.warning("pipeline \(sink.sink.rawValue): \(note)")
                    let tries = refetches[message.partition].flatMap { $0.offset == expected ? $0.count : nil } ?? 0
                    state.withLock {
                        $0.jumps += 1
                        if $0.firstJump == nil { $0.firstJump = note }
                    }
                    if tries < 3 {
                        refetches[message.partition] = (expected, tries + 1)
                        var seek: [Int32: KafkaOffset] = offsets
                        for (partition, position) in positions { seek[partition] = .offset(position) }
                        try consumer.assign(topic: topic, offsets: seek)
                        continue
                    }
                } else if let expected = positions[message.partition], message.offset < expected {
                    continue  // Already in this batch or applied: a re-fetch after a jump delivers it again.
                }
                positions[message.partition] = message.offset + 1
                let row = SinkMessage.txnID(message.value).map { $0 - 1 } ?? -1
                batch.append(
                    SinkMessage(
                        partition: message.partition, offset: message.offset,
                        row: row >= 0 && row < context.dataset.rows ? row : -1,
                        producedAtMillis: message.timestampMillis))
                next[message.partition] = message.offset + 1
            }
            if batch.isEmpty { continue }
            for (partition, offset) in next { offsets[partition] = .offset(offset) }
            busy.store(true, ordering: .releasing)
            defer {
                lastMessageAt.store(Self.nowMillis(), ordering: .releasing)
                busy.store(false, ordering: .releasing)
            }
            lastMessageAt.store(Self.nowMillis(), ordering: .releasing)
            batchNumber += 1
            let crash = spec.crashEvery.map { batchNumber % $0 == 0 } ?? false
            // A modelled crash strikes between the batch's two steps (write and offset store, in either order).
            let result: ApplyResult
            if sink.storesOffsetsBeforeWrite {
                try sink.storeOffsets(next)
                if crash { throw ModelledCrash() }
                result = try sink.apply(batch, next: next)
                record(batch, result)
            } else {
                result = try sink.apply(batch, next: next)
                record(batch, result)
                if crash { throw ModelledCrash() }
                if !sink.storesOffsetsWithWrite { try sink.storeOffsets(next) }
            }
        }
    }

    private func record(_ batch: [SinkMessage], _ result: ApplyResult) {
        let committed = Self.nowMillis()
        state.withLock { state in
            state.messages += Int64(batch.count)
            state.applied += Int64(result.applied)
            state.duplicatesSkipped += Int64(result.duplicatesSkipped)
            state.skipped += Int64(result.skipped)
            state.batches += 1
            for message in batch {
                if let produced = message.producedAtMillis {
                    state.staleness.record(UInt64(max(0, min(committed - produced, 3_600_000))))
                }
            }
        }
    }

    func report() -> SinkReport {
        state.withLock { state in
            let histogram = state.staleness
            let empty = histogram.totalCount == 0
            return SinkReport(
                sink: sink.rawValue, bugs: spec.bugs.filter { $0.sink == sink }.map(\.name),
                messages: state.messages, applied: state.applied, duplicatesSkipped: state.duplicatesSkipped,
                skipped: state.skipped, batches: state.batches, crashes: state.crashes, errors: state.errors,
                lastError: state.lastError, converged: caughtUp,
                staleness: SinkReport.Staleness(
                    count: Int64(histogram.totalCount),
                    p50: empty ? nil : Double(histogram.valueAtPercentile(50)),
                    p99: empty ? nil : Double(histogram.valueAtPercentile(99)),
                    max: empty ? nil : Double(histogram.max)),
                offsetJumps: state.jumps, firstJump: state.firstJump,
                sloMs: spec.stalenessSLO(of: sink).seconds * 1000)
        }
    }
}
