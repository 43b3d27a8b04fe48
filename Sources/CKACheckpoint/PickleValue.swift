/// A value decoded from a pickle by the restricted unpickler. Only plain data, tensors and storages are
/// built; everything else is an inert `OpaqueObject` that records what the pickle asked for.
package indirect enum PickleValue: Sendable, CustomStringConvertible {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer beyond 64 bits: two's-complement little-endian bytes (as pickle's LONG1/LONG4 store it).
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list([PickleValue])
    case set([PickleValue])
    /// A dict or `collections.OrderedDict`, in insertion order.
    case dict([PickleDictEntry])
    /// A reference to a module attribute (class or function) that was never resolved or called.
    case global(module: String, name: String)
    /// The inert record of a call, class instantiation or object the pickle describes.
    case object(OpaqueObject)
    /// A tensor rebuilt through the allowlist.
    case tensor(StoredTensor)
    /// A storage that was not wrapped in a tensor.
    case storage(TorchStorage)

    /// The value for a string key, if this is a dict holding it.
    public subscript(key: String) -> PickleValue? {
        guard case let .dict(entries) = self else { return nil }
        for e in entries { if case let .string(k) = e.key, k == key { return e.value } }
        return nil
    }

    /// The entries of a dict whose keys are strings (other keys skipped), in order; nil if not a dict.
    public var stringKeyedEntries: [(key: String, value: PickleValue)]? {
        guard case let .dict(entries) = self else { return nil }
        return entries.compactMap { e in
            if case let .string(k) = e.key { return (k, e.value) }
            return nil
        }
    }

    /// The tensor, if this is one.
    public var tensor: StoredTensor? {
        if case let .tensor(t) = self { return t }
        return nil
    }

    /// The integer, if this is a (64-bit) integer or boolean.
    public var intValue: Int? {
        switch self {
        case let .int(i): return i
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }

    /// A short type name (`dict`, `tensor`, `argparse.Namespace`, …).
    public var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .set: return "set"
        case .dict: return "dict"
        case let .global(m, n): return "global \(m).\(n)"
        case let .object(o): return o.qualifiedName
        case .tensor: return "tensor"
        case .storage: return "storage"
        }
    }

    public var description: String { describe(depth: 2) }

    /// A bounded, one-line rendering (nested containers beyond `depth` are elided).
    public func describe(depth: Int = 2) -> String {
        func items(_ xs: [PickleValue]) -> String {
            guard depth > 0 else { return "…\(xs.count)" }
            let shown = xs.prefix(8).map { $0.describe(depth: depth - 1) }
            return shown.joined(separator: ", ") + (xs.count > 8 ? ", … (\(xs.count))" : "")
        }
        switch self {
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return String(i)
        case let .bigInt(b): return "int(\(b.count) bytes)"
        case let .float(d): return String(d)
        case let .string(s): return "'" + (s.count > 80 ? String(s.prefix(80)) + "…" : s) + "'"
        case let .bytes(b): return "b<\(b.count) bytes>"
        case let .tuple(xs): return "(" + items(xs) + (xs.count == 1 ? ",)" : ")")
        case let .list(xs): return "[" + items(xs) + "]"
        case let .set(xs): return "{" + items(xs) + "}"
        case let .dict(es):
            guard depth > 0 else { return "{…\(es.count)}" }
            let shown = es.prefix(8).map { "\($0.key.describe(depth: 0)): \($0.value.describe(depth: depth - 1))" }
            return "{" + shown.joined(separator: ", ") + (es.count > 8 ? ", … (\(es.count))" : "") + "}"
        case let .global(m, n): return "<global \(m).\(n)>"
        case let .object(o): return o.describe(depth: depth)
        case let .tensor(t): return "tensor(\(t.dtype.rawValue), \(t.shape))"
        case let .storage(s): return "storage(\(s.dtype.rawValue), \(s.elementCount))"
        }
    }
}

/// One key/value pair of a pickled dict.
package struct PickleDictEntry: Sendable {
    public var key: PickleValue
    public var value: PickleValue
    public init(key: PickleValue, value: PickleValue) { self.key = key; self.value = value }
}

/// The inert record of something a pickle asked to construct or call outside the allowlist, such as
/// `argparse.Namespace(...)`, `numpy.core.multiarray.scalar(...)` or `torch.device('cuda')`. Nothing was called.
package struct OpaqueObject: Sendable {
    /// How the object was requested.
    public enum Kind: String, Sendable {
        /// `REDUCE`: `callable(*args)`.
        case call
        /// `NEWOBJ`/`NEWOBJ_EX`: `cls.__new__(cls, *args, **kwargs)`.
        case newObject
        /// `INST`/`OBJ` (protocol 0/1 instances).
        case instance
        /// A persistent id the loader could not resolve to a storage.
        case persistent
    }
    public var kind: Kind
    /// The module and name of the callable or class ("" when the callable was itself opaque).
    public var module: String
    public var name: String
    /// Positional arguments.
    public var args: [PickleValue]
    /// Keyword arguments (`NEWOBJ_EX`).
    public var kwargs: [PickleDictEntry]
    /// The state given by `BUILD` (usually the instance `__dict__`), if any.
    public var state: PickleValue?
    /// Items added with `APPEND(S)` and `SETITEM(S)`.
    public var listItems: [PickleValue]
    public var dictItems: [PickleDictEntry]

    /// `module.name`.
    public var qualifiedName: String { module.isEmpty ? name : "\(module).\(name)" }

    /// The `BUILD` state's string-keyed entries (e.g. the fields of an `argparse.Namespace`).
    public var attributes: [(key: String, value: PickleValue)] { state?.stringKeyedEntries ?? [] }

    func describe(depth: Int) -> String {
        var parts: [String] = []
        if !args.isEmpty { parts.append(PickleValue.tuple(args).describe(depth: depth)) }
        if let s = state { parts.append("state=" + s.describe(depth: depth)) }
        return "<\(qualifiedName)" + (parts.isEmpty ? "" : " " + parts.joined(separator: " ")) + ">"
    }
}

/// A PyTorch storage: a typed run of elements in a `data/<key>` record of the archive.
package struct TorchStorage: Sendable {
    /// The record key (`data/<key>`).
    public let key: String
    public let dtype: DType
    /// Elements as declared by the persistent id.
    public let elementCount: Int
    /// The device it was saved from (`cpu`, `cuda:0`, …).
    public let location: String
    let file: MappedFile
    let byteOffset: Int
    let byteCount: Int
}
