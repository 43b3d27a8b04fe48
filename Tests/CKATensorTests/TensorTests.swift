import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// Plain double-precision reference for `op(A)·op(B)`.
func referenceMatmul(_ a: Tensor<Float>, _ ta: Bool, _ b: Tensor<Float>, _ tb: Bool) -> [Double] {
    let A = a.scalars.map(Double.init), B = b.scalars.map(Double.init)
    let m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1]
    let n = tb ? b.shape[0] : b.shape[1]
    var c = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let x = ta ? A[p * m + i] : A[i * k + p]
                let y = tb ? B[j * k + p] : B[p * n + j]
                s += x * y
            }
            c[i * n + j] = s
        }
    }
    return c
}

@Suite("Tensor core")
struct TensorTests {
    /// A read-only page holding `values` (a write through it would crash the test with SIGSEGV).
    final class ReadOnlyPage {
        let base: UnsafeMutableRawPointer
        init(_ values: [Float]) {
            base = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
            base.initializeMemory(as: Float.self, from: values, count: values.count)
            mprotect(base, 4096, PROT_READ)
        }
        deinit { munmap(base, 4096) }
        func floats(_ n: Int) -> UnsafeBufferPointer<Float> {
            UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: n)
        }
    }

    @Test("borrowed (read-only) memory is read in place, copied on the first write, and never reused by prepare")
    func borrowedStorage() throws {
        let page = ReadOnlyPage([1, 2, 3, 4, 5, 6])
        let t = try Tensor<Float>(shape: [2, 3], borrowing: page.floats(6), owner: page)
        #expect(t.isBorrowed && t.pointer == UnsafePointer(page.floats(6).baseAddress!))
        #expect(t.scalars == [1, 2, 3, 4, 5, 6] && t[1, 2] == 6)
        #expect(try t.reshaped([3, 2]).isBorrowed && t.rows(1..<2).scalars == [4, 5, 6])
        // Every way of writing copies first: subscript, mutablePointer, withUnsafeMutableBufferPointer.
        var a = t
        a[0, 0] = -1
        var b = t
        b.mutablePointer()[5] = -6
        var c = t.rows(1..<2)
        c.withUnsafeMutableBufferPointer { $0[0] = 40 }
        #expect(!a.isBorrowed && !b.isBorrowed && !c.isBorrowed)
        #expect(a.scalars == [-1, 2, 3, 4, 5, 6] && b.scalars == [1, 2, 3, 4, 5, -6] && c.scalars == [40, 5, 6])
        #expect(Array(page.floats(6)) == [1, 2, 3, 4, 5, 6] && t.scalars == [1, 2, 3, 4, 5, 6])
        // A uniquely held borrowed tensor is not refilled in place either.
        var d = try Tensor<Float>(shape: [6], borrowing: page.floats(6), owner: page)
        d.prepare(shape: [2, 2])
        #expect(!d.isBorrowed)
        d.withUnsafeMutableBufferPointer { $0.update(repeating: 9) }
        #expect(Array(page.floats(6)) == [1, 2, 3, 4, 5, 6])
        #expect(throws: TensorError.self) { try Tensor<Float>(shape: [4], borrowing: page.floats(6), owner: page) }
    }

    @Test(
        "GEMM matches a double loop for every transpose case on odd shapes",
        arguments: [(false, false), (true, false), (false, true), (true, true)])
    func gemmAllTransposes(ta: Bool, tb: Bool) throws {
        let (m, k, n) = (7, 13, 5)
        let a = randomTensor(ta ? [k, m] : [m, k], seed: 1, as: Float.self)
        let b = randomTensor(tb ? [n, k] : [k, n], seed: 2, as: Float.self)
        let c = try a.matmul(b, transposeSelf: ta, transposeOther: tb)
        #expect(c.shape == [m, n])
        expectClose(c.scalars.map(Double.init), referenceMatmul(a, ta, b, tb), rtol: 1e-5, atol: 1e-5)
    }

    @Test("GEMM alpha/beta accumulate into C; Double GEMM is exact to 1e-12")
    func gemmAlphaBeta() throws {
        let a = randomTensor([3, 4], seed: 3, as: Double.self), b = randomTensor([4, 2], seed: 4, as: Double.self)
        var c = Tensor<Double>(shape: [3, 2], repeating: 1)
        try Tensor.gemm(a, b, alpha: 2, beta: 0.5, into: &c)
        let ref = try a.matmul(b).scalars.map { 2 * $0 + 0.5 }
        expectClose(c.scalars, ref, atol: 1e-12)
    }

    @Test("GEMM with k = 0 and beta = 0 overwrites C, NaN included (as BLAS)")
    func gemmEmptyK() throws {
        var c = Tensor<Float>(shape: [2, 2], repeating: .nan)
        try Tensor.gemm(Tensor<Float>(shape: [2, 0]), Tensor<Float>(shape: [0, 2]), into: &c)
        #expect(c.scalars == [0, 0, 0, 0])
    }

    @Test("GEMM shape errors are thrown, not trapped")
    func gemmShapeMismatch() {
        let a = Tensor<Float>(shape: [3, 4]), b = Tensor<Float>(shape: [5, 2])
        #expect(throws: TensorError.self) { try a.matmul(b) }
        var c = Tensor<Float>(shape: [3, 3])
        #expect(throws: TensorError.self) { try Tensor.gemm(a, Tensor<Float>(shape: [4, 2]), into: &c) }
    }

    @Test("Batched GEMM with per-batch and shared right operands")
    func batched() throws {
        let a = randomTensor([3, 5, 4], seed: 5, as: Float.self)
        let b = randomTensor([3, 6, 4], seed: 6, as: Float.self)
        let shared = randomTensor([4, 2], seed: 7, as: Float.self)
        let c = try Tensor.batchedMatmul(a, b, transposeB: true)
        let d = try Tensor.batchedMatmul(a, shared)
        #expect(c.shape == [3, 5, 6] && d.shape == [3, 5, 2])
        for i in 0..<3 {
            let ai = try a.rows(i..<i + 1).reshaped([5, 4]), bi = try b.rows(i..<i + 1).reshaped([6, 4])
            expectClose(
                try c.rows(i..<i + 1).reshaped([5, 6]).scalars.map(Double.init),
                referenceMatmul(ai, false, bi, true), rtol: 1e-5, atol: 1e-5)
            expectClose(
                try d.rows(i..<i + 1).reshaped([5, 2]).scalars.map(Double.init),
                referenceMatmul(ai, false, shared, false), rtol: 1e-5, atol: 1e-5)
        }
    }

    @Test(
        "Gram X·Xᵀ (gemm path n ≤ 64 and syrk path n > 64) matches a double loop, centred or not",
        arguments: [(9, 37), (70, 11)], [false, true])
    func gram(shape: (Int, Int), centered: Bool) throws {
        let (n, d) = shape
        let x = randomTensor([n, d], seed: 8, offset: 3, as: Float.self)
        let g = try x.gram(centered: centered)
        let xs = x.scalars.map(Double.init)
        var ref = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { for p in 0..<d { ref[i * n + j] += xs[i * d + p] * xs[j * d + p] } } }
        expectClose(g.scalars, centered ? referenceCenteredGram(x) : ref, rtol: 1e-5, atol: 1e-4)
        #expect(x == randomTensor([n, d], seed: 8, offset: 3, as: Float.self), "gram must not modify its input")
    }

    @Test("Centred Gram (column blocks of 2048, ragged last block, split over threads) is exact with a +1000 offset")
    func blockedCenteredGram() throws {
        let before = blasThreadCount
        setBLASThreadCount(2)  // centring splits the 70 000 columns in two
        defer { setBLASThreadCount(before) }
        let x = randomTensor([12, 70_001], seed: 21, offset: 1000, as: Float.self)
        let blocked = try x.centeredGram()
        let fused = try x.centeredGramOfRows(blockColumns: 3000)  // centred block by block into cache, SYRK per block
        setBLASThreadCount(1)
        let fusedOneThread = try x.centeredGramOfRows()
        let ref = referenceCenteredGram(x)
        // The centred entries are ~70 000 (diagonal) and ~±300 (off-diagonal); float32 data near 1000.
        expectClose(blocked.scalars, ref, rtol: 1e-5, atol: 0.05)
        expectClose(fused.scalars, ref, rtol: 1e-5, atol: 0.05)
        expectClose(fusedOneThread.scalars, ref, rtol: 1e-5, atol: 0.05)
        #expect(x == randomTensor([12, 70_001], seed: 21, offset: 1000, as: Float.self), "the input is not modified")
    }

    @Test(
        "Gram by SYRK (one BLAS thread), by GEMM and by column-split SYRK (several) agree",
        arguments: [1000, 40_001])
    func gramPaths(d: Int) throws {
        let x = randomTensor([32, d], seed: 22, as: Float.self)
        let before = blasThreadCount
        setBLASThreadCount(1)
        let syrk = try x.gramOfRows()
        setBLASThreadCount(2)
        let gemm = try x.gramOfRows()
        setBLASThreadCount(before)
        expectClose(syrk.scalars, gemm.scalars, rtol: 1e-5, atol: 1e-2)
        #expect(syrk == syrk.converted(to: Double.self), "symmetric result filled on both triangles")
        for i in 0..<32 { for j in 0..<i { #expect(syrk[i, j] == syrk[j, i]) } }
    }

    @Test("Gram of a 3-D [n, T, D] tensor flattens each example")
    func gram3D() throws {
        let x = randomTensor([5, 3, 4], seed: 9, as: Float.self)
        let g = try x.gram()
        let flat = try x.reshaped([5, 12])
        expectClose(g.scalars, referenceMatmul(flat, false, flat, true), rtol: 1e-5, atol: 1e-5)
    }

    @Test("Column/row reductions and centring")
    func reductions() throws {
        let x = try Tensor<Float>(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        #expect(try x.columnSums().scalars == [5, 7, 9])
        #expect(try x.rowSums().scalars == [6, 15])
        #expect(try x.columnMeans().scalars == [2.5, 3.5, 4.5])
        var y = x
        try y.centerColumns()
        #expect(y.scalars == [-1.5, -1.5, -1.5, 1.5, 1.5, 1.5])
        #expect(x.scalars == [1, 2, 3, 4, 5, 6], "copy-on-write keeps the original")
    }

    @Test("Symmetric eigendecomposition: A·V = V·Λ, VᵀV = I, ascending values")
    func eigen() throws {
        let n = 11
        let b = randomTensor([n, n], seed: 10, as: Double.self)
        let a = try b.matmul(b, transposeOther: true)  // symmetric PSD
        let (w, v) = try a.symmetricEigen()
        let av = try a.matmul(v)
        var vw = v
        for i in 0..<n { for j in 0..<n { vw[i, j] = v[i, j] * w[j] } }
        expectClose(av.scalars, vw.scalars, atol: 1e-10)
        let vtv = try v.matmul(v, transposeSelf: true)
        let eye = Tensor<Double>(shape: [n, n]) { $0 / n == $0 % n ? 1 : 0 }
        expectClose(vtv.scalars, eye.scalars, atol: 1e-12)
        #expect(zip(w.scalars, w.scalars.dropFirst()).allSatisfy { $0 <= $1 })
        let wf = try a.converted(to: Float.self).symmetricEigen().values
        expectClose(wf.scalars.map(Double.init), w.scalars, rtol: 1e-4, atol: 1e-4)
        #expect(throws: TensorError.self) { try Tensor<Double>(shape: [2, 3]).symmetricEigen() }
    }

    @Test("Views: rows and reshapes share memory; mutation copies")
    func views() throws {
        let x = Tensor<Float>(shape: [4, 3]) { Float($0) }
        var r = x.rows(1..<3)
        #expect(r.scalars == [3, 4, 5, 6, 7, 8])
        r[0, 0] = -1
        #expect(x[1, 0] == 3 && r[0, 0] == -1)
        #expect(throws: TensorError.self) { try x.reshaped([5, 2]) }
        #expect(throws: TensorError.self) { try Tensor<Float>(shape: [2, 2], scalars: [1, 2, 3]) }
    }

    @Test("Float/Double conversion and finiteness")
    func conversion() {
        let x = Tensor<Float>(shape: [3]) { Float($0) + 0.5 }
        #expect(x.converted(to: Double.self).scalars == [0.5, 1.5, 2.5])
        #expect(x.isFinite)
        var y = x
        y[1] = .nan
        #expect(!y.isFinite)
        y[1] = .infinity
        #expect(!y.isFinite)
    }

    @Test("Float16 storage: exact round trip of every finite half, ties to even, overflow, subnormals")
    func float16() {
        for bits in UInt16.min...UInt16.max {
            let f = Float(halfBits: bits)
            if f.isNaN { #expect(Float(halfBits: f.halfBits).isNaN); continue }
            #expect(f.halfBits == bits || (f == 0 && bits & 0x7fff == 0), "bits \(bits)")
            #expect(Float(Float16(bitPattern: bits)) == f, "agrees with Swift's Float16 for \(bits)")
        }
        var g = SeededGenerator(seed: 11)
        for _ in 0..<10_000 {
            let v = Float(g.gaussian() * 1000)
            #expect(v.halfBits == Float16(v).bitPattern, "rounding of \(v)")
        }
        #expect(Float(70000).halfBits == 0x7c00)
        #expect(Float(1e-8).halfBits == 0)
    }
}

@Suite("Transformer kernels")
struct KernelTests {
    @Test("Vectorised GELU equals 0.5·x·(1+erf(x/√2)) with libm's erf to 3e-7 absolute over [−10, 10]")
    func gelu() {
        let n = 200_003
        var xs = (0..<n).map { Float(-10 + 20 * Double($0) / Double(n - 1)) }
        let ref = xs.map { v -> Double in
            let d = Double(v); return 0.5 * d * (1 + erf(d / 2.0.squareRoot()))
        }
        xs.withUnsafeMutableBufferPointer { NeuralKernels.gelu($0.baseAddress!, count: n) }
        var worst = 0.0
        for i in 0..<n { worst = max(worst, abs(Double(xs[i]) - ref[i]) / max(1, abs(ref[i]))) }
        #expect(worst < 3e-7, "worst error \(worst)")
    }

    @Test("LayerNorm (biased variance, eps) and softmax against double loops")
    func layerNormSoftmax() {
        let (rows, width) = (5, 37)
        let x = randomTensor([rows, width], seed: 3, offset: 4, as: Float.self)
        let w = randomTensor([width], seed: 4, as: Float.self), b = randomTensor([width], seed: 5, as: Float.self)
        var y = Tensor<Float>(shape: [rows, width])
        NeuralKernels.layerNorm(
            x.pointer, y.mutablePointer(), rows: rows, width: width, weight: w.pointer, bias: b.pointer,
            epsilon: 1e-6)
        var s = x
        NeuralKernels.softmaxRows(s.mutablePointer(), rows: rows, width: width)
        for r in 0..<rows {
            let row = (0..<width).map { Double(x[r, $0]) }
            let mean = row.reduce(0, +) / Double(width)
            let v = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(width)
            for j in 0..<width {
                let ref = (row[j] - mean) / (v + 1e-6).squareRoot() * Double(w[j]) + Double(b[j])
                #expect(abs(Double(y[r, j]) - ref) < 1e-5)
            }
            let mx = row.max()!, z = row.reduce(0) { $0 + exp($1 - mx) }
            for j in 0..<width { #expect(abs(Double(s[r, j]) - exp(row[j] - mx) / z) < 1e-6) }
        }
    }
}

@Suite("BLAS thread scopes", .serialized)
struct BLASThreadScopeTests {
    @Test("Concurrent withBLASThreads scopes: each sees at most its count, nested ones too")
    func concurrentScopes() throws {
        let before = blasThreadCount
        setBLASThreadCount(2)
        defer { setBLASThreadCount(before) }
        let violations = Counter()
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            let asked = 1 + i % 2
            withBLASThreads(asked) {
                for _ in 0..<50 where blasThreadCount > asked { violations.increment() }
                withBLASThreads(1) { if blasThreadCount != 1 { violations.increment() } }
            }
        }
        #expect(violations.value == 0)
        // (The base count is process-wide and other suites set it while this runs, so it is not compared here.)
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() { lock.withLock { n += 1 } }
    var value: Int { lock.withLock { n } }
}

@Suite("Layer names: one vocabulary")
struct LayerNameTests {
    @Test("Parsing: module, block, kind, pooling; round trip to the stored name")
    func parse() {
        let cases: [(String, String, Int?, LayerKind, Pooling)] = [
            ("patch_embed", "patch_embed", nil, .patchEmbed, .none),
            ("blocks.3.attn.qkv", "blocks.3.attn.qkv", 3, .qkv, .none),
            ("blocks.11.attn.proj", "blocks.11.attn.proj", 11, .attnProj, .none),
            ("blocks.2.mlp.fc1", "blocks.2.mlp.fc1", 2, .fc1, .none),
            ("blocks.10", "blocks.10", 10, .block, .none),
            ("blocks.7:gap_nocls", "blocks.7", 7, .pooled, .gapNoCLS),
            ("norm:cls", "norm", nil, .pooled, .cls),
            ("norm", "norm", nil, .norm, .none),
            ("blocks.3:foo", "blocks.3:foo", 3, .pooled, .none),
            ("head", "head", nil, .other, .none),
        ]
        for (name, module, block, kind, pooling) in cases {
            let l = LayerName(name)
            #expect(l.module == module && l.block == block && l.kind == kind && l.pooling == pooling, "\(name)")
            #expect(l.description == name)
            #expect(LayerKind.infer(from: name) == kind && LayerKind.blockIndex(of: name) == (block ?? -1))
        }
        #expect(LayerName("fc_norm").isPooled && !LayerName("norm").isPooled && LayerName("blocks.1:cls").isPooled)
        #expect(LayerName(block: 4).description == "blocks.4" && LayerName(block: 4).isBlockOutput)
        #expect(LayerName(block: 4, kind: .qkv).description == "blocks.4.attn.qkv")
        #expect(LayerName(block: 1, kind: .fc2, prefix: "decoder_blocks").description == "decoder_blocks.1.mlp.fc2")
        #expect(LayerName(block: 4).pooled(.gap).description == "blocks.4:gap")
    }

    @Test("The pooling kernel equals a float64 mean; gap_nocls skips every prefix token")
    func poolingKernel() throws {
        let b = 3, t = 7, d = 5
        let x = randomTensor([b * t, d], seed: 9, offset: 100, as: Float.self)
        for p in [Pooling.gap, .gapNoCLS] {
            for prefix in [1, 3] where p == .gapNoCLS || prefix == 1 {
                var out = Tensor<Float>(shape: [b, d])
                p.pool(x.pointer, images: b, tokens: t, width: d, prefixTokens: prefix, into: out.mutablePointer())
                let skip = p == .gap ? 0 : prefix
                for i in 0..<b {
                    for j in 0..<d {
                        var s = 0.0
                        for k in skip..<t { s += Double(x[i * t + k, j]) }
                        #expect(out[i, j] == Float(s / Double(t - skip)), "\(p) prefix \(prefix)")
                    }
                }
            }
        }
        var cls = Tensor<Float>(shape: [b, d])
        Pooling.cls.pool(x.pointer, images: b, tokens: t, width: d, into: cls.mutablePointer())
        #expect((0..<b * d).allSatisfy { cls[$0 / d, $0 % d] == x[($0 / d) * t, $0 % d] })
    }
}

@Suite("Gram bits do not depend on the thread count")
struct GramThreadInvarianceTests {
    @Test(
        "gramOfRows and centeredGram give the same bits with 1 and 2 BLAS threads (long rows are split in fixed parts)")
    func threadInvariance() throws {
        let x = randomTensor([24, 70_001], seed: 3, offset: 10, as: Float.self)
        let before = blasThreadCount
        defer { setBLASThreadCount(before) }
        var results: [[Double]] = []
        for threads in [1, 2, 1] {
            setBLASThreadCount(threads)
            var c = x
            try c.centerColumns()
            results.append(try c.gramOfRows().scalars)
            results.append(try x.centeredGramOfRows().scalars)
        }
        #expect(results[0] == results[2] && results[2] == results[4], "gramOfRows")
        #expect(results[1] == results[3] && results[3] == results[5], "centeredGram")
    }
}
