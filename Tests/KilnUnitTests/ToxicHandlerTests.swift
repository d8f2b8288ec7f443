import Foundation
import KilnFaults
import NIOCore
import NIOEmbedded
import Testing

/// Records the user events that pass the toxic (as the glue handler would receive them).
private final class EventRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    var events: [String] = []
    /// `channelReadComplete`s that reached the glue: it flushes its writes to the other side on each.
    var readCompletes = 0

    func channelReadComplete(context: ChannelHandlerContext) {
        readCompletes += 1
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ToxicEvent { events.append("\(event)") }
        if let event = event as? ChannelEvent { events.append("\(event)") }
    }
}

/// Deterministic generator for the jitter and slicer draws.
private struct CountingGenerator: RandomNumberGenerator {
    var state: UInt64 = 1
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state
    }
}

@Suite("Toxic handlers (EmbeddedChannel)")
struct ToxicHandlerTests {
    private func channel(_ toxic: ToxicKind, recorder: EventRecorder = EventRecorder()) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            ToxicHandler(Toxic(name: "t", kind: toxic), random: CountingGenerator()), name: "toxic:t")
        try channel.pipeline.syncOperations.addHandler(recorder)
        return channel
    }

    private func bytes(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    /// Everything that reached the end of the pipeline, concatenated.
    private func drain(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readInbound(as: ByteBuffer.self) {
            text += String(buffer: buffer)
        }
        return text
    }

    @Test func latencyHoldsEachChunkForTheDelay() throws {
        let channel = try channel(.latency(latency: 100, jitter: 0))
        try channel.writeInbound(bytes("a"))
        #expect(try drain(channel) == "")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(60))
        try channel.writeInbound(bytes("b"))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(39))
        #expect(try drain(channel) == "")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(try drain(channel) == "a")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(60))
        #expect(try drain(channel) == "b")
    }

    @Test func latencyWithJitterKeepsOrder() throws {
        let channel = try channel(.latency(latency: 50, jitter: 40))
        var expected = ""
        for index in 0..<50 {
            try channel.writeInbound(bytes("\(index),"))
            expected += "\(index),"
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        }
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(10))
        let early = try drain(channel)
        #expect(early.count < expected.count)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        #expect(early + (try drain(channel)) == expected)
    }

    @Test func bandwidthReleasesAtTheConfiguredRate() throws {
        // 10 KB/s: 5000 bytes take 0.5 s, released in 500-byte pieces every 50 ms.
        let channel = try channel(.bandwidth(rate: 10))
        try channel.writeInbound(ByteBuffer(repeating: 0x61, count: 5000))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(249))
        #expect(try drain(channel).count == 2000)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(try drain(channel).count == 500)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(250))
        #expect(try drain(channel).count == 2500)
    }

    @Test func blackholeForwardsNothingAndTimeoutCloses() throws {
        let recorder = EventRecorder()
        let channel = try channel(.timeout(timeout: 200), recorder: recorder)
        try channel.writeInbound(bytes("never"))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(199))
        #expect(try drain(channel) == "")
        #expect(recorder.events.isEmpty)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(recorder.events == ["close"])
        #expect(try drain(channel) == "")
    }

    @Test func blackholeWithoutTimeoutNeverCloses() throws {
        let recorder = EventRecorder()
        let channel = try channel(.timeout(timeout: 0), recorder: recorder)
        try channel.writeInbound(bytes("x"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(3600))
        #expect(try drain(channel) == "")
        #expect(recorder.events.isEmpty)
    }

    @Test func resetPeerFiresAfterItsTimeoutAndPassesData() throws {
        let recorder = EventRecorder()
        let channel = try channel(.resetPeer(timeout: 100), recorder: recorder)
        try channel.writeInbound(bytes("data"))
        #expect(try drain(channel) == "data")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(99))
        #expect(recorder.events.isEmpty)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(recorder.events == ["resetPeer"])
    }

    @Test func slowCloseDelaysTheEndOfStreamOnly() throws {
        let recorder = EventRecorder()
        let channel = try channel(.slowClose(delay: 300), recorder: recorder)
        try channel.writeInbound(bytes("last"))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(try drain(channel) == "last")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(299))
        #expect(recorder.events.isEmpty)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(recorder.events == ["inputClosed"])
    }

    @Test func slicerSplitsIntoDelayedPieces() throws {
        let channel = try channel(.slicer(averageSize: 10, sizeVariation: 0, delay: 1000))
        try channel.writeInbound(ByteBuffer(repeating: 0x62, count: 100))
        var sizes: [Int] = []
        while let piece = try channel.readInbound(as: ByteBuffer.self) { sizes.append(piece.readableBytes) }
        #expect(sizes == [10])
        for _ in 0..<9 {
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
            while let piece = try channel.readInbound(as: ByteBuffer.self) { sizes.append(piece.readableBytes) }
        }
        #expect(sizes == Array(repeating: 10, count: 10))
    }

    @Test func slicerVariationStaysInBoundsAndKeepsEveryByte() throws {
        let channel = try channel(.slicer(averageSize: 8, sizeVariation: 4, delay: 0))
        try channel.writeInbound(ByteBuffer(repeating: 0x63, count: 1000))
        var sizes: [Int] = []
        while let piece = try channel.readInbound(as: ByteBuffer.self) { sizes.append(piece.readableBytes) }
        #expect(sizes.reduce(0, +) == 1000)
        #expect(sizes.dropLast().allSatisfy { (4...12).contains($0) })
        #expect(Set(sizes).count > 1)
    }

    @Test func limitDataForwardsExactlyTheLimitThenCloses() throws {
        let recorder = EventRecorder()
        let channel = try channel(.limitData(bytes: 10), recorder: recorder)
        try channel.writeInbound(bytes("123456"))
        #expect(recorder.events.isEmpty)
        try channel.writeInbound(bytes("7890ab"))
        try channel.writeInbound(bytes("cd"))
        #expect(try drain(channel) == "1234567890")
        #expect(recorder.events == ["close"])
    }

    @Test func removingALatencyToxicForwardsWhatItHeldInOrder() throws {
        let recorder = EventRecorder()
        let channel = try channel(.latency(latency: 1000, jitter: 0), recorder: recorder)
        try channel.writeInbound(bytes("x"))
        try channel.writeInbound(bytes("y"))
        #expect(recorder.readCompletes == 0)
        #expect(try drain(channel) == "")
        try channel.pipeline.syncOperations.removeHandler(name: "toxic:t").wait()
        #expect(try drain(channel) == "xy")
        // Without a read-complete the glue would write the released bytes but never flush them: a request held by
        // the toxic when it was removed would wait for an answer until the client timed out.
        #expect(recorder.readCompletes == 1)
        try channel.writeInbound(bytes("z"))
        #expect(try drain(channel) == "z")
    }
}

@Suite("Toxic specs")
struct ToxicSpecTests {
    @Test func parsesTheCommandLineForm() throws {
        let latency = try Toxic.parse("latency=100ms,jitter=10ms")
        #expect(latency.kind == .latency(latency: 100, jitter: 10))
        #expect(latency.stream == .downstream)
        #expect(latency.name == "latency_downstream")
        #expect(try Toxic.parse("bandwidth=64,stream=upstream").kind == .bandwidth(rate: 64))
        #expect(try Toxic.parse("bandwidth=64KB/s").kind == .bandwidth(rate: 64))
        #expect(try Toxic.parse("blackhole").kind == .timeout(timeout: 0))
        #expect(try Toxic.parse("timeout=2s").kind == .timeout(timeout: 2000))
        #expect(try Toxic.parse("reset_peer=500ms,name=rst").name == "rst")
        #expect(try Toxic.parse("slow_close=1s").kind == .slowClose(delay: 1000))
        #expect(
            try Toxic.parse("slicer=64,size_variation=16,delay=1ms").kind
                == .slicer(averageSize: 64, sizeVariation: 16, delay: 1000))
        #expect(try Toxic.parse("limit_data=1000,toxicity=0.5").toxicity == 0.5)
    }

    @Test func rejectsBadToxicsWithTheirField() {
        #expect(throws: ToxicError.self) { try Toxic.parse("lag=100") }
        #expect(throws: ToxicError.self) { try Toxic.parse("latency=fast") }
        #expect(throws: ToxicError.self) { try Toxic.parse("latency=100ms,stream=sideways") }
        #expect(throws: ToxicError.self) { try Toxic.parse("bandwidth=0") }
        #expect(throws: ToxicError.self) { try Toxic.parse("latency=10,colour=red") }
        #expect(throws: ToxicError.self) { try Toxic.parse("limit_data=5,toxicity=2") }
        #expect(throws: ToxicError.self) { try Toxic.parse("slicer=4,size_variation=4") }
        do {
            _ = try Toxic.parse("latency=10,colour=red")
        } catch {
            #expect(error.description.contains("colour"))
        }
    }

    @Test func jsonIsToxiproxysShape() throws {
        let toxic = Toxic(name: "lag", kind: .latency(latency: 100, jitter: 5), stream: .upstream)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = String(decoding: try encoder.encode(toxic), as: UTF8.self)
        #expect(
            json
                == #"{"attributes":{"jitter":5,"latency":100},"name":"lag","stream":"upstream","toxicity":1,"type":"latency"}"#
        )
        #expect(try JSONDecoder().decode(Toxic.self, from: Data(json.utf8)) == toxic)
        let minimal = try JSONDecoder().decode(Toxic.self, from: Data(#"{"type":"timeout"}"#.utf8))
        #expect(minimal == Toxic(name: "timeout_downstream", kind: .timeout(timeout: 0)))
        #expect(throws: ToxicError.self) {
            try JSONDecoder().decode(Toxic.self, from: Data(#"{"type":"latency","attributes":{"latency":-1}}"#.utf8))
        }
    }
}
