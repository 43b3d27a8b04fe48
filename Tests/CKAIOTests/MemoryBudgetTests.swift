import CKAIO
import Foundation
import Testing
import _CKATestSupport

@Suite("Memory budget and declared sizes")
struct MemoryBudgetTests {
    @Test("Byte counts: plain, K/M/G/T suffixes (powers of 1024); anything else is ignored")
    func byteCounts() {
        #expect(MemoryBudget.parseByteCount("1048576") == 1 << 20)
        #expect(MemoryBudget.parseByteCount("512M") == 512 << 20)
        #expect(MemoryBudget.parseByteCount(" 2g ") == 2 << 30)
        #expect(MemoryBudget.parseByteCount("3T") == 3 << 40)
        for bad in ["", "-1", "0", "1.5G", "2GiB", "2GB", "lots", "99999999999T"] {
            #expect(MemoryBudget.parseByteCount(bad) == nil, "\(bad)")
        }
    }

    @Test("cgroup limits: v2 memory.max, v1 memory.limit_in_bytes, 'max' and v1's unlimited value ignored")
    func cgroups() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func write(_ text: String, _ path: String) throws {
            let url = dir.appendingPathComponent(path)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        let root = dir.appendingPathComponent("cg").path, proc = dir.appendingPathComponent("cgroup").path
        try write("0::/slurm/job_7\n", "cgroup")
        try write("8589934592\n", "cg/slurm/job_7/memory.max")
        #expect(MemoryBudget.cgroupLimit(procSelfCgroup: proc, root: root) == 8 << 30)
        try write("max\n", "cg/slurm/job_7/memory.max")
        #expect(MemoryBudget.cgroupLimit(procSelfCgroup: proc, root: root) == nil)
        try write("4:memory:/job/1\n1:cpu,cpuacct:/\n", "cgroup")
        try write("1073741824\n", "cg/memory/job/1/memory.limit_in_bytes")
        #expect(MemoryBudget.cgroupLimit(procSelfCgroup: proc, root: root) == 1 << 30)
        try write("9223372036854771712\n", "cg/memory/job/1/memory.limit_in_bytes")
        #expect(MemoryBudget.cgroupLimit(procSelfCgroup: proc, root: root) == nil)
        #expect(MemoryBudget.cgroupLimit(procSelfCgroup: dir.path + "/none", root: root) == nil)
        // A container: its own cgroup is mounted as the root, the path in /proc/self/cgroup leads nowhere.
        try write("0::/docker/abc\n", "cgroup")
        try write("2147483648\n", "cg/memory.max")
        #expect(MemoryBudget.cgroupLimit(procSelfCgroup: proc, root: root) == 2 << 30)
    }

    @Test("A dataset whose byte count overflows 64 bits is refused by the writer, not trapped on")
    func overflowingShapes() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let f = try HDF5File(path: dir.appendingPathComponent("a.h5").path, mode: .create)
        defer { try? f.close() }
        // The fuzzer's two finds: a row of 2^40 × 2^40 elements behind a zero first extent, and a whole count over 2^63.
        for shape in [[0, 1 << 40, 1 << 40], [1 << 40, 1 << 31, 4], [4, -1]] {
            #expect(throws: HDF5Error.self) {
                _ = try f.createDataset("x", type: .float32, shape: shape, chunkRows: 1)
            }
        }
        let ok = try f.createDataset("y", type: .float32, shape: [0, 1 << 20], chunkRows: 1)
        #expect(ok.shape == [0, 1 << 20])
    }
}
