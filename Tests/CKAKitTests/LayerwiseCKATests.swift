import CKAKit
import Foundation
import Testing
import _CKATestSupport

// The example of the DocC article "Layer-wise analysis in 20 lines" (Sources/CKAKit/CKAKit.docc), verbatim;
// the first test checks that the article still shows exactly this code.
func blockSimilarity(_ a: String, _ b: String, images: String, heatmap: String) throws -> [(String, Double)] {
    let cka = LayerwiseCKA(layers: ["blocks.*"], batchSize: 8)
    let result = try cka.compare(checkpoint: a, with: b, images: images, limit: 32) { progress in
        print("\(progress.done) images")
    }
    for warning in result.warnings { print("warning:", warning) }
    // The diagonal: each block of A against the same block of B.
    let diagonal = zip(result.layersA, result.layersB).enumerated().map { i, names in
        (names.0, result.matrix[i][i])
    }
    for (layer, value) in diagonal { print(layer, String(format: "%.4f", value)) }
    // A heatmap like `cka compare --heatmap` draws.
    try result.heatmap().write(to: heatmap)
    return diagonal
}

@Suite("The library façade: LayerwiseCKA and the DocC article's example")
struct LayerwiseCKATests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test("The article shows the example this file builds, in at most 20 lines")
    func articleMatchesTest() throws {
        let article = try String(
            contentsOf: Self.root.appendingPathComponent("Sources/CKAKit/CKAKit.docc/LayerwiseAnalysis.md"),
            encoding: .utf8)
        let code = try #require(
            article.components(separatedBy: "```swift\n").dropFirst().first?.components(separatedBy: "```").first)
        let mine = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        #expect(mine.contains(code.replacingOccurrences(of: "import CKAKit\n\n", with: "")))
        #expect(code.split(separator: "\n").count <= 20)
    }

    @Test("In memory, over images: equal to extract (Grams) + compare of the stores, bit for bit")
    func inMemoryEqualsStores() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.safetensors"), b = dir.appendingPathComponent("b.safetensors")
        try writeTinyViTCheckpoint(to: a, seed: 1, depth: 2)
        try writeTinyViTCheckpoint(to: b, seed: 2, depth: 2)
        let images = Self.root.appendingPathComponent("demo/images/cifar10").path
        let heatmap = dir.appendingPathComponent("blocks.png").path
        let diagonal = try blockSimilarity(a.path, b.path, images: images, heatmap: heatmap)
        #expect(diagonal.map(\.0) == ["blocks.0", "blocks.1"])
        #expect(FileManager.default.fileExists(atPath: heatmap))

        // The same through files: extract Grams of batch 8 from the first 32 images, then compare.
        var stores: [ActivationStore] = []
        for (ckpt, name) in [(a, "a.h5"), (b, "b.h5")] {
            let c = try Checkpoint(contentsOf: ckpt)
            let model = try VisionTransformer(checkpoint: c)
            var input = try ImageFolderInput(
                root: images,
                preprocessing: ImageFolderInput.defaultPreprocessing(for: c.source, imageSize: model.imageSize),
                batchSize: 8, limit: 32)
            var o = ExtractionOptions()
            o.layers = ["blocks.*"]
            o.store = [.grams]
            o.batchSize = 8
            o.gramBatchSize = 8
            let out = dir.appendingPathComponent(name).path
            _ = try ActivationExtractor.run(model: model, checkpoint: c, input: &input, to: out, options: o)
            stores.append(try ActivationStore(path: out))
        }
        var o = CKAOptions()
        o.batchSize = 8
        let fromStores = try CKAComparison.run(stores[0], stores[1], options: o)
        #expect(fromStores.usedStoredGrams)
        let inMemory = try LayerwiseCKA(layers: ["blocks.*"], batchSize: 8).compare(
            checkpoint: a.path, with: b.path, images: images, limit: 32)
        #expect(inMemory.matrix == fromStores.matrix)
        #expect(inMemory.layersA == fromStores.layersA && inMemory.examplesUsed == 32 && inMemory.batches == 4)
        #expect(diagonal.map(\.1) == [inMemory.matrix[0][0], inMemory.matrix[1][1]])
        // And the store overload.
        let viaFacade = try LayerwiseCKA(layers: ["blocks.*"], batchSize: 8).compare(
            store: stores[0].path, with: stores[1].path)
        #expect(viaFacade.matrix == fromStores.matrix)
    }

    @Test("A short last batch is dropped with a warning; a glob matching no hook names the model")
    func edges() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.safetensors")
        try writeTinyViTCheckpoint(to: a, seed: 1, depth: 1)
        let images = Self.root.appendingPathComponent("demo/images/cifar10").path
        let r = try LayerwiseCKA(batchSize: 8).compare(checkpoint: a.path, with: a.path, images: images, limit: 20)
        #expect(r.batches == 2 && r.warnings.count == 1)
        expectClose(r.matrix[0][0], 1, rtol: 1e-9)
        #expect(throws: CKAError.self) {
            try LayerwiseCKA(layers: ["nothing.*"], batchSize: 8).compare(
                checkpoint: a.path, with: a.path, images: images, limit: 8)
        }
    }
}
