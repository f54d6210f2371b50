// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "hps",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "hps", targets: ["hps"]),
        .library(name: "HPS", targets: ["HPS"]),
        .library(name: "HPSRuntime", targets: ["HPSRuntime"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Small C helpers the hot path needs and Swift does not expose: prefetch, spin locks on raw words.
        .target(name: "CHPSSupport"),
        // Core: config, table files, the database protocol and hash map, caches, lookup sessions.
        .target(name: "HPS", dependencies: ["CHPSSupport"]),
        // Wiring: builds a parameter server from a config with every linked backend.
        .target(name: "HPSRuntime", dependencies: ["HPS"]),
        .executableTarget(
            name: "hps",
            dependencies: [
                "HPS", "HPSRuntime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "HPSTests", dependencies: ["HPS", "HPSRuntime"]),
    ]
)
