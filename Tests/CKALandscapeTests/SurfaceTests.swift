import CKAIO
import CKALandscape
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// L(θ) = Σᵢ cᵢ (θᵢ − θ₀ᵢ)² over the 2-D weight: a convex quadratic whose surface along (dx, dy) is
/// a²·Σc·dx² + 2ab·Σc·dx·dy + b²·Σc·dy², known in closed form.
func quadraticObjective(_ w: ParameterSet, weights c: [Double]) -> ClosureObjective {
    let name = "blocks.0.attn.qkv.weight"
    let w0 = w[name]!.scalars
    return ClosureObjective(name: "quadratic", center: w) { p in
        let t = p[name]!.scalars
        var s = 0.0
        for i in t.indices { let d = Double(t[i]) - Double(w0[i]); s += c[i] * d * d }
        return LandscapeValue(loss: s, accuracy: 100 - s, parts: ["half": s / 2])
    }
}

@Suite("Loss surfaces: grid, store, resume and statistics")
struct SurfaceTests {
    @Test("grid axes are np.linspace with inclusive endpoints; malformed grids are refused")
    func gridAxis() throws {
        let g = try GridAxis(parsing: "-1:1:51")
        #expect(
            g.coordinates.count == 51 && g.coordinates.first == -1 && g.coordinates.last == 1 && g.coordinates[25] == 0)
        #expect(try GridAxis(parsing: "-0.5:1.5:5").coordinates == [-0.5, 0, 0.5, 1, 1.5])
        for bad in ["1:-1:5", "-1:1", "a:1:3", "-1:1:1"] {
            #expect(throws: LandscapeError.self) { try GridAxis(parsing: bad) }
        }
    }

    @Test("convex quadratic: every interior point convex, curvature along each axis exact")
    func convexQuadratic() throws {
        let w = try toyParameters()
        var g = SeededGenerator(seed: 5)
        let c = (0..<192).map { _ in 0.5 + g.unit() }
        let q = "blocks.0.attn.qkv.weight"
        let dx = FilterNormalizedDirections.random(like: w.restricted(to: [q]), seed: 1)
        let dy = FilterNormalizedDirections.random(like: w.restricted(to: [q]), seed: 2)
        let run = SurfaceEvaluation(objective: quadraticObjective(w, weights: c), directions: [dx, dy])
        let x = try GridAxis(parsing: "-1:1:11").coordinates, y = try GridAxis(parsing: "-1:1:9").coordinates
        let s = try run.evaluate(LandscapeSurface(x: x, y: y, ids: ["a"]), savingTo: nil)
        #expect(s.completedCount == 99)
        let stats = try LandscapeStatistics(surface: s)
        let xs = dx[q]!.scalars.map(Double.init), ys = dy[q]!.scalars.map(Double.init)
        let hxx = 2 * zip(c, xs).reduce(0) { $0 + $1.0 * $1.1 * $1.1 },
            hyy = 2 * zip(c, ys).reduce(0) { $0 + $1.0 * $1.1 * $1.1 }
        expectClose(stats.curvature, [hxx, hyy], rtol: 1e-5)
        #expect(stats.convexFraction == 1 && stats.convexRegionPoints == 9 * 7 && stats.convexRegionTouchesEdge)
        expectClose(stats.convexArea, 63 * 0.2 * 0.25, rtol: 1e-12)
        expectClose(stats.centerLoss, 0, atol: 1e-12)
        expectClose(
            s.value(ix: 10, iy: 8)!,
            hxx / 2 + hyy / 2 + 2 * zip(c, zip(xs, ys)).reduce(0) { $0 + $1.0 * $1.1.0 * $1.1.1 }, rtol: 1e-5)
        #expect(s.parts["half"]![0] == s.loss[0] / 2 && s.accuracy![0] == 100 - s.loss[0])
    }

    @Test("non-convex surface: the convex region around the centre is the one central differences give")
    func convexRegion() throws {
        // f(x, y) = x² − x⁴/k + y²: f_xx by central differences is 2 − (12x² + 2h²)/k exactly, f_yy = 2, f_xy = 0,
        // so the convex columns are those with 12x² + 2h² ≤ 2k.
        let k = 0.6, x = try GridAxis(parsing: "-1:1:21").coordinates, y = try GridAxis(parsing: "-1:1:11").coordinates
        var s = LandscapeSurface(x: x, y: y, ids: [])
        for iy in y.indices {
            for ix in x.indices {
                let a = x[ix], b = y[iy]
                s.record(LandscapeValue(loss: a * a - a * a * a * a / k + b * b), ix: ix, iy: iy)
            }
        }
        let stats = try LandscapeStatistics(surface: s)
        let h = 0.1
        let columns = (1..<20).filter { 12 * x[$0] * x[$0] + 2 * h * h <= 2 * k + 1e-9 }.count
        #expect(columns == 7)  // |x| ≤ 0.3
        // all rows: reaches the y edge
        #expect(stats.convexRegionPoints == columns * 9 && stats.convexRegionTouchesEdge)
        expectClose(stats.convexArea, Double(columns * 9) * 0.1 * 0.2, rtol: 1e-12)
        expectClose(stats.convexFraction, Double(columns * 9) / Double(19 * 9), rtol: 1e-12)
        expectClose(stats.curvature[1], 2, rtol: 1e-9)
        // A centre that is a saddle has no convex region.
        var saddle = LandscapeSurface(x: x, y: nil, ids: [])
        for ix in x.indices { saddle.record(LandscapeValue(loss: -x[ix] * x[ix]), ix: ix, iy: 0) }
        let line = try LandscapeStatistics(surface: saddle)
        #expect(line.convexArea == 0 && line.convexFraction == 0)
        expectClose(line.curvature, [-2], rtol: 1e-9)
    }

    @Test("statistics refuse incomplete surfaces and grids without the centre")
    func statisticsErrors() throws {
        let s = LandscapeSurface(x: [0, 1, 2], y: nil, ids: [])
        #expect(throws: LandscapeError.self) { try LandscapeStatistics(surface: s) }
        var far = LandscapeSurface(x: [1, 2, 3], y: nil, ids: [])
        for i in 0..<3 { far.record(LandscapeValue(loss: 1), ix: i, iy: 0) }
        #expect(throws: LandscapeError.self) { try LandscapeStatistics(surface: far) }
    }

    @Test("an interrupted run resumed from its store gives the same file as an uninterrupted run")
    func resume() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let w = try toyParameters()
        let q = "blocks.0.attn.qkv.weight"
        let objective = quadraticObjective(w, weights: [Double](repeating: 1, count: 192))
        let dx = FilterNormalizedDirections.random(like: w.restricted(to: [q]), seed: 1)
        let dy = FilterNormalizedDirections.random(like: w.restricted(to: [q]), seed: 2)
        let run = SurfaceEvaluation(objective: objective, directions: [dx, dy])
        let x = try GridAxis(parsing: "-1:1:5").coordinates
        var empty = LandscapeSurface(
            x: x, y: x, ids: ["img0", "img1"], attributes: ["loss": .string("quadratic"), "seed": .int(1)])
        empty.masks = [0, 1, 1, 0]
        empty.patchCount = 2
        let full = dir.appendingPathComponent("full.h5").path, part = dir.appendingPathComponent("part.h5").path
        _ = try run.evaluate(empty, savingTo: full)
        let first = try run.evaluate(empty, savingTo: part, maxPoints: 7)
        #expect(first.completedCount == 7)
        let stored = try LandscapeSurface(contentsOf: part)
        #expect(stored.completedCount == 7 && stored.loss[7].isNaN && empty.resumeConflict(with: stored) == nil)
        var resumed = empty
        resumed.adoptPoints(of: stored)
        var calls = 0
        _ = try run.evaluate(resumed, savingTo: part) { _, _, _, _ in calls += 1 }
        #expect(calls == 25 - 7)
        #expect(try Data(contentsOf: URL(fileURLWithPath: part)) == Data(contentsOf: URL(fileURLWithPath: full)))
        let a = try LandscapeSurface(contentsOf: part)
        #expect(
            a.loss == (try LandscapeSurface(contentsOf: full)).loss && a.masks! == [0, 1, 1, 0]
                && a.ids == ["img0", "img1"])
        var single = empty  // one-element lists are read back as scalars
        single.attributes["excluded"] = .strings(["none"])
        let path1 = dir.appendingPathComponent("single.h5").path
        try single.write(to: path1)
        #expect(single.resumeConflict(with: try LandscapeSurface(contentsOf: path1)) == nil)
        var other = empty
        other.attributes["seed"] = .int(2)
        #expect(other.resumeConflict(with: stored) != nil)
    }

    @Test("average flatness of a quadratic: the mean increase of radius² ∑c·d² over filter-normalised draws")
    func averageFlatness() throws {
        let w = try toyParameters()
        let q = "blocks.0.attn.qkv.weight"
        let objective = quadraticObjective(w, weights: [Double](repeating: 1, count: 192))
        let f = try AverageFlatness(objective: objective, perturbed: [q], radius: 0.1, samples: 4, seed: 9)
        // With c = 1 and filter normalisation, ‖d‖² = ‖w‖² exactly, so every sample increases by 0.01·‖w‖².
        let wn = w[q]!.scalars.reduce(0.0) { $0 + Double($1) * Double($1) }
        expectClose(f.meanIncrease, 0.01 * wn, rtol: 1e-5)
        #expect(f.standardError < 1e-5 * f.meanIncrease && f.samples == 4 && f.centerLoss == 0)
    }
}

/// L(θ) = ½ Σᵢ cᵢ (θᵢ − θ₀ᵢ)² over two tensors, with ∇L = c ⊙ (θ − θ₀) and H = diag(c).
struct DiagonalQuadratic: DifferentiableLandscapeObjective {
    let name = "diagonal-quadratic"
    let center: ParameterSet
    let c: [String: [Double]]

    func valueAndGradient(at p: ParameterSet) throws -> (value: LandscapeValue, gradient: ParameterSet) {
        var loss = 0.0
        var g = ParameterSet()
        for name in center.names {
            let t = p[name]!.scalars, t0 = center[name]!.scalars, cs = c[name]!
            var gt = [Float](repeating: 0, count: t.count)
            for i in t.indices {
                let d = Double(t[i]) - Double(t0[i])
                loss += 0.5 * cs[i] * d * d
                gt[i] = Float(cs[i] * d)
            }
            g.set(name, try Tensor(shape: center[name]!.shape, scalars: gt))
        }
        return (LandscapeValue(loss: loss), g)
    }

    func evaluate(at p: ParameterSet) throws -> LandscapeValue { try valueAndGradient(at: p).value }
}

@Suite("Largest Hessian eigenvalue by power iteration")
struct HessianTests {
    @Test("a diagonal quadratic: λ_max = max cᵢ, found over the chosen tensors only, with a tiny step error")
    func diagonalQuadratic() throws {
        let w = try toyParameters()
        var g = SeededGenerator(seed: 3)
        var c: [String: [Double]] = [:]
        for name in w.names { c[name] = (0..<w[name]!.count).map { _ in 0.5 + g.unit() } }
        c["blocks.0.attn.qkv.bias"]![5] = 5  // the top eigenvalue sits on a 1-D tensor
        c["cls_token"]![2] = 9  // larger, but not among the chosen tensors
        let o = DiagonalQuadratic(center: w, c: c)
        let h = try HessianEigenvalue(
            objective: o, parameters: ["blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias"],
            maxIterations: 60, tolerance: 1e-7, seed: 1)
        expectClose(h.eigenvalue, 5, rtol: 1e-3)
        #expect(h.iterations < 60 && h.history.count == h.iterations && h.stepError < 1e-3)
        let all = try HessianEigenvalue(
            objective: o, parameters: Set(w.names), maxIterations: 60, tolerance: 1e-7, seed: 1)
        expectClose(all.eigenvalue, 9, rtol: 1e-3)
        #expect(all.attributes["hessian_max_eigenvalue"] == .double(all.eigenvalue))
    }
}
