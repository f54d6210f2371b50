// swift-tools-version:6.0
import PackageDescription

/// `HPS_WITHOUT_SERVER=1` leaves `hps serve` out (the HPSServer target with Hummingbird, gRPC, swift-protobuf
/// and Prometheus): builds that never run the server, such as the sanitizer builds of the test suite
/// (scripts/sanitize.sh), then skip compiling that stack. `hps` is built without its `serve` command then.
let withServer = Context.environment["HPS_WITHOUT_SERVER"] != "1"

let serverPackages: [Package.Dependency] = [
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
    // `hps serve`'s gRPC endpoint (KServe v2 GRPCInferenceService) and its Prometheus metrics; pinned.
    .package(url: "https://github.com/grpc/grpc-swift-2", exact: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport", exact: "2.9.2"),
    .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
]

let serverTargets: [Target] = [
    // `hps serve`: the KServe v2 / Triton protocol over HTTP (Hummingbird) and gRPC (grpc-swift 2; the code
    // under Generated/ is protoc's output for Protos/grpc_service.proto, see scripts/generate-grpc.sh; its
    // coders are ProtobufCoding.swift, not grpc-swift-protobuf, whose plugins would build protoc's C++),
    // lookups through LookupSession, Prometheus text on its own port.
    .target(
        name: "HPSServer",
        dependencies: [
            "HPS", "HPSRuntime", .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ])
]

let package = Package(
    name: "hps",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "hps", targets: ["hps"]),
        .library(name: "HPS", targets: ["HPS"]),
        .library(name: "HPSRuntime", targets: ["HPSRuntime"]),
        // The TensorFlow op library (libhierarchical_parameter_server.so) the Python package loads.
        .library(name: "hierarchical_parameter_server", type: .dynamic, targets: ["HPSTensorFlow"]),
        // The C API (include/hps.h): libHPSCAPI.so, shipped as libhps.so (scripts/build-capi.sh, the Python package).
        .library(name: "HPSCAPI", type: .dynamic, targets: ["HPSCAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.0"),
        // The lookups report through its CoreMetrics API (any backend; `hps serve` bootstraps Prometheus).
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
    ] + (withServer ? serverPackages : []),
    targets: [
        // Small C helpers the hot path needs and Swift does not expose: prefetch, spin locks on raw words.
        .target(name: "CHPSSupport"),
        // Core: config, table files, the database protocol and hash map, caches, lookup sessions.
        // Lookups report through swift-metrics' CoreMetrics API, so an embedding program picks the backend.
        .target(
            name: "HPS",
            dependencies: [
                "CHPSSupport", .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]),
        // Wiring: builds a parameter server from a config with every linked backend.
        .target(name: "HPSRuntime", dependencies: ["HPS", "HPSRocksDB", "HPSRedis", "HPSCUDA", "HPSKafka"]),
        // CUDA driver API and NVRTC declarations (our own function-pointer typedefs; nothing links CUDA).
        .target(name: "CCUDADriver"),
        // GPU caches: the CUDA driver and NVRTC loaded with dlopen at run time; the kernels are the .cu files
        // under Kernels/, embedded into the binary and compiled by NVRTC on first use for the device.
        .target(
            name: "HPSCUDA", dependencies: ["HPS", "CCUDADriver"],
            resources: [
                .embedInCode("Kernels/hps_common.cuh"), .embedInCode("Kernels/dedup.cu"), .embedInCode("Kernels/rows.cu"),
                .embedInCode("Kernels/dynamic_cache.cu"), .embedInCode("Kernels/static_table.cu"), .embedInCode("Kernels/bench.cu"),
            ]
        ),
        // The RocksDB C API (Debian librocksdb-dev).
        .systemLibrary(name: "CRocksDB", pkgConfig: "rocksdb", providers: [.apt(["librocksdb-dev"])]),
        // The persistent tier over RocksDB, and dump/load of any database's tables.
        .target(name: "HPSRocksDB", dependencies: ["HPS", "CRocksDB"]),
        // The hiredis C client (Debian libhiredis-dev).
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
        // The Redis Cluster volatile tier over hiredis: slot routing, redirects, pipelines, node faults.
        .target(name: "HPSRedis", dependencies: ["HPS", "CHiredis"]),
        // The librdkafka C client and its mock cluster (Debian librdkafka-dev).
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        // Online updates over Kafka: the update source (consumer into the databases and device caches), the
        // sink (publisher in HPS's message format) and the mock cluster of `hps kafka-mock`.
        .target(name: "HPSKafka", dependencies: ["HPS", "CRdKafka"]),
        // TensorFlow C API declarations and the load-time constructor that registers the ops.
        .target(name: "CTensorFlow"),
        // The TF ops Init and Lookup over the C API (kernels in Swift).
        .target(name: "HPSTensorFlow", dependencies: ["CTensorFlow", "HPS", "HPSRuntime"]),
        // The C API every non-TensorFlow client builds on (include/hps.h): handles, status codes, thread-local
        // error messages, host- and device-memory lookups.
        .target(name: "HPSCAPI", dependencies: ["HPS", "HPSRuntime", "HPSKafka"]),
        // What tests and `hps gpu-check` start: local Redis clusters, the benchmark workload's host twin, the
        // GPU checker. Never a dependency of the TF op library or the C API.
        .target(name: "HPSTestSupport", dependencies: ["HPS", "HPSRuntime", "HPSRedis", "HPSCUDA"]),
        // Baselines and benchmark drivers of `hps bench`: raw hiredis and RocksDB C readers and loaders.
        // Never a dependency of the TF op library or the C API. (The device-side workload kernels,
        // Kernels/bench.cu, stay in HPSCUDA: CUDAKernels compiles and loads every kernel file as one set.)
        .target(name: "HPSBench", dependencies: ["CHPSSupport", "HPS", "HPSRedis", "HPSRocksDB", "CRocksDB"]),
        .executableTarget(
            name: "hps",
            dependencies: [
                "HPS", "HPSRuntime", "HPSRocksDB", "HPSRedis", "HPSCUDA", "HPSTestSupport", "HPSBench", "HPSKafka",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ] + (withServer ? ["HPSServer"] : [])
        ),
        .testTarget(
            name: "HPSTests",
            dependencies: [
                "HPS", "HPSRuntime", "HPSRocksDB", "HPSRedis", "HPSCUDA", "HPSKafka", "HPSTestSupport", .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]),
    ] + (withServer ? serverTargets : [])
)
