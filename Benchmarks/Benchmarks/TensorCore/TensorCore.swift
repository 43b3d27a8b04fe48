// Throughput of the tensor core's BLAS-backed kernels on the shapes a ViT-B/16 CKA run hits.
//
// Every benchmark reports, per iteration (one kernel call per scaled iteration):
//   • wallClock / throughput  — time per call and calls per second (package-benchmark's own),
//   • FLOP/s (custom, shown in G) — useful floating-point operations per second, from the same
//     calls timed inside the closure: GEMM counts 2·m·n·k, a Gram X·Xᵀ of X [n, d] counts 2·n²·d.
// GFLOP/s = throughput (calls/s) × GFLOP per call (README.md lists the GFLOP per call of each
// benchmark); the custom metric does that multiplication for you.
//
// The "% of the sgemm 2048³ peak" table is the gflops-report tool (one process, one table).
// OpenBLAS uses OPENBLAS_NUM_THREADS threads (default: one per core).

import Benchmark
import CKAKit

/// Useful floating-point operations per second of the measured calls (prefers larger; shown in G).
private let flopRate = BenchmarkMetric.custom("FLOP/s", polarity: .prefersLarger, useScalingFactor: false)

/// Deterministic pseudo-random values in [-1, 1) (SplitMix64), so runs see the same data.
private func noise(_ i: Int, seed: UInt64) -> Float {
    var z = UInt64(bitPattern: Int64(i)) &+ seed &* 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z ^= z >> 31
    return Float(z >> 40) * 0x1p-23 - 1
}

private func matrix(_ rows: Int, _ cols: Int, seed: UInt64) -> Tensor<Float> {
    Tensor<Float>(shape: [rows, cols], generating: { noise($0, seed: seed) })
}

/// Runs `body` once per scaled iteration and records the achieved FLOP/s of those calls.
@inline(__always)
private func measureFlops(_ benchmark: Benchmark, flopsPerCall: Double, _ body: () throws -> Void) rethrows {
    let clock = ContinuousClock()
    let start = clock.now
    for _ in benchmark.scaledIterations { try body() }
    let elapsed = clock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    let calls = Double(benchmark.scaledIterations.count)
    if seconds > 0 { benchmark.measurement(flopRate, Int((flopsPerCall * calls / seconds).rounded())) }
}

/// A tensor that the benchmark mutates in place across iterations.
private final class Box: @unchecked Sendable {
    var x: Tensor<Float>
    init(_ x: Tensor<Float>) { self.x = x }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        // Only metrics that need no sampling thread: .peakMemoryResident & co. start a 5 ms sampler
        // thread that competes with OpenBLAS's threads on a 2-core machine, and .cpuTotal only
        // has 10 ms resolution.
        metrics: [.wallClock, .throughput, flopRate],
        timeUnits: .microseconds,
        units: [flopRate: .giga],
        warmupIterations: 2,
        scalingFactor: .one,
        maxDuration: .seconds(4),
        maxIterations: 200
    )

    /// One GEMM shape `C[m, n] = A[m, k] · B[k, n]` (or `B[n, k]ᵀ` with `transposeB`).
    func gemmBenchmark(_ name: String, m: Int, n: Int, k: Int, transposeB: Bool = false) {
        let flops = 2.0 * Double(m) * Double(n) * Double(k)
        Benchmark(name) { benchmark, operands in
            var (a, b, c) = operands
            try measureFlops(benchmark, flopsPerCall: flops) {
                try Tensor.gemm(a, b, transposeB: transposeB, into: &c)
                blackHole(c)
            }
            blackHole(a)
            blackHole(b)
        } setup: {
            (
                matrix(m, k, seed: 1), transposeB ? matrix(n, k, seed: 2) : matrix(k, n, seed: 2),
                Tensor<Float>(shape: [m, n])
            )
        }
    }

    // The reference: square single-precision GEMM, as close to the machine's sgemm peak as
    // OpenBLAS gets. Every other figure is read against this one.
    gemmBenchmark("sgemm f32 [2048x2048]·[2048x2048]", m: 2048, n: 2048, k: 2048)

    // Q, K and V of one image in one product: 197 tokens × 768 features · W_qkv [768, 2304].
    gemmBenchmark("gemm f32 [197x768]·[768x2304] (ViT-B/16 qkv, one image)", m: 197, n: 2304, k: 768)

    // The first MLP layer over a batch of 32 images: 32·197 = 6304 tokens · W_fc1 [768, 3072].
    gemmBenchmark("gemm f32 [6304x768]·[768x3072] (ViT-B/16 fc1, 32 images)", m: 6304, n: 3072, k: 768)

    // The Gram matrix of a minibatch of 32 block outputs, each 197·768 = 151296 features:
    // K = X·Xᵀ [32, 32], the inner loop of minibatch CKA. Flops 2·n²·d (the full square, as sgemm
    // computes it); the centred variant also copies X and subtracts the column means first
    // (its extra ~4·n·d flops and 19 MB copy are not counted, so its FLOP/s shows their cost).
    let gramN = 32, gramD = 197 * 768
    let gramFlops = 2.0 * Double(gramN) * Double(gramN) * Double(gramD)

    Benchmark("gram f32 [32x151296]·[151296x32] (CKA Gram of a ViT-B block output)") { benchmark, x in
        try measureFlops(benchmark, flopsPerCall: gramFlops) {
            blackHole(try x.gramOfRows())
        }
    } setup: {
        matrix(gramN, gramD, seed: 3)
    }

    Benchmark("gram f32 [32x151296]·[151296x32] centred (gram(centered: true))") { benchmark, x in
        try measureFlops(benchmark, flopsPerCall: gramFlops) {
            blackHole(try x.gram(centered: true))
        }
    } setup: {
        matrix(gramN, gramD, seed: 3)
    }

    // What the CKA code does with its reused minibatch buffer: centre in place, then the Gram.
    // The box keeps the buffer uniquely referenced, so centerColumns() copies nothing.
    Benchmark("gram f32 [32x151296]·[151296x32] centred in place (centerColumns() + gramOfRows())") { benchmark, box in
        try measureFlops(benchmark, flopsPerCall: gramFlops) {
            try box.x.centerColumns()
            blackHole(try box.x.gramOfRows())
        }
    } setup: {
        Box(matrix(gramN, gramD, seed: 3))
    }
}
