import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The pids Kiln started for a stack, kept in `state.json` of the run directory and rewritten after every
/// change, so that a crash half-way through `up` still leaves a record `down` can act on.
final class StackState {
    private let file: URL
    private var pids: [String: Int32]

    init(file: URL) {
        self.file = file
        if let data = try? Data(contentsOf: file), let decoded = try? JSONDecoder().decode([String: Int32].self, from: data)
        {
            pids = decoded
        } else {
            pids = [:]
        }
    }

    func pid(of server: String) -> pid_t? { pids[server] }

    func set(_ server: String, pid: pid_t) {
        pids[server] = pid
        save()
    }

    func clear() {
        pids = [:]
        try? FileManager.default.removeItem(at: file)
    }

    private func save() {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(pids) else { return }
        try? data.write(to: file, options: .atomic)
    }
}
