import CKAKit
import Foundation
import Testing
import _CKATestSupport
import _CKASupport

/// The `cka` binary built beside this test bundle.
let ckaBinary: String = {
    let dir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    return dir.appendingPathComponent("cka").path
}()

struct RunResult { let status: Int32; let stdout: String; let stderr: String }

/// Runs `executable` with `args` (extra `environment`, working `directory`) and collects its output.
func runProcess(
    _ executable: String, _ args: [String], environment: [String: String] = [:],
    directory: URL? = nil
) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    if let directory { p.currentDirectoryURL = directory }
    var env = ProcessInfo.processInfo.environment
    env["SWIFT_BACKTRACE"] = "enable=no"
    for (k, v) in environment { env[k] = v }
    p.environment = env
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return RunResult(
        status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
        stderr: String(decoding: e, as: UTF8.self))
}

/// Runs `cka` with `args` and collects its output.
func cka(_ args: [String]) throws -> RunResult { try runProcess(ckaBinary, args) }

/// The CKA fixtures of the similarity tests (same package).
func similarityFixture(_ name: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("CKASimilarityTests/Fixtures/\(name)").path
}

@Suite("cka command line")
struct CommandTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    @Test("--help explains every command")
    func help() throws {
        let r = try cka(["--help"])
        #expect(r.status == 0)
        for word in ["inspect", "compare", "compare-all", "grams"] { #expect(r.stdout.contains(word)) }
        let c = try cka(["compare", "--help"])
        for word in [
            "--estimator", "--batch-size", "--tokens", "--layers", "--csv", "--long-csv", "--h5", "--heatmap",
            "minibatch",
        ] {
            #expect(c.stdout.contains(word), "compare --help mentions \(word)")
        }
    }

    @Test("inspect prints format, model, N and the layer table")
    func inspect() throws {
        let r = try cka(["inspect", similarityFixture("cka_b.h5")])
        #expect(r.status == 0, "\(r.stderr)")
        for s in ["version 1", "ref_b", "96 inputs", "blocks.1", "[96, 3, 4]", "float16", "float32"] {
            #expect(r.stdout.contains(s), "inspect output has \(s)")
        }
    }

    @Test("inspect: missing, non-HDF5, unknown version, wrong N: one-line error naming the file, exit ≠ 0")
    func inspectBadFiles() throws {
        let text = path("notes.h5")
        try "not hdf5".write(toFile: text, atomically: true, encoding: .utf8)
        let v9 = path("v9.h5"), rows = path("rows.h5")
        do {
            let f = try HDF5File(path: v9, mode: .create)
            try f.setAttribute("format", .string("activations"))
            try f.setAttribute("format_version", .int(9))
            try f.writeStrings("inputs/ids", ["a", "b"])
        }
        do {
            let f = try HDF5File(path: rows, mode: .create)
            try f.writeStrings("inputs/ids", ["a", "b"])
            let d = try f.createDataset("activations/blocks.0", type: .float32, shape: [3, 2])
            try d.write(Tensor<Float>(shape: [3, 2]))
        }
        let cases: [(String, String)] = [
            (path("missing.h5"), "no such file"), (text, "not an HDF5 file"),
            (v9, "format_version 9"), (rows, "expected N = 2"),
        ]
        for (file, expected) in cases {
            let r = try cka(["inspect", file])
            #expect(r.status == 1, "\(file)")
            let lines = r.stderr.split(separator: "\n")
            #expect(
                lines.count == 1 && lines[0].hasPrefix("error: ") && r.stderr.contains(file)
                    && r.stderr.contains(expected),
                "stderr: \(r.stderr)")
        }
    }

    @Test("compare writes wide CSV, long CSV, HDF5 and a heatmap, and prints the summary")
    func compareOutputs() throws {
        let (csv, long, h5, png) = (path("m.csv"), path("m_long.csv"), path("m.h5"), path("m.png"))
        let r = try cka([
            "compare", similarityFixture("cka_a.h5"), similarityFixture("cka_b.h5"), "--batch-size", "16",
            "--csv", csv, "--long-csv", long, "--h5", h5, "--heatmap", png,
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("3×2 CKA matrix") && r.stdout.contains("minibatch") && r.stdout.contains("N used 96"))
        let wide = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        #expect(wide[0] == "layer,blocks.0,blocks.1" && wide[1].hasPrefix("blocks.0,") && wide.count == 4)
        let longLines = try String(contentsOfFile: long, encoding: .utf8).split(separator: "\n")
        #expect(longLines[0] == "model_a,layer_a,model_b,layer_b,estimator,batch_size,cka" && longLines.count == 7)
        #expect(longLines[1].hasPrefix("ref_a,blocks.0,ref_b,blocks.0,minibatch,16,"))
        let f = try HDF5File(path: h5)
        #expect(try f.attribute("format") == .string("cka-matrix") && f.attribute("estimator") == .string("minibatch"))
        #expect(try f.dataset("cka").shape == [3, 2] && f.readStrings("layers_b") == ["blocks.0", "blocks.1"])
        let head = try Data(contentsOf: URL(fileURLWithPath: png)).prefix(8)
        #expect(head == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
    }

    @Test("compare of one file with itself has a unit diagonal")
    func selfCompare() throws {
        let csv = path("self.csv")
        let r = try cka(["compare", similarityFixture("cka_a.h5"), "--estimator", "debiased", "--csv", csv])
        #expect(r.status == 0, "\(r.stderr)")
        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n").dropFirst()
        for (i, row) in rows.enumerated() {
            let v = Double(row.split(separator: ",")[i + 1])!
            #expect(abs(v - 1) < 1e-12)
        }
    }

    @Test("compare: bad input ends in one line, exit 1, and no output file")
    func compareBadInput() throws {
        let csv = path("bad.csv")
        let a = similarityFixture("cka_a.h5"), b = similarityFixture("cka_b.h5")
        let other = path("other.h5")
        do {
            let w = try ActivationStoreWriter(
                path: other, ids: (0..<96).map { "x\($0)" }, metadata: StoreMetadata(model: "o"))
            try w.addLayer("blocks.0", kind: .block, block: 0, featureShape: [2])
            try w.append(randomTensor([96, 2], seed: 1), to: "blocks.0")
            try w.finish()
        }
        let cases: [([String], String)] = [
            (["compare", a, b, "--batch-size", "200"], "batch size 200"),
            (["compare", a, b, "--layers", "nothing.*"], "no layer matches"),
            (["compare", a, other], "different inputs"),
            (["compare", a, b, "--estimator", "magic"], "magic"),
            (["compare", a, b, "--tokens", "mean"], "mean"),
            (["compare", a, b, "--batch-size", "3"], "at least 4"),
            (["compare", a, b, "--grams", "stored"], "Grams"),
        ]
        for (args, expected) in cases {
            let r = try cka(args + ["--csv", csv])
            #expect(r.status != 0 && r.status < 128, "\(args)")
            #expect(r.stderr.contains(expected), "\(args): \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count <= 4, "short: \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: csv))
        }
    }

    @Test("grams adds Grams; compare then uses them and matches the activation path")
    func gramsThenCompare() throws {
        let a = path("a.h5"), b = path("b.h5")
        try FileManager.default.copyItem(atPath: similarityFixture("cka_a.h5"), toPath: a)
        try FileManager.default.copyItem(atPath: similarityFixture("cka_b.h5"), toPath: b)
        for f in [a, b] { #expect(try cka(["grams", f, "--batch-size", "16"]).status == 0) }
        let viaGrams = try cka(["compare", a, b, "--batch-size", "16", "--grams", "stored", "--csv", path("g.csv")])
        #expect(viaGrams.status == 0 && viaGrams.stdout.contains("stored Grams"), "\(viaGrams.stderr)")
        let viaActs = try cka(["compare", a, b, "--batch-size", "16", "--grams", "activations", "--csv", path("x.csv")])
        #expect(viaActs.status == 0)
        func values(_ p: String) throws -> [Double] {
            try String(contentsOfFile: p, encoding: .utf8).split(separator: "\n").dropFirst()
                .flatMap { $0.split(separator: ",").dropFirst().map { Double($0)! } }
        }
        // Same Grams up to float32 summation order (SYRK vs GEMM, thread counts).
        expectClose(try values(path("g.csv")), try values(path("x.csv")), atol: 1e-6)
        let mismatch = try cka(["compare", a, b, "--batch-size", "32", "--grams", "stored"])
        #expect(mismatch.status == 1 && mismatch.stderr.contains("batch size 16"))
    }

    @Test("compare-all writes a CSV and picture per pair, all.csv and the overview")
    func compareAll() throws {
        let out = path("all")
        let r = try cka([
            "compare-all", similarityFixture("cka_a.h5"), similarityFixture("cka_b.h5"), "--batch-size", "16",
            "--out-dir", out,
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: out))
        for f in [
            "ref_a__ref_a.csv", "ref_a__ref_b.csv", "ref_b__ref_b.csv", "ref_a__ref_b.png", "all.csv", "overview.png",
        ] {
            #expect(files.contains(f), "\(f) in \(files)")
        }
        let all = try String(contentsOfFile: out + "/all.csv", encoding: .utf8).split(separator: "\n")
        #expect(all.count == 1 + 9 + 6 + 4)
    }

    @Test("A writer killed mid-way leaves no file under the final name")
    func killedWriter() throws {
        let out = path("killed.h5")
        let p = Process()
        let writer = URL(fileURLWithPath: ckaBinary).deletingLastPathComponent().appendingPathComponent(
            "slow-store-writer"
        ).path
        p.executableURL = URL(fileURLWithPath: writer)
        p.arguments = [out, "400", "10"]
        try p.run()
        let partial = AtomicOutput(path: out).temporaryPath.replacingOccurrences(
            of: "-\(ProcessInfo.processInfo.processIdentifier)",
            with: "-\(p.processIdentifier)")
        var waited = 0
        while !FileManager.default.fileExists(atPath: partial) && waited < 200 { usleep(20_000); waited += 1 }
        usleep(300_000)
        #expect(FileManager.default.fileExists(atPath: partial), "the writer is working under the temporary name")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(!FileManager.default.fileExists(atPath: out))
        // And left to finish, the same command produces a readable store.
        let r = try runProcess(writer, [out, "8", "0"])
        let count = try ActivationStore(path: out).count
        #expect(r.status == 0 && count == 8)
    }
}

@Suite("Help texts")
struct HelpTextTests {
    @Test("cka extract --help reads cleanly at 80 columns: no line longer, no line broken inside a sentence")
    func extractHelpAt80Columns() throws {
        let r = try runProcess(ckaBinary, ["extract", "--help"], environment: ["COLUMNS": "80"])
        #expect(r.status == 0)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.allSatisfy { $0.count <= 80 }, "\(lines.filter { $0.count > 80 })")
        // The discussion is wrapped by us: a line that ArgumentParser had to break would continue at column 0
        // with a lowercase word or a path fragment; every line of the examples stays whole.
        for example in [
            "--layers 'blocks.*.norm1,blocks.*.attn.qkv,blocks.*.mlp.fc1,blocks.*'",
            "cka agreement dino-logits.h5 moco-logits.h5",
        ] {
            #expect(lines.contains { $0.hasSuffix(example) }, "\(example)")
        }
        let valueLists =
            r.stdout.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "  ", with: " ")
            .components(separatedBy: "activations, pooled, grams, pixels, logits").count - 1
        #expect(valueLists == 1, "the --store values are listed once, by the parser")
    }

    @Test(
        "every command's --help at 80 columns: paragraphs wrapped by the parser, no line broken mid-paragraph",
        arguments: [
            "extract", "grams", "compare", "compare-all", "checkpoint", "knn", "probe", "agreement", "landscape",
            "landscape-plot", "landscape-stats", "hessian",
        ])
    func helpAt80Columns(command: String) throws {
        let r = try runProcess(ckaBinary, [command, "--help"], environment: ["COLUMNS": "80"])
        #expect(r.status == 0)
        // The overview and discussion, before the parser's usage line.
        let text = r.stdout.components(separatedBy: "\nUSAGE:")[0]
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.allSatisfy { $0.count <= 80 }, "\(lines.filter { $0.count > 80 })")
        // A hard-wrapped source line longer than the terminal comes out as a full line, then a short remainder,
        // then the next source line of the same paragraph: a short line in the middle of a paragraph.
        for i in lines.indices.dropFirst().dropLast() {
            let (previous, line, next) = (lines[i - 1], lines[i], lines[i + 1])
            let paragraph = [previous, line, next].allSatisfy { !$0.isEmpty && !$0.hasPrefix(" ") }
            let midParagraph = paragraph && !line.hasSuffix(":") && !line.hasSuffix(".")
            #expect(
                !(previous.count > 60 && line.count < 40 && midParagraph),
                "'\(command) --help' breaks a paragraph: \"\(previous)\" / \"\(line)\" / \"\(next)\"")
        }
    }
}
