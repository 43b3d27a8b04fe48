import CKACheckpoint
import Foundation
import Testing
import _CKATestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Load time against a plain sequential read of the same file, and peak memory, for big checkpoints named in
/// `CKA_CHECKPOINT_BENCH` (colon-separated paths; e.g. a 330 MB ViT-B/16 `.pth` and `.safetensors`). Off unless
/// that variable is set; run it with `swift test -c release --filter LoadBenchmark` for meaningful numbers.
@Suite("Checkpoint load benchmark", .serialized)
struct LoadBenchmarkTests {
    static let files: [String] =
        ProcessInfo.processInfo.environment["CKA_CHECKPOINT_BENCH"]?
        .split(separator: ":").map(String.init) ?? []

    /// Current and peak resident set size in bytes (Linux /proc).
    static func rss() -> (current: Int, peak: Int) {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
        func field(_ name: String) -> Int {
            guard let line = s.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return 0 }
            return (Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0)
                * 1024
        }
        return (field("VmRSS:"), field("VmHWM:"))
    }

    /// Resets the peak RSS counter (Linux ≥ 4.0).
    static func resetPeak() {
        if let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") { h.write(Data("5".utf8)); try? h.close() }
    }

    /// Reads the whole file sequentially into one buffer (8 MiB reads); returns seconds.
    static func plainRead(_ path: String) -> Double {
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let n = Int(st.st_size)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        defer { buffer.deallocate() }
        let start = DispatchTime.now().uptimeNanoseconds
        var done = 0
        while done < n {
            let r = read(fd, buffer + done, min(8 << 20, n - done))
            if r <= 0 { break }
            done += r
        }
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    @Test("load vs sequential read", .enabled(if: !files.isEmpty, "set CKA_CHECKPOINT_BENCH=file[:file…]"))
    func benchmark() throws {
        for path in Self.files {
            let url = URL(fileURLWithPath: path)
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            _ = Self.plainRead(path)  // warm the page cache
            var reads: [Double] = [], loads: [Double] = [], peaks: [Int] = []
            var params = 0
            for _ in 0..<5 {
                reads.append(Self.plainRead(path))
                let base = Self.rss().current
                Self.resetPeak()
                let start = DispatchTime.now().uptimeNanoseconds
                let ckpt = try Checkpoint(contentsOf: url, options: .init(heads: 12))
                loads.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                peaks.append(Self.rss().peak - base)
                params = ckpt.parameterCount * 4
                withExtendedLifetime(ckpt) {}
            }
            // The first load in the process allocates fresh pages, as a real `cka` run does; later loads may
            // reuse freed heap memory (faster, less RSS growth), so report the first and the median.
            let r = reads.sorted()[reads.count / 2], first = loads[0], median = loads.sorted()[loads.count / 2]
            print(
                String(
                    format: "%@: %.0f MB; plain read (median) %.3f s (%.2f GB/s); Checkpoint load: first %.3f s "
                        + "(%.2f×), median %.3f s (%.2f×); peak RSS growth (max) %.0f MB for %.0f MB of float32 parameters (%.2f×)",
                    url.lastPathComponent, Double(size) / 1e6, r, Double(size) / r / 1e9, first, first / r, median,
                    median / r, Double(peaks.max()!) / 1e6, Double(params) / 1e6,
                    Double(peaks.max()!) / Double(max(params, 1))))
            var options = Checkpoint.Options(heads: 12)
            options.computeSHA256 = true
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try Checkpoint(contentsOf: url, options: options)
            print(String(format: "  with SHA-256: %.3f s", Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9))
        }
    }
}
