import CKAKit
import Foundation
import Testing
import _CKATestSupport

@Suite("cka compare --measure and statistics")
struct MeasureCommandTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    @Test(
        "--measure writes <stem>.<measure>.csv per measure, the long CSV with measure columns and one HDF5 matrix per measure; values = the library's"
    )
    func severalMeasures() throws {
        let a = similarityFixture("cka_a.h5"), b = similarityFixture("cka_b.h5")
        let r = try cka([
            "compare", a, b, "--measure", "cka,procrustes,mutual-knn,rsa", "--knn-k", "5", "--tokens", "gap",
            "--batch-size", "16", "--csv", path("m.csv"), "--long-csv", path("long.csv"), "--h5", path("m.h5"),
            "--heatmap", path("m.png"), "--quiet",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        for m in ["cka", "procrustes", "mutual-knn", "rsa"] {
            #expect(FileManager.default.fileExists(atPath: path("m.\(m).csv")), "m.\(m).csv")
            #expect(FileManager.default.fileExists(atPath: path("m.\(m).png")), "m.\(m).png")
        }
        let lines = try String(contentsOfFile: path("long.csv"), encoding: .utf8).split(separator: "\n").map(
            String.init)
        #expect(
            lines[0]
                == "model_a,layer_a,model_b,layer_b,measure,estimator,batch_size,value,ci_low,ci_high,p_value,p_adjusted,null_mean,null_sd"
        )
        #expect(lines.count == 1 + 4 * 3 * 2)
        // The cka rows equal the plain compare, and the procrustes rows the library's value.
        var o = CKAOptions(); o.batchSize = 16; o.tokens = .gap
        let sa = try ActivationStore(path: a), sb = try ActivationStore(path: b)
        let plain = try CKAComparison.run(sa, sb, options: o)
        let first = lines[1].split(separator: ",", omittingEmptySubsequences: false)
        #expect(
            first[4] == "cka" && first[5] == "minibatch" && Double(first[7]) == plain.matrix[0][0] && first[8].isEmpty)
        var mo = MeasureOptions(measures: [.procrustes])
        mo.knnK = 5
        let lib = try MeasureComparison.run(sa, sb, options: o, measures: mo)
        let proc = lines.first { $0.contains(",procrustes,") }!.split(separator: ",", omittingEmptySubsequences: false)
        #expect(proc[5] == "full" && Double(proc[7]) == lib[0].result.matrix[0][0])
        let store = try HDF5File(path: path("m.h5"), mode: .readOnly)
        for m in ["cka", "procrustes", "mutual-knn", "rsa"] { #expect(try store.dataset(m).shape == [3, 2]) }
    }

    @Test("Without --measure or statistics the outputs are unchanged (long CSV header ends in 'cka')")
    func defaultUnchanged() throws {
        let r = try cka([
            "compare", similarityFixture("cka_a.h5"), similarityFixture("cka_b.h5"), "--batch-size", "16",
            "--long-csv", path("l.csv"), "--quiet",
        ])
        #expect(r.status == 0)
        #expect(
            try String(contentsOfFile: path("l.csv"), encoding: .utf8).hasPrefix(
                "model_a,layer_a,model_b,layer_b,estimator,batch_size,cka\n"))
    }

    @Test("--bootstrap/--permutations fill ci_low…null_sd; the same seed gives the same bytes")
    func statisticsColumns() throws {
        let args = [
            "compare", similarityFixture("cka_a.h5"), similarityFixture("cka_b.h5"), "--batch-size", "16",
            "--tokens", "cls", "--measure", "cka,svcca", "--bootstrap", "50", "--permutations", "30", "--seed", "5",
            "--quiet",
        ]
        #expect(try cka(args + ["--long-csv", path("s1.csv")]).status == 0)
        #expect(try cka(args + ["--long-csv", path("s2.csv")]).status == 0)
        let t1 = try String(contentsOfFile: path("s1.csv"), encoding: .utf8),
            t2 = try String(contentsOfFile: path("s2.csv"), encoding: .utf8)
        #expect(t1 == t2)
        for line in t1.split(separator: "\n").dropFirst() {
            let f = line.split(separator: ",", omittingEmptySubsequences: false)
            #expect(f.count == 14 && f[8...].allSatisfy { !$0.isEmpty }, "\(line)")
            let p = Double(f[10])!, lo = Double(f[8])!, hi = Double(f[9])!
            #expect(p >= 1.0 / 31 && p <= 1 && lo <= hi)
        }
    }

    @Test("svcca on a layer that needs N − 1 directions: one line suggesting --tokens cls|gap, exit 1")
    func svccaTooManyDirections() throws {
        let store = path("wide.h5")
        let w = try ActivationStoreWriter(
            path: store, ids: (0..<12).map { "img\($0)" }, metadata: StoreMetadata(model: "wide"))
        try w.addLayer("blocks.0", kind: .block, block: 0, featureShape: [5, 8])
        try w.append(randomTensor([12, 5, 8], seed: 4, as: Float.self), to: "blocks.0")
        try w.finish()
        let r = try cka(["compare", store, "--measure", "svcca", "--svcca-variance", "1", "--quiet"])
        #expect(r.status != 0)
        let text = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(text.contains("--tokens cls|gap") && text.contains("blocks.0") && !text.contains("\n"), "\(text)")
    }

    @Test(
        "compare-all --measure: <A>__<B>.<measure>.csv|png per pair, all.csv with measure columns, overview with a row per measure"
    )
    func compareAll() throws {
        let out = path("all")
        let r = try cka([
            "compare-all", similarityFixture("cka_a.h5"), similarityFixture("cka_b.h5"), "--measure", "cka,procrustes",
            "--tokens", "gap", "--batch-size", "16", "--permutations", "20", "--out-dir", out, "--quiet",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        for pair in ["ref_a__ref_a", "ref_a__ref_b", "ref_b__ref_b"] {
            for m in ["cka", "procrustes"] {
                for ext in ["csv", "png"] {
                    #expect(FileManager.default.fileExists(atPath: "\(out)/\(pair).\(m).\(ext)"), "\(pair).\(m).\(ext)")
                }
            }
        }
        let lines = try String(contentsOfFile: "\(out)/all.csv", encoding: .utf8).split(separator: "\n")
        #expect(
            lines[0]
                == "model_a,layer_a,model_b,layer_b,measure,estimator,batch_size,value,ci_low,ci_high,p_value,p_adjusted,null_mean,null_sd"
        )
        #expect(lines.count == 1 + 2 * (9 + 6 + 4))
        #expect(FileManager.default.fileExists(atPath: "\(out)/overview.png"))
    }
}
