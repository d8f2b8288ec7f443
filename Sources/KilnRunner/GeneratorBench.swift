import Dispatch
import Foundation
import KilnCore
import KilnData
import KilnScenario
import KilnStack

/// `kiln bench generate`: generator speed on one core (release build): rows into an in-memory sink, rows encoded as
/// COPY binary and CSV into a reused buffer, each against a memcpy of the same bytes (the physical limit); then
/// `executable generate` COPY binary to /dev/null as 1 process and as `--shard i/N` over N processes.
public enum GeneratorBench {
    public static func run(
        rows: String, processRows: String, shards: Int, repetitions: Int, spec: String?, seed: UInt64, executable: String
    ) throws -> KilnExitCode {
        guard let count = CountSuffix.parse(rows), count > 0, let processCount = CountSuffix.parse(processRows)
        else {
            throw Failure(code: .invalidInput, message: "--rows/--process-rows: expected a count such as 10M")
        }
        let total = Int64(count)
        let dataset = try RowGeneration.dataset(spec: spec, seed: seed, rows: String(max(count, processCount)))
        print("generator benchmark: \(dataset.spec.name), seed \(seed), \(total) rows per measurement, one core")
        print("measurement                          M rows/s   bytes/row   memcpy of the bytes   share of memcpy")

        // Rows into an in-memory sink: a reused buffer of 16,384 Transaction structs.
        let chunk = 8_192
        let sink = UnsafeMutableBufferPointer<Transaction>.allocate(capacity: chunk)
        defer { sink.deallocate() }
        var checksum: UInt64 = 0
        let generateSeconds = Self.fastest(repetitions) {
            var index: Int64 = 0
            while index < total {
                let end = min(index + Int64(chunk), total)
                dataset.generate(index..<end, into: sink)
                checksum &+= UInt64(bitPattern: sink[0].amountCents)
                index = end
            }
        }
        let structBytes = MemoryLayout<Transaction>.stride
        Self.report(
            "generate -> in-memory rows", total: total, seconds: generateSeconds, bytesPerRow: structBytes,
            memcpy: Self.memcpySeconds(bytes: total * Int64(structBytes), chunk: chunk * structBytes))

        for format in [RowFormat.copyBinary, .csv] {
            var encoder = RowEncoder(format: format, dataset: dataset, capacity: 8 << 20)
            var bytes: Int64 = 0
            var largest = 0
            let seconds = Self.fastest(repetitions) {
                bytes = 0
                var index: Int64 = 0
                while index < total {
                    let end = min(index + Int64(chunk), total)
                    encoder.append(dataset, rows: index..<end)
                    bytes += Int64(encoder.count)
                    largest = max(largest, encoder.count)
                    checksum &+= encoder.withBytes { UInt64($0[0]) }
                    encoder.removeAll()
                    index = end
                }
            }
            Self.report(
                "generate + \(format.rawValue) -> buffer", total: total, seconds: seconds,
                bytesPerRow: Int(bytes / total), memcpy: Self.memcpySeconds(bytes: bytes, chunk: largest))
        }
        print("(checksum \(String(checksum, radix: 16)))")

        guard processCount > 0 else { return .ok }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).path
        var arguments = ["generate", "--seed", String(seed), "--rows", String(processCount), "--format",
            "copy-binary", "--out", "/dev/null"]
        if let spec { arguments += ["--spec", spec] }
        let shardArguments = arguments
        let single = try Self.seconds { try LocalProcess.run(executable, arguments) }
        print(
            String(
                format: "kiln generate --rows %d --format copy-binary --out /dev/null: %.2f s = %.2f M rows/s",
                processCount, single, Double(processCount) / single / 1e6))
        let failures = FailureList()
        let sharded = Self.seconds {
            DispatchQueue.concurrentPerform(iterations: shards) { shard in
                do {
                    try LocalProcess.run(executable, shardArguments + ["--shard", "\(shard + 1)/\(shards)"])
                } catch {
                    failures.append("\(error)")
                }
            }
        }
        if let failure = failures.first { throw Failure(code: .internalError, message: failure) }
        print(
            String(
                format: "same as --shard i/%d in %d processes: %.2f s wall = %.2f M rows/s, speed-up %.2fx",
                shards, shards, sharded, Double(processCount) / sharded / 1e6, single / sharded))
        return .ok
    }

    static func report(_ name: String, total: Int64, seconds: Double, bytesPerRow: Int, memcpy: Double) {
        print(
            name.padding(toLength: 36, withPad: " ", startingAt: 0)
                + String(
                    format: " %8.2f   %9d   %8.0f M rows/s     %.4f", Double(total) / seconds / 1e6, bytesPerRow,
                    Double(total) / memcpy / 1e6, memcpy / seconds))
    }

    /// Time to memcpy `bytes` in chunks of `chunk` bytes between two buffers (cache-resident, like the sink).
    static func memcpySeconds(bytes: Int64, chunk: Int) -> Double {
        let source = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        let target = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        defer {
            source.deallocate()
            target.deallocate()
        }
        source.initializeMemory(as: UInt8.self, repeating: 7, count: chunk)
        return fastest(3) {
            var copied: Int64 = 0
            while copied < bytes {
                target.copyMemory(from: source, byteCount: chunk)
                copied += Int64(chunk)
            }
        }
    }

    static func fastest(_ repetitions: Int, _ body: () -> Void) -> Double {
        (0..<repetitions).map { _ in seconds(body) }.min()!
    }

    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = ContinuousClock.now
        try body()
        return start.duration(to: .now) / .seconds(1)
    }
}
