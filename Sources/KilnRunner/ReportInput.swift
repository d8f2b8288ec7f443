import Foundation
import KilnCore
import KilnReport
import KilnStack

public enum ReportInput {
    public static var baselines: BaselineStore {
        BaselineStore(root: KilnPaths.resolve().home.appendingPathComponent("Reports/baselines"))
    }

    public static func load(_ path: String) throws -> RunData {
        do {
            return try RunData.load(URL(fileURLWithPath: path))
        } catch {
            throw Failure(code: .invalidInput, message: error.description)
        }
    }

    public static func resolve(_ argument: String, store: BaselineStore = baselines) throws -> RunData {
        do {
            return try store.resolve(argument)
        } catch {
            throw Failure(code: .invalidInput, message: error.description)
        }
    }

    /// Writes report.html, summary.md and junit.xml at the end of `kiln run` / `kiln check`. A failure to write
    /// them is reported on stderr and never changes the command's exit code (report.json / check.json are the
    /// record; `kiln report` can redo this).
    public static func writeOutputs(_ directory: URL) {
        do {
            let written = try ReportWriters.writeAll(try RunData.load(directory))
            print("written: \(written.map(\.lastPathComponent).joined(separator: ", "))")
        } catch {
            FileHandle.standardError.write(Data("kiln: report outputs not written: \(error)\n".utf8))
        }
    }
}
