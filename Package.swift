// swift-tools-version:6.0
// A Swift toolkit for comparing the internal representations of Vision Transformers
// with minibatch CKA (Nguyen, Raghu & Kornblith 2020).
//
// System libraries (Debian 12): libopenblas-dev liblapacke-dev libhdf5-dev libcairo2-dev libopenmpi-dev openmpi-bin
// libssl-dev pkg-config.
import PackageDescription

let package = Package(
    name: "ViTCKA",
    products: [
        .library(name: "CKAKit", targets: ["CKAKit"]),
        .executable(name: "cka", targets: ["cka"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
    ],
    targets: [
        // MARK: - Public API
        /// Dense row-major tensors and every numeric kernel (the only importer of BLAS/LAPACKE).
        .target(name: "CKATensor", dependencies: ["CBLAS", "CGramKernel", "_CKASupport"]),
        /// HDF5 stores of formats.md (the only importer of HDF5).
        .target(name: "CKAIO", dependencies: ["CKATensor", "CHDF5", "_CKASupport"]),
        /// CKA estimators: minibatch HSIC₁, debiased, linear and RBF CKA.
        .target(name: "CKASimilarity", dependencies: ["CKATensor", "CKAIO", "_CKASupport"]),
        /// Untrusted checkpoint files → named tensors: safetensors and PyTorch zip+pickle (never executed).
        .target(name: "CKACheckpoint", dependencies: ["CKATensor", "CCrypto", "_CKASupport"]),
        /// Images → network input: JPEG/PNG decoding, PIL-faithful resizing, crops, normalisation.
        .target(name: "CKAImages", dependencies: ["CKATensor", "CTurboJPEG", "CPNG", "_CKASupport"]),
        /// The Vision Transformer forward pass with a hook at every layer (timm module paths).
        .target(name: "CKAViT", dependencies: ["CKATensor", "CKACheckpoint", "_CKASupport"]),
        /// `cka extract`: checkpoint + inputs → forward pass with hooks → activation store (activations, pooled, Grams).
        .target(name: "CKAExtraction", dependencies: ["CKAViT", "CKAIO", "CKAImages", "CKACheckpoint", "_CKASupport"]),
        /// Analyses on stored features: DINO k-NN per layer, linear probes, Kendall-τ and prediction agreement.
        .target(name: "CKAAnalysis", dependencies: ["CKATensor", "CKAIO", "_CKASupport"]),
        /// Loss landscapes: filter-normalised directions, resumable 1-D/2-D surfaces, flatness statistics.
        .target(name: "CKALandscape", dependencies: ["CKATensor", "CKAIO", "CKAViT", "CKACheckpoint", "_CKASupport"]),
        /// Work split over the processes of an `mpirun`/`srun` job (the only importer of MPI); a world of one otherwise.
        .target(name: "CKADistributed", dependencies: ["CKATensor", "CMPI"]),
        /// Pictures (heatmaps, curves) through cairo (the only importer of cairo).
        .target(name: "CKAPlot", dependencies: ["CCairo", "_CKASupport"]),
        /// Umbrella: `import CKAKit` re-exports every public module.
        .target(
            name: "CKAKit",
            dependencies: [
                "CKATensor", "CKAIO", "CKASimilarity", "CKACheckpoint", "CKAImages", "CKAViT", "CKAExtraction",
                "CKAAnalysis", "CKALandscape", "CKAPlot", "_CKASupport",
            ]),
        /// The `cka` command.
        .executableTarget(
            name: "cka",
            dependencies: [
                "CKAKit", "CKADistributed", "_CKASupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // MARK: - C shims (implementation details)
        /// The Gram kernel of `Tensor.centeredGram(rows:width:)` (AVX-512 / AVX2 where the CPU has them).
        .target(name: "CGramKernel"),
        .systemLibrary(
            name: "CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CCairo", pkgConfig: "cairo", providers: [.apt(["libcairo2-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        // MARK: - Support (implementation details)
        /// Atomic output files, progress, parallel loops: shared by every module; not API.
        .target(name: "_CKASupport", exclude: ["README.md"]),
        .target(name: "_CKATestSupport", dependencies: ["CKATensor", "CKACheckpoint", "CKAIO", "CKAViT"]),

        // MARK: - Unit test bundles
        .testTarget(name: "CKATensorTests", dependencies: ["CKATensor", "_CKATestSupport"]),
        .testTarget(name: "CKAIOTests", dependencies: ["CKAIO", "_CKATestSupport"]),
        .testTarget(
            name: "CKASimilarityTests", dependencies: ["CKASimilarity", "CKAIO", "_CKATestSupport"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "CKACheckpointTests", dependencies: ["CKACheckpoint", "_CKATestSupport"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "CKAImagesTests", dependencies: ["CKAImages", "_CKATestSupport"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "CKAViTTests", dependencies: ["CKAViT", "CKAExtraction", "CKAIO", "_CKATestSupport"],
            exclude: ["OfficialFixtures", "FamilyFixtures"]),
        .testTarget(
            name: "CKAExtractionTests",
            dependencies: ["CKAExtraction", "CKAViT", "CKAIO", "CKAImages", "_CKATestSupport"]),
        .testTarget(
            name: "CKAAnalysisTests", dependencies: ["CKAAnalysis", "CKAIO", "_CKATestSupport"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "CKALandscapeTests", dependencies: ["CKALandscape", "CKAViT", "CKAIO", "_CKATestSupport"],
            exclude: ["Fixtures"]),
        .testTarget(name: "CKADistributedTests", dependencies: ["CKADistributed", "CKATensor"]),
        .testTarget(name: "CKAPlotTests", dependencies: ["CKAPlot", "_CKATestSupport"]),
        .testTarget(name: "CKAKitTests", dependencies: ["CKAKit", "_CKATestSupport"]),
        /// A test aid: writes a store slowly so that a test can kill it (not shipped in `cka`).
        .executableTarget(
            name: "slow-store-writer", dependencies: ["CKAIO", "CKATensor"], path: "Tests/Tools/SlowStoreWriter"),
        .testTarget(
            name: "CKACommandTests",
            dependencies: ["cka", "slow-store-writer", "CKAKit", "_CKASupport", "_CKATestSupport"],
            exclude: ["Fixtures"]),
    ]
)
