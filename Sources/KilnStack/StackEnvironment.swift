import KilnBackend
import KilnScenario
import KilnStores

/// Connection settings of a stack as shell variables (`kiln stack env`), each backend's from its
/// `BackendStack.environment`. Passwords are never printed: the variable named by a stack's `password_env` is
/// referenced instead.
public enum StackEnvironment {
    public static func variables(
        _ stack: StackDefinition, paths: KilnPaths, backends: [Backend] = Backends.all
    ) -> [(name: String, value: String)] {
        let embedded = EmbeddedPaths(
            runDirectory: paths.stack, tools: paths.tools, libraries: paths.libraries, network: stack.network)
        return [("KILN_STACK_FILE", stack.source)] + backends.flatMap { $0.stack.environment(stack, embedded) }
    }

    /// `export NAME='value'` lines, single-quoted for any POSIX shell.
    public static func exports(_ stack: StackDefinition, paths: KilnPaths) -> String {
        variables(stack, paths: paths).map { "export \($0.name)='\($0.value.replacingOccurrences(of: "'", with: "'\\''"))'" }
            .joined(separator: "\n")
    }
}
