import CKASimilarity
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// The fixture of notebooks-export/reference/measures_reference.py (the authors' code on these features).
private struct MeasureFixture {
    let layers: [String: Tensor<Double>]
    let pairs: [(String, String)]
    let values: [String: Double]

    init() throws {
        let j = try json("measures_expected.json")
        var layers: [String: Tensor<Double>] = [:]
        for (name, rows) in j["features"] as! [String: [[Double]]] {
            layers[name] = try Tensor(shape: [rows.count, rows[0].count], scalars: rows.flatMap { $0 })
        }
        self.layers = layers
        pairs = (j["pairs"] as! [[String]]).map { ($0[0], $0[1]) }
        values = (j["values"] as! [String: Any]).mapValues { ($0 as! NSNumber).doubleValue }
    }

    func grams(_ name: String) throws -> LayerGrams {
        try LayerGrams(features: layers[name]!, kinds: [.centered, .raw, .rowCentered])
    }
}

@Suite("Similarity measures against their authors' reference code")
struct MeasureReferenceTests {
    @Test("procrustes = float64 SVD of X̃ᵀỸ (≤ 1e-10)")
    func procrustes() throws {
        let f = try MeasureFixture()
        for (a, b) in f.pairs {
            expectClose(
                try ProcrustesSimilarity().value(f.grams(a), f.grams(b)), f.values["procrustes/\(a)/\(b)"]!,
                atol: 1e-10, "\(a)/\(b)")
        }
    }

    @Test("svcca and pwcca = google/svcca cca_core + pwcca (≤ 1e-8), including A keeping more directions than B")
    func cca() throws {
        let f = try MeasureFixture()
        for v in [0.99, 0.9] {
            for (a, b) in f.pairs {
                let ga = try f.grams(a), gb = try f.grams(b)
                expectClose(
                    try CanonicalCorrelation(.svcca, variance: v).value(ga, gb), f.values["svcca@\(v)/\(a)/\(b)"]!,
                    atol: 1e-8, "svcca \(v) \(a)/\(b)")
                expectClose(
                    try CanonicalCorrelation(.pwcca, variance: v).value(ga, gb), f.values["pwcca@\(v)/\(a)/\(b)"]!,
                    atol: 1e-8, "pwcca \(v) \(a)/\(b)")
            }
            for name in ["x", "y"] {
                let kept = try CanonicalCorrelation(.svcca, variance: v).prepare(f.grams(name)).kept
                #expect(Double(kept) == f.values["kept@\(v)/\(name)"]!)
            }
        }
        // The fixture's x keeps 17 directions at 0.99 and y 12: pwcca(x, y) exercises the "A keeps more" case.
        #expect(f.values["kept@0.99/x"]! > f.values["kept@0.99/y"]!)
    }

    @Test("mutual-knn = platonic-rep mutual_knn (exact count), cknna = platonic-rep cknna (≤ 1e-9)")
    func knn() throws {
        let f = try MeasureFixture()
        let n = f.layers["x"]!.rowCount
        for k in [5, 10] {
            for (a, b) in f.pairs {
                let ga = try f.grams(a), gb = try f.grams(b)
                let m = try MutualKNN(k: k).value(ga, gb)
                #expect(m == f.values["mutual-knn-count@\(k)/\(a)/\(b)"]! / Double(n * k), "mutual-knn \(k) \(a)/\(b)")
                expectClose(m, f.values["mutual-knn@\(k)/\(a)/\(b)"]!, atol: 1e-6)
                expectClose(
                    try CKNNA(k: k).value(ga, gb), f.values["cknna@\(k)/\(a)/\(b)"]!, atol: 1e-9, "cknna \(k) \(a)/\(b)"
                )
            }
        }
    }

    @Test("rsa = rsatoolbox calc_rdm + compare for correlation/euclidean × spearman/pearson/kendall (≤ 1e-10)")
    func rsa() throws {
        let f = try MeasureFixture()
        for rdm in RSA.Dissimilarity.allCases {
            for cmp in RSA.Comparison.allCases {
                for (a, b) in f.pairs {
                    expectClose(
                        try RSA(rdm: rdm, comparison: cmp).value(f.grams(a), f.grams(b)),
                        f.values["rsa-\(rdm.rawValue)-\(cmp.rawValue)/\(a)/\(b)"]!, atol: 1e-10,
                        "rsa \(rdm) \(cmp) \(a)/\(b)")
                }
            }
        }
    }
}

@Suite("Gram forms equal feature forms")
struct MeasureGramFormTests {
    /// Column-centred copy.
    func centred(_ x: Tensor<Double>) throws -> Tensor<Double> { var c = x; try c.centerColumns(); return c }

    /// The reduced set of SVCCA in feature form: X̃ = U·S·Vᵀ, keep the fewest k reaching `v`; returns U_k·S_k.
    func reduced(_ x: Tensor<Double>, _ v: Double) throws -> Tensor<Double> {
        let (u, s, _) = try centred(x).singularValueDecomposition()
        let total = s.reduce(0) { $0 + $1 * $1 }
        var acc = 0.0, k = s.count
        for i in s.indices { acc += s[i] * s[i]; if acc >= v * total { k = i + 1; break } }
        let n = x.rowCount, w = u.shape[1]
        return try Tensor(
            shape: [n, k],
            generating: {
                let i = $0 / k, j = $0 % k; return u.scalars[i * w + j] * s[j]
            })
    }

    /// Canonical correlations of two data sets in feature form: singular values of Q_XᵀQ_Y (thin QR).
    func canonical(_ x: Tensor<Double>, _ y: Tensor<Double>) throws -> [Double] {
        try x.householderQ().matmul(y.householderQ(), transposeSelf: true).singularValues()
    }

    @Test(
        "procrustes, svcca, pwcca, mutual-knn, cknna and rsa: feature form = Gram form to 1e-8 relative",
        arguments: [(80, 30, 50), (40, 100, 25)])
    func gramEqualsFeatures(n: Int, dx: Int, dy: Int) throws {
        var x = randomTensor([n, dx], seed: 11, as: Double.self)
        x.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = p[i] * (1 + Double(i % dx) / 3) + 2 } }
        let w = randomTensor([dx, dy], seed: 12, scale: 0.3, as: Double.self)
        var y = try x.matmul(w)
        let noise = randomTensor([n, dy], seed: 13, as: Double.self).scalars
        y.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = tanh(p[i]) + 0.5 * noise[i] } }
        let ga = try LayerGrams(features: x, kinds: [.centered, .raw, .rowCentered])
        let gb = try LayerGrams(features: y, kinds: [.centered, .raw, .rowCentered])
        func rel(_ a: Double, _ b: Double, _ what: String) {
            #expect(abs(a - b) <= 1e-8 * max(abs(b), 1e-300), "\(what): Gram \(a) vs features \(b)")
        }
        // Procrustes: nuclear norm of X̃ᵀỸ (D×D) over Frobenius norms.
        let xc = try centred(x), yc = try centred(y)
        let nuc = try xc.matmul(yc, transposeSelf: true).singularValues().reduce(0, +)
        let fx = xc.scalars.reduce(0) { $0 + $1 * $1 }.squareRoot(),
            fy = yc.scalars.reduce(0) { $0 + $1 * $1 }.squareRoot()
        rel(try ProcrustesSimilarity().value(ga, gb), nuc / (fx * fy), "procrustes")
        // SVCCA / PWCCA through QR of the reduced data (no Gram).
        for v in [0.99, 0.8] {
            let rx = try reduced(x, v), ry = try reduced(y, v)
            let rho = try canonical(rx, ry)
            rel(
                try CanonicalCorrelation(.svcca, variance: v).value(ga, gb), rho.reduce(0, +) / Double(rho.count),
                "svcca \(v)")
            // PWCCA as released, on features: the side with fewer directions (A on a tie) gives the weights;
            // whitening = unit columns (Xr = U_k·S_k has orthogonal columns); u, ρ from the SVD of the whitened
            // cross-covariance; dirnsᵀ = Xr·u; weights from the QR of dirnsᵀ, Σⱼ|(QᵀXr)ᵢⱼ|.
            func whiten(_ t: Tensor<Double>) throws -> Tensor<Double> {
                let k = t.rowSize, n = t.rowCount
                var norms = [Double](repeating: 0, count: k)
                for i in 0..<n { for j in 0..<k { norms[j] += t.scalars[i * k + j] * t.scalars[i * k + j] } }
                return try Tensor(shape: t.shape, generating: { t.scalars[$0] / norms[$0 % k].squareRoot() })
            }
            let (s, o) = rx.shape[1] <= ry.shape[1] ? (rx, ry) : (ry, rx)
            let (u, rho2, _) = try whiten(s).matmul(whiten(o), transposeSelf: true).singularValueDecomposition()
            let q = try s.matmul(u).householderQ()
            let qx = try q.matmul(s, transposeSelf: true).scalars
            let k = s.shape[1]
            var wsum = [Double](repeating: 0, count: k)
            for i in 0..<k { for j in 0..<k { wsum[i] += abs(qx[i * k + j]) } }
            let total = wsum.reduce(0, +)
            let pw = zip(wsum, rho2).reduce(0) { $0 + $1.0 / total * $1.1 }
            // With k_A + k_B > N − 1, some correlations are tied at 1 and the released weights depend on an
            // arbitrary basis of that subspace: only the untied case is compared.
            if rx.shape[1] + ry.shape[1] < n - 1 {
                rel(try CanonicalCorrelation(.pwcca, variance: v).value(ga, gb), pw, "pwcca \(v)")
            }
        }
        // k-NN measures on explicitly normalised rows.
        func normalised(_ t: Tensor<Double>) throws -> Tensor<Double> {
            let d = t.rowSize
            var o = t
            o.withUnsafeMutableBufferPointer { p in
                for i in 0..<t.rowCount {
                    var s = 0.0; for j in 0..<d { s += p[i * d + j] * p[i * d + j] }
                    for j in 0..<d { p[i * d + j] /= s.squareRoot() }
                }
            }
            return o
        }
        let nx = try normalised(x), ny = try normalised(y)
        let gx = try LayerGrams(features: nx, kinds: .raw), gy = try LayerGrams(features: ny, kinds: .raw)
        for k in [3, 10] {
            #expect(try MutualKNN(k: k).value(ga, gb) == MutualKNN(k: k).value(gx, gy))
            rel(try CKNNA(k: k).value(ga, gb), try CKNNA(k: k).value(gx, gy), "cknna \(k)")
        }
        // RSA: RDMs straight from the features.
        let d = Double(dx), e = Double(dy)
        func rdmFeatures(_ t: Tensor<Double>, _ kind: RSA.Dissimilarity, _ dim: Double) -> [Double] {
            let rows = (0..<n).map { Array(t.scalars[$0 * t.rowSize..<($0 + 1) * t.rowSize]) }
            var out: [Double] = []
            for i in 0..<n {
                for j in (i + 1)..<n {
                    switch kind {
                    case .euclidean:
                        out.append(zip(rows[i], rows[j]).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / dim)
                    case .correlation:
                        let mi = rows[i].reduce(0, +) / dim, mj = rows[j].reduce(0, +) / dim
                        let a = rows[i].map { $0 - mi }, b = rows[j].map { $0 - mj }
                        let c = zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
                        out.append(1 - c / (a.reduce(0) { $0 + $1 * $1 } * b.reduce(0) { $0 + $1 * $1 }).squareRoot())
                    }
                }
            }
            return out
        }
        for kind in RSA.Dissimilarity.allCases {
            let fa = rdmFeatures(x, kind, d), fb = rdmFeatures(y, kind, e)
            let m = RSA(rdm: kind, comparison: .pearson)
            let ra = try m.dissimilarities(ga), rb = try m.dissimilarities(gb)
            for (g, f) in zip(ra + rb, fa + fb) { #expect(abs(g - f) <= 1e-8 * max(abs(f), 1)) }
        }
    }

    @Test("svcca/pwcca refuse a layer that needs N − 1 directions with one line suggesting `tokens` cls|gap")
    func tooManyDirections() throws {
        let x = randomTensor([20, 200], seed: 3, as: Double.self)
        let g = try LayerGrams(features: x, kinds: .centered)
        #expect(throws: MeasureError.self) { try CanonicalCorrelation(.svcca, variance: 1).prepare(g) }
        do { _ = try CanonicalCorrelation(.pwcca, variance: 1).prepare(g) } catch {
            let text = "\(error)"
            #expect(text.contains("`tokens` cls|gap") && !text.contains("\n"))
        }
    }

    @Test("Invariances: procrustes/svcca of a rotated, scaled, shifted copy = 1; measures symmetric where defined")
    func invariances() throws {
        let x = randomTensor([50, 8], seed: 5, as: Double.self)
        // A rotation from the QR of a random matrix.
        let q = try randomTensor([8, 8], seed: 6, as: Double.self).householderQ()
        var y = try x.matmul(q)
        y.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = 3 * p[i] + 7 } }
        let ga = try LayerGrams(features: x, kinds: [.centered, .raw]),
            gb = try LayerGrams(features: y, kinds: [.centered, .raw])
        expectClose(try ProcrustesSimilarity().value(ga, gb), 1, atol: 1e-12)
        expectClose(try CanonicalCorrelation(.svcca, variance: 0.99).value(ga, gb), 1, atol: 1e-10)
        expectClose(try CanonicalCorrelation(.pwcca, variance: 0.99).value(ga, gb), 1, atol: 1e-10)
        let z = randomTensor([50, 5], seed: 9, as: Double.self)
        let gz = try LayerGrams(features: z, kinds: [.centered, .raw, .rowCentered])
        let gx = try LayerGrams(features: x, kinds: [.centered, .raw, .rowCentered])
        for m in [
            ProcrustesSimilarity().value, MutualKNN(k: 5).value, CanonicalCorrelation(.svcca).value,
            RSA().value,
        ] as [(LayerGrams, LayerGrams) throws -> Double] {
            expectClose(try m(gx, gz), try m(gz, gx), atol: 1e-12)
        }
    }
}

@Suite("Factorisation kernels of the measures")
struct MeasureKernelTests {
    @Test(
        "pivotedCholeskyFactor: F·Fᵀ = K with r = rank (D < N and D > N); dgesdd: U·S·Vᵀ = A; householderQ orthonormal")
    func kernels() throws {
        for (n, d) in [(30, 7), (20, 50)] {
            var x = randomTensor([n, d], seed: UInt64(n), as: Double.self)
            try x.centerColumns()
            let k = try x.gramOfRows()
            let f = try k.pivotedCholeskyFactor()
            #expect(f.shape == [n, min(d, n - 1)])
            expectClose(try f.matmul(f, transposeOther: true), k, atol: 1e-10)
        }
        let a = randomTensor([9, 5], seed: 2, as: Double.self)
        let (u, s, vt) = try a.singularValueDecomposition()
        var us = u
        us.withUnsafeMutableBufferPointer { p in for i in 0..<9 { for j in 0..<5 { p[i * 5 + j] *= s[j] } } }
        expectClose(try us.matmul(vt), a, atol: 1e-12)
        #expect(zip(s, s.dropFirst()).allSatisfy { $0 >= $1 })
        let q = try a.householderQ()
        var eye = Tensor<Double>(shape: [5, 5])
        eye.withUnsafeMutableBufferPointer { p in for i in 0..<5 { p[i * 5 + i] = 1 } }
        expectClose(try q.matmul(q, transposeSelf: true), eye, atol: 1e-12)
    }
}
