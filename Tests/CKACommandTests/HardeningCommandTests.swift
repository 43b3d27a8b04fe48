import CKAKit
import Foundation
import Testing
import _CKATestSupport

/// Runs `cka args` under `bash` with `ulimit -f kilobytes` and SIGXFSZ ignored, so that writes beyond the
/// limit fail with EFBIG as they would on a full disk (a tmpfs mount needs root; this works everywhere).
func ckaWithFileSizeLimit(kilobytes: Int, _ args: [String]) throws -> RunResult {
    let quoted = ([ckaBinary] + args).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
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
    let dir: URL
    init() throws { dir = try makeTemporaryDirectory() }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    func leftovers() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.contains(".partial-") }
    }

    @Test("disk full during extract: one-line error, exit 1 (was SIGSEGV in libhdf5), no output, no partial file")
    func diskFullExtract() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = path("full.h5")
        let r = try ckaWithFileSizeLimit(kilobytes: 64, [
            "extract", "--checkpoint", headFixture("mae_finetuned.pth"), "--heads", "4", "--inputs", headFixture("heads.h5"),
            "--out", out, "--store", "activations", "--quiet"])
        #expect(r.status == 1, "exit status \(r.status): \(r.stderr)")
        #expect(r.stderr.contains("File too large") || r.stderr.contains("No space"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(out + ":"), "\(r.stderr)")
        #expect(r.stderr.count < 600, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(leftovers().isEmpty, "\(leftovers())")
    }

    /// Expects a one-line error naming `file` and exit status 1 (not a signal).
    func expectOneLineError(_ r: RunResult, naming file: String, containing word: String,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == 1, "exit status \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && r.stderr.contains(file) && r.stderr.contains(word), "\(r.stderr)", sourceLocation: sourceLocation)
    }

    @Test("huge declared, empty datasets: every command refuses in one line before allocating (was 'failed to allocate')")
    func hugeDeclaredSizes() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let acts = hostileFixture("huge_activations.h5"), ids = hostileFixture("huge_ids.h5")
        let ok = similarityFixture("cka_a.h5")
        for args in [["inspect", ids], ["compare", ids, ok], ["compare", acts, acts], ["knn", acts], ["grams", acts],
                     ["agreement", acts, acts], ["probe", acts], ["compare", hostileFixture("huge_grams.h5"), ok]] {
            let r = try cka(args)
            expectOneLineError(r, naming: URL(fileURLWithPath: args[1]).lastPathComponent,
                               containing: args[1].hasSuffix("huge_grams.h5") ? "k·b ≤ N" : "refused")
        }
        let x = try cka(["extract", "--checkpoint", headFixture("mae_finetuned.pth"), "--heads", "4",
                         "--inputs", hostileFixture("huge_pixels.h5"), "--out", path("x.h5"), "--quiet"])
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
        let r = try cka(["extract", "--checkpoint", headFixture("mae_finetuned.pth"), "--heads", "4", "--images", images.path,
                         "--out", path("b.h5"), "--batch-size", "100000000", "--store", "pooled", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try ActivationStore(path: path("b.h5")).count == 3)
    }
}
