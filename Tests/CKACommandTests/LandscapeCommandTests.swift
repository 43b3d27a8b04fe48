import CKAKit
import Foundation
import Testing
import _CKATestSupport

@Suite("cka landscape, landscape-plot, landscape-stats")
struct LandscapeCommandTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// A tiny MAE checkpoint with decoder, a supervised one with a 3-class head, and 6 labelled 32×32 inputs.
    func fixtures() throws -> (mae: String, sup: String, pixels: String) {
        let mae = path("mae.safetensors"), sup = path("sup.safetensors"), px = path("pixels.h5")
        try writeTinyViTCheckpoint(to: URL(fileURLWithPath: mae), seed: 1, decoder: true)
        try writeTinyViTCheckpoint(to: URL(fileURLWithPath: sup), seed: 2, classes: 3)
        let w = try ActivationStoreWriter(
            path: px, ids: (0..<6).map { "img\($0).png" }, labels: (0..<6).map { $0 % 3 },
            classes: ["a", "b", "c"], metadata: StoreMetadata(model: "pixels"))
        try w.writeDataset("inputs/pixels", tinyPixels(6, seed: 3))
        try w.finish()
        return (mae, sup, px)
    }

    @Test("MAE surface: interrupted with --max-points and resumed equals an uninterrupted run; centre = the MAE loss")
    func maeResume() throws {
        let f = try fixtures()
        let common = [
            "landscape", "--checkpoint", f.mae, "--loss", "mae", "--inputs", f.pixels, "--examples", "5",
            "--batch-size", "2", "--grid", "-1:1:5", "--seed", "7", "--quiet",
        ]
        let a = try cka(common + ["--out", path("a.h5"), "--max-points", "9"])
        #expect(a.status == 0, "\(a.stderr)")
        #expect(try LandscapeSurface(contentsOf: path("a.h5")).completedCount == 9)
        let resumed = try cka(common + ["--out", path("a.h5")])
        #expect(resumed.status == 0 && resumed.stdout.contains("25 points"), "\(resumed.stderr)")
        let b = try cka(common + ["--out", path("b.h5")])
        #expect(b.status == 0, "\(b.stderr)")
        let sa = try LandscapeSurface(contentsOf: path("a.h5")), sb = try LandscapeSurface(contentsOf: path("b.h5"))
        #expect(sa.loss == sb.loss && sa.completedCount == 25 && sa.masks == sb.masks && sa.ids == sb.ids)
        #expect(
            sa.ids == (0..<5).map { "img\($0).png" } && sa.masks!.count == 5 * 16
                && sa.masks!.filter { $0 == 1 }.count == 5 * 12)
        #expect(
            sa.attributes["excluded"] == .strings(["decoder_pos_embed", "pos_embed"])
                && sa.attributes["stat_convex_area"] != nil)
        // The centre is the plain MAE loss with the stored masks.
        let ckpt = try Checkpoint(contentsOf: URL(fileURLWithPath: f.mae))
        let masks = try (0..<5).map { i in try MAEMask(maskRow: sa.masks![(i * 16)..<(i * 16 + 16)].map { $0 == 1 }) }
        let pixels = try ActivationStore(path: f.pixels).readFloatDataset("inputs/pixels", rows: 0..<5)
        let ref = try MaskedAutoencoder(checkpoint: ckpt).forward(pixels, masks: masks, normPixLoss: true)
        expectClose(sa.value(ix: 2, iy: 2)!, ref.loss, rtol: 1e-6)
        // The masks of one surface drive another run (--masks), with the same directions file.
        let c = try cka(
            common + [
                "--out", path("c.h5"), "--masks", path("a.h5"), "--directions", path("a.directions.h5"), "--dims", "1",
            ])
        #expect(c.status == 0, "\(c.stderr)")
        let sc = try LandscapeSurface(contentsOf: path("c.h5"))
        #expect(sc.dimensions == 1)
        // visible tokens in another order: float32 rounding only
        expectClose(sc.loss, Array(sa.loss[10..<15]), rtol: 1e-6)
        // Another seed cannot resume this store.
        let other = try cka(
            common.map { $0 == "7" ? "8" : $0 } + ["--out", path("a.h5"), "--directions", path("other.h5")])
        #expect(other.status == 1 && other.stderr.contains("exists with other settings"), "\(other.stderr)")
    }

    @Test("a run killed mid-grid resumes to the same surface")
    func killed() throws {
        let f = try fixtures()
        let args = [
            "landscape", "--checkpoint", f.mae, "--loss", "mae", "--inputs", f.pixels, "--examples", "6",
            "--grid", "-1:1:41", "--dims", "1", "--quiet",
        ]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ckaBinary)
        p.arguments = args + ["--out", path("k.h5")]
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, p.isRunning,
            ((try? LandscapeSurface(contentsOf: path("k.h5")))?.completedCount ?? 0) < 3
        {
            usleep(2000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let r = try cka(args + ["--out", path("k.h5")])
        let full = try cka(args + ["--out", path("full.h5")])
        #expect(r.status == 0 && full.status == 0, "\(r.stderr) \(full.stderr)")
        #expect(
            try LandscapeSurface(contentsOf: path("k.h5")).loss == LandscapeSurface(contentsOf: path("full.h5")).loss)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter {
            $0.contains(".partial-")
        }
        #expect(leftovers.count <= 1)  // at most the temporary file of the killed write
    }

    @Test("cross-entropy surface with accuracy; stats and plots; bad input gets one clear line")
    func crossEntropyAndPictures() throws {
        let f = try fixtures()
        let r = try cka([
            "landscape", "--checkpoint", f.sup, "--loss", "ce", "--inputs", f.pixels, "--grid", "-0.5:0.5:5",
            "--flatness-radius", "0.1", "--flatness-samples", "2", "--out", path("ce.h5"), "--quiet",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let s = try LandscapeSurface(contentsOf: path("ce.h5"))
        #expect(
            s.accuracy != nil && s.attributes["flatness_mean_increase"] != nil
                && s.attributes["head"]?.stringValue?.hasPrefix("class_token") == true)
        let stats = try cka(["landscape-stats", path("ce.h5")])
        #expect(
            stats.status == 0 && stats.stdout.contains("curvature along y") && stats.stdout.contains("average flatness")
                && stats.stdout.contains("Hessian λ_max"), "\(stats.stderr)")
        #expect((s.attributes["hessian_max_eigenvalue"]?.doubleValue ?? 0) > 0)
        let plot = try cka(["landscape-plot", path("ce.h5"), "--format", "svg"])
        #expect(
            plot.status == 0 && FileManager.default.fileExists(atPath: path("ce-contour.svg"))
                && FileManager.default.fileExists(atPath: path("ce-heatmap.svg")), "\(plot.stderr)")

        let noHead = try cka([
            "landscape", "--checkpoint", f.mae, "--loss", "ce", "--inputs", f.pixels, "--out", path("x.h5"),
        ])
        #expect(
            noHead.status == 1 && noHead.stderr.contains("error:")
                && !FileManager.default.fileExists(atPath: path("x.h5")))
        let noDecoder = try cka([
            "landscape", "--checkpoint", f.sup, "--loss", "mae", "--inputs", f.pixels, "--out", path("y.h5"),
        ])
        #expect(noDecoder.status == 1 && noDecoder.stderr.contains("decoder"), "\(noDecoder.stderr)")
        let noTeacher = try cka([
            "landscape", "--checkpoint", f.mae, "--loss", "rcmae", "--inputs", f.pixels, "--out", path("z.h5"),
        ])
        #expect(noTeacher.status != 0 && noTeacher.stderr.contains("--teacher"))
        let badGrid = try cka([
            "landscape", "--checkpoint", f.mae, "--loss", "mae", "--inputs", f.pixels, "--grid", "1:-1:5", "--out",
            path("z.h5"),
        ])
        #expect(badGrid.status != 0 && badGrid.stderr.contains("MIN:MAX:NUM"))
        let incomplete = try cka([
            "landscape", "--checkpoint", f.mae, "--loss", "mae", "--inputs", f.pixels, "--grid", "-1:1:3",
            "--max-points", "2", "--out", path("i.h5"), "--quiet",
        ])
        #expect(incomplete.status == 0)
        let st = try cka(["landscape-stats", path("i.h5")])
        #expect(st.status == 1 && st.stderr.contains("incomplete"))
    }

    @Test(
        "--heads/--decoder-heads are used and recorded (the decoder was assumed to have width/32 heads); a failed run leaves no orphan directions file"
    )
    func headCountsAndOrphans() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let f = try fixtures()
        let common = [
            "landscape", "--checkpoint", f.mae, "--loss", "mae", "--inputs", f.pixels, "--examples", "4",
            "--batch-size", "2", "--grid", "-1:1:3", "--dims", "1", "--seed", "7", "--quiet",
        ]
        let two = try cka(common + ["--out", path("h2.h5")]),
            four = try cka(common + ["--out", path("h4.h5"), "--decoder-heads", "4"])
        #expect(two.status == 0 && four.status == 0, "\(two.stderr) \(four.stderr)")
        let s2 = try LandscapeSurface(contentsOf: path("h2.h5")), s4 = try LandscapeSurface(contentsOf: path("h4.h5"))
        #expect(s2.attributes["decoder_heads"] == .int(2) && s4.attributes["decoder_heads"] == .int(4))
        #expect(s2.attributes["heads"] == .int(3) && s4.attributes["heads"] == .int(3))
        #expect(s2.loss[1] != s4.loss[1], "the decoder head count changes the loss")
        // The surface cannot be written (its folder does not exist): the directions this run wrote are removed.
        let dirs = path("orphan.directions.h5")
        let failed = try cka(common + ["--out", path("missing/o.h5"), "--directions", dirs])
        #expect(failed.status == 1, "\(failed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dirs), "orphan directions left behind")
    }

    @Test("--pca-of: a trajectory plane with explained variances and the trajectory, drawn over the contours; resumed")
    func trajectoryPlane() throws {
        let f = try fixtures()
        let epochs = try (0..<3).map { k -> String in
            let p = path("epoch\(k).safetensors")
            try writeTinyViTCheckpoint(to: URL(fileURLWithPath: p), seed: 10 + UInt64(k), classes: 3)
            return p
        }
        let common =
            [
                "landscape", "--checkpoint", f.sup, "--loss", "ce", "--inputs", f.pixels, "--examples", "4",
                "--grid", "-1:1:3", "--hessian-iterations", "0", "--pca-of",
            ] + epochs
        let r = try cka(common + ["--out", path("pca.h5"), "--max-points", "4"])
        #expect(r.status == 0 && r.stderr.contains("explained variance ratios"), "\(r.stderr)")
        let resumed = try cka(common + ["--out", path("pca.h5"), "--quiet"])
        #expect(resumed.status == 0 && resumed.stdout.contains("9 points"), "\(resumed.stderr)")
        let s = try LandscapeSurface(contentsOf: path("pca.h5"))
        let t = try #require(s.trajectory)
        #expect(t.checkpoints == ["epoch0.safetensors", "epoch1.safetensors", "epoch2.safetensors", "sup.safetensors"])
        #expect(t.coordinates.last == [0, 0] && t.coordinates.count == 4)
        guard case let .doubles(ratio)? = s.attributes["pca_explained_variance_ratio"] else {
            Issue.record("no explained variance ratio")
            return
        }
        // Three centred differences span two dimensions: the two ratios add up to 1.
        #expect(ratio.count == 2 && abs(ratio[0] + ratio[1] - 1) < 1e-9 && ratio[0] >= ratio[1])
        let plot = try cka(["landscape-plot", path("pca.h5"), "--format", "svg"])
        let svg = (try? String(contentsOfFile: path("pca-contour.svg"), encoding: .utf8)) ?? ""
        #expect(plot.status == 0 && svg.contains("1st PC (") && svg.contains("PCA plane"), "\(plot.stderr)")
        // Two checkpoints are not enough; --pca-of is a plane around --checkpoint.
        let few = try cka(Array(common.dropLast()) + ["--out", path("few.h5")])
        #expect(few.status != 0 && few.stderr.contains("at least 3"), "\(few.stderr)")
        let line = try cka(common + ["--out", path("line.h5"), "--dims", "1"])
        #expect(line.status != 0 && line.stderr.contains("--pca-of"), "\(line.stderr)")
    }

    @Test("--curvature-map: cost first, λ_min/λ_max per point, resumed like the loss, drawn as a second picture")
    func curvatureMap() throws {
        let f = try fixtures()
        let common = [
            "landscape", "--checkpoint", f.sup, "--loss", "ce", "--inputs", f.pixels, "--examples", "2",
            "--grid", "-1:1:3", "--dims", "1", "--hessian-iterations", "0", "--curvature-map", "--curvature-steps",
            "3",
        ]
        let a = try cka(common + ["--out", path("k.h5"), "--max-points", "1"])
        #expect(a.status == 0, "\(a.stderr)")
        let lines = a.stderr.split(separator: "\n")
        let cost = lines.firstIndex { $0.contains("curvature map cost estimate: 3 points × 3 Lanczos steps") }
        let firstPoint = lines.firstIndex { $0.contains("landscape: cost estimate") }
        #expect(cost != nil && (firstPoint == nil || cost! < firstPoint!), "\(a.stderr)")
        let partial = try LandscapeSurface(contentsOf: path("k.h5"))
        #expect(partial.lambdaMin?.filter(\.isFinite).count == 1)
        let resumed = try cka(common + ["--out", path("k.h5"), "--quiet"])
        let whole = try cka(common + ["--out", path("w.h5"), "--quiet"])
        #expect(resumed.status == 0 && whole.status == 0, "\(resumed.stderr) \(whole.stderr)")
        let r = try LandscapeSurface(contentsOf: path("k.h5")), w = try LandscapeSurface(contentsOf: path("w.h5"))
        #expect(r.lambdaMin == w.lambdaMin && r.lambdaMax == w.lambdaMax && r.loss == w.loss)
        let ratio = try #require(w.curvatureRatio)
        #expect(ratio.allSatisfy { $0.isFinite && $0 >= 0 } && w.lambdaMax!.allSatisfy { $0 > 0 })
        // Ritz values of one operator: λ_min ≤ λ_max at every point.
        #expect(zip(w.lambdaMin!, w.lambdaMax!).allSatisfy { $0 <= $1 })
        // Another step count cannot resume the store.
        let other = try cka(
            common.map { $0 == "3" ? "4" : $0 } + ["--out", path("k.h5"), "--directions", path("k.directions.h5")])
        #expect(other.status == 1 && other.stderr.contains("curvature_steps"), "\(other.stderr)")
        let plot = try cka(["landscape-plot", path("w.h5"), "--format", "svg"])
        #expect(
            plot.status == 0 && FileManager.default.fileExists(atPath: path("w-curvature.svg")), "\(plot.stderr)")
        let path1 = try cka(
            ["landscape", "--from", f.sup, "--to", f.sup, "--loss", "ce", "--inputs", f.pixels, "--curvature-map"]
                + ["--out", path("p.h5")])
        #expect(path1.status != 0 && path1.stderr.contains("--curvature-map"), "\(path1.stderr)")
    }
}
