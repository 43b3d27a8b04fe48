import CKACheckpoint
@testable import CKAExtraction
import CKAIO
import CKAImages
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

@Suite("Extraction into activation stores")
struct ExtractionTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }

    @Test("Grams written during extraction equal Grams computed afterwards from stored activations")
    func gramsMatchActivations() throws {
        let model = try tinyViT()
        var input = try PixelStoreInput(path: try pixelStore(dir, n: 22))
        var o = ExtractionOptions()
        o.store = [.activations, .pooled, .grams]
        o.batchSize = 5  // forward batches straddle Gram batches
        o.gramBatchSize = 4
        let out = dir.appendingPathComponent("x.h5").path
        let summary = try ActivationExtractor.run(model: model, checkpoint: nil, input: &input, to: out, options: o)
        #expect(summary.examples == 22 && summary.warnings.count == 1)
        let s = try ActivationStore(path: out)
        #expect(s.count == 22 && s.labels == (0..<22).map { $0 % 3 } && s.classes == ["a", "b", "c"])
        #expect(s.layers.first?.name == "patch_embed" && s.layers.first?.shape == [22, 16, 12])
        #expect(try s.layer("blocks.1.mlp.fc1").shape == [22, 17, 48])
        #expect(try s.layer("blocks.0:gap_nocls").shape == [22, 12])
        #expect(try s.layer("norm:cls").shape == [22, 12])
        #expect(s.grams.count == HookPoint.tokenHooks(for: model.architecture).count)
        for name in ["blocks.0.attn.qkv", "blocks.1", "norm"] {
            #expect(s.grams[name]?.batchCount == 5)
            for k in 0..<5 {
                let stored = try s.gram(name, batch: k)
                let recomputed = try s.read(name, rows: k * 4..<(k + 1) * 4).gram(centered: true)
                expectClose(stored.scalars, recomputed.scalars, rtol: 1e-6, atol: 1e-6, "\(name) batch \(k)")
            }
        }
        // Pooled features are the pooling of the stored block output.
        let blk = try s.read("blocks.1"), cls = try s.read("blocks.1:cls"), gap = try s.read("blocks.1:gap")
        for i in [0, 21] {
            for j in 0..<12 {
                #expect(cls[i, j] == blk[i, 0, j])
                let mean = (0..<17).reduce(0.0) { $0 + Double(blk[i, $1, j]) } / 17
                #expect(abs(Double(gap[i, j]) - mean) < 1e-5)
            }
        }
    }

    @Test("a checkpoint read in place runs the model bit for bit as one whose parameters were copied")
    func inPlaceCheckpoint() throws {
        let url = dir.appendingPathComponent("tiny.safetensors")
        try writeTinyViTCheckpoint(to: url, seed: 7, depth: 2)
        let ckpt = try Checkpoint(contentsOf: url)
        #expect(!ckpt.parameters.isEmpty && ckpt.parameters.values.allSatisfy(\.isBorrowed))
        let copied = try ckpt.parameters.mapValues { try Tensor<Float>(shape: $0.shape, scalars: $0.scalars) }
        #expect(copied.values.allSatisfy { !$0.isBorrowed })
        let pixels = tinyPixels(3, seed: 11)
        let mapped = try VisionTransformer(checkpoint: ckpt).forward(pixels)
        let owned = try VisionTransformer(parameters: copied, architecture: ckpt.architecture).forward(pixels)
        #expect(mapped.scalars.map(\.bitPattern) == owned.scalars.map(\.bitPattern))
    }

    @Test("the store records the checkpoint's SHA-256, which is hashed in the background while the model runs")
    func checkpointDigest() throws {
        let url = dir.appendingPathComponent("tiny.safetensors")
        try writeTinyViTCheckpoint(to: url, seed: 5)
        var copts = Checkpoint.Options()
        copts.computeSHA256 = true
        let ckpt = try Checkpoint(contentsOf: url, options: copts)
        let pixels = dir.appendingPathComponent("p32.h5").path
        let w = try ActivationStoreWriter(path: pixels, ids: ["a", "b", "c"], metadata: StoreMetadata(model: "pixels"))
        try w.writeDataset("inputs/pixels", tinyPixels(3, seed: 2))
        try w.finish()
        var input = try PixelStoreInput(path: pixels)
        var o = ExtractionOptions()
        o.store = [.pooled]
        o.layers = ["blocks.0"]
        let out = dir.appendingPathComponent("digest.h5").path
        _ = try ActivationExtractor.run(
            model: try VisionTransformer(checkpoint: ckpt), checkpoint: ckpt, input: &input, to: out, options: o)
        var h = SHA256()  // the portable implementation, not OpenSSL's that the checkpoint used
        h.update(Array(try Data(contentsOf: url)))
        #expect(try ActivationStore(path: out).attributes["checkpoint_sha256"]?.stringValue == SHA256.hex(h.finalize()))
    }

    @Test(
        "a checkpoint modified in place during the run fails the extraction (no store); one replaced by a rename does not"
    )
    func checkpointModifiedDuringRun() throws {
        let url = dir.appendingPathComponent("tiny.safetensors")
        try writeTinyViTCheckpoint(to: url, seed: 6)
        let pixels = dir.appendingPathComponent("p32.h5").path
        let w = try ActivationStoreWriter(path: pixels, ids: ["a", "b"], metadata: StoreMetadata(model: "pixels"))
        try w.writeDataset("inputs/pixels", tinyPixels(2, seed: 3))
        try w.finish()
        var o = ExtractionOptions()
        o.store = [.pooled]
        o.layers = ["blocks.0"]
        func extract(_ ckpt: Checkpoint, _ name: String) throws -> String {
            var input = try PixelStoreInput(path: pixels)
            let out = dir.appendingPathComponent(name).path
            _ = try ActivationExtractor.run(
                model: try VisionTransformer(checkpoint: ckpt), checkpoint: ckpt, input: &input, to: out, options: o)
            return out
        }
        // Rewritten in place (same inode; here only its modification time changes): refused at the end.
        let ckpt = try Checkpoint(contentsOf: url)
        try ckpt.checkUnchanged()
        var times = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, url.path, &times, 0) == 0)
        #expect(throws: CheckpointError.self) { try ckpt.checkUnchanged() }
        let refused = dir.appendingPathComponent("refused.h5").path
        #expect(throws: CheckpointError.self) { _ = try extract(ckpt, "refused.h5") }
        #expect(!FileManager.default.fileExists(atPath: refused))
        // Replaced by a rename (the mapped file stays intact): accepted.
        let fresh = try Checkpoint(contentsOf: url)
        let other = dir.appendingPathComponent("other.safetensors")
        try writeTinyViTCheckpoint(to: other, seed: 8)
        #expect(rename(other.path, url.path) == 0)
        try fresh.checkUnchanged()
        #expect(FileManager.default.fileExists(atPath: try extract(fresh, "accepted.h5")))
    }

    @Test("Batch size does not change the activations (batched GEMMs are per-row exact to 1e-5)")
    func batchInvariance() throws {
        let model = try tinyViT()
        let pixels = try PixelStoreInput(path: try pixelStore(dir, n: 6))
        var results: [[Float]] = []
        for bs in [1, 6] {
            var input = pixels
            var o = ExtractionOptions()
            o.store = [.activations]
            o.layers = ["norm"]
            o.batchSize = bs
            let out = dir.appendingPathComponent("b\(bs).h5").path
            _ = try ActivationExtractor.run(model: model, checkpoint: nil, input: &input, to: out, options: o)
            results.append(try ActivationStore(path: out).read("norm").scalars)
        }
        expectClose(results[0].map(Double.init), results[1].map(Double.init), atol: 1e-5)
    }

    @Test(
        "Gram batches read in place or straddling forward batches give the same bits, for 1 and 2 threads, and match float64"
    )
    func gramBatchingBits() throws {
        // 12 examples of 5 × 7000 features (long rows: the fused Gram splits them in its fixed column parts).
        let x = randomTensor([12, 5, 7000], seed: 7, offset: 3, as: Float.self)
        let before = blasThreadCount
        defer { setBLASThreadCount(before) }
        var runs: [[[Double]]] = []
        for threads in [1, 2] {
            setBLASThreadCount(threads)
            for chunks in [[12], [4, 4, 4], [3, 3, 3, 3], [5, 7], [1, 10, 1]] {
                var batcher = GramBatcher(batchSize: 4, tokens: .flatten)
                var grams: [[Double]] = []
                var start = 0
                for (i, c) in chunks.enumerated() {
                    try batcher.add(x.rows(start..<start + c), isLast: i == chunks.count - 1) {
                        grams.append($0.scalars)
                    }
                    start += c
                }
                runs.append(grams)
            }
        }
        #expect(runs.allSatisfy { $0.count == 3 })
        #expect(runs.allSatisfy { $0 == runs[0] }, "every chunking and thread count gives the same bits")
        // Against the centred Gram in float64.
        let d = 5 * 7000
        for k in 0..<3 {
            let v = x.rows(k * 4..<(k + 1) * 4).scalars.map(Double.init)
            var centred = v
            for j in 0..<d {
                let mean = (0..<4).reduce(0.0) { $0 + v[$1 * d + j] } / 4
                for r in 0..<4 { centred[r * d + j] -= mean }
            }
            var reference: [Double] = []
            for i in 0..<4 {
                for j in 0..<4 {
                    reference.append((0..<d).reduce(0.0) { $0 + centred[i * d + $1] * centred[j * d + $1] })
                }
            }
            // Diagonal ≈ 26 000: float32 summation of 35 000 terms, against an error of ~10⁵ without centring.
            expectClose(runs[0][k], reference, rtol: 1e-5, atol: 0.5, "Gram batch \(k)")
        }
    }

    /// A folder `a/`, `b/` of the image fixtures, with one corrupt file among them.
    func imageFolder() throws -> URL {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("CKAImagesTests/Fixtures")
        let root = dir.appendingPathComponent("images")
        let files = [
            "cifar_cat_0000.jpg", "cifar_frog_0007.jpg", "corrupt.jpg", "cifar_ship_0003.jpg", "chelsea_420.jpg",
            "chelsea_422.jpg", "bilevel.png", "chelsea_444_progressive.jpg",
        ]
        for (i, f) in files.enumerated() {
            let folder = root.appendingPathComponent(i % 2 == 0 ? "a" : "b")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try FileManager.default.copyItem(
                at: fixtures.appendingPathComponent(f), to: folder.appendingPathComponent("\(i)-\(f)"))
        }
        return root
    }

    @Test("Decoding one batch ahead on a second thread gives the same batches, skips and errors as the plain source")
    func prefetchIdentical() throws {
        let root = try imageFolder()
        let pre = try Preprocessing(resize: 20, crop: 16)
        for strict in [false, true] {
            func batches(_ next: () throws -> InputBatch?) -> ([InputBatch], String?) {
                var out: [InputBatch] = []
                do { while let b = try next() { out.append(b) } } catch { return (out, "\(error)") }
                return (out, nil)
            }
            var plain = try ImageFolderInput(root: root.path, preprocessing: pre, batchSize: 3, strict: strict)
            let (expected, expectedError) = batches { try plain.next(maxCount: 3) }
            let prefetching = PrefetchingInput(
                try ImageFolderInput(root: root.path, preprocessing: pre, batchSize: 3, strict: strict))
            let (got, gotError) = batches { try prefetching.next(maxCount: 3) }
            #expect(got.count == expected.count && gotError == expectedError, "strict \(strict)")
            #expect(strict ? expectedError != nil : expected.map(\.ids.count) == [3, 3, 1])
            for (g, e) in zip(got, expected) {
                #expect(g.ids == e.ids)
                #expect(g.labels == e.labels)
                #expect(g.pixels.shape == e.pixels.shape)
                #expect(g.pixels.scalars == e.pixels.scalars)
            }
            let source = prefetching.finish()
            let skippedIDs: [String] = source.skipped.map { $0.id }, expectedIDs: [String] = plain.skipped.map { $0.id }
            #expect(skippedIDs == expectedIDs)
            #expect(strict || plain.skipped.count == 1)
        }
        // Through the extractor (which prefetches): the skip is reported and the store is complete.
        var input = try ImageFolderInput(root: root.path, preprocessing: pre, batchSize: 3)
        var o = ExtractionOptions()
        o.store = [.pooled, .pixels]
        o.batchSize = 3
        let summary = try ActivationExtractor.run(
            model: try tinyViT(), checkpoint: nil, input: &input, to: dir.appendingPathComponent("p.h5").path,
            options: o)
        #expect(summary.examples == 7 && summary.skipped.count == 1 && input.skipped.count == 1)
    }

    @Test("A glob matching no hook point is an error; layer selection by glob")
    func selection() throws {
        let model = try tinyViT()
        var o = ExtractionOptions()
        o.layers = ["blocks.*.mlp.fc3"]
        #expect(throws: ExtractionError.self) { try ActivationExtractor.selectedHooks(model.architecture, options: o) }
        o.layers = ["blocks.*.norm1", "blocks.*"]
        o.store = [.activations, .pooled]
        let (tokens, pooled) = try ActivationExtractor.selectedHooks(model.architecture, options: o)
        #expect(tokens == ["blocks.0.norm1", "blocks.0", "blocks.1.norm1", "blocks.1"])
        #expect(
            pooled == [
                "blocks.0:cls", "blocks.0:gap", "blocks.0:gap_nocls", "blocks.1:cls", "blocks.1:gap",
                "blocks.1:gap_nocls",
            ])
    }

    @Test("Wrong input size is a typed error, not a crash")
    func wrongInput() throws {
        let model = try tinyViT()
        #expect(throws: ViTError.self) { try model.forward(Tensor<Float>(shape: [1, 3, 20, 20])) }
        #expect(throws: ViTError.self) { try model.forward(Tensor<Float>(shape: [1, 1, 16, 16])) }
    }
}
