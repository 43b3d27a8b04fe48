import CKACheckpoint
import CKAIO
import CKALandscape
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

/// `Fixtures/trajectory_small.h5`, written by `notebooks-export/reference/landscape/make_trajectory_fixtures.py`
/// (float64 numpy / torch references on the tiny ViT of `hessian_small.h5`).
struct TrajectoryFixture {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/trajectory_small.h5").path
    let file: HDF5File
    let dir: URL

    init(directory: URL) throws {
        file = try HDF5File(path: Self.path)
        dir = directory
    }

    /// The tensors of group `group` written as a safetensors checkpoint; returns its path.
    func checkpoint(_ group: String, as name: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try SafeTensorsWriter.write(
            try file.children(of: group).map {
                try SafeTensorsWriter.Entry(name: $0, tensor: file.dataset("\(group)/\($0)").readFloat())
            }, to: url)
        return url.path
    }

    /// hessian_small.h5's six labelled examples.
    static func examples() throws -> LandscapeExamples {
        let f = try HDF5File(path: HessianFixture.path)
        let labels = try f.dataset("ce/labels").readInt64().map { Int($0) }
        return LandscapeExamples(
            batches: [LandscapeBatch(pixels: try f.dataset("ce/pixels").readFloat(), labels: labels)],
            ids: (0..<labels.count).map { "img\($0)" })
    }

    func doubles(_ name: String, of group: String) throws -> [Double] {
        guard case let .doubles(v)? = try file.attribute(name, of: group) else { return [] }
        return v
    }
}

@Suite("Trajectory planes (--pca-of) against numpy's float64 PCA")
struct TrajectoryTests {
    let dir: URL
    init() throws { dir = try makeTemporaryDirectory() }

    @Test("directions (up to sign), explained variance ratios and the projected trajectory equal the float64 PCA")
    func pcaAgainstNumpy() throws {
        let f = try TrajectoryFixture(directory: dir)
        let final = try f.checkpoint("pca/final", as: "final.safetensors")
        let list = try (0..<5).map { try f.checkpoint("pca/checkpoints/\($0)", as: "epoch\($0).safetensors") }
        let ckpt = try Checkpoint(contentsOf: URL(fileURLWithPath: final), options: .init(heads: 2))
        var o = LandscapeRun.Options(
            objective: LandscapeObjectiveOptions(loss: .ce, checkpoint: final),
            out: dir.appendingPathComponent("t.h5").path)
        o.objective.heads = 2
        o.pcaOf = list
        o.grid = "-2:0.5:2"
        o.yGrid = "-1:0.5:2"
        o.hessianIterations = 0
        o.quiet = true
        try LandscapeRun(options: o, checkpoint: ckpt, teacher: nil, examples: TrajectoryFixture.examples()).run()
        let s = try LandscapeSurface(contentsOf: o.out)
        expectClose(
            try #require(s.attributes["pca_explained_variance_ratio"]?.doublesValue),
            try f.doubles("explained_variance_ratio", of: "pca/reference"), rtol: 1e-6)
        expectClose(
            try #require(s.attributes["pca_explained_variance"]?.doublesValue),
            try f.doubles("explained_variance", of: "pca/reference"), rtol: 1e-6)
        #expect(s.attributes["pca_of"] == .strings((0..<5).map { "epoch\($0).safetensors" }))
        #expect(s.attributes["normalization"] == .string("none"))
        // The directions, up to one sign per direction, against the reference unit vectors.
        let (dirs, _) = try DirectionFile.read(
            o.directionPath,
            like: ckpt.parameters.merging(
                try ckpt.head.mapValues { try $0.floatTensor() }
            ) { a, _ in a }.asParameterSet())
        var signs: [Double] = []
        for (k, axis) in ["x", "y"].enumerated() {
            var dot = 0.0, err = 0.0, norm = 0.0
            var pairs: [(Double, Double)] = []
            for name in dirs[k].names {
                let got = dirs[k][name]!.scalars.map(Double.init)
                let want = try f.file.dataset("pca/reference/\(axis)/\(name)").readDouble().scalars
                #expect(got.count == want.count, "\(name)")
                for (a, b) in zip(got, want) { pairs.append((a, b)); dot += a * b }
            }
            let sign: Double = dot < 0 ? -1 : 1
            for (a, b) in pairs { err += (a - sign * b) * (a - sign * b); norm += b * b }
            #expect((err / norm).squareRoot() < 1e-6, "direction \(axis): relative error \((err / norm).squareRoot())")
            expectClose(norm, 1, rtol: 1e-9)
            signs.append(sign)
        }
        // Every checkpoint's coordinates, then the final checkpoint at the centre.
        let traj = try #require(s.trajectory)
        #expect(traj.checkpoints == (0..<5).map { "epoch\($0).safetensors" } + ["final.safetensors"])
        let reference = try f.doubles("coordinates", of: "pca/reference")
        for i in 0..<5 {
            expectClose(traj.coordinates[i][0], signs[0] * reference[2 * i], rtol: 1e-6, "checkpoint \(i) α")
            expectClose(traj.coordinates[i][1], signs[1] * reference[2 * i + 1], rtol: 1e-6, "checkpoint \(i) β")
        }
        #expect(traj.coordinates[5] == [0, 0])
        // Biases and LayerNorm tensors do not move (--ignore biasbn).
        #expect(dirs[0]["norm.weight"]!.scalars.allSatisfy { $0 == 0 })
        #expect(s.completedCount == 4)
    }

    @Test("the plane does not depend on the slice length the Gram matrix is accumulated over")
    func sliceIndependence() throws {
        let f = try TrajectoryFixture(directory: dir)
        var final = ParameterSet()
        for n in try f.file.children(of: "pca/final") { final.set(n, try f.file.dataset("pca/final/\(n)").readFloat()) }
        let rows = try (0..<5).map { i in
            Dictionary(
                uniqueKeysWithValues: try f.file.children(of: "pca/checkpoints/\(i)").map {
                    ($0, try f.file.dataset("pca/checkpoints/\(i)/\($0)").readFloat())
                })
        }
        func plane(_ slice: Int) throws -> TrajectoryPlane {
            try TrajectoryPlane(
                final: final, count: 5, names: (0..<5).map { "c\($0)" }, ignoreBiasAndNorm: true,
                scratch: dir.appendingPathComponent("scratch-\(slice)").path, sliceLength: slice
            ) { rows[$0] }
        }
        let a = try plane(1 << 18), b = try plane(97)
        expectClose(b.explainedVarianceRatio, a.explainedVarianceRatio, rtol: 1e-12)
        expectClose(b.coordinates.flatMap { $0 }, a.coordinates.flatMap { $0 }, rtol: 1e-10)
        for k in 0..<2 {
            for n in a.directions[k].names {
                expectClose(
                    b.directions[k][n]!.scalars.map(Double.init), a.directions[k][n]!.scalars.map(Double.init),
                    rtol: 1e-6, atol: 1e-7, "\(n)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("scratch-97").path))
        // Too few checkpoints, or a tensor of another shape: one clear error.
        #expect(throws: LandscapeError.self) {
            try TrajectoryPlane(
                final: final, count: 2, names: ["a", "b"], ignoreBiasAndNorm: true,
                scratch: dir.appendingPathComponent("s").path
            ) { rows[$0] }
        }
        var bad = rows[1]
        bad["head.weight"] = Tensor<Float>(shape: [2, 8])
        let e = #expect(throws: LandscapeError.self) {
            try TrajectoryPlane(
                final: final, count: 3, names: ["a", "b", "c"], ignoreBiasAndNorm: true,
                scratch: dir.appendingPathComponent("s").path
            ) { $0 == 1 ? bad : rows[$0] }
        }
        #expect("\(e!)".contains("b") && "\(e!)".contains("head.weight"))
    }
}

extension [String: Tensor<Float>] {
    func asParameterSet() throws -> ParameterSet { try ParameterSet(names: keys.sorted(), tensors: self) }
}

extension HDF5AttributeValue {
    var doublesValue: [Double]? {
        if case let .doubles(v) = self { return v }
        return nil
    }
}
