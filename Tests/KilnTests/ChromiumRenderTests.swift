import Foundation
import KilnReport
import Testing

/// report.html in a real browser: headless Chromium (Debian `chromium`, installed by scripts/bootstrap) loads the
/// page, must log no console message, and the dumped DOM must hold charts with data; a screenshot must render.
/// Fails (never skips) when Chromium is missing.
@Suite("report.html in headless Chromium")
struct ChromiumRenderTests {
    struct Rendered {
        var status: Int32
        var stdout: String
        var stderr: String

        /// Console messages Chromium logged (`--enable-logging=stderr` prints them as `INFO:CONSOLE`).
        var consoleLines: [String] { stderr.split(separator: "\n").map(String.init).filter { $0.contains(":CONSOLE") } }
    }

    static func chromium() throws -> String {
        for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        Issue.record("chromium is not installed (Debian package `chromium`; scripts/bootstrap installs it)")
        throw CocoaError(.fileNoSuchFile)
    }

    static func render(_ page: URL, _ mode: [String]) throws -> Rendered {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try chromium())
        // Root in a container: Chromium's sandbox needs user namespaces it does not get here.
        process.arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", "--window-size=1200,2600",
            "--user-data-dir=\(FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("chromium")).path)",
        ] + mode + [page.absoluteString]
        let out = Pipe()
        // stderr goes to a file and stdout to a pipe read to its end: neither can fill up and block Chromium.
        let errorFile = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("chromium-err"))
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        let errorHandle = try FileHandle(forWritingTo: errorFile)
        defer { try? FileManager.default.removeItem(at: errorFile) }
        process.standardOutput = out
        process.standardError = errorHandle
        try process.run()
        let outputData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try errorHandle.close()
        return Rendered(
            status: process.terminationStatus, stdout: String(decoding: outputData, as: UTF8.self),
            stderr: (try? String(contentsOf: errorFile, encoding: .utf8)) ?? "")
    }

    @Test func theReportOfADrillLoadsWithoutConsoleErrorsAndItsChartsHaveData() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("chromium-run"))
        let directory = try RunFixture.make(
            in: root, id: "drill", seed: 9, seconds: 40, faults: RunFixture.faults, drills: RunFixture.drills,
            check: RunFixture.failingCheck(run: "drill"))
        try ReportWriters.writeAll(RunData.load(directory))
        let page = directory.appendingPathComponent("report.html")

        // The console check can fail: a page with a planted error is caught.
        let control = root.appendingPathComponent("control.html")
        try #"<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body><script>console.error("planted")</script></body></html>"#
            .write(to: control, atomically: true, encoding: .utf8)
        let controlRender = try Self.render(control, ["--dump-dom"])
        #expect(controlRender.consoleLines.contains { $0.contains("planted") }, "\(controlRender.stderr)")

        let dom = try Self.render(page, ["--dump-dom"])
        #expect(dom.status == 0, "\(dom.stderr)")
        #expect(dom.consoleLines.isEmpty, "\(dom.consoleLines)")
        #expect(dom.stdout.contains("</html>"))
        let polylines = dom.stdout.components(separatedBy: "<polyline").dropFirst()
        #expect(polylines.count >= 3 * 2 + 1)
        let pointCounts = polylines.map { element -> Int in
            guard let range = element.range(of: #"points=""#) else { return 0 }
            let rest = element[range.upperBound...]
            return rest.prefix { $0 != "\"" }.split(separator: " ").count
        }
        #expect(pointCounts.filter { $0 > 0 }.count == pointCounts.count, "\(pointCounts)")
        #expect(pointCounts.max() ?? 0 >= 30)
        #expect(dom.stdout.contains(#"class="fault""#))
        #expect(dom.stdout.contains("redis-pause"))

        let screenshot = root.appendingPathComponent("report.png")
        let shot = try Self.render(page, ["--screenshot=\(screenshot.path)"])
        #expect(shot.status == 0, "\(shot.stderr)")
        #expect(shot.consoleLines.isEmpty, "\(shot.consoleLines)")
        let png = try Data(contentsOf: screenshot)
        #expect(png.count > 20_000)
        #expect(Array(png.prefix(4)) == [0x89, 0x50, 0x4E, 0x47])
    }
}
