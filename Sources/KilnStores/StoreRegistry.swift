// Transitional: code that imports KilnStores keeps seeing the backend interface (KilnBackend) and the backends with
// their registry (`Backends.all`, `StoreRegistry`, `RowPlace.all` in Sources/Backends/Backends.swift) until callers
// import KilnBackends themselves.
@_exported import KilnBackend
@_exported import KilnBackends
