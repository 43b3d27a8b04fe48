import CKAAnalysis
import CKAIO
import CKATensor
import Foundation
import Testing
import _CKATestSupport

@Suite("Kendall τ-b and prediction agreement")
struct AgreementTests {
    @Test("τ-b equals scipy.stats.kendalltau on cases with and without ties, NaN where scipy gives NaN")
    func kendallAgainstScipy() throws {
        let cases = try #require(expected["kendall"] as? [[String: Any]])
        #expect(cases.count >= 15)
        var k = KendallTau()
        for c in cases {
            let x = (c["x"] as! [NSNumber]).map(\.doubleValue), y = (c["y"] as! [NSNumber]).map(\.doubleValue)
            let tau = number(c["tau"])
            let got = k.tauB(x, y)
            if tau.isNaN {
                #expect(got.isNaN, "\(c["name"]!): \(got)")
            } else {
                #expect(abs(got - tau) <= 1e-15, "\(c["name"]!): \(got) vs \(tau)")
            }
        }
    }

    @Test("τ-b equals the O(n²) definition (P − Q)/√((P+Q+Tx)(P+Q+Ty)) on random tied data")
    func kendallAgainstDefinition() {
        var g = SeededGenerator(seed: 11)
        for n in [2, 3, 5, 17, 64, 201] {
            let x = (0..<n).map { _ in Double(Int.random(in: 0..<6, using: &g)) }
            let y = (0..<n).map { _ in Double(Int.random(in: 0..<4, using: &g)) }
            var p = 0, q = 0, tx = 0, ty = 0
            for i in 0..<n {
                for j in (i + 1)..<max(i + 1, n) {
                    let dx = x[i] - x[j], dy = y[i] - y[j]
                    if dx == 0 && dy == 0 { continue }
                    if dx == 0 {
                        tx += 1
                    } else if dy == 0 {
                        ty += 1
                    } else if (dx > 0) == (dy > 0) {
                        p += 1
                    } else {
                        q += 1
                    }
                }
            }
            let denom = (Double(p + q + tx) * Double(p + q + ty)).squareRoot()
            let ref = denom == 0 ? Double.nan : Double(p - q) / denom
            let got = KendallTau.tauB(x, y)
            if ref.isNaN { #expect(got.isNaN) } else { #expect(abs(got - ref) < 1e-12, "n = \(n): \(got) vs \(ref)") }
        }
        #expect(KendallTau.tauB([1, .nan, 3], [1, 2, 3]).isNaN)
        #expect(KendallTau.tauB([1, 2], [1]).isNaN)
        #expect(KendallTau.tauB([-.infinity, 0, .infinity], [1, 2, 3]) == 1)
    }

    @Test("τ-b of 100 000 elements runs in O(n log n)")
    func kendallLarge() {
        var g = SeededGenerator(seed: 2)
        let n = 100_000
        let x = (0..<n).map { _ in g.gaussian() }
        let y = x.map { $0 + 0.5 * g.gaussian() }
        let start = Date()
        let t = KendallTau.tauB(x, y)
        #expect(t > 0.5 && t < 0.9)
        #expect(Date().timeIntervalSince(start) < 10)
    }

    func referenceRows(_ mode: String) throws -> [(String, String, Int?, Double)] {
        let a = try #require(expected["agreement"] as? [String: Any])
        return try #require(a[mode] as? [[Any]]).map { r in
            (r[0] as! String, r[1] as! String, (r[2] as? NSNumber)?.intValue, number(r[3]))
        }
    }

    @Test("agreement of two stores equals the scipy/sklearn reference (union and A's top-k)")
    func agreementAgainstReference() throws {
        let a = try ActivationStore(path: fixture("agreement_a.h5")),
            b = try ActivationStore(path: fixture("agreement_b.h5"))
        let ks = (expected["agreement"] as! [String: Any])["ks"] as! [Int]
        for (mode, classes) in [("union", RankedClasses.union), ("a", RankedClasses.a)] {
            var o = AgreementOptions(ks: ks, classes: classes)
            o.chunkRows = 7
            let r = try PredictionAgreement.run(a, b, options: o)
            let ref = try referenceRows(mode)
            #expect(r.values.count == ref.count)
            for (v, e) in zip(r.values, ref) {
                #expect(v.metric == e.0 && v.subset.rawValue == e.1 && v.k == e.2)
                if e.3.isNaN {
                    #expect(v.value.isNaN, "\(mode) \(e)")
                } else {
                    #expect(
                        abs(v.value - e.3) <= 1e-12,
                        "\(mode) \(e.0) \(e.1) k=\(String(describing: e.2)): \(v.value) vs \(e.3)")
                }
            }
        }
    }

    @Test("CSV contract: metric,subset,k,value; k empty for the top-1 metrics; nan for undefined")
    func csv() throws {
        let r = try PredictionAgreement.run(
            ActivationStore(path: fixture("agreement_a.h5")),
            ActivationStore(path: fixture("agreement_b.h5")), options: AgreementOptions(ks: [1, 5]))
        let lines = r.csv().split(separator: "\n").map(String.init)
        #expect(lines[0] == "metric,subset,k,value")
        #expect(lines.count == 1 + 3 * 2 + 3 + 3)
        #expect(lines.contains("kendall_tau_b,both_correct,1,nan"))
        #expect(
            lines.contains { $0.hasPrefix("top1_agreement,all,,") }
                && lines.contains { $0.hasPrefix("top1_f1,both_wrong,,") })
        #expect(r.subsetCounts[.all] == 60 && r.table().contains("both_wrong"))
    }

    @Test("identical logits agree perfectly; without labels only 'all' is reported")
    func identical() throws {
        let z = randomTensor([20, 7], seed: 4, as: Float.self)
        let r = try PredictionAgreement.compute(
            logitsA: z, logitsB: z, labels: nil, options: AgreementOptions(ks: [3, 7]))
        #expect(Set(r.values.map(\.subset)) == [.all])
        for v in r.values { #expect(v.value == 1, "\(v)") }
    }

    @Test("bad input: no /logits, different class counts, different inputs")
    func badInput() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func p(_ s: String) -> String { dir.appendingPathComponent(s).path }
        let ids = (0..<5).map { "i\($0)" }
        try writeStore(p("none.h5"), ids: ids, labels: nil, layers: [])
        try writeStore(p("c3.h5"), ids: ids, labels: nil, layers: [], logits: randomTensor([5, 3], seed: 1))
        try writeStore(p("c4.h5"), ids: ids, labels: nil, layers: [], logits: randomTensor([5, 4], seed: 1))
        try writeStore(
            p("other.h5"), ids: ids.reversed(), labels: nil, layers: [], logits: randomTensor([5, 3], seed: 1))
        let c3 = try ActivationStore(path: p("c3.h5"))
        #expect(throws: AnalysisError.missingLogits(path: p("none.h5"), detail: "no /logits dataset")) {
            _ = try PredictionAgreement.run(ActivationStore(path: p("none.h5")), c3)
        }
        #expect(throws: AnalysisError.classCountMismatch(pathA: p("c3.h5"), countA: 3, pathB: p("c4.h5"), countB: 4)) {
            _ = try PredictionAgreement.run(c3, ActivationStore(path: p("c4.h5")))
        }
        do {
            _ = try PredictionAgreement.run(c3, ActivationStore(path: p("other.h5")))
            Issue.record("expected an error")
        } catch let e as AnalysisError {
            #expect(e.description.contains("different inputs") && e.description.contains("another order"))
        }
        #expect(throws: AnalysisError.self) {
            _ = try PredictionAgreement.run(c3, c3, options: AgreementOptions(ks: [0]))
        }
    }
}
