import Foundation
import KilnCore
import KilnScenario
import KilnStack

/// A command's failure: printed as one message on stderr, then exit with `code`.
public struct Failure: Error, CustomStringConvertible {
    public var code: KilnExitCode
    public var message: String
    public var description: String { message }

    public init(code: KilnExitCode, message: String) {
        self.code = code
        self.message = message
    }
}

/// The one place an error thrown out of a command becomes an exit code and a message: Kiln's own failures keep their
/// documented codes (64 invalid input, 69 stack unavailable, …); anything else is Kiln's own fault and exits 70 with
/// its message, never ArgumentParser's 1 (which Kiln documents as "consistency anomaly").
public enum ErrorExit {
    /// The exit code and the stderr line of `error`.
    public static func of(_ error: any Error) -> (code: KilnExitCode, message: String) {
        switch error {
        case let failure as Failure: (failure.code, "kiln: \(failure.message)")
        case let error as StackError: (.stackUnavailable, "kiln: \(error)")
        case let error as SpecError: (.invalidInput, "kiln: \(error)")
        default: (.internalError, "kiln: internal error: \(error)")
        }
    }
}
