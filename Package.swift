// swift-tools-version:6.0
import PackageDescription

// Layers, each with one owner (see README "Code map"):
// CSystem (C: GNU-only calls) -> System (Errno, syscalls, files, clocks,
// threads, /proc, mountinfo, locks) -> CFuse/FuseKit (the binding: the only
// code that sees libfuse) -> Passthrough (knows nothing of faults) ->
// FaultLayer (decorates it) -> faultfs (CLI). FaultRules and MonitorCore are
// pure (FaultRules uses System's lock and Errno only); Monitor does the
// monitor's I/O.
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
        .target(name: "CSystem"),
        .target(name: "System", dependencies: ["CSystem"]),
        // libfuse3-dev (apt) provides <fuse3/fuse_lowlevel.h> and libfuse3.so.
        .target(name: "CFuse", linkerSettings: [.linkedLibrary("fuse3")]),
        .target(name: "FuseKit", dependencies: ["CFuse", "System"]),
        .target(name: "Passthrough", dependencies: ["FuseKit", "System"]),
        .target(name: "FaultRules", dependencies: ["System"]),
        .target(name: "FaultLayer", dependencies: ["FuseKit", "FaultRules", "System"]),
        .target(name: "MonitorCore", dependencies: ["FaultRules"]),
        .target(name: "Monitor", dependencies: ["MonitorCore", "FaultRules", "System"]),
        .executableTarget(name: "faultfs", dependencies: [
            "System", "FuseKit", "Passthrough", "FaultLayer", "FaultRules", "Monitor", "MonitorCore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], plugins: ["BuildInfo"]),
        // BuildInfo.swift (version, git commit) for `faultfs --version` and status.
        .plugin(name: "BuildInfo", capability: .buildTool()),
        // Shared by the test targets only: where their temp files go.
        .target(name: "TestSupport", dependencies: ["System"]),
        .testTarget(name: "SystemTests", dependencies: ["System", "TestSupport"]),
        .testTarget(name: "FuseKitTests", dependencies: ["FuseKit", "CFuse", "TestSupport"]),
        .testTarget(name: "FaultRulesTests", dependencies: ["FaultRules"]),
        .testTarget(name: "FaultLayerTests", dependencies: ["FaultLayer", "FuseKit", "FaultRules", "Passthrough", "TestSupport"]),
        .testTarget(name: "MonitorCoreTests", dependencies: ["MonitorCore", "FaultRules"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "IntegrationTests", dependencies: ["FaultRules", "System", "TestSupport"]),
    ]
)
