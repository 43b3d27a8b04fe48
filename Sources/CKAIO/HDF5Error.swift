internal import CHDF5

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
