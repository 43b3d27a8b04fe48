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
}
