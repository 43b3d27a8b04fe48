import CKACheckpoint
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// A safetensors file from a header string and a data buffer.
func safetensorsBytes(_ header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    var out: [UInt8] = []
    let h = Array(header.utf8)
    out.le64(declaredLength ?? UInt64(h.count))
    return out + h + data
}

@Suite("safetensors")
struct SafeTensorsTests {
    func parse(_ bytes: [UInt8]) throws -> SafeTensorsFile {
        try SafeTensorsFile(file: MappedFile(bytes: bytes, name: "t.safetensors"))
    }

    func floats(_ xs: [Float]) -> [UInt8] {
        xs.flatMap { f in (0..<4).map { UInt8(truncatingIfNeeded: f.bitPattern >> (8 * UInt32($0))) } }
    }

    @Test("reads a valid hand-made file with metadata and padding")
    func valid() throws {
        let header =
            #"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}   "#
        let st = try parse(safetensorsBytes(header, data: floats([1, 2, 3, 4])))
        #expect(st.names == ["a", "b"])
        #expect(st.metadata == ["format": "pt"])
        #expect(try st["a"]?.floatTensor().scalars == [1, 2])
        #expect(try st["b"]?.floatTensor().scalars == [3, 4])
        #expect(st["a"]?.shape == [1, 2])
        // Unaligned data (header length not a multiple of 4) still reads correctly.
        let odd = #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        #expect(Array(odd.utf8).count % 4 != 0)
        #expect(try parse(safetensorsBytes(odd, data: floats([5, -6])))["x"]?.floatTensor().scalars == [5, -6])
    }

    /// Each malformed file is refused with a `malformedSafeTensors` (or `limitExceeded`) error that says why.
    @Test(
        "strict validation",
        arguments: [
            ("short file", [UInt8](repeating: 0, count: 5), "8-byte header length"),
            ("header longer than file", safetensorsBytes("{}", data: [], declaredLength: 100), "header length"),
            ("2^62 header", safetensorsBytes("{}", data: [], declaredLength: 1 << 62), "exceeds the limit"),
            ("not an object", safetensorsBytes("[1]", data: []), "'{'"),
            ("bad JSON", safetensorsBytes(#"{"a":{"dtype":"F32",}}"#, data: []), "a string key"),
            ("unterminated string", safetensorsBytes(#"{"a"#, data: []), "closing"),
            (
                "duplicate key",
                safetensorsBytes(
                    #"{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#,
                    data: [0, 0, 0, 0]), "duplicate"
            ),
            (
                "unknown dtype",
                safetensorsBytes(#"{"a":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
                "dtype"
            ),
            (
                "size mismatch",
                safetensorsBytes(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
                "8 bytes"
            ),
            (
                "offset outside file",
                safetensorsBytes(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: [0, 0, 0, 0]),
                "inside the data buffer"
            ),
            (
                "2^62-byte tensor",
                safetensorsBytes(
                    #"{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
                "64 bits"
            ),
            (
                "huge shape product",
                safetensorsBytes(
                    #"{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#, data: []), "64 bits"
            ),
            (
                "offset beyond Int",
                safetensorsBytes(
                    #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,99999999999999999999]}}"#, data: [0]), "64 bits"
            ),
            (
                "negative shape",
                safetensorsBytes(#"{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}"#, data: [0]), "non-negative"
            ),
            (
                "overlap",
                safetensorsBytes(
                    #"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#,
                    data: [0, 0, 0]), "overlap"
            ),
            (
                "gap",
                safetensorsBytes(
                    #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}"#,
                    data: [0, 0, 0]), "gap"
            ),
            (
                "trailing bytes",
                safetensorsBytes(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, data: [0, 9]), "not covered"
            ),
            ("missing field", safetensorsBytes(#"{"a":{"dtype":"U8","shape":[1]}}"#, data: [0]), "data_offsets"),
            (
                "extra field",
                safetensorsBytes(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}"#, data: [0]),
                "only dtype"
            ),
            ("metadata not strings", safetensorsBytes(#"{"__metadata__":{"a":1}}"#, data: []), "string"),
            ("invalid UTF-8", safetensorsBytes("{\"\u{FFFD}\":1}", data: []).map { $0 == 0xef ? 0xff : $0 }, "UTF-8"),
            (
                "deep nesting",
                safetensorsBytes(
                    "{\"a\":" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}", data: []),
                "nested"
            ),
            ("trailing garbage", safetensorsBytes(#"{} x"#, data: []), "end of JSON"),
        ] as [(String, [UInt8], String)])
    func invalid(_ label: String, _ bytes: [UInt8], _ message: String) throws {
        let err = expectCheckpointError(label) { try parse(bytes) }
        switch err {
        case .malformedSafeTensors?, .limitExceeded?: break
        default: Issue.record("\(label): \(String(describing: err))")
        }
        #expect(err?.description.contains(message) == true, "\(label): \(err?.description ?? "")")
        #expect(err?.file == "t.safetensors")
    }

    @Test("writer round trip in float32, float16, bfloat16 and float64; atomic replace")
    func writer() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("w.safetensors")
        let a = randomTensor([3, 5], seed: 1, as: Float.self)
        let b = try Tensor<Float>(shape: [4], scalars: [1, -0.5, 65504, 1e-8])
        let entries = [
            try SafeTensorsWriter.Entry(name: "a32", tensor: a),
            try SafeTensorsWriter.Entry(name: "a16", tensor: a, dtype: .float16),
            try SafeTensorsWriter.Entry(name: "abf", tensor: a, dtype: .bfloat16),
            try SafeTensorsWriter.Entry(name: "a64", tensor: a, dtype: .float64),
            try SafeTensorsWriter.Entry(name: "b", tensor: b, dtype: .float16),
            try SafeTensorsWriter.Entry(name: "raw", dtype: .int64, shape: [1], bytes: [7, 0, 0, 0, 0, 0, 0, 0]),
        ]
        try SafeTensorsWriter.write(entries, metadata: ["format": "pt", "note": "quote \" and \\ and \n"], to: url)
        let st = try SafeTensorsFile(contentsOf: url)
        #expect(st.dataOffset % 8 == 0)
        #expect(st.metadata["note"] == "quote \" and \\ and \n")
        #expect(try st["a32"]?.floatTensor() == a)
        #expect(try st["a64"]?.floatTensor() == a)
        expectClose(try st["a16"]!.floatTensor(), a, rtol: 1e-3, atol: 1e-4)
        expectClose(try st["abf"]!.floatTensor(), a, rtol: 8e-3, atol: 1e-6)
        #expect(try st["b"]?.floatTensor().scalars == [1, -0.5, 65504, 0])
        #expect(try st["raw"]?.int64Values() == [7])
        // The float16 encoding matches CKATensor's.
        #expect(try st["a16"]?.floatTensor().scalars == a.scalars.map { Float(halfBits: $0.halfBits) })
        // Python reads it too, when available.
        if let out = try? runPython(
            """
            import sys; from safetensors.numpy import load_file; d = load_file(sys.argv[1]); print(float(d['a64'].sum()), d['b'].tolist())
            """, [url.path]), !out.isEmpty
        {
            #expect(out.contains("[1.0, -0.5, 65504.0, 0.0]"))
        }
        // Overwrite: the destination is replaced atomically and no temporary file is left behind.
        try SafeTensorsWriter.write([entries[0]], to: url)
        #expect(try SafeTensorsFile(contentsOf: url).names == ["a32"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["w.safetensors"])
        // Duplicate names are refused and leave the old file in place.
        expectCheckpointError { try SafeTensorsWriter.write([entries[0], entries[0]], to: url) }
        #expect(try SafeTensorsFile(contentsOf: url).names == ["a32"])
        // A write into a missing folder fails with a typed error.
        expectCheckpointError {
            try SafeTensorsWriter.write([entries[0]], to: dir.appendingPathComponent("no/such/x.safetensors"))
        }
    }

    @Test("float32 tensors of a mapped file are read in place (copied on write); others are converted or copied")
    func inPlace() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // c: aligned float32; a: one float16; b: float32 two bytes past a float boundary (must be copied).
        var header =
            #"{"c":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"a":{"dtype":"F16","shape":[1],"data_offsets":[16,18]},"b":{"dtype":"F32","shape":[2],"data_offsets":[18,26]}}"#
        while (8 + header.utf8.count) % 8 != 0 { header += " " }
        let half: [UInt8] = [0x00, 0x3c]  // 1.0
        let url = dir.appendingPathComponent("mixed.safetensors")
        try Data(safetensorsBytes(header, data: floats([1, 2, 3, 4]) + half + floats([5, 6]))).write(to: url)
        let st = try SafeTensorsFile(contentsOf: url)
        let c = try st["c"]!.floatTensor(), a = try st["a"]!.floatTensor(), b = try st["b"]!.floatTensor()
        #expect(c.isBorrowed && !a.isBorrowed && !b.isBorrowed)
        #expect(c.scalars == [1, 2, 3, 4] && a.scalars == [1] && b.scalars == [5, 6])
        // The map is read-only: a write goes to a copy (a write into the map would crash with SIGSEGV).
        var w = c
        w[1, 1] = -4
        #expect(w.scalars == [1, 2, 3, -4] && c.scalars == [1, 2, 3, 4] && !w.isBorrowed)
        #expect(try st["c"]!.floatTensor().scalars == [1, 2, 3, 4])
    }

    @Test("a checkpoint converted to safetensors keeps its values (stored tensors, non-contiguous gathered)")
    func convert() throws {
        let archive = try TorchArchive(contentsOf: Fixtures.url("values.pth"))
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("values.safetensors")
        let names = ["f64", "f64_t", "bf16", "f16", "i64", "bool", "shared_b", "expanded", "scalar", "empty"]
        try SafeTensorsWriter.write(
            names.map { SafeTensorsWriter.Entry(name: $0, stored: archive.root[$0]!.tensor!) }, to: url)
        let st = try SafeTensorsFile(contentsOf: url)
        for n in names {
            let original = archive.root[n]!.tensor!
            #expect(st[n]?.dtype == original.dtype)
            #expect(try st[n]?.floatTensor() == original.floatTensor(), "\(n)")
        }
    }

    @Test(
        "real DINOv2 ViT-S/14: 174 tensors, architecture, values read with Python",
        .enabled(if: sharedFolder != nil, "needs ../shared"))
    func dinov2() throws {
        let url = sharedFolder!.appendingPathComponent(
            "data/models/vit-small-patch14-dinov2-imgfocus/model.safetensors")
        try #require(FileManager.default.fileExists(atPath: url.path))
        let st = try SafeTensorsFile(contentsOf: url)
        #expect(st.names.count == 174)
        #expect(st.metadata == ["format": "pt"])
        #expect(st.dataOffset == 8 + 15768)
        let start = Date()
        var options = Checkpoint.Options()
        options.computeSHA256 = true
        let ckpt = try Checkpoint(contentsOf: url, options: options)
        let seconds = Date().timeIntervalSince(start)
        let a = ckpt.architecture
        #expect(ckpt.source == .dinov2 && ckpt.format == .safetensors && ckpt.stateDictKey == nil)
        #expect(a.width == 384 && a.depth == 12 && a.heads == 6 && a.patchSize == 14)
        #expect(a.layerScale && a.qkvBias && a.hasFinalNorm && !a.hasFCNorm)
        #expect(
            a.tokenCount == 257 && a.gridSize == 16 && a.imageSize == 224 && a.mlpHiddenWidth == 1536 && a.mlpRatio == 4
        )
        #expect(a.timmName == "vit_small_patch14_dinov2")
        #expect(ckpt.parameterNames.count == 174 && ckpt.fileTensorCount == 174)
        #expect(ckpt.unexpectedKeys.isEmpty && ckpt.ignored.isEmpty && ckpt.head.isEmpty)
        #expect(ckpt.fileTensorBytes == 86_530_976 - 8 - 15768)
        #expect(ckpt.sha256 == "d3e6c8b249b47b136d8496b21e7bb0ae34ba837ffe26edcb46fb71e209d00f59")
        // Reference numbers from Python (safetensors + numpy, float64 sums of the float32 values).
        let reference: [(String, [Int], Double, Double, [Double])] = [
            (
                "cls_token", [1, 1, 384], -0.04400433797491132, -28.466525428386376,
                [-0.006006296258419752, 0.00014217256102710962, 0.014353248290717602]
            ),
            (
                "pos_embed", [1, 257, 384], 8.212690330113702, -70480.90001624663,
                [-0.006006296258419752, 0.0001421723427483812, 0.014353248290717602]
            ),
            (
                "patch_embed.proj.weight", [384, 3, 14, 14], 0.364663108994705, -8681.756909419128,
                [-0.005428996868431568, -0.007865547202527523, -0.007595001254230738]
            ),
            (
                "blocks.0.ls1.gamma", [384], 8.599325465038419, 2852.2569249931257,
                [-0.2359468638896942, 0.009263693355023861, -0.2820793092250824]
            ),
            (
                "blocks.11.attn.qkv.weight", [1152, 384], 24.07216243798537, -416742.69514680817,
                [0.005269682966172695, -0.002295753685757518, -0.05033554509282112]
            ),
            (
                "blocks.5.mlp.fc2.bias", [384], -0.47064522180880886, 77.6491336832405,
                [0.04627472534775734, 0.022558974102139473, 0.06291811913251877]
            ),
            (
                "norm.weight", [384], 1138.16327303648, 220774.68273043633,
                [2.296776294708252, 11.009881973266602, 2.2620739936828613]
            ),
        ]
        for (name, shape, sum, weighted, first) in reference {
            let t = try #require(ckpt[name], "\(name)")
            #expect(t.shape == shape)
            let d = TensorDigest(t)
            expectClose([d.sum, d.weighted], [sum, weighted], rtol: 1e-9, atol: 1e-9, "\(name)")
            #expect(t.scalars.prefix(3).map(Double.init) == first, "\(name)")
        }
        print(
            "DINOv2 ViT-S/14 (86.5 MB): Checkpoint load incl. SHA-256 \(String(format: "%.3f", seconds)) s (debug build)"
        )
    }
}

/// Runs python3 with `script`; returns stdout (throws if python3 is missing or fails).
func runPython(_ script: String, _ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", script] + args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = Pipe()
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw CocoaError(.fileReadUnknown) }
    return String(decoding: data, as: UTF8.self)
}
