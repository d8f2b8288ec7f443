import Foundation
import KilnHTTP
import Testing

@Suite("HTTP streaming")
struct HTTPStreamingTests {
    private struct Stop: Error {}

    private var url: String { TestStack.clickhouseHTTP + "/" }

    @Test func aPostBodyArrivesInChunksAndAddsUpToTheWholeAnswer() throws {
        let client = try HTTPClient()
        var total = 0
        var chunks = 0
        var sum: UInt64 = 0
        var carry: [UInt8] = []
        let status = try client.streamPost(
            url, body: Array("SELECT number FROM system.numbers LIMIT 1000000 FORMAT RowBinary".utf8)
        ) { chunk in
            total += chunk.count
            chunks += 1
            // UInt64 values may straddle chunks.
            carry.append(contentsOf: chunk)
            let whole = carry.count / 8 * 8
            carry.withUnsafeBytes { bytes in
                for offset in stride(from: 0, to: whole, by: 8) {
                    sum &+= UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                }
            }
            carry.removeFirst(whole)
        }
        #expect(status == 200)
        #expect(total == 8_000_000)
        #expect(chunks > 1)
        #expect(carry.isEmpty)
        #expect(sum == 999_999 * 1_000_000 / 2)
        // The accumulating API on the same handle is unchanged.
        #expect(try client.post(url, body: Array("SELECT 1".utf8)).expectOK().text == "1\n")
    }

    @Test func aGetStreamsToo() throws {
        let client = try HTTPClient()
        var body: [UInt8] = []
        try client.streamGet(url + "?query=SELECT%2042") { body.append(contentsOf: $0) }
        #expect(String(decoding: body, as: UTF8.self) == "42\n")
    }

    @Test func aNon2xxAnswerThrowsAndIsNeverStreamed() throws {
        let client = try HTTPClient()
        var calls = 0
        #expect {
            try client.streamPost(url, body: Array("SELECT * FROM kiln.no_such_table_stream".utf8)) { _ in calls += 1 }
        } throws: { error in
            guard let error = error as? HTTPError, let status = error.status else { return false }
            return status >= 400 && String(reflecting: error).contains("no_such_table_stream")
        }
        #expect(calls == 0)
    }

    @Test func aThrowingReceiverAbortsTheTransferAndItsErrorIsRethrown() throws {
        let client = try HTTPClient(timeoutSeconds: 5)
        var calls = 0
        let started = ContinuousClock.now
        #expect(throws: Stop.self) {
            try client.streamPost(url, body: Array("SELECT number FROM system.numbers FORMAT RowBinary".utf8)) { _ in
                calls += 1
                if calls == 3 { throw Stop() }
            }
        }
        #expect(calls == 3)
        #expect(ContinuousClock.now - started < .seconds(3))
        #expect(try client.get(url + "ping").expectOK().text == "Ok.\n")
    }

    @Test func aStallTimeoutBoundsSilenceNotTotalTime() throws {
        // The total timeout (1 s) does not apply to a stream with a stall timeout: sleep(1.5) then an answer.
        let client = try HTTPClient(timeoutSeconds: 1)
        var body: [UInt8] = []
        try client.streamPost(url, body: Array("SELECT sleep(1.5) + 1".utf8), stallTimeoutSeconds: 3) {
            body.append(contentsOf: $0)
        }
        #expect(String(decoding: body, as: UTF8.self) == "1\n")
        // Without one, the total timeout applies (CURLcode 28).
        #expect {
            try client.streamPost(url, body: Array("SELECT sleep(2)".utf8)) { _ in }
        } throws: { error in
            (error as? HTTPError)?.curlCode == 28
        }
        #expect {
            try HTTPClient(timeoutSeconds: 2).streamGet("http://127.0.0.1:9/") { _ in }
        } throws: { error in
            (error as? HTTPError)?.curlCode == 7
        }
    }
}
