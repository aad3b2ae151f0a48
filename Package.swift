// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Refinery",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "refinery", targets: ["refinery"]),
        .library(name: "RefineryModel", targets: ["RefineryModel"]),
        .library(name: "RefineryText", targets: ["RefineryText"]),
        .library(name: "RefineryTensor", targets: ["RefineryTensor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.20.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
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
        .target(
            name: "CRefineryKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]
        ),
        .target(
            name: "RefineryTensor",
            dependencies: ["COpenBLAS", "CRefineryKernels"],
            swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
        ),
        .target(name: "RefineryText"),
        .target(name: "RefineryModel", dependencies: ["RefineryTensor", "RefineryText", "CRefineryKernels"]),
        .target(name: "RefineryStore", dependencies: [.product(name: "GRDB", package: "GRDB.swift")]),
        .target(
            name: "RefineryLLM",
            dependencies: [
                "RefineryText",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "RefineryData", dependencies: ["RefineryText", "RefineryStore", "RefineryLLM"]),
        .target(
            name: "RefineryCluster",
            dependencies: [
                "CZeroMQ", "RefineryModel", "RefineryText", "RefineryData", "RefineryStore", "RefineryLLM",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .executableTarget(
            name: "refinery",
            dependencies: [
                "RefineryCluster", "RefineryModel", "RefineryText", "RefineryTensor", "RefineryData", "RefineryStore", "RefineryLLM",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "refinery-bench",
            dependencies: ["RefineryModel", "RefineryTensor", "COpenBLAS"],
            path: "Sources/refinery-bench"
        ),
        .testTarget(
            name: "RefineryCLITests",
            dependencies: ["RefineryText", "RefineryStore", "RefineryLLM", "RefineryModel", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(
            name: "RefineryDataTests",
            dependencies: ["RefineryData", "RefineryStore", "RefineryText", "RefineryLLM", .product(name: "GRDB", package: "GRDB.swift")],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "RefineryClusterTests",
            dependencies: ["RefineryCluster", "RefineryStore", "RefineryData", "RefineryLLM", "RefineryModel", "CZeroMQ"]
        ),
        .testTarget(name: "SystemLibraryTests", dependencies: ["COpenBLAS", "CZeroMQ"]),
        .testTarget(name: "RefineryTensorTests", dependencies: ["RefineryTensor"]),
        .testTarget(name: "RefineryTextTests", dependencies: ["RefineryText"], exclude: ["Fixtures"]),
        .testTarget(
            name: "RefineryModelTests",
            dependencies: ["RefineryModel", "RefineryText", "RefineryTensor"],
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
