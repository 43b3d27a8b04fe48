// swift-tools-version:6.1
// Performance benchmarks for the ViTCKA tensor core, kept in their own package so that the
// benchmark harness (ordo-one/package-benchmark and its malloc interposer) never becomes a
// dependency of the library itself.
//
//   swift package --disable-sandbox benchmark          # the package-benchmark suites (Benchmarks/*)
//   swift run -c release gflops-report                 # one-process GFLOP/s table vs. the sgemm peak
//
// See README.md. Package-benchmark discovers every executable target whose sources live under
// Benchmarks/<Target>/; plain tools live under Sources/.
import PackageDescription

import class Foundation.ProcessInfo

// package-benchmark ≥ 1.38 on Swift 6.3 gathers malloc statistics with ordo-one/malloc-interposer
// (a Swift package: nothing to install; jemalloc/libjemalloc-dev is only used on Swift ≤ 6.2).
// Set BENCHMARK_DISABLE_MALLOC_INTERPOSER (or its older alias BENCHMARK_DISABLE_JEMALLOC) to build
// the suites with the system allocator instead; the malloc metrics are then unavailable.
let environment = ProcessInfo.processInfo.environment
let useMallocInterposer =
    environment["BENCHMARK_DISABLE_MALLOC_INTERPOSER"] == nil
    && environment["BENCHMARK_DISABLE_JEMALLOC"] == nil
let benchmarkTraits: Set<Package.Dependency.Trait> = useMallocInterposer ? ["MallocInterposer"] : []

let package = Package(
    name: "ViTCKABenchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "ViTCKA", path: ".."),
        // ordo-one/benchmark was called package-benchmark before; the old name still resolves but
        // makes the plugin print a deprecation warning on every run.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: benchmarkTraits),
    ],
    targets: [
        // MARK: - package-benchmark suites
        .executableTarget(
            name: "TensorCore",
            dependencies: [
                .product(name: "CKAKit", package: "ViTCKA"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/TensorCore",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),

        // MARK: - Plain tools
        /// What the report executables share (options, clock).
        .target(name: "ReportSupport", path: "Sources/ReportSupport"),
        /// GFLOP/s of each kernel next to the sgemm 2048³ peak, measured in one process.
        .executableTarget(
            name: "gflops-report",
            dependencies: [.product(name: "CKAKit", package: "ViTCKA")],
            path: "Sources/gflops-report"
        ),
        /// Minibatch CKA engine: Gram phase vs sgemm peak, compare vs file read time, vs per-pair Grams.
        .executableTarget(
            name: "cka-report",
            dependencies: [.product(name: "CKAKit", package: "ViTCKA"), "ReportSupport"],
            path: "Sources/cka-report"
        ),
        /// ViT-B/16 forward throughput with and without hooks, next to PyTorch/timm in the same run.
        .executableTarget(
            name: "vit-report",
            dependencies: [.product(name: "CKAKit", package: "ViTCKA"), "ReportSupport"],
            path: "Sources/vit-report"
        ),
        /// k-NN of 10 000 queries against 50 000 × 768 features vs the GEMM it needs.
        .executableTarget(
            name: "knn-report",
            dependencies: [.product(name: "CKAKit", package: "ViTCKA"), "ReportSupport"],
            path: "Sources/knn-report"
        ),
        /// One loss-landscape grid point: MAE / RC-MAE loss on 64 images at ViT-B/16 shape vs the sgemm peak.
        .executableTarget(
            name: "landscape-report",
            dependencies: [.product(name: "CKAKit", package: "ViTCKA"), "ReportSupport"],
            path: "Sources/landscape-report"
        ),
    ]
)
