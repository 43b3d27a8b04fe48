import CKAImages
import CKATensor
import Foundation
import Testing
import _CKATestSupport

@Suite("ImageFolder listing and the batch loader")
struct FolderTests {
    /// A class-folder tree exercising torchvision's ordering rules.
    func makeTree() throws -> URL {
        let root = try makeTemporaryDirectory()
        let fm = FileManager.default
        let png = try Fixtures.bytes("rgb.png"), jpg = try Fixtures.bytes("cifar_cat_0000.jpg")
        func put(_ path: String, _ bytes: [UInt8]) throws {
            let url = root.appendingPathComponent(path)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(bytes).write(to: url)
        }
        try fm.createDirectory(at: root.appendingPathComponent("Zeta"), withIntermediateDirectories: true)
        try put("a_class/z.JPG", jpg)
        try put("a_class/y.jpeg", jpg)
        try put("a_class/readme.txt", Array("not an image".utf8))
        try put("a_class/.hidden.png", png)
        try put("b_class/2.png", png)
        try put("b_class/10.png", png)
        try put("b_class/sub/a.jpg", jpg)
        try put("b_class/sub dir/x.png", png)
        try put("b_class/sub/deeper/d.png", png)
        try put("top.png", png)
        return root
    }

    @Test("class folders: sorted classes, torchvision walk order, labels, relative ids")
    func classFolders() throws {
        let root = try makeTree()
        defer { try? FileManager.default.removeItem(at: root) }
        let folder = try ImageFolder(root: root)
        #expect(folder.layout == .classFolders)
        #expect(folder.classes == ["Zeta", "a_class", "b_class"])  // code-point order, empty class kept
        #expect(
            folder.ids == [
                "a_class/.hidden.png", "a_class/y.jpeg", "a_class/z.JPG",
                "b_class/10.png", "b_class/2.png", "b_class/sub/a.jpg", "b_class/sub dir/x.png",
                "b_class/sub/deeper/d.png",
            ])
        #expect(folder.labels == [1, 1, 1, 2, 2, 2, 2, 2])
        #expect(folder.samples[0].url.lastPathComponent == ".hidden.png")

        let limited = try ImageFolder(root: root, limit: 4)
        #expect(limited.ids == Array(folder.ids.prefix(4)))
        let perClass = try ImageFolder(root: root, perClassLimit: 2)
        #expect(perClass.ids == ["a_class/.hidden.png", "a_class/y.jpeg", "b_class/10.png", "b_class/2.png"])
    }

    @Test("flat folders: labels −1, ids are file names; errors for missing or empty folders")
    func flat() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let png = Data(try Fixtures.bytes("rgb.png"))
        for name in ["b.png", "a.jpg", "C.PNG"] { try png.write(to: root.appendingPathComponent(name)) }
        try Data("x".utf8).write(to: root.appendingPathComponent("notes.txt"))
        let folder = try ImageFolder(root: root)
        #expect(folder.layout == .flat)
        #expect(folder.classes.isEmpty)
        #expect(folder.ids == ["C.PNG", "a.jpg", "b.png"])
        #expect(folder.labels == [-1, -1, -1])
        #expect(try ImageFolder(root: root, limit: 1).count == 1)
        #expect(throws: ImageError.noImages(path: root.path)) { try ImageFolder(root: root, layout: .classFolders) }
        let missing = root.appendingPathComponent("nope")
        #expect(throws: ImageError.unreadable(path: missing.path, reason: "not a directory")) {
            try ImageFolder(root: missing)
        }
        let empty = root.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        #expect(throws: ImageError.noImages(path: empty.path)) { try ImageFolder(root: empty) }
    }

    @Test("loader: full batches in order, equal to per-image tensors, independent of the thread count")
    func loader() throws {
        let root = try makeTree()
        defer { try? FileManager.default.removeItem(at: root) }
        let folder = try ImageFolder(root: root)
        let p = try Preprocessing(resize: 40, interpolation: .bicubic, crop: 32)
        var loader = ImageBatchLoader(folder: folder, preprocessing: p, batchSize: 3)
        var batches: [ImageBatch] = []
        while let b = try loader.next() { batches.append(b) }
        #expect(batches.map(\.count) == [3, 3, 2])
        #expect(batches.flatMap(\.ids) == folder.ids)
        #expect(batches.flatMap(\.labels) == folder.labels)
        #expect(loader.failures.isEmpty)
        #expect(batches[2].pixels.shape == [2, 3, 32, 32])
        for (i, sample) in folder.samples.enumerated() {
            let expected = p.tensor(try RGBImage(contentsOf: sample.url))
            #expect(batches[i / 3].pixels.rows(i % 3..<i % 3 + 1).scalars == expected.scalars, "\(sample.id)")
        }
        var single = ImageBatchLoader(folder: folder, preprocessing: p, batchSize: 8, threads: 1)
        let all = try #require(try single.next())
        var quad = ImageBatchLoader(folder: folder, preprocessing: p, batchSize: 8, threads: 4)
        #expect(try quad.next()?.pixels == all.pixels)
        #expect(try single.next() == nil)
    }

    @Test("loader: unreadable images are skipped with a warning (lenient) or thrown (strict)")
    func failures() throws {
        let root = try makeTree()
        defer { try? FileManager.default.removeItem(at: root) }
        try Data(try Fixtures.bytes("corrupt_idat.png")).write(to: root.appendingPathComponent("a_class/bad.png"))
        try Data().write(to: root.appendingPathComponent("b_class/3.png"))
        let folder = try ImageFolder(root: root)
        #expect(folder.count == 10)
        var loader = ImageBatchLoader(folder: folder, preprocessing: .dino, batchSize: 4)
        var ids: [String] = [], sizes: [Int] = []
        while let b = try loader.next() { ids += b.ids; sizes.append(b.count) }
        #expect(sizes == [4, 4])  // refilled after the skips
        #expect(ids == folder.ids.filter { $0 != "a_class/bad.png" && $0 != "b_class/3.png" })
        #expect(loader.failures.map(\.id) == ["a_class/bad.png", "b_class/3.png"])
        #expect(loader.failures.allSatisfy { !$0.description.isEmpty })
        if case .corrupt = loader.failures[0].error {} else { Issue.record("\(loader.failures[0])") }
        #expect(loader.failures[1].error == .empty(path: root.appendingPathComponent("b_class/3.png").path))

        var strict = ImageBatchLoader(folder: folder, preprocessing: .dino, batchSize: 4, strict: true)
        #expect(throws: ImageError.self) { while try strict.next() != nil {} }
    }
}
