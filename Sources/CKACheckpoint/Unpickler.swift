//// Resource bounds of the pickle reader (the safe unpickler of `.pth` files; nothing in a pickle is ever run).
public struct PickleLimits: Sendable {
    /// Items on the stack, including those saved under marks.
    public var maxStackItems = 1_000_000
    /// Open marks.
    public var maxMarks = 10_000
    /// Memo entries.
    public var maxMemoEntries = 2_000_000
    /// Nesting depth of the resulting value.
    public var maxDepth = 100
    /// Nodes visited while building the resulting value (guards against memo-shared blow-up).
    public var maxValueNodes = 4_000_000
    /// Length of a protocol-0 text line (INT, LONG, FLOAT, GLOBAL, …).
    public var maxLineLength = 10_000
    public init() {}
}

/// Options of the pickle reader.
public struct PickleOptions: Sendable {
    public var limits = PickleLimits()
    /// Refuse (rather than keep as opaque) references to callables that can run code, such as `os.system`,
    /// `subprocess.Popen`, `builtins.eval`/`exec`/`getattr`/`__import__` (nothing is called either way).
    public var refuseDangerousGlobals = true
    public init() {}
}

// A restricted unpickler for pickle protocols 0–5 that never imports, resolves or calls anything.
///
/// Plain values (None, bools, ints of any size, floats, str, bytes, tuples, lists, sets, dicts) are built as
/// Python builds them. Globals are only *named*: `GLOBAL`/`STACK_GLOBAL`/`INST` produce `PickleValue.global`,
/// and `REDUCE`/`NEWOBJ`/`OBJ` on a global produce an inert `OpaqueObject`, except for a small allowlist that
/// is interpreted (not called): `collections.OrderedDict`, `builtins.set`/`frozenset`, `_codecs.encode(str,
/// 'latin1')` (how protocol 2 stores bytes), `torch._utils._rebuild_tensor_v2` / `_rebuild_tensor`,
/// `torch._utils._rebuild_parameter` / `_rebuild_parameter_with_state` and `torch._tensor._rebuild_from_type_v2`.
/// `REDUCE`, `NEWOBJ` and `BUILD` on an opaque value give (or update) another opaque value. Persistent ids are handed to `persistentLoad` (for torch: storages).
///
/// Every malformed stream ends in a `CheckpointError` with the byte offset: unknown opcodes, truncated
/// arguments, stack underflow, marks missing, bad memo keys, wrong argument types, and resource limits.
package struct Unpickler {
    package typealias Limits = PickleLimits
    package typealias Options = PickleOptions

    /// Resolves a persistent id (already decoded) found at `offset` to a value.
    package typealias PersistentLoad = (_ pid: PickleValue, _ offset: Int) throws -> PickleValue

    let data: UnsafeRawBufferPointer
    let fileName: String
    let options: Options
    let persistentLoad: PersistentLoad?
    var pos = 0
    var opStart = 0
    var stack: [Node] = []
    var metastack: [[Node]] = []
    var savedItems = 0
    var memo: [Int: Node] = [:]

    /// Decodes the pickle in `bytes` (its first `STOP`).
    /// - Parameters:
    ///   - fileName: used in error messages.
    ///   - persistentLoad: called for `PERSID`/`BINPERSID`; without it persistent ids become opaque values.
    public static func load(
        _ bytes: UnsafeRawBufferPointer, fileName: String = "<pickle>", options: Options = Options(),
        persistentLoad: PersistentLoad? = nil
    ) throws -> PickleValue {
        var u = Unpickler(data: bytes, fileName: fileName, options: options, persistentLoad: persistentLoad)
        // A pickle can make reference cycles between containers (a list appended to itself, a dict that is its
        // own BUILD state); empty every container afterwards so nothing leaks.
        defer { u.releaseContainers() }
        let root = try u.run()
        var budget = options.limits.maxValueNodes
        return try u.convert(root, depth: 0, budget: &budget)
    }

    /// Decodes a pickle held in an array.
    public static func load(
        _ bytes: [UInt8], fileName: String = "<pickle>", options: Options = Options(),
        persistentLoad: PersistentLoad? = nil
    ) throws -> PickleValue {
        try bytes.withUnsafeBytes { try load($0, fileName: fileName, options: options, persistentLoad: persistentLoad) }
    }

    // MARK: - Intermediate object graph (reference semantics, as pickle's memo needs)

    /// Every container made while decoding, so that `releaseContainers` can break cycles.
    final class Arena { var all: [Container] = [] }
    let arena = Arena()

    class Container {
        init(_ arena: Arena) { arena.all.append(self) }
        func clear() {}
    }
    final class ListBox: Container { var items: [Node] = []; override func clear() { items = [] } }
    final class DictBox: Container {
        var items: [(Node, Node)] = []; var state: Node?
        override func clear() { items = []; state = nil }
    }
    final class SetBox: Container { var items: [Node] = []; override func clear() { items = [] } }
    /// A tuple is immutable, but it lives in the arena like the other containers: a chain of 40 000 nested
    /// tuples is then released one box at a time by `releaseContainers`, never by recursion (no stack overflow).
    final class TupleBox: Container {
        private(set) var items: [Node]
        init(_ arena: Arena, _ items: [Node]) { self.items = items; super.init(arena) }
        override func clear() { items = [] }
    }
    final class ObjBox: Container {
        let kind: OpaqueObject.Kind
        let module: String, name: String
        var args: [Node], kwargs: [(Node, Node)] = []
        var state: Node?
        var listItems: [Node] = [], dictItems: [(Node, Node)] = []
        init(_ arena: Arena, kind: OpaqueObject.Kind, module: String, name: String, args: [Node]) {
            self.kind = kind; self.module = module; self.name = name; self.args = args
            super.init(arena)
        }
        override func clear() { args = []; kwargs = []; state = nil; listItems = []; dictItems = [] }
    }

    mutating func releaseContainers() {
        stack = []
        metastack = []
        memo = [:]
        for c in arena.all { c.clear() }
        arena.all = []
    }

    indirect enum Node {
        case value(PickleValue)
        case tuple(TupleBox)
        case list(ListBox)
        case dict(DictBox)
        case set(SetBox)
        case object(ObjBox)

        var typeName: String {
            switch self {
            case let .value(v): return v.typeName
            case .tuple: return "tuple"
            case .list: return "list"
            case .dict: return "dict"
            case .set: return "set"
            case let .object(o): return o.module.isEmpty ? o.name : "\(o.module).\(o.name)"
            }
        }
    }

    // MARK: - Errors

    func fail(_ expected: String, _ found: String, at offset: Int? = nil) -> CheckpointError {
        .malformedPickle(file: fileName, offset: offset ?? opStart, expected: expected, found: found)
    }

    // MARK: - Reading primitives

    mutating func need(_ n: Int, _ what: String) throws {
        guard n >= 0, n <= data.count - pos else {
            throw fail("\(what) (\(n) bytes)", "\(data.count - pos) bytes left (truncated)", at: pos)
        }
    }

    mutating func readByte(_ what: String) throws -> UInt8 {
        try need(1, what)
        defer { pos += 1 }
        return data[pos]
    }

    mutating func readLE(_ n: Int, _ what: String) throws -> UInt64 {
        try need(n, what)
        var v: UInt64 = 0
        for k in 0..<n { v |= UInt64(data[pos + k]) << (8 * UInt64(k)) }
        pos += n
        return v
    }

    mutating func readBytes(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        try need(n, what)
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: data[pos..<(pos + n)])
    }

    /// A length given as an unsigned 64-bit integer, checked against the remaining bytes.
    mutating func readLength(_ width: Int, _ what: String) throws -> Int {
        let n = try readLE(width, "the length of \(what)")
        guard n <= UInt64(data.count - pos) else {
            throw fail("\(what) of \(n) bytes", "\(data.count - pos) bytes left (truncated)", at: pos)
        }
        return Int(n)
    }

    /// A protocol-0 text line without its newline.
    mutating func readLine(_ what: String) throws -> String {
        let start = pos
        var end = pos
        let limit = min(data.count, pos + options.limits.maxLineLength)
        while end < limit, data[end] != 0x0a { end += 1 }
        guard end < data.count, data[end] == 0x0a else {
            if end >= limit && limit < data.count {
                throw CheckpointError.limitExceeded(
                    file: fileName, offset: start, what: "\(what) line length",
                    limit: options.limits.maxLineLength)
            }
            throw fail("\(what) ending in a newline", "end of data", at: start)
        }
        pos = end + 1
        guard let s = String(validating: UnsafeRawBufferPointer(rebasing: data[start..<end]), as: UTF8.self) else {
            throw fail("\(what) in UTF-8", "invalid bytes", at: start)
        }
        return s
    }

    func utf8(_ b: UnsafeRawBufferPointer, _ what: String) throws -> String {
        guard let s = String(validating: b, as: UTF8.self) else {
            throw fail("\(what) in valid UTF-8", "invalid bytes")
        }
        return s
    }

    // MARK: - Stack

    /// A tuple node (in the arena).
    func tuple(_ items: [Node]) -> Node { .tuple(TupleBox(arena, items)) }

    mutating func push(_ n: Node) throws {
        guard stack.count + savedItems < options.limits.maxStackItems else {
            throw CheckpointError.limitExceeded(
                file: fileName, offset: opStart, what: "pickle stack size",
                limit: options.limits.maxStackItems)
        }
        stack.append(n)
    }

    mutating func pop() throws -> Node {
        guard let n = stack.popLast() else { throw fail("a value on the stack", "stack underflow") }
        return n
    }

    func top() throws -> Node {
        guard let n = stack.last else { throw fail("a value on the stack", "stack underflow") }
        return n
    }

    mutating func popMark() throws -> [Node] {
        guard let saved = metastack.popLast() else { throw fail("a MARK before this opcode", "no mark") }
        let items = stack
        savedItems -= saved.count
        stack = saved
        return items
    }

    mutating func popString(_ what: String) throws -> String {
        let n = try pop()
        guard case let .value(.string(s)) = n else { throw fail("\(what) as a str", n.typeName) }
        return s
    }

    // MARK: - Main loop

    mutating func run() throws -> Node {
        while true {
            opStart = pos
            let op = try readByte("an opcode (the pickle ends without STOP)")
            switch op {
            case 0x80:  // PROTO
                let v = try readByte("the protocol number")
                guard v <= 5 else { throw fail("protocol 0–5", "protocol \(v)") }
            case 0x95:  // FRAME
                let n = try readLE(8, "the frame length")
                guard n <= UInt64(data.count - pos) else {
                    throw fail("a frame within the data", "\(n) bytes declared")
                }
            case 0x2e:  // STOP '.'
                return try pop()
            case 0x28:  // MARK '('
                guard metastack.count < options.limits.maxMarks else {
                    throw CheckpointError.limitExceeded(
                        file: fileName, offset: opStart, what: "open pickle marks",
                        limit: options.limits.maxMarks)
                }
                savedItems += stack.count
                metastack.append(stack)
                stack = []
            case 0x30:  // POP '0'
                if stack.isEmpty { _ = try popMark() } else { _ = try pop() }
            case 0x31:  // POP_MARK '1'
                _ = try popMark()
            case 0x32:  // DUP '2'
                try push(try top())

            // Constants and numbers
            case 0x4e: try push(.value(.none))  // NONE 'N'
            case 0x88: try push(.value(.bool(true)))  // NEWTRUE
            case 0x89: try push(.value(.bool(false)))  // NEWFALSE
            case 0x4b:  // BININT1 'K'
                try push(.value(.int(Int(try readByte("a BININT1 argument")))))
            case 0x4d:  // BININT2 'M'
                try push(.value(.int(Int(try readLE(2, "a BININT2 argument")))))
            case 0x4a:  // BININT 'J'
                try push(.value(.int(Int(Int32(truncatingIfNeeded: try readLE(4, "a BININT argument"))))))
            case 0x8a:  // LONG1
                let n = Int(try readByte("the LONG1 length"))
                try push(.value(longValue(try readBytes(n, "LONG1 digits"))))
            case 0x8b:  // LONG4
                let n64 = try readLE(4, "the LONG4 length")
                guard n64 <= UInt64(Int32.max) else {
                    throw fail("a non-negative LONG4 length", "\(Int32(truncatingIfNeeded: n64))")
                }
                try push(.value(longValue(try readBytes(Int(n64), "LONG4 digits"))))
            case 0x49:  // INT 'I'
                let line = try readLine("an INT")
                if line == "01" {
                    try push(.value(.bool(true)))
                } else if line == "00" {
                    try push(.value(.bool(false)))
                } else {
                    try push(.value(try parseDecimal(line, "an INT")))
                }
            case 0x4c:  // LONG 'L'
                var line = try readLine("a LONG")
                if line.hasSuffix("L") { line.removeLast() }
                try push(.value(try parseDecimal(line, "a LONG")))
            case 0x46:  // FLOAT 'F'
                let line = try readLine("a FLOAT")
                guard let d = Double(line.trimmingWhitespace) else {
                    throw fail("a decimal float", "'\(line.prefix(40))'")
                }
                try push(.value(.float(d)))
            case 0x47:  // BINFLOAT 'G' (big-endian)
                let b = try readBytes(8, "a BINFLOAT argument")
                var bits: UInt64 = 0
                for x in b { bits = bits << 8 | UInt64(x) }
                try push(.value(.float(Double(bitPattern: bits))))

            // Strings and bytes
            case 0x58:  // BINUNICODE 'X'
                let n = try readLength(4, "a BINUNICODE string")
                try push(.value(.string(try utf8(try readBytes(n, "BINUNICODE data"), "BINUNICODE"))))
            case 0x8c:  // SHORT_BINUNICODE
                let n = Int(try readByte("the SHORT_BINUNICODE length"))
                try push(.value(.string(try utf8(try readBytes(n, "SHORT_BINUNICODE data"), "SHORT_BINUNICODE"))))
            case 0x8d:  // BINUNICODE8
                let n = try readLength(8, "a BINUNICODE8 string")
                try push(.value(.string(try utf8(try readBytes(n, "BINUNICODE8 data"), "BINUNICODE8"))))
            case 0x56:  // UNICODE 'V' (raw-unicode-escape; we accept plain UTF-8 without backslash escapes)
                let line = try readLine("a UNICODE string")
                try push(.value(.string(line)))
            case 0x54:  // BINSTRING 'T' (signed 4-byte length)
                let n64 = try readLE(4, "the BINSTRING length")
                guard n64 <= UInt64(Int32.max), Int(n64) <= data.count - pos else {
                    throw fail("a BINSTRING within the data", "length \(Int32(truncatingIfNeeded: n64))")
                }
                try push(.value(try legacyString(try readBytes(Int(n64), "BINSTRING data"))))
            case 0x55:  // SHORT_BINSTRING 'U'
                let n = Int(try readByte("the SHORT_BINSTRING length"))
                try push(.value(try legacyString(try readBytes(n, "SHORT_BINSTRING data"))))
            case 0x53:  // STRING 'S' (quoted repr)
                let line = try readLine("a STRING")
                guard line.count >= 2, let q = line.first, q == "'" || q == "\"", line.last == q else {
                    throw fail("a quoted STRING", "'\(line.prefix(40))'")
                }
                try push(.value(.string(String(line.dropFirst().dropLast()))))
            case 0x42:  // BINBYTES 'B'
                let n = try readLength(4, "BINBYTES")
                try push(.value(.bytes(Array(try readBytes(n, "BINBYTES data")))))
            case 0x43:  // SHORT_BINBYTES 'C'
                let n = Int(try readByte("the SHORT_BINBYTES length"))
                try push(.value(.bytes(Array(try readBytes(n, "SHORT_BINBYTES data")))))
            case 0x8e, 0x96:  // BINBYTES8, BYTEARRAY8
                let n = try readLength(8, op == 0x8e ? "BINBYTES8" : "BYTEARRAY8")
                try push(.value(.bytes(Array(try readBytes(n, "bytes data")))))
            case 0x97:  // NEXT_BUFFER
                throw fail("in-band data", "NEXT_BUFFER (out-of-band buffers are not supported)")
            case 0x98:  // READONLY_BUFFER: a no-op on the top value
                _ = try top()

            // Containers
            case 0x29: try push(tuple([]))  // EMPTY_TUPLE ')'
            case 0x5d: try push(.list(ListBox(arena)))  // EMPTY_LIST ']'
            case 0x7d: try push(.dict(DictBox(arena)))  // EMPTY_DICT '}'
            case 0x8f: try push(.set(SetBox(arena)))  // EMPTY_SET
            case 0x85:  // TUPLE1
                let a = try pop(); try push(tuple([a]))
            case 0x86:  // TUPLE2
                let b = try pop(), a = try pop(); try push(tuple([a, b]))
            case 0x87:  // TUPLE3
                let c = try pop(), b = try pop(), a = try pop(); try push(tuple([a, b, c]))
            case 0x74:  // TUPLE 't'
                try push(tuple(try popMark()))
            case 0x6c:  // LIST 'l'
                let box = ListBox(arena); box.items = try popMark(); try push(.list(box))
            case 0x64:  // DICT 'd'
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("key/value pairs after the mark", "\(items.count) items") }
                let box = DictBox(arena)
                for k in stride(from: 0, to: items.count, by: 2) { box.items.append((items[k], items[k + 1])) }
                try push(.dict(box))
            case 0x91:  // FROZENSET
                let box = SetBox(arena); box.items = try popMark(); try push(.set(box))
            case 0x61:  // APPEND 'a'
                let v = try pop()
                try append([v], to: try top())
            case 0x65:  // APPENDS 'e'
                let items = try popMark()
                try append(items, to: try top())
            case 0x73:  // SETITEM 's'
                let v = try pop(), k = try pop()
                try setItems([(k, v)], on: try top())
            case 0x75:  // SETITEMS 'u'
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("key/value pairs after the mark", "\(items.count) items") }
                var pairs: [(Node, Node)] = []
                pairs.reserveCapacity(items.count / 2)
                for k in stride(from: 0, to: items.count, by: 2) { pairs.append((items[k], items[k + 1])) }
                try setItems(pairs, on: try top())
            case 0x90:  // ADDITEMS
                let items = try popMark()
                guard case let .set(box) = try top() else { throw fail("a set below the mark", try top().typeName) }
                box.items.append(contentsOf: items)

            // Memo
            case 0x70:  // PUT 'p'
                let line = try readLine("a PUT index")
                guard let i = Int(line), i >= 0 else { throw fail("a memo index", "'\(line.prefix(40))'") }
                try memoPut(i)
            case 0x71:  // BINPUT 'q'
                try memoPut(Int(try readByte("a BINPUT index")))
            case 0x72:  // LONG_BINPUT 'r'
                try memoPut(Int(try readLE(4, "a LONG_BINPUT index")))
            case 0x94:  // MEMOIZE
                try memoPut(memo.count)
            case 0x67:  // GET 'g'
                let line = try readLine("a GET index")
                guard let i = Int(line) else { throw fail("a memo index", "'\(line.prefix(40))'") }
                try memoGet(i)
            case 0x68:  // BINGET 'h'
                try memoGet(Int(try readByte("a BINGET index")))
            case 0x6a:  // LONG_BINGET 'j'
                try memoGet(Int(try readLE(4, "a LONG_BINGET index")))

            // Globals and objects (never resolved, never called)
            case 0x63:  // GLOBAL 'c'
                let module = try readLine("a GLOBAL module"), name = try readLine("a GLOBAL name")
                try push(try global(module, name))
            case 0x93:  // STACK_GLOBAL
                let name = try popString("the STACK_GLOBAL name"), module = try popString("the STACK_GLOBAL module")
                try push(try global(module, name))
            case 0x52:  // REDUCE 'R'
                let args = try pop(), callable = try pop()
                guard case let .tuple(t) = args else { throw fail("an argument tuple for REDUCE", args.typeName) }
                try push(try call(callable, t.items))
            case 0x81:  // NEWOBJ
                let args = try pop(), cls = try pop()
                guard case let .tuple(t) = args else { throw fail("an argument tuple for NEWOBJ", args.typeName) }
                try push(newObject(cls, t.items, kwargs: []))
            case 0x92:  // NEWOBJ_EX
                let kwargs = try pop(), args = try pop(), cls = try pop()
                guard case let .tuple(t) = args else { throw fail("an argument tuple for NEWOBJ_EX", args.typeName) }
                guard case let .dict(kw) = kwargs else { throw fail("a kwargs dict for NEWOBJ_EX", kwargs.typeName) }
                try push(newObject(cls, t.items, kwargs: kw.items))
            case 0x69:  // INST 'i'
                let module = try readLine("an INST module"), name = try readLine("an INST name")
                let args = try popMark()
                let cls = try global(module, name)
                try push(newObject(cls, args, kwargs: [], kind: .instance))
            case 0x6f:  // OBJ 'o'
                var items = try popMark()
                guard !items.isEmpty else { throw fail("a class after the mark", "nothing") }
                let cls = items.removeFirst()
                try push(newObject(cls, items, kwargs: [], kind: .instance))
            case 0x62:  // BUILD 'b'
                let state = try pop()
                try build(try top(), state: state)
            case 0x82, 0x83, 0x84:  // EXT1, EXT2, EXT4
                throw fail("no copyreg extension codes", "EXT\(op == 0x82 ? 1 : op == 0x83 ? 2 : 4)")

            // Persistent ids
            case 0x51:  // BINPERSID 'Q'
                let pid = try pop()
                var budget = 10_000
                let v = try convert(pid, depth: 0, budget: &budget)
                try push(.value(try resolvePersistent(v)))
            case 0x50:  // PERSID 'P'
                let line = try readLine("a PERSID")
                try push(.value(try resolvePersistent(.string(line))))

            default:
                throw fail("a pickle opcode", "byte 0x\(String(op, radix: 16))")
            }
        }
    }

    // MARK: - Opcode helpers

    func longValue(_ b: UnsafeRawBufferPointer) -> PickleValue {
        if b.isEmpty { return .int(0) }
        if b.count <= 8 {
            var v: UInt64 = 0
            for (k, x) in b.enumerated() { v |= UInt64(x) << (8 * UInt64(k)) }
            let shift = UInt64(64 - 8 * b.count)
            // Sign-extend from the top byte.
            let signed = shift == 0 ? Int64(bitPattern: v) : Int64(bitPattern: v << shift) >> Int64(shift)
            return .int(Int(signed))
        }
        return .bigInt(Array(b))
    }

    func parseDecimal(_ s: String, _ what: String) throws -> PickleValue {
        let t = s.trimmingWhitespace
        if let v = Int(t) { return .int(v) }
        let digits = t.hasPrefix("-") || t.hasPrefix("+") ? t.dropFirst() : Substring(t)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw fail(what + " in decimal", "'\(s.prefix(40))'")
        }
        // Too large for 64 bits: keep the text's bytes (never needed for tensors).
        return .bigInt(Array(t.utf8))
    }

    func legacyString(_ b: UnsafeRawBufferPointer) throws -> PickleValue {
        if let s = String(validating: b, as: UTF8.self) { return .string(s) }
        return .bytes(Array(b))
    }

    mutating func memoPut(_ i: Int) throws {
        guard memo.count < options.limits.maxMemoEntries || memo[i] != nil else {
            throw CheckpointError.limitExceeded(
                file: fileName, offset: opStart, what: "pickle memo entries",
                limit: options.limits.maxMemoEntries)
        }
        memo[i] = try top()
    }

    mutating func memoGet(_ i: Int) throws {
        guard let n = memo[i] else { throw fail("a memo entry \(i) stored earlier", "no such entry") }
        try push(n)
    }

    func append(_ items: [Node], to target: Node) throws {
        switch target {
        case let .list(box): box.items.append(contentsOf: items)
        case let .object(o): o.listItems.append(contentsOf: items)
        case let .set(box): box.items.append(contentsOf: items)
        default: throw fail("a list below APPEND(S)", target.typeName)
        }
    }

    func setItems(_ pairs: [(Node, Node)], on target: Node) throws {
        switch target {
        case let .dict(box): box.items.append(contentsOf: pairs)
        case let .object(o): o.dictItems.append(contentsOf: pairs)
        default: throw fail("a dict below SETITEM(S)", target.typeName)
        }
    }

    func build(_ target: Node, state: Node) throws {
        switch target {
        case let .object(o): o.state = state
        case let .dict(box): box.state = state  // e.g. OrderedDict's `_metadata` attribute
        case .value(.tensor), .value(.object): break  // tensor subclass state: ignored
        case .list, .set: break  // subclass attributes: ignored
        default: throw fail("an object below BUILD", target.typeName)
        }
    }

    // MARK: - Globals and the allowlist

    /// Modules whose callables can run code or touch the system; referencing them refuses the file.
    static let dangerousModules: Set<String> = [
        "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "_posixsubprocess", "sys", "shutil", "socket", "pty",
        "importlib", "runpy", "pickle", "_pickle", "cPickle", "marshal", "ctypes", "code", "codeop", "commands",
        "webbrowser", "multiprocessing", "signal", "pdb", "bdb", "timeit", "asyncio", "io", "_io", "pathlib",
        "tempfile", "glob", "platform", "popen2", "spawn", "pip", "setuptools", "shelve", "dbm", "sqlite3",
        "urllib", "http", "ftplib", "smtplib", "telnetlib", "xmlrpc", "zipimport", "pkgutil", "site", "_thread",
        "threading", "gc", "inspect", "types", "copyreg", "copy_reg", "pydoc", "cProfile", "profile", "trace",
    ]
    /// Harmless names in `builtins` (the rest, like eval/exec/getattr/open/__import__, are refused).
    static let harmlessBuiltins: Set<String> = [
        "set", "frozenset", "bytearray", "bytes", "slice", "complex", "range", "int", "float", "str", "list",
        "dict", "tuple", "bool", "object", "NotImplemented", "Ellipsis",
    ]

    static func isDangerous(module: String, name: String) -> Bool {
        let root = module.split(separator: ".", maxSplits: 1).first.map(String.init) ?? module
        if dangerousModules.contains(root) { return true }
        if root == "builtins" || root == "__builtin__" || root == "__builtins__" {
            return !harmlessBuiltins.contains(name)
        }
        if root == "operator" { return name == "attrgetter" || name == "methodcaller" }
        if root == "torch" && (name == "load" || name.hasPrefix("_load") || module.hasPrefix("torch.hub")) {
            return true
        }
        if root == "numpy" && (name == "load" || name == "loadtxt" || name == "fromfile") { return true }
        if root == "torch" && module.contains("._ops") { return true }
        return false
    }

    func global(_ module: String, _ name: String) throws -> Node {
        if options.refuseDangerousGlobals && Unpickler.isDangerous(module: module, name: name) {
            throw CheckpointError.forbiddenGlobal(file: fileName, offset: opStart, module: module, name: name)
        }
        return .value(.global(module: module, name: name))
    }

    /// `REDUCE`: interprets allowlisted callables, records everything else as an opaque call.
    func call(_ callable: Node, _ args: [Node], depth: Int = 0) throws -> Node {
        guard case let .value(.global(module, name)) = callable else {
            // Calling something that is itself opaque (or a non-callable): still inert.
            return .object(ObjBox(arena, kind: .call, module: "", name: "<call of \(callable.typeName)>", args: args))
        }
        switch (module, name) {
        case ("collections", "OrderedDict"), ("builtins", "dict"), ("__builtin__", "dict"):
            let box = DictBox(arena)
            if args.isEmpty { return .dict(box) }
            if args.count == 1, let pairs = pairList(args[0]) { box.items = pairs; return .dict(box) }
        case ("builtins", "set"), ("__builtin__", "set"), ("builtins", "frozenset"), ("__builtin__", "frozenset"):
            let box = SetBox(arena)
            if args.isEmpty { return .set(box) }
            if args.count == 1 {
                switch args[0] {
                case let .list(l): box.items = l.items; return .set(box)
                case let .tuple(t): box.items = t.items; return .set(box)
                default: break
                }
            }
        case ("_codecs", "encode"):
            // Protocol 2 stores bytes as _codecs.encode(str, 'latin1'): a pure function, interpreted here.
            if args.count == 2, case let .value(.string(text)) = args[0], case let .value(.string(enc)) = args[1],
                ["latin1", "latin-1", "iso-8859-1", "iso8859-1"].contains(enc.lowercased())
            {
                var out: [UInt8] = []
                out.reserveCapacity(text.unicodeScalars.count)
                var ok = true
                for u in text.unicodeScalars {
                    guard u.value < 256 else { ok = false; break }
                    out.append(UInt8(u.value))
                }
                if ok { return .value(.bytes(out)) }
            }
        case ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"):
            return try rebuildTensor(args, function: name)
        case ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"):
            guard let first = args.first else { throw fail("(data, requires_grad, hooks) for \(name)", "no arguments") }
            if case .value(.tensor) = first { return first }
        case ("torch._tensor", "_rebuild_from_type_v2"), ("torch._utils", "_rebuild_from_type_v2"):
            // (func, new_type, args, state): interpret func if it is itself allowlisted.
            // Bounded: a pickle can nest _rebuild_from_type_v2 in its own arguments arbitrarily deep.
            if args.count >= 3, case let .tuple(inner) = args[2], depth < 8 {
                let r = try call(args[0], inner.items, depth: depth + 1)
                if case .value(.tensor) = r { return r }
            }
        default:
            break
        }
        return .object(ObjBox(arena, kind: .call, module: module, name: name, args: args))
    }

    func newObject(_ cls: Node, _ args: [Node], kwargs: [(Node, Node)], kind: OpaqueObject.Kind = .newObject) -> Node {
        if case let .value(.global(module, name)) = cls {
            if (module == "collections" && name == "OrderedDict")
                || ((module == "builtins" || module == "__builtin__") && name == "dict")
            {
                return .dict(DictBox(arena))
            }
            let o = ObjBox(arena, kind: kind, module: module, name: name, args: args)
            o.kwargs = kwargs
            return .object(o)
        }
        let o = ObjBox(arena, kind: kind, module: "", name: "<instance of \(cls.typeName)>", args: args)
        o.kwargs = kwargs
        return .object(o)
    }

    func pairList(_ n: Node) -> [(Node, Node)]? {
        let items: [Node]
        switch n {
        case let .list(box): items = box.items
        case let .tuple(t): items = t.items
        default: return nil
        }
        var out: [(Node, Node)] = []
        for it in items {
            switch it {
            case let .tuple(kv) where kv.items.count == 2: out.append((kv.items[0], kv.items[1]))
            case let .list(box) where box.items.count == 2: out.append((box.items[0], box.items[1]))
            default: return nil
            }
        }
        return out
    }

    func intArg(_ n: Node, _ what: String) throws -> Int {
        guard case let .value(v) = n, let i = v.intValue else { throw fail("\(what) as an int", n.typeName) }
        return i
    }

    func intTuple(_ n: Node, _ what: String) throws -> [Int] {
        var n = n
        // torch.Size((…)), unwrapped in a loop: a pickle can nest Size(Size(…)) arbitrarily deep.
        while case let .object(o) = n, o.name == "Size", o.args.count == 1 { n = o.args[0] }
        let items: [Node]
        switch n {
        case let .tuple(t): items = t.items
        case let .list(box): items = box.items
        default: throw fail("\(what) as a tuple of ints", n.typeName)
        }
        return try items.map { try intArg($0, what) }
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`
    /// and `_rebuild_tensor(storage, storage_offset, size, stride)`.
    func rebuildTensor(_ args: [Node], function: String) throws -> Node {
        guard args.count >= 4 else {
            throw fail("(storage, storage_offset, size, stride, …) for \(function)", "\(args.count) arguments")
        }
        guard case let .value(.storage(s)) = args[0] else {
            // A storage we could not resolve (unknown type): the tensor stays opaque.
            return .object(ObjBox(arena, kind: .call, module: "torch._utils", name: function, args: args))
        }
        let offset = try intArg(args[1], "the storage offset")
        let size = try intTuple(args[2], "the tensor size")
        let stride = try intTuple(args[3], "the tensor stride")
        let t = try StoredTensor(
            name: "tensor in storage \(s.key) (pickle byte \(opStart))", dtype: s.dtype, shape: size,
            strides: stride, storageOffset: offset, file: s.file,
            storageByteOffset: s.byteOffset, storageByteCount: s.elementCount * s.dtype.byteSize,
            storageID: s.key)
        return .value(.tensor(t))
    }

    mutating func resolvePersistent(_ pid: PickleValue) throws -> PickleValue {
        guard let load = persistentLoad else {
            return .object(
                OpaqueObject(
                    kind: .persistent, module: "", name: "persistent_id", args: [pid], kwargs: [],
                    state: nil, listItems: [], dictItems: []))
        }
        return try load(pid, opStart)
    }

    // MARK: - Conversion to values

    func convert(_ n: Node, depth: Int, budget: inout Int) throws -> PickleValue {
        guard depth <= options.limits.maxDepth else {
            throw CheckpointError.limitExceeded(
                file: fileName, offset: opStart, what: "nesting depth of the pickled value (or a cycle)",
                limit: options.limits.maxDepth)
        }
        budget -= 1
        guard budget >= 0 else {
            throw CheckpointError.limitExceeded(
                file: fileName, offset: opStart, what: "number of values in the pickled object graph",
                limit: options.limits.maxValueNodes)
        }
        func all(_ xs: [Node], _ budget: inout Int) throws -> [PickleValue] {
            var out: [PickleValue] = []
            out.reserveCapacity(xs.count)
            for x in xs { out.append(try convert(x, depth: depth + 1, budget: &budget)) }
            return out
        }
        func pairs(_ xs: [(Node, Node)], _ budget: inout Int) throws -> [PickleDictEntry] {
            var out: [PickleDictEntry] = []
            out.reserveCapacity(xs.count)
            for (k, v) in xs {
                out.append(
                    PickleDictEntry(
                        key: try convert(k, depth: depth + 1, budget: &budget),
                        value: try convert(v, depth: depth + 1, budget: &budget)))
            }
            return out
        }
        switch n {
        case let .value(v): return v
        case let .tuple(t): return .tuple(try all(t.items, &budget))
        case let .list(box): return .list(try all(box.items, &budget))
        case let .set(box): return .set(try all(box.items, &budget))
        case let .dict(box): return .dict(try pairs(box.items, &budget))
        case let .object(o):
            var obj = OpaqueObject(
                kind: o.kind, module: o.module, name: o.name, args: try all(o.args, &budget),
                kwargs: try pairs(o.kwargs, &budget), state: nil, listItems: try all(o.listItems, &budget),
                dictItems: try pairs(o.dictItems, &budget))
            if let s = o.state { obj.state = try convert(s, depth: depth + 1, budget: &budget) }
            return .object(obj)
        }
    }
}

extension String {
    var trimmingWhitespace: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
