/// Errors thrown while reading, validating or mapping a checkpoint file.
///
/// Every case names the file (for records inside a zip archive: `file.pth:archive/data.pkl`), says what was
/// expected and, where the problem sits at a byte position, the offset. Malformed input of any kind ends in one
/// of these errors: the readers never trap on untrusted bytes.
public enum CheckpointError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file could not be opened, mapped or read.
    case unreadable(file: String, reason: String)
    /// The first bytes match none of the supported formats.
    case unrecognizedFormat(file: String, found: String)
    /// A pre-1.6 PyTorch file (raw pickle or tar); `kind` says which.
    case legacyTorchFormat(file: String, kind: String)
    /// The safetensors header or data layout is invalid.
    case malformedSafeTensors(file: String, offset: Int, expected: String, found: String)
    /// The zip container is invalid (directory, local headers, ZIP64 records, entry ranges).
    case malformedZip(file: String, offset: Int, expected: String, found: String)
    /// A zip entry is compressed or encrypted; PyTorch writes stored entries only.
    case compressedEntry(file: String, entry: String, method: Int)
    /// The pickle stream is invalid (unknown opcode, truncated argument, stack underflow, bad types …).
    case malformedPickle(file: String, offset: Int, expected: String, found: String)
    /// The pickle names a callable that is known to be dangerous (`os.system`, `builtins.eval`, …).
    /// Nothing was called; the file is refused because it was evidently crafted to run code.
    case forbiddenGlobal(file: String, offset: Int, module: String, name: String)
    /// A resource bound was hit (header size, recursion depth, memo size, element count …).
    case limitExceeded(file: String, offset: Int, what: String, limit: Int)
    /// A tensor's dtype, shape, strides or storage range is inconsistent.
    case invalidTensor(file: String, name: String, expected: String, found: String)
    /// The dtype cannot be converted to the requested element type.
    case unsupportedDType(file: String, name: String, dtype: String, expected: String)
    /// The checkpoint's object layout does not match the requested or any known source.
    case unrecognizedLayout(file: String, expected: String, found: String)
    /// Tensors that the forward pass needs are absent (after key mapping).
    case missingTensors(file: String, source: String, names: [String])
    /// A mapped tensor has a shape that contradicts the inferred architecture.
    case shapeMismatch(file: String, name: String, expected: [Int], found: [Int])
    /// Writing a file failed.
    case writeFailed(file: String, reason: String)

    /// The file (or `file:record`) the error concerns.
    public var file: String {
        switch self {
        case let .unreadable(f, _), let .unrecognizedFormat(f, _), let .legacyTorchFormat(f, _),
            let .malformedSafeTensors(f, _, _, _), let .malformedZip(f, _, _, _), let .compressedEntry(f, _, _),
            let .malformedPickle(f, _, _, _), let .forbiddenGlobal(f, _, _, _), let .limitExceeded(f, _, _, _),
            let .invalidTensor(f, _, _, _), let .unsupportedDType(f, _, _, _), let .unrecognizedLayout(f, _, _),
            let .missingTensors(f, _, _), let .shapeMismatch(f, _, _, _), let .writeFailed(f, _):
            return f
        }
    }

    /// The byte offset of the problem, where it has one.
    public var offset: Int? {
        switch self {
        case let .malformedSafeTensors(_, o, _, _), let .malformedZip(_, o, _, _), let .malformedPickle(_, o, _, _),
            let .forbiddenGlobal(_, o, _, _), let .limitExceeded(_, o, _, _):
            return o
        default:
            return nil
        }
    }

    public var description: String {
        switch self {
        case let .unreadable(f, reason):
            return "\(f): cannot read the file: \(reason)"
        case let .unrecognizedFormat(f, found):
            return
                "\(f): expected a safetensors file or a PyTorch zip checkpoint (torch.save since 1.6), found \(found)"
        case let .legacyTorchFormat(f, kind):
            return """
                \(f): this is a legacy PyTorch checkpoint (\(kind), written by torch < 1.6 or with \
                _use_new_zipfile_serialization=False). It is not loaded because reading it needs Python's full \
                unpickler. Re-save it in a trusted environment with `torch.save(torch.load(f), g)` (torch ≥ 1.6 \
                writes the zip format), or convert it to safetensors (`safetensors.torch.save_file(sd, g)`).
                """
        case let .malformedSafeTensors(f, o, expected, found):
            return "\(f): invalid safetensors file at byte \(o): expected \(expected), found \(found)"
        case let .malformedZip(f, o, expected, found):
            return "\(f): invalid zip archive at byte \(o): expected \(expected), found \(found)"
        case let .compressedEntry(f, entry, method):
            return "\(f): zip entry '\(entry)' uses compression method \(method) (or encryption); only stored "
                + "entries are supported, as torch.save writes them. Re-save the file with torch.save or convert "
                + "it to safetensors."
        case let .malformedPickle(f, o, expected, found):
            return "\(f): invalid pickle at byte \(o): expected \(expected), found \(found)"
        case let .forbiddenGlobal(f, o, module, name):
            return "\(f): refused: the pickle at byte \(o) references \(module).\(name), a callable that can run "
                + "code. Nothing was executed. Only load checkpoints from sources you trust, or ask for a safetensors file."
        case let .limitExceeded(f, o, what, limit):
            return "\(f): \(what) exceeds the limit of \(limit) (at byte \(o))"
        case let .invalidTensor(f, name, expected, found):
            return "\(f): tensor '\(name)': expected \(expected), found \(found)"
        case let .unsupportedDType(f, name, dtype, expected):
            return "\(f): tensor '\(name)' has dtype \(dtype); expected \(expected)"
        case let .unrecognizedLayout(f, expected, found):
            return "\(f): expected \(expected), found \(found)"
        case let .missingTensors(f, source, names):
            let shown =
                names.prefix(12).joined(separator: ", ") + (names.count > 12 ? ", … (\(names.count) in all)" : "")
            return "\(f): the \(source) checkpoint lacks tensors the forward pass needs: \(shown)"
        case let .shapeMismatch(f, name, expected, found):
            return "\(f): tensor '\(name)' has shape \(found), expected \(expected)"
        case let .writeFailed(f, reason):
            return "\(f): cannot write: \(reason)"
        }
    }
}
