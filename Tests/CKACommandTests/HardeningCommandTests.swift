import CKAKit
import Foundation
import Testing
import _CKASupport
import _CKATestSupport

/// Runs `cka args` under `bash` with `ulimit -f kilobytes` and SIGXFSZ ignored, so that writes beyond the
/// limit fail with EFBIG as they would on a full disk (a tmpfs mount needs root; this works everywhere).
func ckaWithFileSizeLimit(kilobytes: Int, _ args: [String]) throws -> RunResult {
    let quoted = ([ckaBinary] + args).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(
        separator: " ")
    return try runProcess("/bin/bash", ["-c", "trap '' XFSZ; ulimit -f \(kilobytes); exec \(quoted)"])
}

/// A hostile store of `Fixtures/make_hostile_stores.py`.
func hostileFixture(_ name: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
}

/// An image fixture of the image tests.
func imageFixture(_ name: String) -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("CKAImagesTests/Fixtures/\(name)")
}

/// Issue 13: end-to-end regressions of the hardening classes that need the built binary.
@Suite("hardening: cka end to end")
struct HardeningCommandTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    func leftovers() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.contains(".partial-") }
    }

    @Test("disk full during extract: one-line error, exit 1 (was SIGSEGV in libhdf5), no output, no partial file")
    func diskFullExtract() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = path("full.h5")
        let r = try ckaWithFileSizeLimit(
            kilobytes: 64,
            [
                "extract", "--checkpoint", headFixture("mae_finetuned.pth"), "--heads", "4", "--inputs",
                headFixture("heads.h5"),
                "--out", out, "--store", "activations", "--quiet",
            ])
        #expect(r.status == 1, "exit status \(r.status): \(r.stderr)")
        #expect(r.stderr.contains("File too large") || r.stderr.contains("No space"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(out + ":"), "\(r.stderr)")
        #expect(r.stderr.count < 600, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(leftovers().isEmpty, "\(leftovers())")
    }

    /// Expects a one-line error naming `file` and exit status 1 (not a signal).
    func expectOneLineError(
        _ r: RunResult, naming file: String, containing word: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(r.status == 1, "exit status \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
        let lines = r.stderr.split(separator: "\n")
        #expect(
            lines.count == 1 && r.stderr.contains(file) && r.stderr.contains(word), "\(r.stderr)",
            sourceLocation: sourceLocation)
    }

    @Test(
        "huge declared, empty datasets: every command refuses in one line before allocating (was 'failed to allocate')")
    func hugeDeclaredSizes() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let acts = hostileFixture("huge_activations.h5"), ids = hostileFixture("huge_ids.h5")
        let ok = similarityFixture("cka_a.h5")
        for args in [
            ["inspect", ids], ["compare", ids, ok], ["compare", acts, acts], ["knn", acts], ["grams", acts],
            ["agreement", acts, acts], ["probe", acts], ["compare", hostileFixture("huge_grams.h5"), ok],
        ] {
            let r = try cka(args)
            expectOneLineError(
                r, naming: URL(fileURLWithPath: args[1]).lastPathComponent,
                containing: args[1].hasSuffix("huge_grams.h5") ? "k·b ≤ N" : "refused")
        }
        let x = try cka([
            "extract", "--checkpoint", headFixture("mae_finetuned.pth"), "--heads", "4",
            "--inputs", hostileFixture("huge_pixels.h5"), "--out", path("x.h5"), "--quiet",
        ])
        expectOneLineError(x, naming: "huge_pixels.h5", containing: "refused")
        #expect(!FileManager.default.fileExists(atPath: path("x.h5")))
    }

    @Test("extract --batch-size 100000000 on 3 images: clamped to the 3 images (was a 1 TB allocation)")
    func batchSizeClamp() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let images = dir.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        for f in ["cifar_cat_0000.jpg", "cifar_frog_0007.jpg", "cifar_ship_0003.jpg"] {
            try FileManager.default.copyItem(at: imageFixture(f), to: images.appendingPathComponent(f))
        }
        let r = try cka([
            "extract", "--checkpoint", headFixture("mae_finetuned.pth"), "--heads", "4", "--images", images.path,
            "--out", path("b.h5"), "--batch-size", "100000000", "--store", "pooled", "--quiet",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try ActivationStore(path: path("b.h5")).count == 3)
    }

    /// Two stores from `cka extract` with default options (pooled activations + token-layer Grams) over 64 inputs,
    /// from two tiny random checkpoints; extra arguments are added to both extractions.
    func defaultStores(_ extra: [String] = []) throws -> (String, String) {
        let pixels = path("pixels.h5")
        if !FileManager.default.fileExists(atPath: pixels) {
            let w = try ActivationStoreWriter(
                path: pixels, ids: (0..<64).map { "img\($0)" }, metadata: StoreMetadata(model: "pixels"))
            try w.writeDataset("inputs/pixels", tinyPixels(64, seed: 5))
            try w.finish()
        }
        var out: [String] = []
        for seed in [1, 2] as [UInt64] {
            let ckpt = dir.appendingPathComponent("tiny\(seed).safetensors")
            if !FileManager.default.fileExists(atPath: ckpt.path) { try writeTinyViTCheckpoint(to: ckpt, seed: seed) }
            let o = path("default\(seed)\(extra.joined()).h5")
            let r = try cka(["extract", "--checkpoint", ckpt.path, "--inputs", pixels, "--out", o, "--quiet"] + extra)
            #expect(r.status == 0, "\(r.stderr)")
            out.append(o)
        }
        return (out[0], out[1])
    }

    @Test(
        "the --help typical session works on default extract outputs: compare --csv --heatmap and compare-all (was \"no layer 'blocks.0'\")"
    )
    func defaultSession() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let (a, b) = try defaultStores()
        let r = try cka(["compare", a, b, "--csv", path("out.csv"), "--heatmap", path("out.png")])
        #expect(r.status == 0, "\(r.stderr)")
        let header = try String(contentsOfFile: path("out.csv"), encoding: .utf8).split(separator: "\n").first ?? ""
        #expect(
            header.contains("blocks.0:cls") && header.contains("blocks.0.mlp.fc1") && header.contains(",blocks.0,"),
            "\(header)")
        let all = try cka(["compare-all", a, b, "--out-dir", path("results")])
        #expect(all.status == 0, "\(all.stderr)")
        #expect(FileManager.default.fileExists(atPath: path("results/all.csv")))
        // Stored Grams for some layers and activations for the others give what activations alone give.
        let (fa, fb) = try defaultStores(["--store", "activations,pooled,grams"])
        let mixed = try cka(["compare", fa, fb, "--csv", path("mixed.csv")])
        let acts = try cka(["compare", fa, fb, "--grams", "activations", "--csv", path("acts.csv")])
        #expect(
            mixed.status == 0 && acts.status == 0 && mixed.stdout.contains("stored Grams"),
            "\(mixed.stdout) \(mixed.stderr)")
        func values(_ p: String) throws -> [Double] {
            try String(contentsOfFile: p, encoding: .utf8).split(separator: "\n").dropFirst()
                .flatMap { $0.split(separator: ",").dropFirst().map { Double($0)! } }
        }
        expectClose(try values(path("mixed.csv")), try values(path("acts.csv")), atol: 1e-6)
    }

    @Test("CKAComparison.run(a, b) with default options takes the batch size of the stored Grams (was 'asked for 32')")
    func libraryDefaultBatchSize() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let (pa, pb) = try defaultStores(["--gram-batch-size", "16"])
        let a = try ActivationStore(path: pa), b = try ActivationStore(path: pb)
        let r = try CKAComparison.run(a, b)
        #expect(r.batchSize == 16 && r.usedStoredGrams && r.batches == 4)
        // The same numbers as with the batch size given explicitly.
        var o = CKAOptions()
        o.batchSize = 16
        let explicit = try CKAComparison.run(a, b, options: o)
        #expect(r.matrix == explicit.matrix)
        // An explicit batch size that the Grams do not have is still an error for Grams-only layers.
        o.batchSize = 32
        #expect(throws: CKAError.self) { try CKAComparison.run(a, b, options: o) }
    }

    @Test("two concurrent 'cka grams' on one store: both succeed and both sets of Grams are kept (one vanished)")
    func concurrentGrams() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let layers = try ActivationStore(path: similarityFixture("cka_a.h5")).layers.map(\.name)
        #expect(layers.count >= 2)
        for round in 0..<4 {
            let s = path("s\(round).h5")
            try FileManager.default.copyItem(atPath: similarityFixture("cka_a.h5"), toPath: s)
            let procs = layers.prefix(2).map { layer -> Process in
                let p = Process()
                p.executableURL = URL(fileURLWithPath: ckaBinary)
                p.arguments = ["grams", s, "--layers", layer, "--batch-size", "16", "--quiet"]
                p.standardOutput = FileHandle.nullDevice
                p.standardError = FileHandle.nullDevice
                return p
            }
            for p in procs { try p.run() }
            for p in procs { p.waitUntilExit() }
            #expect(procs.allSatisfy { $0.terminationStatus == 0 })
            let grams = try ActivationStore(path: s).grams
            #expect(Set(grams.keys) == Set(layers.prefix(2)), "round \(round): \(grams.keys.sorted())")
        }
    }

    @Test(
        "extract over NaN pixels: a loud warning and the datasets recorded in non_finite_datasets (was silent, exit 0)")
    func nonFiniteExtract() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        var pixels = tinyPixels(8, seed: 3)
        pixels.withUnsafeMutableBufferPointer { $0[5] = .nan }
        let w = try ActivationStoreWriter(
            path: path("nan.h5"), ids: (0..<8).map { "i\($0)" }, metadata: StoreMetadata(model: "px"))
        try w.writeDataset("inputs/pixels", pixels)
        try w.finish()
        try writeTinyViTCheckpoint(to: dir.appendingPathComponent("t.safetensors"), seed: 1)
        let r = try cka([
            "extract", "--checkpoint", path("t.safetensors"), "--inputs", path("nan.h5"), "--out", path("o.h5"),
            "--store", "pooled,grams", "--gram-batch-size", "4", "--quiet",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("warning:") && r.stderr.contains("NaN or Inf"), "\(r.stderr)")
        let store = try ActivationStore(path: path("o.h5"))
        guard case let .strings(names)? = store.attributes["non_finite_datasets"] else {
            Issue.record("no non_finite_datasets attribute: \(store.attributes)"); return
        }
        #expect(names.contains("activations/blocks.0:cls") && names.contains { $0.hasPrefix("grams/") }, "\(names)")
    }

    @Test("ESC and NUL in checkpoint keys and layer names are printed as \\xHH, never sent to the terminal")
    func terminalInjection() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("evil.safetensors")
        try SafeTensorsWriter.write(
            [try SafeTensorsWriter.Entry(name: "\u{1B}[2Jevil\u{07}", tensor: randomTensor([2], seed: 1))], to: url)
        let r = try cka(["checkpoint", url.path])
        let all = r.stdout + r.stderr
        #expect(!all.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 }, "\(all.debugDescription)")
        #expect(all.contains("\\x1B[2Jevil"), "\(all.debugDescription)")
        // A layer name with ESC in a store: inspect and the compare error both escape it.
        let w = try ActivationStoreWriter(
            path: path("esc.h5"), ids: (0..<8).map { "i\($0)" }, metadata: StoreMetadata(model: "m\u{1B}]0;x"))
        try w.addLayer("\u{1B}[31mred", kind: .other, block: -1, featureShape: [3])
        try w.append(randomTensor([8, 3], seed: 2), to: "\u{1B}[31mred")
        try w.finish()
        let i = try cka(["inspect", path("esc.h5")])
        #expect(
            i.status == 0 && !i.stdout.unicodeScalars.contains { $0.value == 0x1B }
                && i.stdout.contains("\\x1B[31mred"), "\(i.stdout.debugDescription)")
    }

    @Test("CSV cells that a spreadsheet would run as formulas are written as text")
    func csvFormulaCells() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(CSVText.field("=HYPERLINK(\"x\")") == "\"'=HYPERLINK(\"\"x\"\")\"")
        #expect(CSVText.field("+1") == "+1" && CSVText.field("-0.5") == "-0.5" && CSVText.field("@sum") == "'@sum")
        #expect(CSVText.field("blocks.0:cls") == "blocks.0:cls")
        let w = try ActivationStoreWriter(
            path: path("f.h5"), ids: (0..<8).map { "i\($0)" }, metadata: StoreMetadata(model: "=cmd|' /C calc'!A0"))
        try w.addLayer("=1+1", kind: .other, block: -1, featureShape: [3])
        try w.append(randomTensor([8, 3], seed: 2), to: "=1+1")
        try w.finish()
        let r = try cka([
            "compare", path("f.h5"), "--batch-size", "4", "--csv", path("w.csv"), "--long-csv", path("l.csv"),
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let wide = try String(contentsOfFile: path("w.csv"), encoding: .utf8),
            long = try String(contentsOfFile: path("l.csv"), encoding: .utf8)
        #expect(wide.contains("'=1+1") && !wide.contains(",=") && !wide.hasPrefix("="), "\(wide)")
        #expect(long.contains("'=cmd") && !long.contains(",="), "\(long)")
    }

    @Test(
        "one clear line for: format_version 1.5, an empty /activations, ×10¹⁹ and ×10⁻²⁵ features, an output folder that cannot exist"
    )
    func clearMessages() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        func expectLine(_ args: [String], _ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let r = try cka(args)
            #expect(
                r.status == 1 && r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(text),
                "\(args): \(r.stderr)", sourceLocation: sourceLocation)
        }
        try expectLine(["inspect", hostileFixture("version_1_5.h5")], "format_version is 1.5, expected the integer 1")
        try expectLine(["compare", hostileFixture("empty_activations.h5")], "no layers")
        let scaled = hostileFixture("scaled.h5")
        try expectLine(["compare", scaled, "--layers", "huge", "--batch-size", "16"], "float32 Grams overflow")
        try expectLine(["compare", scaled, "--layers", "tiny", "--batch-size", "16"], "float32 Grams underflow")
        // A corrupt gzip chunk read on the reader thread: one line, not HDF5's diagnostic stack.
        try expectLine(["compare", hostileFixture("corrupt_chunk.h5"), "--batch-size", "16"], "corrupt_chunk.h5")
        try "x".write(toFile: path("file"), atomically: false, encoding: .utf8)

        try expectLine(
            ["compare-all", similarityFixture("cka_a.h5"), "--out-dir", path("file") + "/sub"], path("file") + "/sub")
    }

    @Test("k-NN and probes refuse all-zero, constant and [N, 0] layers like compare does (were scored silently)")
    func knnSharedValidation() throws {
        let scaled = hostileFixture("scaled.h5")
        for (layer, text) in [
            ("zero", "is all zeros"), ("const", "constant features"), ("nofeatures", "has no features"),
        ] {
            for command in ["knn", "probe"] {
                let r = try cka([command, scaled, "--layers", layer])
                #expect(
                    r.status == 1 && r.stderr.contains(text) && r.stderr.contains("'\(layer)'"),
                    "\(command) \(layer): \(r.stderr)")
            }
        }
    }

    @Test(
        "k-NN is scale-invariant up to 10²¹: the same layer ×2⁷⁰ gives the same table (float32 dot products overflowed)"
    )
    func knnExtremeScale() throws {
        let scaled = hostileFixture("scaled.h5")
        let unit = try cka(["knn", scaled, "--layers", "unit", "--k", "1,5,20"])
        let big = try cka(["knn", scaled, "--layers", "unit_x2e70", "--k", "1,5,20"])
        #expect(unit.status == 0 && big.status == 0, "\(unit.stderr) \(big.stderr)")
        func numbers(_ s: String) -> [String] {
            s.split(separator: "\n").filter { $0.hasPrefix("unit") }.map {
                $0.split(separator: " ").dropFirst().joined(separator: " ")
            }
        }
        #expect(
            !numbers(unit.stdout).isEmpty && numbers(unit.stdout) == numbers(big.stdout),
            "\(unit.stdout)\n\(big.stdout)")
    }
}
