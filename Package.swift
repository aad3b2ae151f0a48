// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Refinery",
    platforms: [.macOS(.v14)],
    // No library products: the kernels are built with unsafe flags (-O3, -Ounchecked) that
    // SwiftPM refuses in a dependency, and dropping them costs training speed. Refinery is used
    // as the `refinery` executable; its modules are for this package's own targets and tests.
    products: [
        .executable(name: "refinery", targets: ["refinery"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.20.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.0.0"..<"5.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(
            name: "CZeroMQ",
            pkgConfig: "libzmq",
            providers: [.apt(["libzmq3-dev"])]
        ),
        .systemLibrary(
            name: "COneDNN",
            providers: [.apt(["libdnnl-dev"])]
        ),
        .target(
            name: "CRefineryKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]
        ),
        .target(name: "RefineryCore", dependencies: [.product(name: "Logging", package: "swift-log")]),
        .target(
            name: "RefineryTensor",
            dependencies: ["COpenBLAS", "COneDNN", "CRefineryKernels"],
            swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
        ),
        .target(name: "RefineryText", dependencies: ["RefineryCore"]),
        .target(name: "RefineryModel", dependencies: ["RefineryCore", "RefineryTensor", "RefineryText"]),
        .target(name: "RefineryStore", dependencies: [.product(name: "GRDB", package: "GRDB.swift")]),
        .target(
            name: "RefineryLLM",
            dependencies: [
                "RefineryCore", "RefineryText",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "RefineryMockLLM",
            dependencies: [
                "RefineryCore", "RefineryLLM",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "RefineryData", dependencies: ["RefineryCore", "RefineryText", "RefineryStore", "RefineryLLM"]),
        .target(
            name: "RefineryCuration",
            dependencies: ["RefineryCore", "RefineryText", "RefineryData", "RefineryTensor", "RefineryStore", "RefineryModel",
                           "RefineryLLM", .product(name: "Crypto", package: "swift-crypto")]),
        .target(
            name: "RefineryCluster",
            dependencies: [
                "CZeroMQ", "RefineryCore", "RefineryTensor", "RefineryModel", "RefineryText", "RefineryData", "RefineryStore", "RefineryLLM",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .target(
            name: "RefineryPipeline",
            dependencies: [
                "RefineryCore", "RefineryCluster", "RefineryModel", "RefineryText", "RefineryTensor", "RefineryData", "RefineryStore",
                "RefineryLLM", "RefineryCuration",
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .target(
            name: "RefineryHTTP",
            dependencies: ["RefineryCore", .product(name: "Hummingbird", package: "hummingbird")]
        ),
        .target(
            name: "RefineryServe",
            dependencies: [
                "RefineryCore", "RefineryHTTP", "RefineryModel", "RefineryText",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "RefineryWatch",
            dependencies: [
                "RefineryCore", "RefineryHTTP", "RefineryPipeline", "RefineryStore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "refinery",
            dependencies: [
                "RefineryCore", "RefineryPipeline", "RefineryCluster", "RefineryModel", "RefineryText", "RefineryTensor", "RefineryData",
                "RefineryStore", "RefineryLLM", "RefineryMockLLM", "RefineryCuration", "RefineryWatch", "RefineryServe",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "refinery-bench",
            dependencies: ["RefineryCore", "RefineryModel", "RefineryTensor", "RefineryText", "RefineryData", "RefineryCuration", "COpenBLAS"],
            path: "Sources/refinery-bench"
        ),
        .testTarget(
            name: "RefineryCLITests",
            dependencies: ["RefineryCore", "RefineryText", "RefineryStore", "RefineryLLM", "RefineryModel", "RefineryCluster", "CZeroMQ",
                           .product(name: "GRDB", package: "GRDB.swift"), .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .testTarget(
            name: "RefineryDataTests",
            dependencies: ["RefineryCore", "RefineryData", "RefineryStore", "RefineryText", "RefineryLLM", "RefineryMockLLM"],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "RefineryCurationTests",
            dependencies: ["RefineryCore", "RefineryCuration", "RefineryData", "RefineryText", "RefineryStore", "RefineryModel", "RefineryLLM",
                           "RefineryMockLLM"],
            exclude: ["Fixtures"]
        ),
        .testTarget(name: "RefineryStoreTests", dependencies: ["RefineryStore", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "RefineryLLMTests", dependencies: ["RefineryCore", "RefineryLLM", "RefineryMockLLM", "RefineryText"]),
        .testTarget(name: "RefineryCoreTests", dependencies: ["RefineryCore", .product(name: "Logging", package: "swift-log")], exclude: ["Fixtures"]),
        .testTarget(
            name: "RefineryClusterTests",
            dependencies: ["RefineryCore", "RefineryCluster", "RefineryStore", "RefineryData", "RefineryLLM", "RefineryModel", "CZeroMQ",
                           .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .testTarget(
            name: "RefineryPipelineTests",
            dependencies: ["RefineryCore", "RefineryPipeline", "RefineryModel", "RefineryText", "RefineryStore", "RefineryMockLLM",
                           "RefineryCuration", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(name: "SystemLibraryTests", dependencies: ["COpenBLAS", "CZeroMQ"]),
        .testTarget(name: "RefineryTensorTests", dependencies: ["RefineryTensor", "CRefineryKernels"], exclude: ["Fixtures"]),
        .testTarget(name: "RefineryTextTests", dependencies: ["RefineryCore", "RefineryText"], exclude: ["Fixtures"]),
        .testTarget(
            name: "RefineryModelTests",
            dependencies: ["RefineryCore", "RefineryModel", "RefineryText", "RefineryTensor"],
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
