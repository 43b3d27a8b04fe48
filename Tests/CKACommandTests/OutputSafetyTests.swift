import CKAKit
import Foundation
import Testing
import _CKASupport
import _CKATestSupport

/// Runs `cka args`, killing it after `seconds` (a hang fails the test instead of blocking the suite).
func ckaWithTimeout(_ args: [String], seconds: Double = 30) throws -> (RunResult, timedOut: Bool) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: ckaBinary)
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    env["SWIFT_BACKTRACE"] = "enable=no"
    p.environment = env
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let deadline = Date().addingTimeInterval(seconds)
    while p.isRunning && Date() < deadline { usleep(20_000) }
    let timedOut = p.isRunning
    if timedOut { kill(p.processIdentifier, SIGKILL) }
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (
        RunResult(
            status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
            stderr: String(decoding: e, as: UTF8.self)), timedOut
    )
}

/// Issue 13, classes 4, 5, 6 and 14 (stale temporary files): outputs never destroy inputs or special files.
@Suite("hardening: outputs, inputs and special files")
struct OutputSafetyTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    func copy(_ source: String, _ name: String) throws -> String {
        try FileManager.default.copyItem(atPath: source, toPath: path(name))
        return path(name)
    }
    func bytes(_ p: String) -> Data? { FileManager.default.contents(atPath: p) }

    func expectRefused(
        _ args: [String], _ text: String, unchanged files: [String],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let before = files.map(bytes)
        let r = try cka(args)
        #expect(
            r.status == 1 && r.stderr.contains(text) && r.stderr.split(separator: "\n").count == 1,
            "\(args): \(r.status) \(r.stderr)", sourceLocation: sourceLocation)
        #expect(files.map(bytes) == before, "an input was modified by \(args)", sourceLocation: sourceLocation)
    }

    @Test("an output that is an input (same name, symlink, hard link) is refused and the input kept, for every command")
    func outputIsInput() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try copy(similarityFixture("cka_a.h5"), "a.h5"), b = try copy(similarityFixture("cka_b.h5"), "b.h5")
        try FileManager.default.createSymbolicLink(atPath: path("link.h5"), withDestinationPath: a)
        try FileManager.default.linkItem(atPath: a, toPath: path("hard.h5"))
        try FileManager.default.createSymbolicLink(atPath: path("a.png"), withDestinationPath: a)
        for (flag, out) in [("--csv", a), ("--h5", b), ("--long-csv", a), ("--heatmap", path("a.png"))] {
            try expectRefused(["compare", a, b, flag, out], "refusing to overwrite an input", unchanged: [a, b])
        }
        try expectRefused(["compare", a, b, "--csv", a], "refusing to overwrite an input", unchanged: [a, b])
        try expectRefused(
            ["compare", a, b, "--h5", path("link.h5")], "refusing to overwrite an input", unchanged: [a, b])
        try expectRefused(
            ["compare", a, b, "--long-csv", path("hard.h5")], "refusing to overwrite an input", unchanged: [a, b])
        let knn = try copy(analysisFixture("knn_test.h5"), "knn.h5")
        try expectRefused(["knn", knn, "--csv", knn], "refusing to overwrite an input", unchanged: [knn])
        let probe = try copy(analysisFixture("probe_test.h5"), "probe.h5")
        try expectRefused(["probe", probe, "--csv", probe], "refusing to overwrite an input", unchanged: [probe])
        try expectRefused(
            ["probe", probe, "--save", probe, "--layers", "x"], "refusing to overwrite an input", unchanged: [probe])
        let ag = try copy(analysisFixture("agreement_a.h5"), "ag.h5")
        try expectRefused(
            ["agreement", ag, analysisFixture("agreement_b.h5"), "--csv", ag], "refusing to overwrite an input",
            unchanged: [ag])
        let ckpt = try copy(headFixture("mae_finetuned.pth"), "ckpt.pth")
        try expectRefused(
            ["extract", "--checkpoint", ckpt, "--heads", "4", "--inputs", headFixture("heads.h5"), "--out", ckpt],
            "refusing to overwrite an input", unchanged: [ckpt])
        // Two outputs naming the same file: refused before anything is written.
        try expectRefused(["compare", a, b, "--csv", path("x"), "--h5", path("x")], "two outputs", unchanged: [a, b])
        #expect(!FileManager.default.fileExists(atPath: path("x")))
        try expectRefused(
            ["compare", a, b, "--csv", path("x"), "--long-csv", dir.path + "/./x"], "same file as the output",
            unchanged: [a, b])
    }

    @Test(
        "symlink, FIFO and character-device outputs are written through, never replaced; HDF5 refuses non-seekable ones"
    )
    func specialOutputs() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = similarityFixture("cka_a.h5"), b = similarityFixture("cka_b.h5")
        // A symlink: the target gets the CSV atomically, the link stays a link.
        try "old".write(toFile: path("target.csv"), atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: path("link.csv"), withDestinationPath: "target.csv")
        var r = try cka(["compare", a, b, "--csv", path("link.csv")])
        #expect(r.status == 0, "\(r.stderr)")
        let attrs = try FileManager.default.attributesOfItem(atPath: path("link.csv"))
        #expect(attrs[.type] as? FileAttributeType == .typeSymbolicLink)
        #expect((try? String(contentsOfFile: path("target.csv"), encoding: .utf8))?.hasPrefix("layer,") == true)
        // A FIFO: a reader gets the CSV; the FIFO stays a FIFO.
        #expect(mkfifo(path("fifo.csv"), 0o644) == 0)
        final class Box: @unchecked Sendable { var data = Data() }
        let box = Box(), fifo = path("fifo.csv")
        let reader = Thread {
            let fd = open(fifo, O_RDONLY)
            guard fd >= 0 else { return }
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(fd, &buffer, buffer.count)
                if n <= 0 { break }
                box.data.append(contentsOf: buffer[..<n])
            }
            close(fd)
        }
        reader.start()
        let (fr, timedOut) = try ckaWithTimeout(["compare", a, b, "--csv", fifo], seconds: 30)
        #expect(fr.status == 0 && !timedOut, "\(fr.stderr)")
        while !reader.isFinished { usleep(10_000) }
        #expect(String(decoding: box.data, as: UTF8.self).hasPrefix("layer,"))
        #expect(InputFile.nonRegularKind(fifo) == "a FIFO")
        // HDF5 outputs need a seekable file.
        r = try cka(["compare", a, b, "--h5", fifo])
        #expect(r.status == 1 && r.stderr.contains("not a regular file"), "\(r.stderr)")
        // A character device (a private /dev/null made with mknod, as root): still a device afterwards.
        if getuid() == 0, mknod(path("null"), S_IFCHR | 0o666, (1 << 8) | 3) == 0 {
            r = try cka([
                "compare", a, b, "--csv", path("null"), "--heatmap", path("null.png"), "--long-csv", path("null"),
            ])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(InputFile.nonRegularKind(path("null")) == "a character device")
        }
    }

    @Test(
        "FIFO inputs are refused as 'not a regular file' by checkpoint, extract, inspect and compare (they hung in open)"
    )
    func fifoInputs() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = path("in.fifo")
        #expect(mkfifo(fifo, 0o644) == 0)
        let ok = similarityFixture("cka_a.h5")
        for args in [
            ["checkpoint", fifo],
            ["extract", "--checkpoint", fifo, "--inputs", headFixture("heads.h5"), "--out", path("o.h5")],
            [
                "extract", "--checkpoint", headFixture("mae_finetuned.pth"), "--heads", "4", "--inputs", fifo, "--out",
                path("o.h5"),
            ],
            ["inspect", fifo], ["compare", fifo, ok], ["compare", ok, fifo], ["knn", fifo],
        ] {
            let (r, timedOut) = try ckaWithTimeout(args, seconds: 20)
            #expect(!timedOut, "\(args) hung")
            #expect(r.status == 1 && r.stderr.contains("not a regular file"), "\(args): \(r.stderr)")
        }
    }

    @Test("stale .NAME.partial-PID files of dead runs are removed; live or fresh ones are kept")
    func stalePartials() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        var dead: Int32 = 4_000_000
        while kill(dead, 0) == 0 || errno != ESRCH { dead -= 1 }
        let stale = path(".out.csv.partial-\(dead)"), fresh = path(".out.csv.partial-\(dead - 1)")
        let live = path(".out.csv.partial-\(getpid())"), other = path(".other.csv.partial-\(dead)")
        for p in [stale, fresh, live, other] { try "partial".write(toFile: p, atomically: false, encoding: .utf8) }
        let old = Date().addingTimeInterval(-2 * AtomicOutput.staleAge)
        for p in [stale, live, other] {
            try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: p)
        }
        let r = try cka([
            "compare", similarityFixture("cka_a.h5"), similarityFixture("cka_b.h5"), "--csv", path("out.csv"),
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: stale), "a dead run's old partial file is removed")
        #expect(FileManager.default.fileExists(atPath: fresh), "a recently modified one may belong to another machine")
        #expect(FileManager.default.fileExists(atPath: live), "a live process's file is kept")
        #expect(FileManager.default.fileExists(atPath: other), "other outputs' files are not touched")
    }
}
