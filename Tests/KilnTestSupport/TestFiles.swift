import Foundation
import KilnScenario
import KilnStack

/// What both test targets need and that touches no server: the repository's paths, the embedded stack file as
/// parsed (a file read, not a connection), unique names and temporary files. The integration target adds the
/// stores' endpoints in an extension (Tests/KilnTests/Support/TestStack.swift).
public enum TestStack {
    public static let paths = KilnPaths.resolve()

    public static let definition: StackDefinition = {
        do {
            return try StackDefinition.load(contentsOf: paths.embeddedStackFile)
        } catch {
            fatalError("cannot read the embedded stack file: \(error)")
        }
    }()

    /// A name no other test (or earlier run) uses: tests run in parallel against shared servers.
    public static func uniqueName(_ prefix: String) -> String {
        "\(prefix)_\(UInt64(Date().timeIntervalSince1970 * 1000))_\(UInt32.random(in: 0...999_999))"
    }

    /// Writes `text` to a file `name` in a directory of its own under the temporary directory.
    public static func temporaryFile(_ name: String, _ text: String) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("kiln-cli"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent(name)
        try text.write(to: file, atomically: true, encoding: .utf8)
        return file
    }
}
