/// Where rows of a store live, for the reconcile checker: one place per kind of stored copy. The operations
/// listed are the engine's write operations that put a dataset row there (ARCHITECTURE.md: the engine hands each
/// row to one write per store, so a row's fate in a place is the outcome of that op). Each backend declares its
/// places (`Backend.places`); `RowPlace.all` is derived from the list of backends.
public struct RowPlace: Sendable, Hashable {
    public var store: String
    /// `rows`, `messages`, `paid-edges`, `txn-keys`.
    public var name: String
    public var writtenBy: Set<String>

    public var id: String { "\(store).\(name)" }

    public init(store: String, name: String, writtenBy: Set<String>) {
        self.store = store
        self.name = name
        self.writtenBy = writtenBy
    }

    /// A place of `Operation.store`, filled by the typed `operations` (so renaming or reordering an operation
    /// cannot make the checker read the wrong operation's history).
    public init<Operation: StoreOperation>(_ name: String, writtenBy operations: [Operation]) {
        self.init(store: Operation.store, name: name, writtenBy: Set(operations.map(\.id)))
    }
}
