import Testing

@testable import KilnBackends

/// The COPY chunk loop PostgresClient and TimescaleClient share: every row once, in order, chunks of at most
/// `chunkRows`, exactly one last chunk (also for an empty range, so the COPY trailer is always written).
@Suite("COPY chunks (PostgreSQL and TimescaleDB clients)")
struct CopyChunkTests {
    static func chunks(_ rows: Range<Int64>) -> [(Range<Int64>, Bool)] {
        var seen: [(Range<Int64>, Bool)] = []
        PostgresClient.inChunks(rows) { chunk, last in seen.append((chunk, last)) }
        return seen
    }

    @Test(arguments: [0..<0, 5..<5, 0..<1, 0..<8192, 0..<8193, 100..<20_000, 7..<(7 + 3 * 8192)] as [Range<Int64>])
    func everyRowOnceInOrderWithOneLastChunk(_ rows: Range<Int64>) {
        let seen = Self.chunks(rows)
        #expect(seen.filter(\.1).count == 1)
        #expect(seen.last?.1 == true)
        #expect(seen.allSatisfy { $0.0.count <= Int(PostgresClient.chunkRows) })
        #expect(seen.flatMap { Array($0.0) } == Array(rows))
        if rows.isEmpty { #expect(seen.count == 1 && seen[0].0.isEmpty) }
    }
}
