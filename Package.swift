// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "shardtrain",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "shardtrain", targets: ["shardtrain"]),
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "Jobs", targets: ["Jobs"]),
        .library(name: "Wire", targets: ["Wire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // The Prometheus text format for `--prometheus` (and only that: no web framework).
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // OpenBLAS through pkg-config; Debian: libopenblas-dev.
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // libzmq through pkg-config; Debian: libzmq3-dev.
        .systemLibrary(
            name: "CZeroMQ",
            pkgConfig: "libzmq",
            providers: [.apt(["libzmq3-dev"])]
        ),
        // cpuid (to choose the BLAS kernel the CPU can run) and stdio settings.
        .target(name: "CPlatform"),
        // The exact sums' fixed-point loops, built for SSE2, AVX2 and AVX-512 and chosen at run time.
        .target(name: "CExactSum", dependencies: ["CPlatform"]),
        // SGD's and Adam's elementwise updates, built for SSE2, AVX2 and AVX-512 and chosen at run time.
        .target(name: "CUpdate", dependencies: ["CPlatform"]),
        // The keyed digest (NH) a worker's replica of the weights is compared by, built three ways like the others.
        .target(name: "CDigest", dependencies: ["CPlatform"]),
        .target(name: "Wire", dependencies: ["CZeroMQ", "CPlatform", "CExactSum"]),
        // oneDNN's matmul primitives, the default GEMM; Debian: libdnnl-dev (no pkg-config file, so linked by name).
        .target(name: "CMatmul", linkerSettings: [.linkedLibrary("dnnl"), .linkedLibrary("gomp")]),
        // What every layer shares with the system: bad input, signals, child processes, files written safely, SHA-256,
        // the one-page HTTP server behind `--prometheus`.
        .target(name: "Platform"),
        // The computation: tensors, layers, losses, optimizers, schedules, exact sums, the trainer.
        .target(
            name: "Engine",
            dependencies: ["Platform", "CBLAS", "CMatmul", "CUpdate", "CPlatform", "CExactSum"]
        ),
        // Jobs and their files: the job file, data files, weights and checkpoints, a run prepared from them, and what a
        // run reports (the metrics file, TensorBoard's events, Prometheus' figures).
        .target(
            name: "Jobs",
            dependencies: ["Engine", "Platform", .product(name: "Yams", package: "Yams"),
                           .product(name: "Prometheus", package: "swift-prometheus")]
        ),
        .target(name: "Cluster", dependencies: ["Engine", "Jobs", "Platform", "Wire", "CDigest"]),
        .executableTarget(
            name: "shardtrain",
            dependencies: ["Engine", "Jobs", "Platform", "Cluster", "Wire", "CPlatform",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // Test-only: counts heap allocations so a test can prove the training step makes none.
        .target(name: "AllocationCounter", path: "Tests/AllocationCounter"),
        // Measurements behind scripts/bench.sh.
        .executableTarget(
            name: "shardtrain-bench",
            dependencies: ["Engine", "Jobs", "Platform", "Wire", "CExactSum", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(
            name: "EngineTests",
            dependencies: ["Engine", "Jobs", "Platform", "AllocationCounter"],
            exclude: ["Fixtures"]
        ),
        .testTarget(name: "WireTests", dependencies: ["Wire", "Engine", "Jobs", "Platform"]),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "Engine", "Jobs", "Platform", "Wire", "CDigest"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["shardtrain", "Wire", "Engine", "Jobs", "Platform"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
