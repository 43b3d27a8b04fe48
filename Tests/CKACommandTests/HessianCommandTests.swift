import CKAKit
import Foundation
import Testing
import _CKATestSupport

@Suite("cka hessian")
struct HessianCommandTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    @Test("MAE per-block spectrum: cost first, CSV and HDF5 written, masks stored and reusable, seeded")
    func maePerBlock() throws {
        let mae = path("mae.safetensors"), px = path("pixels.h5")
        try writeTinyViTCheckpoint(to: URL(fileURLWithPath: mae), seed: 1, decoder: true)
        let w = try ActivationStoreWriter(
            path: px, ids: (0..<3).map { "img\($0).png" }, labels: [0, 1, 2], classes: ["a", "b", "c"],
            metadata: StoreMetadata(model: "pixels"))
        try w.writeDataset("inputs/pixels", tinyPixels(3, seed: 3))
        try w.finish()
        let common = [
            "hessian", "--checkpoint", mae, "--loss", "mae", "--inputs", px, "--examples", "2", "--top-k", "2",
            "--lanczos-steps", "3", "--trace-samples", "2", "--density-runs", "1", "--density-bins", "50",
            "--per-block", "--seed", "5", "--hessian-step", "1e-3",
        ]
        let a = try cka(common + ["--out", path("a.h5"), "--csv", path("a.csv")])
        #expect(a.status == 0, "\(a.stderr)")
        #expect(a.stderr.contains("cost estimate") && a.stdout.contains("decoder"), "\(a.stderr)")
        let csv = try String(contentsOfFile: path("a.csv"), encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(csv.first == "scope,quantity,index,value,stderr")
        let scopes = Set(csv.dropFirst().map { String($0.split(separator: ",")[0]) })
        #expect(scopes == ["model", "patch_embed", "blocks.0", "norm", "decoder"])
        #expect(
            csv.contains { $0.hasPrefix("model,eigenvalue,2,") }
                && csv.contains { $0.hasPrefix("model,density_moment,4,") })
        #expect(csv.contains { $0.hasPrefix("model,eigenvalue_step_error,1,") })
        let f = try HDF5File(path: path("a.h5"))
        #expect(try f.attribute("format") == .string("hessian"))
        #expect(try f.dataset("masks").shape == [2, 16] && f.dataset("eigenvalues").shape == [5, 1, 2])
        #expect(try f.dataset("density/values").shape == [50])
        // The parameter counts of the blocks add up to the model's.
        let counts = try f.dataset("parameter_counts").readInt64()
        #expect(counts[0] == counts.dropFirst().reduce(0, +))
        // The stored masks drive a second run: the same numbers (to float32 rounding amplified by 1/ε: a mask
        // read from a file keeps the visible patches in index order, a drawn one in the order of its noise).
        // (The whole model only, to keep the test short; the step error, a small difference, is left out.)
        let b = try cka(
            common.filter { $0 != "--per-block" }
                + ["--out", path("b.h5"), "--csv", path("b.csv"), "--masks", path("a.h5"), "--quiet"])
        #expect(b.status == 0, "\(b.stderr)")
        let again = try String(contentsOfFile: path("b.csv"), encoding: .utf8).split(separator: "\n")
            .filter { !$0.contains("step_error") }
        let model = csv.filter { $0.hasPrefix("model,") && !$0.contains("step_error") }
        #expect(again.count == model.count + 1)
        for (x, y) in zip(model, again.dropFirst()) {
            let p = x.split(separator: ",", omittingEmptySubsequences: false),
                q = y.split(separator: ",", omittingEmptySubsequences: false)
            #expect(p[0..<3] == q[0..<3])
            expectClose(Double(q[3])!, Double(p[3])!, rtol: 1e-3, atol: 1e-6, "\(x)")
        }
        // landscape-plot draws the density and the blocks.
        let plot = try cka(["landscape-plot", path("a.h5")])
        #expect(plot.status == 0, "\(plot.stderr)")
        for name in ["a-density.png", "a-blocks.png"] { #expect(FileManager.default.fileExists(atPath: path(name))) }
        // Bad input: one line.
        let bad = try cka(common + ["--out", path("c.h5"), "--masks", px])
        #expect(bad.status != 0 && bad.stderr.split(separator: "\n").count == 1, "\(bad.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path("c.h5")))
    }

    @Test("landscape --from MAE --to fine-tuned: a 1-D store along t, the head held, the decoder listed; plotted")
    func checkpointPath() throws {
        let mae = path("mae.safetensors"), sup = path("sup.safetensors"), px = path("pixels.h5")
        try writeTinyViTCheckpoint(to: URL(fileURLWithPath: mae), seed: 1, decoder: true)
        try writeTinyViTCheckpoint(to: URL(fileURLWithPath: sup), seed: 2, classes: 3)
        let w = try ActivationStoreWriter(
            path: px, ids: (0..<3).map { "img\($0).png" }, labels: [0, 1, 2], classes: ["a", "b", "c"],
            metadata: StoreMetadata(model: "pixels"))
        try w.writeDataset("inputs/pixels", tinyPixels(3, seed: 3))
        try w.finish()
        let r = try cka([
            "landscape", "--from", mae, "--to", sup, "--loss", "ce", "--inputs", px, "--examples", "3",
            "--grid", "-0.25:1.25:7", "--out", path("p.h5"),
        ])
        #expect(r.status == 0 && r.stdout.contains("7 points on the path"), "\(r.stderr)")
        #expect(r.stderr.contains("held") && r.stderr.contains("only in A, not used: decoder_embed.weight"))
        let s = try LandscapeSurface(contentsOf: path("p.h5"))
        #expect(s.dimensions == 1 && s.x.first == -0.25 && s.attributes["axis"] == .string("t"))
        #expect(s.attributes["path_from"] == .string("mae.safetensors"))
        let plot = try cka(["landscape-plot", path("p.h5")])
        #expect(plot.status == 0 && FileManager.default.fileExists(atPath: path("p-curve.png")), "\(plot.stderr)")
        let twoD = try cka([
            "landscape", "--from", mae, "--to", sup, "--loss", "ce", "--inputs", px, "--y-grid", "-1:1:3",
            "--out", path("q.h5"),
        ])
        #expect(twoD.status != 0 && twoD.stderr.contains("1-D"))
    }
}
