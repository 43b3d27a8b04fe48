// cka-report: the performance figures of the minibatch CKA engine (issue "Minibatch CKA engine"),
// measured in one process so that every ratio compares numbers taken in the same run.
//
//   swift run -c release cka-report [--n 1024] [--workload w1|w2|both] [--data DIR] [--runs 3]
//
// W1: two models × 12 layers [N, 197, 768] float32 (ViT-B/16 block outputs), flattened, batch 32.
// W2: two models × 36 pooled layers [N, 768…3072] float32, batch 32.
// Reports (a) the Gram phase in GFLOP/s next to the sgemm 2048³ peak, (b) end-to-end CKAComparison.run
// against the time to merely read both files (warm page cache), (c) the speed-up over the per-pair
// approach (both Grams rebuilt for every pair of layers, activations of one batch held in memory).
import CKAKit
import Foundation
import ReportSupport

#if DEBUG
    FileHandle.standardError.write(Data("cka-report: build with -c release; debug timings are meaningless\n".utf8))
    exit(1)
#endif

configureAllocatorForStreaming()
let n = Int(option("--n", "1024"))!
let workload = option("--workload", "both")
let runs = Int(option("--runs", "3"))!
let dataDir = option("--data", FileManager.default.currentDirectoryPath + "/.build/cka-report-data")
try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)

func best(_ r: Int = runs, _ body: () throws -> Void) rethrows -> Double {
    var b = Double.infinity
    for _ in 0..<r { let t = now(); try body(); b = min(b, now() - t) }
    return b
}

/// Cheap deterministic data with shared low-rank structure: x = tanh(z·w) + uniform noise.
func makeStore(_ path: String, model: String, layers: [(String, [Int])], seed: UInt64) throws {
    if FileManager.default.fileExists(atPath: path) { return }
    FileHandle.standardError.write(Data("writing \(path)…\n".utf8))
    let ids = (0..<n).map { String(format: "img%05d", $0) }
    let w = try ActivationStoreWriter(path: path, ids: ids, metadata: StoreMetadata(model: model))
    var state = seed
    func uniform() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int32(truncatingIfNeeded: state >> 32)) * 0x1p-31
    }
    var zState: UInt64 = 99  // the shared signal is the same for both models
    let z = (0..<n * 8).map { _ -> Float in
        zState = zState &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int32(truncatingIfNeeded: zState >> 32)) * 0x1p-31
    }
    for (li, (name, shape)) in layers.enumerated() {
        try w.addLayer(name, kind: .block, block: li, featureShape: shape)
        let d = shape.reduce(1, *)
        let wts = (0..<8 * 64).map { _ in uniform() }
        for start in stride(from: 0, to: n, by: 32) {
            let b = min(32, n - start)
            var t = Tensor<Float>(shape: [b] + shape)
            let p = t.mutablePointer()
            for i in 0..<b {
                var signal = [Float](repeating: 0, count: 64)
                for k in 0..<64 { for j in 0..<8 { signal[k] += z[(start + i) * 8 + j] * wts[j * 64 + k] } }
                for c in 0..<d { p[i * d + c] = tanh(signal[c % 64] * Float(li + 1) * 0.3) + uniform() }
            }
            try w.append(t, to: name)
        }
    }
    try w.finish()
}

func sgemmPeak() throws -> Double {
    let m = 2048
    let a = Tensor<Float>(shape: [m, m]) { Float($0 % 7) - 3 }, b = Tensor<Float>(shape: [m, m]) { Float($0 % 5) - 2 }
    var c = Tensor<Float>(shape: [m, m])
    let t = try best(3) { try Tensor.gemm(a, b, into: &c) }
    return 2 * pow(Double(m), 3) / t / 1e9
}

func report(_ name: String, layers: [(String, [Int])]) throws {
    let pa = "\(dataDir)/\(name)_\(n)_a.h5", pb = "\(dataDir)/\(name)_\(n)_b.h5"
    try makeStore(pa, model: "\(name)_a", layers: layers, seed: 1)
    try makeStore(pb, model: "\(name)_b", layers: layers.map { ($0.0, $0.1) }, seed: 2)
    let a = try ActivationStore(path: pa), b = try ActivationStore(path: pb)
    let bs = 32, k = n / bs, names = layers.map(\.0)
    var buffer = Tensor<Float>(shape: [0])
    // Warm the page cache.
    for s in [a, b] { for l in names { for i in 0..<k { try s.read(l, rows: i * bs..<(i + 1) * bs, into: &buffer) } } }

    let peak = try sgemmPeak()
    // (a) Gram phase: every layer's centred Gram of one batch, from memory.
    let batches = try names.map { try a.read($0, rows: 0..<bs) }
    let gramFlops = batches.reduce(0.0) { $0 + 2 * Double(bs * bs) * Double($1.rowSize) }
    let tGram = try best { for x in batches { _ = try x.centeredGram() } }
    let gramRate = gramFlops / tGram / 1e9  // centredGram = copy + centre + Gram
    let tGramPlain = try best { for x in batches { _ = try x.gramOfRows() } }
    var sweep: [String] = []
    let tCopy = try best { for x in batches { var c = x; try c.centerColumns(); _ = try c.gramOfRows() } }
    sweep.append("copy + centre + Gram: \(String(format: "%.1f", gramFlops / tCopy / 1e9)) GFLOP/s")
    var scratch = batches.map { $0 }
    let bytes = Double(batches.reduce(0) { $0 + $1.count * 4 })
    let tCentre = try best { for i in scratch.indices { try scratch[i].centerColumns() } }
    sweep.append("in-place centring alone: \(String(format: "%.1f", bytes / tCentre / 1e9)) GB/s")
    let threads = blasThreadCount
    for block in [2048, 4096, 8192, 16384] {
        let t = try best { for x in batches { _ = try x.centeredGramOfRows(blockColumns: block) } }
        sweep.append(
            "one-pass centred Gram (blocks of \(block)): \(String(format: "%.1f", gramFlops / t / 1e9)) GFLOP/s")
    }
    setBLASThreadCount(1)
    let tFused1 = try best { for x in batches { _ = try x.centeredGramOfRows() } }
    let tPlain1 = try best { for x in batches { _ = try x.gramOfRows() } }
    setBLASThreadCount(threads)
    sweep.append(
        "at 1 thread: one-pass centred Gram \(String(format: "%.1f", gramFlops / tFused1 / 1e9)), Gram alone \(String(format: "%.1f", gramFlops / tPlain1 / 1e9)) GFLOP/s"
    )

    // (b) Reading both files vs the whole comparison.
    let tRead = try best {
        for i in 0..<k {
            for s in [a, b] { for l in names { try s.read(l, rows: i * bs..<(i + 1) * bs, into: &buffer) } }
        }
    }
    var result: CKAResult?
    let tCompare = try best { result = try CKAComparison.run(a, b) }

    // (c) Per-pair: activations of a batch in memory, both Grams rebuilt for each of the L×L pairs.
    let tPerPair = try best(1) {
        var sums = [Double](repeating: 0, count: names.count * names.count * 3)
        for i in 0..<k {
            let rows = i * bs..<(i + 1) * bs
            let xa = try names.map { try a.read($0, rows: rows) }, xb = try names.map { try b.read($0, rows: rows) }
            for (p, x) in xa.enumerated() {
                for (q, y) in xb.enumerated() {
                    let kx = try x.centeredGram(), ky = try y.centeredGram()
                    let o = (p * names.count + q) * 3
                    sums[o] += try HSIC.unbiased(kx, ky); sums[o + 1] += try HSIC.unbiased(kx, kx);
                    sums[o + 2] += try HSIC.unbiased(ky, ky)
                }
            }
        }
        _ = sums
    }
    let mb = Double(try names.reduce(0) { $0 + (try a.layer($1).shape.reduce(1, *)) }) * 4 * 2 / 1e6
    print(
        """

        \(name): 2 models × \(names.count) layers, N = \(n), batch \(bs), \(String(format: "%.0f", mb)) MB of float32 per pass \
        (OpenBLAS \(blasCoreName), \(blasThreadCount) thread(s))
          sgemm 2048³ peak                     \(String(format: "%7.1f", peak)) GFLOP/s
          Gram phase (X·Xᵀ of a centred batch) \(String(format: "%7.1f", gramFlops / tGramPlain / 1e9)) GFLOP/s = \(String(format: "%.0f", 100 * gramFlops / tGramPlain / 1e9 / peak)) % of peak \
        (2n²d flops; with a copy and the centring: \(String(format: "%.1f", gramRate)) GFLOP/s)
          other kernels                        \(sweep.joined(separator: ", "))
          read both files (warm cache)         \(String(format: "%7.2f", tRead)) s
          cka compare (CKAComparison.run)      \(String(format: "%7.2f", tCompare)) s = \(String(format: "%.2f", tCompare / tRead))× the read time
          per-pair Grams (\(names.count * names.count) pairs)           \(String(format: "%7.2f", tPerPair)) s = \(String(format: "%.1f", tPerPair / tCompare))× slower than ours \
        (expected ~L/2 = \(names.count / 2)×)
          check: CKA(\(names[0]), \(names[0])) = \(String(format: "%.4f", result!.matrix[0][0]))
        """)
}

let w1 = (0..<12).map { ("blocks.\($0)", [197, 768]) }
let w2 = (0..<36).map { i -> (String, [Int]) in
    ("blocks.\(i / 3):\(["cls", "gap", "fc1"][i % 3])", [i % 3 == 2 ? 3072 : 768])
}
print(
    "cka-report: machine load \(String(format: "%.2f", (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.flatMap { Double($0) } ?? -1)) (1-min average)"
)
if workload != "w2" { try report("W1", layers: w1) }
if workload != "w1" { try report("W2", layers: w2) }
