// swift-tools-version:6.0
import PackageDescription

// Layers, each with one owner (see README "Code map"):
// CFuse (C shim) -> FuseKit (the only code that sees fuse_req_t) -> Passthrough
// (knows nothing of faults) -> FaultLayer (decorates it, uses pure FaultRules)
// -> faultfs (CLI). MonitorCore is pure (parsers, report), Monitor does its I/O.
let package = Package(
    name: "faultfs",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "faultfs", targets: ["faultfs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .systemLibrary(name: "CFuse", pkgConfig: "fuse3",
                       providers: [.apt(["libfuse3-dev"])]),
        .target(name: "FuseKit", dependencies: ["CFuse"]),
        .target(name: "Passthrough", dependencies: ["FuseKit", "CFuse"]),
        .target(name: "FaultRules"),
        .target(name: "FaultLayer", dependencies: ["FuseKit", "FaultRules"]),
        .target(name: "MonitorCore", dependencies: ["FaultRules"]),
        .target(name: "Monitor", dependencies: ["MonitorCore", "FaultRules"]),
        .executableTarget(name: "faultfs", dependencies: [
            "FuseKit", "Passthrough", "FaultLayer", "FaultRules", "Monitor", "MonitorCore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "FuseKitTests", dependencies: ["FuseKit"]),
        .testTarget(name: "FaultRulesTests", dependencies: ["FaultRules"]),
        .testTarget(name: "FaultLayerTests", dependencies: ["FaultLayer", "FuseKit", "FaultRules"]),
        .testTarget(name: "MonitorCoreTests", dependencies: ["MonitorCore", "FaultRules"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "IntegrationTests", dependencies: ["FaultRules"]),
    ]
)
