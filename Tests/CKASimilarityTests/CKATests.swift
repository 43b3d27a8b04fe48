import CKAIO
import CKASimilarity
import CKATensor
import Foundation
import Testing
import _CKATestSupport

func fixture(_ name: String) -> String {
    Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)!.path
}

func json(_ name: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixture(name)))) as! [String: Any]
}

/// Linear CKA of in-memory representations through the accumulator (one or many batches).
func minibatchCKA(_ x: Tensor<Float>, _ y: Tensor<Float>, batch: Int) throws -> Double {
    var acc = MinibatchCKA(layerCountA: 1, layerCountB: 1)
    for k in 0..<(x.rowCount / batch) {
        let r = k * batch..<(k + 1) * batch
        try acc.add(representationsA: [x.rows(r)], representationsB: [y.rows(r)])
    }
    return try acc.matrix()[0][0]
}

/// Two related representations: y = tanh(x·W) + noise.
func relatedPair(n: Int, dx: Int, dy: Int, seed: UInt64) throws -> (Tensor<Float>, Tensor<Float>) {
    let x = randomTensor([n, dx], seed: seed, as: Float.self)
    let w = randomTensor([dx, dy], seed: seed + 1, scale: 0.4, as: Float.self)
    var y = try x.matmul(w)
    let noise = randomTensor([n, dy], seed: seed + 2, scale: 0.7, as: Float.self).scalars
    y.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = tanh(p[i]) + noise[i] } }
    return (x, y)
}

@Suite("CKA estimators against the float64 reference")
struct ReferenceTests {
    @Test("Kornblith's demo values: linear 0.55761, debiased 0.51346, RBF(0.5) 0.65483")
    func kornblithDemo() throws {
        let demo = try json("kornblith_demo.json")
        let x = try Tensor<Double>(shape: [100, 10], scalars: (demo["x"] as! [[Double]]).flatMap { $0 })
        let y = try Tensor<Double>(shape: [100, 10], scalars: (demo["y"] as! [[Double]]).flatMap { $0 })
        let k = try x.matmul(x, transposeOther: true), l = try y.matmul(y, transposeOther: true)
        expectClose(try FullSetCKA.biased(k, l), demo["linear"] as! Double, atol: 1e-12)
        expectClose(try FullSetCKA.debiased(k, l), demo["debiased"] as! Double, atol: 1e-12)
        expectClose(try FullSetCKA.rbf(k, l, threshold: 0.5), demo["rbf_0.5"] as! Double, atol: 1e-12)
        expectClose(try FullSetCKA.biased(k, l), 0.55761, atol: 5e-6)
        // Minibatch with one batch of all N is the debiased estimator.
        var acc = MinibatchCKA(layerCountA: 1, layerCountB: 1)
        try acc.add(gramsA: [k], gramsB: [l])
        expectClose(try acc.matrix()[0][0], demo["debiased"] as! Double, atol: 1e-12)
    }

    @Test(
        "cka compare engine on stores (float32/float16/float64, tokens, +1000 offset) ≤ 1e-5 from the reference",
        arguments: [
            "minibatch_bs16", "minibatch_bs32", "minibatch_bs16_cls", "minibatch_bs16_gap", "minibatch_bs16_gap_nocls",
            "minibatch_bs16_shuffle7", "minibatch_bs16_shuffle7_passes2", "debiased", "linear", "rbf",
            "rbf_debiased_0.8", "self_a_minibatch_bs16",
        ])
    func storeCases(name: String) throws {
        let exp = try json("cka_expected.json")
        let cases = exp["cases"] as! [String: [[Double]]]
        let a = try ActivationStore(path: fixture("cka_a.h5")), b = try ActivationStore(path: fixture("cka_b.h5"))
        var o = CKAOptions()
        o.batchSize = name.contains("bs32") ? 32 : 16
        if name.hasPrefix("debiased") { o.estimator = .debiased }
        if name.hasPrefix("linear") { o.estimator = .linear }
        if name.hasPrefix("rbf") { o.estimator = .rbf }
        if name == "rbf_debiased_0.8" { o.rbfDebiased = true; o.rbfThreshold = 0.8 }
        for t in TokenReduction.allCases where name.hasSuffix("_\(t.rawValue)") { o.tokens = t }
        if name.contains("shuffle7") { o.shuffleSeed = 7 }
        if name.contains("passes2") { o.passes = 2 }
        let self_ = name.hasPrefix("self_a")
        let r = try CKAComparison.run(a, self_ ? nil : b, options: o)
        #expect(r.layersA == exp["layers_a"] as! [String])
        #expect(r.layersB == (self_ ? exp["layers_a"] : exp["layers_b"]) as! [String])
        expectClose(r.matrix.flatMap { $0 }, cases[name]!.flatMap { $0 }, atol: 1e-5, "case \(name)")
        if self_ { expectClose(r.diagonal, [1, 1, 1], atol: 1e-12) }
    }

    @Test("Stored Grams (cka grams) give the same matrix without reading activations")
    func storedGrams() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let exp = try json("cka_expected.json")
        var paths: [String] = []
        for name in ["cka_a.h5", "cka_b.h5"] {
            let src = try ActivationStore(path: fixture(name))
            let path = dir.appendingPathComponent(name).path
            // A store holding only ids and Grams: proof that no activation is read.
            let w = try ActivationStoreWriter(path: path, ids: src.ids, metadata: StoreMetadata(model: src.modelName))
            for l in src.layers {
                try w.addGrams(l.name, batchSize: 16, tokens: .flatten, centered: true)
                for k in 0..<(src.count / 16) {
                    var x = try src.read(l.name, rows: k * 16..<(k + 1) * 16).flattenedRows
                    try x.centerColumns()
                    try w.appendGram(x.gramOfRows(), to: l.name)
                }
            }
            try w.finish()
            paths.append(path)
        }
        let a = try ActivationStore(path: paths[0]), b = try ActivationStore(path: paths[1])
        var o = CKAOptions()
        o.batchSize = 16
        let r = try CKAComparison.run(a, b, options: o)
        #expect(r.usedStoredGrams)
        expectClose(
            r.matrix.flatMap { $0 }, (exp["cases"] as! [String: [[Double]]])["minibatch_bs16"]!.flatMap { $0 },
            atol: 1e-5)
        o.batchSize = 32
        #expect(throws: CKAError.self) { try CKAComparison.run(a, b, options: o) }  // Grams of 16, asked 32
    }
}

@Suite("CKA properties")
struct PropertyTests {
    @Test("CKA(X, X) = 1 and symmetry, for every estimator")
    func identityAndSymmetry() throws {
        let (x, y) = try relatedPair(n: 64, dx: 20, dy: 9, seed: 1)
        let kx = try x.gram(centered: true), ky = try y.gram(centered: true)
        for f in [FullSetCKA.biased, FullSetCKA.debiased, { try FullSetCKA.rbf($0, $1) }]
            as [(Tensor<Double>, Tensor<Double>) throws -> Double]
        {
            expectClose(try f(kx, kx), 1, atol: 1e-12)
            expectClose(try f(kx, ky), try f(ky, kx), atol: 1e-12)
        }
        expectClose(try minibatchCKA(x, x, batch: 16), 1, atol: 1e-12)
        expectClose(try minibatchCKA(x, y, batch: 16), try minibatchCKA(y, x, batch: 16), atol: 1e-12)
    }

    @Test("Invariant to orthogonal rotation and isotropic scaling; not to an arbitrary linear map")
    func invariances() throws {
        let (x, y) = try relatedPair(n: 128, dx: 12, dy: 8, seed: 2)
        // A random orthogonal matrix from the eigenvectors of a symmetric matrix.
        let m = randomTensor([12, 12], seed: 3, as: Double.self)
        let q = try m.matmul(m, transposeOther: true).symmetricEigen().vectors.converted(to: Float.self)
        var rotated = try x.matmul(q)
        rotated.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] *= 3.7 } }
        let base = try minibatchCKA(x, y, batch: 32)
        expectClose(try minibatchCKA(rotated, y, batch: 32), base, atol: 1e-5)
        expectClose(try FullSetCKA.linear(rotated, y), try FullSetCKA.linear(x, y), atol: 1e-5)
        var stretched = x
        stretched.withUnsafeMutableBufferPointer { p in for i in stride(from: 0, to: p.count, by: 12) { p[i] *= 25 } }
        #expect(abs(try minibatchCKA(stretched, y, batch: 32) - base) > 1e-3)
    }

    @Test("Feature offsets of +1000 in float32 give the same CKA to 1e-4 (per-batch centring)")
    func offsets() throws {
        let (x, y) = try relatedPair(n: 256, dx: 64, dy: 32, seed: 4)
        var xo = x
        xo.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] += 1000 } }
        for batch in [16, 64, 256] {
            expectClose(
                try minibatchCKA(xo, y, batch: batch), try minibatchCKA(x, y, batch: batch), atol: 1e-4,
                "batch \(batch)")
        }
        expectClose(try FullSetCKA.linear(xo, y), try FullSetCKA.linear(x, y), atol: 1e-4)
        expectClose(
            try FullSetCKA.linear(xo, y, debiased: true), try FullSetCKA.linear(x, y, debiased: true), atol: 1e-4)
    }

    @Test("Minibatch HSIC₁ is stable across batch sizes 16…1024; averaging biased HSIC is not")
    func batchSizeStability() throws {
        let (x, y) = try relatedPair(n: 2048, dx: 32, dy: 16, seed: 5)
        let full = try FullSetCKA.linear(x, y, debiased: true)
        var unbiased: [Double] = [], biased: [Double] = []
        for batch in [16, 64, 256, 1024] {
            unbiased.append(try minibatchCKA(x, y, batch: batch))
            var s = (0.0, 0.0, 0.0)
            for k in 0..<(2048 / batch) {
                let r = k * batch..<(k + 1) * batch
                let kx = try x.rows(r).gram(centered: true), ky = try y.rows(r).gram(centered: true)
                s.0 += try HSIC.biased(kx, ky); s.1 += try HSIC.biased(kx, kx); s.2 += try HSIC.biased(ky, ky)
            }
            biased.append(s.0 / (s.1 * s.2).squareRoot())
        }
        #expect(unbiased.max()! - unbiased.min()! < 0.01, "unbiased: \(unbiased)")
        #expect(abs(unbiased.last! - full) < 0.01)
        #expect(biased.max()! - biased.min()! > 0.05, "biased: \(biased)")
        #expect(biased.first! > biased.last!, "biased minibatch CKA is inflated at small batches")
    }

    @Test("HSIC₁ by U-centring equals Song et al.'s expanded formula")
    func songFormula() throws {
        let (x, y) = try relatedPair(n: 10, dx: 5, dy: 4, seed: 6)
        let k = try x.gram(), l = try y.gram()
        let n = 10.0
        var kh = k, lh = l
        for i in 0..<10 { kh[i, i] = 0; lh[i, i] = 0 }
        let ones = Tensor<Double>(shape: [10, 1], repeating: 1)
        let k1 = try kh.matmul(ones), l1 = try lh.matmul(ones)
        let sumK = k1.scalars.reduce(0, +), sumL = l1.scalars.reduce(0, +)
        let trKL = try HSIC.frobeniusInner(kh, lh)
        let cross = zip(k1.scalars, l1.scalars).reduce(0) { $0 + $1.0 * $1.1 }
        let song = (trKL + sumK * sumL / ((n - 1) * (n - 2)) - 2 / (n - 2) * cross) / (n * (n - 3))
        expectClose(try HSIC.unbiased(k, l), song, rtol: 1e-10)
    }
}

@Suite("Bad input to the CKA engine")
struct BadInputTests {
    let a: ActivationStore, b: ActivationStore
    init() throws {
        a = try ActivationStore(path: fixture("cka_a.h5"))
        b = try ActivationStore(path: fixture("cka_b.h5"))
    }

    @Test("Batch size below 4 or above N")
    func batchSize() {
        for bs in [2, 3, 97] {
            var o = CKAOptions()
            o.batchSize = bs
            #expect(throws: CKAError.batchSize(requested: bs, examples: 96)) { try CKAComparison.run(a, b, options: o) }
        }
    }

    @Test("Layers glob matching nothing names the file and the layers")
    func noLayers() throws {
        var o = CKAOptions()
        o.layersA = ["blocks.*.mlp.fc1"]
        let e = #expect(throws: CKAError.self) { try CKAComparison.run(a, b, options: o) }
        #expect("\(e!)".contains("blocks.*.mlp.fc1") && "\(e!)".contains("cka_a.h5"))
        o.layersA = ["blocks.?"]
        #expect(try CKAComparison.run(a, b, options: o).layersA == ["blocks.0", "blocks.1"])
    }

    @Test("Different ids, different order, different N")
    func inputsDiffer() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func store(_ ids: [String]) throws -> ActivationStore {
            let path = dir.appendingPathComponent("\(UUID().uuidString).h5").path
            let w = try ActivationStoreWriter(path: path, ids: ids, metadata: StoreMetadata(model: "m"))
            try w.addLayer("blocks.0", kind: .block, block: 0, featureShape: [3])
            try w.append(randomTensor([ids.count, 3], seed: 1), to: "blocks.0")
            try w.finish()
            return try ActivationStore(path: path)
        }
        var reordered = a.ids
        reordered.swapAt(3, 4)
        for other in [try store(reordered), try store(Array(a.ids.prefix(90))), try store(a.ids.map { $0 + "x" })] {
            let e = #expect(throws: CKAError.self) { try CKAComparison.run(a, other) }
            if case .inputsDiffer = e! {} else { Issue.record("unexpected \(e!)") }
        }
        #expect("\(CKAError.inputsDiffer(fileA: "a", fileB: "b", detail: "x"))".contains("same order"))
    }

    @Test("Zero variance and NaN are reported with the layer's name")
    func degenerate() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("bad.h5").path
        let w = try ActivationStoreWriter(path: path, ids: a.ids, metadata: StoreMetadata(model: "bad"))
        try w.addLayer("blocks.0", kind: .block, block: 0, featureShape: [4])
        try w.append(Tensor<Float>(shape: [96, 4], repeating: 5), to: "blocks.0")
        try w.addLayer("blocks.1", kind: .block, block: 1, featureShape: [4])
        var x = randomTensor([96, 4], seed: 2, as: Float.self)
        x[50, 2] = .nan
        try w.append(x, to: "blocks.1")
        try w.finish()
        let bad = try ActivationStore(path: path)
        var o = CKAOptions()
        o.layersA = ["blocks.0"]
        #expect(throws: CKAError.zeroVariance(file: path, layer: "blocks.0")) {
            try CKAComparison.run(bad, b, options: o)
        }
        o.estimator = .linear
        #expect(throws: CKAError.zeroVariance(file: path, layer: "blocks.0")) {
            try CKAComparison.run(bad, b, options: o)
        }
        o = CKAOptions()
        o.layersA = ["blocks.1"]
        o.batchSize = 16
        #expect(throws: CKAError.nonFinite(file: path, layer: "blocks.1", batch: 3)) {
            try CKAComparison.run(bad, b, options: o)
        }
    }
}

@Suite("Minibatch Grams straight from memory-mapped files")
struct MemoryMapTests {
    /// A store with a token layer (+1000 offset) and a pooled layer, written by our writer (chunked float32),
    /// or with every layer as float16 (not mappable), or contiguous (h5py's default for fixed-size data).
    func store(_ dir: URL, _ name: String, layout: String, seed: UInt64) throws -> ActivationStore {
        let path = dir.appendingPathComponent(name).path
        let n = 96, ids = (0..<n).map { "img\($0)" }
        let tokens = randomTensor([n, 5, 7], seed: seed, offset: 1000, as: Float.self),
            pooled = randomTensor([n, 11], seed: seed + 1, as: Float.self)
        if layout == "contiguous" {
            let w = try ActivationStoreWriter(path: path, ids: ids, metadata: StoreMetadata(model: name))
            try w.finish()
            let f = try HDF5File(path: path, mode: .readWrite)
            try f.createDataset("activations/blocks.0", type: .float32, shape: [n, 5, 7]).write(tokens)
            try f.createDataset("activations/blocks.0:cls", type: .float32, shape: [n, 11]).write(pooled)
            try f.flush()
        } else {
            let type: HDF5ElementType = layout == "float16" ? .float16 : .float32
            let w = try ActivationStoreWriter(path: path, ids: ids, metadata: StoreMetadata(model: name))
            try w.addLayer("blocks.0", kind: .block, block: 0, featureShape: [5, 7], elementType: type)
            try w.addLayer("blocks.0:cls", kind: .pooled, block: 0, featureShape: [11], elementType: type)
            for r in stride(from: 0, to: n, by: 40) {
                let rows = r..<min(n, r + 40)
                try w.append(tokens.rows(rows), to: "blocks.0")
                try w.append(pooled.rows(rows), to: "blocks.0:cls")
            }
            try w.finish()
        }
        return try ActivationStore(path: path)
    }

    @Test("the mapped path equals the read path (file order and shuffled passes, +1000 offsets); float16 falls back")
    func mappedEqualsRead() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for layout in ["chunked", "contiguous"] {
            let a = try store(dir, "a-\(layout).h5", layout: layout, seed: 1),
                b = try store(dir, "b-\(layout).h5", layout: layout, seed: 7)
            #expect(try a.mappedRows("blocks.0")?.rowLength == 35, "\(layout)")
            for shuffle: UInt64? in [nil, 3] {
                var o = CKAOptions()
                o.batchSize = 16
                o.shuffleSeed = shuffle
                o.passes = shuffle == nil ? 1 : 2
                let mapped = try CKAComparison.run(a, b, options: o)
                o.memoryMap = false
                let read = try CKAComparison.run(a, b, options: o)
                #expect(mapped.usedMemoryMap && !read.usedMemoryMap)
                expectClose(mapped.matrix.flatMap { $0 }, read.matrix.flatMap { $0 }, rtol: 1e-6, atol: 1e-7)
                let selfMapped = try CKAComparison.run(a, options: o)
                expectClose(selfMapped.matrix[0][0], 1, rtol: 1e-6)
            }
        }
        let h = try store(dir, "half.h5", layout: "float16", seed: 1)
        #expect(try h.mappedRows("blocks.0") == nil)
        #expect(
            try !CKAComparison.run(
                h,
                options: {
                    var o = CKAOptions(); o.batchSize = 16; return o
                }()
            ).usedMemoryMap)
        var o = CKAOptions()
        o.batchSize = 16
        o.tokens = .cls  // a token reduction needs the read path
        #expect(try !CKAComparison.run(try store(dir, "c.h5", layout: "chunked", seed: 2), options: o).usedMemoryMap)
    }
}

@Suite("The minibatch engine's parts")
struct EngineSplitTests {
    @Test(
        "HSIC terms of a plan split into any parts (computed in any order), added in batch order, give identical bits",
        arguments: [1, 2, 3, 5])
    func splitPlanIsBitIdentical(parts: Int) throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try MemoryMapTests().store(dir, "a.h5", layout: "chunked", seed: 1)
        let b = try MemoryMapTests().store(dir, "b.h5", layout: "chunked", seed: 7)
        for memoryMap in [true, false] {
            var o = CKAOptions()
            o.batchSize = 16
            o.shuffleSeed = 5
            o.passes = 2
            o.memoryMap = memoryMap
            let whole = try CKAComparison.run(a, b, options: o)
            let la = try CKAComparison.selectLayers(a, patterns: nil),
                lb = try CKAComparison.selectLayers(b, patterns: nil)
            let plan = try MinibatchPlan(examples: a.count, options: o)
            #expect(plan.batches.map(\.ordinal) == Array(0..<plan.batches.count))
            // Part p takes batches p, p + parts, …; the parts run last-first, as ranks finishing in any order.
            var terms: [Int: MinibatchCKA.BatchTerms] = [:]
            for p in (0..<parts).reversed() {
                let mine = plan.batches.filter { $0.ordinal % parts == p }
                try CKAComparison.hsicTerms(a, la, b, lb, options: o, batches: mine) { batch, t in
                    terms[batch.ordinal] = t
                }
            }
            var acc = MinibatchCKA(layerCountA: la.count, layerCountB: lb.count)
            for i in terms.keys.sorted() { try acc.add(terms[i]!) }
            let split = try acc.matrix()
            #expect(split == whole.matrix, "parts \(parts), memoryMap \(memoryMap)")
        }
    }

    @Test("Terms of another layer count are refused, not trapped")
    func termsOfAnotherShape() throws {
        var acc = MinibatchCKA(layerCountA: 2, layerCountB: 2)
        #expect(throws: TensorError.self) {
            try acc.add(MinibatchCKA.BatchTerms(cross: [1], selfA: [1], selfB: [1], examples: 4))
        }
    }
}

@Suite("Read and memory-mapped Gram sources agree bit for bit")
struct GramSourceIdentityTests {
    @Test("--no-mmap (HDF5 reads, reader thread) equals the memory-mapped path exactly, shuffled or not")
    func readEqualsMappedExactly() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try MemoryMapTests().store(dir, "a.h5", layout: "chunked", seed: 1)
        let b = try MemoryMapTests().store(dir, "b.h5", layout: "chunked", seed: 7)
        for shuffle: UInt64? in [nil, 4] {
            var o = CKAOptions()
            o.batchSize = 16
            o.shuffleSeed = shuffle
            let mapped = try CKAComparison.run(a, b, options: o)
            o.memoryMap = false
            let read = try CKAComparison.run(a, b, options: o)
            #expect(mapped.usedMemoryMap && !read.usedMemoryMap)
            #expect(mapped.matrix == read.matrix)
        }
    }
}
