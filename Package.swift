// swift-tools-version:6.1
import PackageDescription

// librdkafka >= 2.3 is needed at run time against the Tansu broker (Debian ships 2.0.2, which misparses
// ApiVersions v3). scripts/bootstrap links the 2.x library from the confluent-kafka wheel into .kiln/lib;
// this rpath makes every binary of the package load it first, without LD_LIBRARY_PATH. When the link is
// absent the loader falls back to the system library.
let kilnLibraryPath = "\(Context.packageDirectory)/.kiln/lib"
let runtimeLibrarySearchPath: [LinkerSetting] = [
    .unsafeFlags(["-Xlinker", "-rpath", "-Xlinker", kilnLibraryPath])
]

let package = Package(
    name: "Kiln",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "kiln", targets: ["kiln"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
    ],
    targets: [
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),

        .target(name: "CProcessSpawn"),
        // TLS for Kiln's RESP clients: OpenSSL (Debian libssl-dev) does the socket I/O, hiredis 0.14's reader parses.
        .target(
            name: "CRedisTLS",
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto"), .linkedLibrary("hiredis")]),
        .target(name: "KilnCore"),
        .target(name: "KilnElle", dependencies: ["KilnCore"]),
        // KilnData's `RowEncoder` writes its RESP format with KilnRedis's `RESPWriter` (the one RESP encoder; data sits
        // above the wire modules, so this import points down).
        .target(name: "KilnData", dependencies: ["KilnCore", "KilnRedis"]),
        .target(name: "KilnPostgres", dependencies: ["CLibPQ"]),
        .target(name: "KilnRedis", dependencies: ["CHiredis", "CRedisTLS"]),
        .target(name: "KilnKafka", dependencies: ["CRdKafka"], linkerSettings: runtimeLibrarySearchPath),
        .target(name: "KilnHTTP", dependencies: ["CCurl"]),
        .target(
            name: "KilnScenario",
            dependencies: ["KilnCore", "KilnData", .product(name: "Yams", package: "Yams")]
        ),
        .target(
            name: "KilnDurability",
            dependencies: [
                "KilnCore", "KilnScenario", "KilnData", "KilnPostgres", "KilnRedis", "KilnStack", "KilnStores",
                "KilnCheck", "KilnReport", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "KilnStack",
            dependencies: [
                "CProcessSpawn", "KilnCore", "KilnScenario", "KilnBackend", "KilnStores",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "KilnSmoke",
            dependencies: [
                "KilnCore", "KilnData", "KilnScenario", "KilnBackend", "KilnBackends", "KilnStores", "KilnCheck",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Backends (ARCHITECTURE.md "Target shape"): `KilnBackend` holds what every backend implements (the load
        // client's protocol, typed operations, the `Backend` descriptor); each store's folder under Sources/Backends
        // (target KilnBackends below) depends on it and on wire modules, never on an engine.
        .target(
            name: "KilnBackend",
            dependencies: ["KilnCore", "KilnData", "KilnScenario", .product(name: "Logging", package: "swift-log")],
            path: "Sources/Backends/Interface"
        ),
        // Every store's folder under Sources/Backends (all but Interface) is this one target, so a new store is a
        // new folder plus one line in `Backends.all` (Sources/Backends/Backends.swift) — no edit here. Its
        // dependencies are the backend interface and every wire module a store may speak.
        .target(
            name: "KilnBackends",
            dependencies: [
                "KilnBackend", "KilnCore", "KilnData", "KilnScenario", "KilnPostgres", "KilnRedis", "KilnKafka",
                "KilnHTTP", .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Backends",
            exclude: ["Interface", "README.md"],
            linkerSettings: runtimeLibrarySearchPath
        ),
        .target(
            name: "KilnStores",
            dependencies: [
                "KilnBackend", "KilnBackends",
                "KilnCore", "KilnData", "KilnScenario", "KilnPostgres", "KilnRedis", "KilnKafka", "KilnHTTP", "KilnElle",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "KilnPipeline",
            dependencies: [
                "KilnBackend", "KilnBackends", "KilnCore", "KilnData", "KilnScenario", "KilnStores", "KilnPostgres",
                "KilnRedis", "KilnKafka", "KilnHTTP",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "KilnLoad",
            dependencies: [
                "CProcessSpawn", "KilnCore", "KilnData", "KilnScenario", "KilnStores", "KilnPipeline",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "KilnCheck",
            dependencies: [
                "KilnBackend", "KilnBackends", "KilnCore", "KilnData", "KilnScenario", "KilnStores", "KilnPostgres",
                "KilnRedis", "KilnKafka", "KilnHTTP", "KilnPipeline", "KilnElle",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "KilnReport",
            dependencies: [
                "KilnBackend", "KilnBackends", "KilnCore", "KilnScenario", "KilnCheck", "KilnElle",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .target(
            name: "KilnAudit",
            dependencies: [
                "KilnCore", "KilnScenario", "KilnStores", "KilnPostgres", "KilnRedis", "KilnHTTP", "CRedisTLS",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "KilnFaults",
            dependencies: [
                "CProcessSpawn", "KilnCore", "KilnScenario", "KilnStack", "KilnStores", "KilnPostgres", "KilnRedis",
                "KilnHTTP", "KilnKafka", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "KilnReplay",
            dependencies: [
                "KilnCore", "KilnScenario", "KilnStores", .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Orchestration (ARCHITECTURE.md "Target shape"): the run controller, the fault factory, check and drill
        // orchestration, Kubernetes manifests, the one error -> exit code mapping. Everything a command does, callable
        // in-process; `kiln` only parses arguments and prints.
        .target(
            name: "KilnRunner",
            dependencies: [
                "KilnCore", "KilnScenario", "KilnStack", "KilnSmoke", "KilnData", "KilnStores", "KilnLoad", "KilnCheck",
                "KilnPipeline", "KilnReport", "KilnFaults", "KilnElle", "KilnDurability", "KilnAudit", "KilnReplay",
                "KilnPostgres", "KilnRedis", "KilnKafka", "KilnHTTP",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "kiln",
            dependencies: [
                "KilnRunner",
                "KilnCore", "KilnScenario", "KilnStack", "KilnSmoke", "KilnData", "KilnStores", "KilnLoad", "KilnCheck",
                "KilnPipeline", "KilnReport", "KilnFaults", "KilnElle", "KilnDurability", "KilnAudit", "KilnReplay",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            linkerSettings: runtimeLibrarySearchPath
        ),
        // What both test targets share and that touches no server (paths, the parsed stack file, unique names,
        // temporary files, Elle run directories). A library, because one test target cannot import another.
        .target(
            name: "KilnTestSupport",
            dependencies: ["KilnScenario", "KilnStack", "KilnData", "KilnElle", "KilnCheck", "KilnReplay"],
            path: "Tests/KilnTestSupport"
        ),
        // Tests that need no server, no process and no namespace: `swift test --filter KilnUnitTests` (< 1 minute).
        .testTarget(
            name: "KilnUnitTests",
            dependencies: [
                "KilnTestSupport", "KilnCore", "KilnScenario", "KilnStack", "KilnData", "KilnStores", "KilnLoad",
                "KilnCheck", "KilnPipeline", "KilnReport", "KilnFaults", "KilnElle", "KilnReplay", "KilnAudit",
                "KilnRunner",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ],
            linkerSettings: runtimeLibrarySearchPath
        ),
        // Integration tests against the real servers of the embedded stack (scripts/test starts it), and tests that
        // start processes, servers or namespaces of their own.
        .testTarget(
            name: "KilnTests",
            dependencies: [
                "KilnCore", "KilnScenario", "KilnPostgres", "KilnRedis", "KilnKafka", "KilnHTTP", "KilnStack",
                "KilnBackend", "KilnBackends", "KilnSmoke", "KilnData", "KilnStores", "KilnLoad", "KilnCheck",
                "KilnPipeline", "KilnReport", "KilnFaults",
                "KilnElle", "KilnDurability", "KilnAudit", "KilnReplay", "KilnRunner", "KilnTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ],
            linkerSettings: runtimeLibrarySearchPath
        ),
    ],
    swiftLanguageModes: [.v6]
)
