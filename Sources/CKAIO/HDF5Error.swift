internal import CHDF5
import CKATensor
import Foundation
#if canImport(Glibc)
    import Glibc
    let RLIMIT_AS_VALUE = Int32(RLIMIT_AS.rawValue)
#else
    import Darwin
    let RLIMIT_AS_VALUE = RLIMIT_AS
#endif

/// Errors from HDF5 files. Each case names the file and, where there is one, the object; `stack`
/// carries HDF5's own error messages (innermost last), so the cause is never lost.
public enum HDF5Error: Error, Equatable, CustomStringConvertible {
    case fileNotFound(path: String)
    case notHDF5(path: String)
    case openFailed(path: String, stack: String)
    case createFailed(path: String, stack: String)
    case objectNotFound(path: String, object: String)
    case operationFailed(operation: String, path: String, object: String, stack: String)
    case wrongType(path: String, object: String, expected: String, got: String)
    case shapeMismatch(path: String, object: String, expected: String, got: String)
    /// Reading `object` would need `bytes` of memory, more than `limit` (the machine's memory): refused before
    /// anything is allocated, whatever sizes the file declares.
    case tooLarge(path: String, object: String, shape: String, bytes: Int, limit: Int)

    public var description: String {
        switch self {
        case let .fileNotFound(path): return "\(path): no such file"
        case let .notHDF5(path): return "\(path): not an HDF5 file"
        case let .openFailed(path, stack): return "\(path): cannot open HDF5 file (\(stack))"
        case let .createFailed(path, stack): return "\(path): cannot create HDF5 file (\(stack))"
        case let .objectNotFound(path, object): return "\(path): no object '\(object)'"
        case let .operationFailed(op, path, object, stack):
            return "\(path): \(op) of '\(object)' failed (\(stack))"
        case let .wrongType(path, object, expected, got):
            return "\(path): '\(object)' has type \(got), expected \(expected)"
        case let .shapeMismatch(path, object, expected, got):
            return "\(path): '\(object)' has shape \(got), expected \(expected)"
        case let .tooLarge(path, object, shape, bytes, limit):
            let size = bytes == .max ? "more than 2⁶³ bytes" : formatBytes(bytes)
            return
                "\(path): reading '\(object)' \(shape) would need \(size) of memory, more than the \(formatBytes(limit)) available; refused"
        }
    }
}

/// Silences HDF5's automatic printing of its error stack (we collect it instead), once per process, and turns
/// off the library's clean-up at exit: after a failed close (a full disk) that clean-up would close the
/// half-destroyed file again and crash. Every file is closed explicitly (`HDF5Handle`); temporary outputs
/// left open at exit are removed by their owners.
let hdf5Setup: Void = {
    H5dont_atexit()
    H5open()
    H5Eset_auto2(cka_H5E_DEFAULT(), nil, nil)
}()

/// Switches HDF5's automatic error printing off for the calling thread. The library is built thread-safe, and
/// then that setting is per thread: without this, a read failing on a worker thread (the comparison's reader,
/// `parallelFor`) printed HDF5's 20–60-line diagnostic stack. Cheap; called before every read, write and open.
@inline(__always) func quietHDF5OnThisThread() {
    _ = hdf5Setup
    H5Eset_auto2(cka_H5E_DEFAULT(), nil, nil)
}

/// HDF5's current error stack as one line (descriptions joined by "; "), then cleared.
func hdf5ErrorStack() -> String {
    final class Box { var lines: [String] = [] }
    let box = Box()
    let callback: H5E_walk2_t = { _, err, data in
        guard let err, let data else { return 0 }
        let box = Unmanaged<Box>.fromOpaque(data).takeUnretainedValue()
        let desc = err.pointee.desc.map { String(cString: $0) } ?? ""
        let fn = err.pointee.func_name.map { String(cString: $0) } ?? ""
        box.lines.append(fn.isEmpty ? desc : "\(fn): \(desc)")
        return 0
    }
    withExtendedLifetime(box) {
        _ = H5Ewalk2(cka_H5E_DEFAULT(), H5E_WALK_DOWNWARD, callback, Unmanaged.passUnretained(box).toOpaque())
    }
    H5Eclear2(cka_H5E_DEFAULT())
    return summarizeHDF5Stack(box.lines)
}

/// HDF5's error stack (outermost first) as one short line: the outermost and the innermost message, and of a
/// system call's failure only its reason ("No space left on device"), not the buffer addresses and offsets.
func summarizeHDF5Stack(_ lines: [String]) -> String {
    guard var inner = lines.last, let outer = lines.first else { return "no HDF5 message" }
    if let r = inner.range(of: "error message = '"), let end = inner[r.upperBound...].firstIndex(of: "'") {
        let function = inner.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
        inner = (function.isEmpty ? "" : function + ": ") + String(inner[r.upperBound..<end])
    }
    return lines.count == 1 ? inner : outer + "; " + inner
}

/// `n` bytes in KB/MB/GB/TB (powers of 1024, one decimal).
func formatBytes(_ n: Int) -> String {
    var v = Double(n), unit = "bytes"
    for u in ["KB", "MB", "GB", "TB", "PB", "EB"] where v >= 1024 { v /= 1024; unit = u }
    return unit == "bytes" ? "\(n) bytes" : String(format: "%.1f %@", v, unit)
}

/// The most memory one read may allocate: the lowest of the machine's physical memory, the address-space limit
/// (`ulimit -v`), the memory limit of the process's cgroup (what Slurm and containers set) and `CKA_MEMORY_LIMIT`
/// (bytes, or with a K/M/G/T suffix). Sizes declared by a file are checked against it before anything is allocated.
public enum MemoryBudget {
    /// The limit in bytes.
    public static let bytes: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        var limit = pages > 0 && size > 0 ? pages.multipliedReportingOverflow(by: size).partialValue : Int.max
        var rl = rlimit()
        if getrlimit(RLIMIT_AS_VALUE, &rl) == 0, rl.rlim_cur < UInt64(Int.max) {  // RLIM_INFINITY is UInt64.max
            limit = min(limit, Int(rl.rlim_cur))
        }
        if let cgroup = cgroupLimit() { limit = min(limit, cgroup) }
        if let text = ProcessInfo.processInfo.environment["CKA_MEMORY_LIMIT"], let n = parseByteCount(text) {
            limit = min(limit, n)
        }
        return limit
    }()

    /// `"512M"`, `"2G"`, `"1048576"` → bytes (powers of 1024); nil for anything else.
    package static func parseByteCount(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = Substring(t), scale = 1
        if let last = t.last, let u = units[last] { digits = t.dropLast(); scale = u }
        if digits.hasSuffix("I") || digits.hasSuffix("B") { return nil }
        guard let n = Int(digits), n > 0 else { return nil }
        let (b, o) = n.multipliedReportingOverflow(by: scale)
        return o ? nil : b
    }

    /// The memory limit of this process's cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`), if one is set.
    package static func cgroupLimit(
        procSelfCgroup: String = "/proc/self/cgroup", root: String = "/sys/fs/cgroup"
    ) -> Int? {
        guard let text = try? String(contentsOfFile: procSelfCgroup, encoding: .utf8) else { return nil }
        // In a container the process's cgroup is often mounted as the root: read the root's files too.
        var files = [root + "/memory.max", root + "/memory/memory.limit_in_bytes"]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let path = String(parts[2])
            if parts[0] == "0" && parts[1].isEmpty {
                files.append(root + path + "/memory.max")
            } else if parts[1].split(separator: ",").contains("memory") {
                files.append(root + "/memory" + path + "/memory.limit_in_bytes")
            }
        }
        let limits = files.compactMap { file -> Int? in
            guard let s = try? String(contentsOfFile: file, encoding: .utf8),
                let n = Int(s.trimmingCharacters(in: .whitespacesAndNewlines)), n > 0
            else { return nil }  // "max" (v2) means no limit
            return n < Int.max / 2 ? n : nil  // v1 writes "no limit" as a page-rounded Int.max
        }
        return limits.min()
    }

    /// The element count of `shape`, or nil if it overflows 64 bits.
    public static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = p
        }
        return n
    }

    /// Throws `HDF5Error.tooLarge` unless `shape` × `elementSize` bytes fit in `bytes`.
    public static func check(_ shape: [Int], elementSize: Int, path: String, object: String) throws {
        let total =
            elementCount(shape).flatMap { n -> Int? in
                let (b, o) = n.multipliedReportingOverflow(by: elementSize)
                return o ? nil : b
            } ?? .max
        guard total <= bytes else {
            throw HDF5Error.tooLarge(
                path: path, object: object, shape: describeShape(shape), bytes: total, limit: bytes)
        }
    }
}
