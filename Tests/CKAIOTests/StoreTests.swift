import CKAIO
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// Deterministic test values: element i of dataset `salt`.
func pattern(_ i: Int, _ salt: Int) -> Float { Float((i * 37 + salt * 11) % 1013) / 64 - 7.5 }

/// Runs python3 with `script` and arguments; returns stdout. Fails the test on a non-zero exit.
func runPython(_ script: String, _ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", script] + args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let e = String(decoding: errData, as: UTF8.self)
    #expect(p.terminationStatus == 0, "python failed: \(e)")
    return String(decoding: data, as: UTF8.self)
}

@Suite("HDF5 activation store")
struct StoreTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }

    /// Writes a store with float32/float16/float64 layers, 2-D and 3-D, in uneven appends.
    func writeSample(_ path: String) throws {
        let ids = (0..<10).map { "cls\($0 % 3)/img_\($0).jpg" }
        var meta = StoreMetadata(model: "tiny_vit")
        meta.checkpoint = "tiny.pth"
        let w = try ActivationStoreWriter(
            path: path, ids: ids, labels: (0..<10).map { $0 % 3 }, classes: ["a", "b", "c"],
            metadata: meta)
        let specs: [(String, [Int], HDF5ElementType)] = [
            ("blocks.0.norm1", [5, 4], .float32), ("blocks.0", [5, 4], .float16),
            ("blocks.10", [7], .float64), ("blocks.2", [7], .float32),
        ]
        for (k, (name, fs, t)) in specs.enumerated() {
            try w.addLayer(
                name, kind: LayerKind.infer(from: name), block: LayerKind.blockIndex(of: name), featureShape: fs,
                elementType: t)
            var row = 0
            for b in [3, 4, 3] {
                let per = fs.reduce(1, *)
                let t = Tensor<Float>(shape: [b] + fs) { pattern((row * per) + $0, k) }
                try w.append(t, to: name)
                row += b
            }
        }
        try w.addGrams("blocks.2", batchSize: 4, tokens: .flatten, centered: true)
        try w.appendGram(Tensor<Double>(shape: [4, 4]) { Double($0) }, to: "blocks.2")
        try w.finish()
    }

    @Test("Round trip in Swift: shapes, types, values, order, labels, grams")
    func roundTrip() throws {
        let path = dir.appendingPathComponent("a.h5").path
        try writeSample(path)
        let s = try ActivationStore(path: path)
        #expect(s.count == 10 && s.formatVersion == 1 && s.modelName == "tiny_vit")
        #expect(
            s.layers.map(\.name) == ["blocks.0.norm1", "blocks.0", "blocks.10", "blocks.2"], "order attribute wins")
        #expect(s.layers.map(\.elementType) == [.float32, .float16, .float64, .float32])
        #expect(s.layers[0].kind == .norm1 && s.layers[1].kind == .block && s.layers[1].block == 0)
        #expect(s.labels == (0..<10).map { $0 % 3 } && s.classes == ["a", "b", "c"])
        #expect(s.ids[4] == "cls1/img_4.jpg")
        for (k, l) in s.layers.enumerated() {
            let x = try s.read(l.name)
            #expect(x.shape == l.shape)
            let ref = (0..<x.count).map { Double(pattern($0, k)) }
            // pattern values are multiples of 1/64 below 16: exact in float16 too.
            expectClose(x.scalars.map(Double.init), ref, atol: 0, "layer \(l.name)")
            let mid = try s.read(l.name, rows: 2..<7)
            expectClose(
                mid.scalars.map(Double.init), Array(ref[(2 * x.rowSize)..<(7 * x.rowSize)]), "slice of \(l.name)")
        }
        #expect(
            s.grams["blocks.2"]
                == StoredGrams(layer: "blocks.2", batchCount: 1, batchSize: 4, tokens: "flatten", centered: true))
        #expect(try s.gram("blocks.2", batch: 0).scalars == (0..<16).map(Double.init))
        #expect(throws: ActivationStoreError.self) { try s.read("blocks.99") }
        #expect(throws: HDF5Error.self) { try s.read("blocks.2", rows: 5..<11) }
    }

    @Test("Files we write open in h5py with the same shapes, dtypes and values")
    func h5pyReadsOurs() throws {
        let path = dir.appendingPathComponent("b.h5").path
        try writeSample(path)
        let script = """
            import h5py, json, sys, numpy as np
            f = h5py.File(sys.argv[1], 'r'); out = {}
            f.visititems(lambda n, o: out.__setitem__(n, [list(o.shape), str(o.dtype), float(np.asarray(o[...], np.float64).sum())]) if isinstance(o, h5py.Dataset) and o.dtype.kind == 'f' else None)
            out['attrs'] = {k: (v.item() if hasattr(v, 'item') else v) for k, v in f.attrs.items()}
            out['ids'] = [s.decode() if isinstance(s, bytes) else s for s in f['inputs/ids'][...]]
            out['labels'] = f['inputs/labels'][...].tolist()
            out['layer_attrs'] = {k: {a: (v.item() if hasattr(v, 'item') else v) for a, v in d.attrs.items()} for k, d in f['activations'].items()}
            out['centered'] = str(type(f['grams/blocks.2'].attrs['centered']))
            out['first'] = f['activations/blocks.0'][0, 0].tolist()
            print(json.dumps(out))
            """
        let json = try runPython(script, [path])
        let obj = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        let s = try ActivationStore(path: path)
        let dtypes: [HDF5ElementType: String] = [.float16: "float16", .float32: "float32", .float64: "float64"]
        for (k, l) in s.layers.enumerated() {
            let info = obj["activations/\(l.name)"] as! [Any]
            #expect((info[0] as! [Int]) == l.shape)
            #expect((info[1] as! String) == dtypes[l.elementType])
            let sum = (0..<l.shape.reduce(1, *)).reduce(0.0) { $0 + Double(pattern($1, k)) }
            expectClose(info[2] as! Double, sum, rtol: 1e-12, "sum of \(l.name)")
        }
        let attrs = obj["attrs"] as! [String: Any]
        #expect(attrs["format"] as? String == "activations" && attrs["format_version"] as? Int == 1)
        #expect(attrs["checkpoint"] as? String == "tiny.pth")
        #expect((obj["ids"] as! [String]) == s.ids)
        #expect((obj["labels"] as! [Int]) == s.labels)
        let la = obj["layer_attrs"] as! [String: [String: Any]]
        #expect(la["blocks.10"]?["order"] as? Int == 2 && la["blocks.10"]?["kind"] as? String == "block")
        #expect((obj["centered"] as! String).contains("bool"), "booleans are h5py booleans")
        #expect((obj["first"] as! [Double]) == (0..<4).map { Double(pattern($0, 1)) })
    }

    @Test("Files h5py writes (float16/32/64, gzip, no order attribute, fixed-length strings) read here")
    func weReadH5py() throws {
        let path = dir.appendingPathComponent("py.h5").path
        let script = """
            import h5py, sys, numpy as np
            with h5py.File(sys.argv[1], 'w') as f:
                f.create_dataset('inputs/ids', data=np.array([f'x{i}' for i in range(6)], dtype=object), dtype=h5py.string_dtype())
                f['inputs/labels'] = np.arange(6, dtype=np.int32) % 2
                f['inputs/classes'] = np.array([b'cat', b'dog'])          # fixed-length byte strings
                a = (np.arange(6 * 3 * 5) % 17 / 8.0 - 1).reshape(6, 3, 5)
                f.create_dataset('activations/blocks.10', data=a.astype(np.float16))
                f.create_dataset('activations/blocks.2', data=a.astype(np.float32), compression='gzip', chunks=(2, 3, 5))
                f.create_dataset('activations/blocks.2:cls', data=a[:, 0].astype(np.float64))
                f.attrs['model'] = 'from_h5py'; f.attrs['flag'] = True; f.attrs['n'] = 3; f.attrs['x'] = 0.5
            """
        _ = try runPython(script, [path])
        let s = try ActivationStore(path: path)
        #expect(s.formatVersion == nil && s.modelName == "from_h5py")
        #expect(s.layers.map(\.name) == ["blocks.2", "blocks.2:cls", "blocks.10"], "natural order without `order`")
        #expect(s.layers.map(\.kind) == [.block, .pooled, .block])
        #expect(s.labels == [0, 1, 0, 1, 0, 1] && s.classes == ["cat", "dog"])
        #expect(
            s.attributes["flag"] == .bool(true) && s.attributes["n"] == .int(3) && s.attributes["x"] == .double(0.5))
        let ref = (0..<(6 * 15)).map { Double($0 % 17) / 8 - 1 }
        for name in ["blocks.2", "blocks.10"] {
            let x = try s.read(name)
            #expect(x.shape == [6, 3, 5])
            expectClose(x.scalars.map(Double.init), ref, "\(name)")
        }
        let cls = try s.read("blocks.2:cls", rows: 1..<3)
        expectClose(cls.scalars.map(Double.init), [1, 2].flatMap { i in (0..<5).map { ref[i * 15 + $0] } })
    }

    @Test("Bad files: missing, not HDF5, unknown version, wrong row count, no ids")
    func badFiles() throws {
        #expect(throws: HDF5Error.fileNotFound(path: dir.path + "/none.h5")) {
            try ActivationStore(path: dir.path + "/none.h5")
        }
        let text = dir.appendingPathComponent("text.h5").path
        try "hello".write(toFile: text, atomically: true, encoding: .utf8)
        #expect(throws: HDF5Error.notHDF5(path: text)) { try ActivationStore(path: text) }
        let v2 = dir.appendingPathComponent("v2.h5").path
        _ = try runPython(
            """
            import h5py, sys, numpy as np
            with h5py.File(sys.argv[1], 'w') as f:
                f.attrs['format'] = 'activations'; f.attrs['format_version'] = 2
                f.create_dataset('inputs/ids', data=np.array(['a', 'b'], dtype=object), dtype=h5py.string_dtype())
            with h5py.File(sys.argv[2], 'w') as f:
                f.create_dataset('inputs/ids', data=np.array(['a', 'b'], dtype=object), dtype=h5py.string_dtype())
                f['activations/blocks.0'] = np.zeros((3, 4), np.float32)
            with h5py.File(sys.argv[3], 'w') as f:
                f['activations/blocks.0'] = np.zeros((3, 4), np.float32)
            """, [v2, dir.path + "/rows.h5", dir.path + "/noids.h5"])
        #expect(throws: ActivationStoreError.unsupportedVersion(path: v2, version: 2)) { try ActivationStore(path: v2) }
        #expect(
            throws: ActivationStoreError.rowCountMismatch(
                path: dir.path + "/rows.h5", dataset: "/activations/blocks.0",
                expected: 2, got: 3)
        ) {
            try ActivationStore(path: dir.path + "/rows.h5")
        }
        #expect(throws: ActivationStoreError.missingIDs(path: dir.path + "/noids.h5")) {
            try ActivationStore(path: dir.path + "/noids.h5")
        }
        let msg = "\(ActivationStoreError.unsupportedVersion(path: v2, version: 2))"
        #expect(msg.contains(v2) && msg.contains("version 1"))
    }

    @Test("An unfinished or failed writer leaves no file under the final name")
    func atomicity() throws {
        let path = dir.appendingPathComponent("c.h5").path
        do {
            let w = try ActivationStoreWriter(path: path, ids: ["a", "b"], metadata: StoreMetadata(model: "m"))
            try w.addLayer("blocks.0", kind: .block, block: 0, featureShape: [3])
            try w.append(Tensor<Float>(shape: [1, 3]), to: "blocks.0")
            #expect(FileManager.default.fileExists(atPath: w.output.temporaryPath))
            #expect(throws: ActivationStoreError.self) { try w.finish() }  // 1 of 2 rows
            #expect(!FileManager.default.fileExists(atPath: w.output.temporaryPath))
        }
        #expect(!FileManager.default.fileExists(atPath: path))
        do {
            let w = try ActivationStoreWriter(path: path, ids: ["a"], metadata: StoreMetadata(model: "m"))
            _ = w  // dropped without finish()
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test("Updating a store (adding Grams) replaces it only when finished")
    func updating() throws {
        let path = dir.appendingPathComponent("d.h5").path
        try writeSample(path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        do {
            let w = try ActivationStoreWriter(updating: path)
            try w.addGrams("blocks.0", batchSize: 5, tokens: .cls, centered: false)
            w.abandon()
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        let w = try ActivationStoreWriter(updating: path)
        try w.addGrams("blocks.0", batchSize: 5, tokens: .cls, centered: false)
        try w.appendGram(Tensor<Double>(shape: [5, 5], repeating: 2), to: "blocks.0")
        try w.finish()
        let s = try ActivationStore(path: path)
        #expect(s.grams["blocks.0"]?.tokens == "cls" && s.grams["blocks.2"] != nil)
    }

    @Test("Token reductions: flatten, cls, gap, gap_nocls")
    func tokens() throws {
        let x = Tensor<Float>(shape: [2, 3, 2]) { Float($0) }
        #expect(try TokenReduction.flatten.apply(x).shape == [2, 6])
        #expect(try TokenReduction.cls.apply(x).scalars == [0, 1, 6, 7])
        #expect(try TokenReduction.gap.apply(x).scalars == [2, 3, 8, 9])
        #expect(try TokenReduction.gapNoCLS.apply(x).scalars == [3, 4, 9, 10])
        #expect(try TokenReduction.cls.apply(Tensor<Float>(shape: [2, 5])).shape == [2, 5])
    }

    @Test("Natural order of layer names")
    func natural() {
        let names = ["blocks.10", "norm", "blocks.2.norm1", "blocks.2", "blocks.1"]
        #expect(names.sorted(by: naturalOrder) == ["blocks.1", "blocks.2", "blocks.2.norm1", "blocks.10", "norm"])
    }
}
