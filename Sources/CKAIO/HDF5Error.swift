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

/// The most memory one read may allocate: the machine's physical memory, or the address-space limit
/// (`ulimit -v`) when lower. Sizes declared by a file are checked against it before anything is allocated.
public enum MemoryBudget {
    /// The limit in bytes.
    public static let bytes: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        var limit = pages > 0 && size > 0 ? pages.multipliedReportingOverflow(by: size).partialValue : Int.max
        var rl = rlimit()
        if getrlimit(RLIMIT_AS_VALUE, &rl) == 0, rl.rlim_cur < UInt64(Int.max) {  // RLIM_INFINITY is UInt64.max
            limit = min(limit, Int(rl.rlim_cur))
        }
        return limit
    }()

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
