/// Every store Kiln can drive, by its name in scenarios (k6's output registry). A new backend is one file with a
/// `Client` plus one line here.
public enum StoreRegistry {
    public static let drivers: [StoreDriver] = []

    public static func driver(named name: String) -> StoreDriver? { drivers.first { $0.name == name } }
}
