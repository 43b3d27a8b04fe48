@testable import CKACheckpoint
import Foundation
import Testing
import _CKATestSupport

@Suite("zip directory")
struct ZipTests {
    @Test("reads torch's archives: ZIP64 end records, 64-byte aligned storages, CRC of data.pkl")
    func torchArchive() throws {
        let zip = try ZipArchive(file: MappedFile(url: Fixtures.url("dino_backbone.pth")))
        #expect(zip.entries.contains { $0.name == "dino_backbone/data.pkl" })
        let storages = zip.entries.filter { $0.name.contains("/data/") }
        #expect(storages.count == 30)  // 6 + 12 per block
        #expect(storages.allSatisfy { $0.isStored && $0.dataOffset % 64 == 0 })
        for e in zip.entries { try zip.verifyCRC(of: e) }
    }

    @Test("hand-made plain and ZIP64 archives give the same entries")
    func zip64() throws {
        let entries: [(String, [UInt8])] = [("a/x", [1, 2, 3]), ("a/y", Array(repeating: 7, count: 100))]
        for z64 in [false, true] {
            let zip = try ZipArchive(file: MappedFile(bytes: makeZip(entries, zip64: z64)))
            #expect(zip.entries.map(\.name) == ["a/x", "a/y"])
            #expect(try zip.read(zip.entry("a/y")!) == Array(repeating: 7, count: 100))
        }
    }

    @Test("compressed entries are listed but refused when read, with a clear error")
    func compressed() throws {
        let bytes = makeZip([("archive/data.pkl", [0x80, 2, 0x4e, 0x2e])], method: 8)
        let zip = try ZipArchive(file: MappedFile(bytes: bytes, name: "c.pth"))
        #expect(zip.entries.first?.method == 8)
        let err = expectCheckpointError { try zip.read(zip.entries[0]) }
        #expect(err == .compressedEntry(file: "c.pth", entry: "archive/data.pkl", method: 8))
        #expect(err?.description.contains("only stored entries") == true)
        expectCheckpointError { try TorchArchive(file: MappedFile(bytes: bytes, name: "c.pth")) }
    }

    @Test(
        "malformed archives",
        arguments: [
            "empty", "wrong magic", "no end record", "directory outside file", "bad central signature",
            "local header outside",
            "entry past end", "duplicate names", "overlapping entries", "bad CRC", "huge ZIP64 count",
            "zip64 record outside",
            "no data.pkl", "two data.pkl",
        ])
    func malformed(_ label: String) throws {
        var b = makeTorchZip(pickle: [0x80, 2, 0x4e, 0x2e])
        let eocd = b.count - 22
        func put32(_ at: Int, _ v: Int) { for k in 0..<4 { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
        let cd = Int(b[eocd + 16]) | Int(b[eocd + 17]) << 8 | Int(b[eocd + 18]) << 16
        switch label {
        case "empty": b = []
        case "wrong magic": b[0] = 0x51
        case "no end record": b[eocd] = 0
        case "directory outside file": put32(eocd + 16, 1 << 30)
        case "bad central signature": b[cd] = 0
        case "local header outside": put32(cd + 42, 1 << 30)
        case "entry past end": put32(cd + 20, 1 << 20); put32(cd + 24, 1 << 20)
        case "duplicate names": b = makeZip([("archive/data.pkl", [0x4e, 0x2e]), ("archive/data.pkl", [0x4e, 0x2e])])
        case "overlapping entries": put32(cd + 46 + 16 + 42, 0)  // 2nd entry's local header = the 1st's
        case "bad CRC": put32(cd + 16, 12345)
        case "huge ZIP64 count":
            b = makeZip([("archive/data.pkl", [0x4e, 0x2e])], zip64: true)
            let rec = b.count - 22 - 20 - 56
            for k in 0..<8 { b[rec + 32 + k] = 0xff }
        case "zip64 record outside":
            b = makeZip([("archive/data.pkl", [0x4e, 0x2e])], zip64: true)
            let loc = b.count - 22 - 20
            for k in 0..<8 { b[loc + 8 + k] = 0x7f }
        case "no data.pkl": b = makeZip([("archive/other.pkl", [0x4e, 0x2e])])
        case "two data.pkl": b = makeZip([("a/data.pkl", [0x4e, 0x2e]), ("b/data.pkl", [0x4e, 0x2e])])
        default: Issue.record("unknown case")
        }
        let err = expectCheckpointError(label) { try Checkpoint(file: MappedFile(bytes: b, name: "z.pth")) }
        #expect(err?.file.hasPrefix("z.pth") == true, "\(label): \(String(describing: err))")
    }
}

@Suite("restricted unpickler")
struct UnpicklerTests {
    func load(_ text: String) throws -> PickleValue { try Unpickler.load(Array(text.utf8)) }

    @Test("plain values across protocols")
    func plain() throws {
        // Protocol 0 text.
        #expect(try load("(lp0\nI1\naF2.5\naS'x'\naNaI01\na.").description == "[1, 2.5, 'x', None, True]")
        #expect(
            try load("(dp0\nVk\np1\nL12345678901234567890123L\ns.")["k"].map {
                if case .bigInt = $0 { true } else { false }
            } == true)
        // Protocol 2 binary: LONG1 negative, BININT, BINFLOAT, TUPLE3, memo.
        let p2: [UInt8] = [
            0x80, 2, 0x8a, 2, 0x00, 0x80, 0x4a, 0xff, 0xff, 0xff, 0xff,
            0x47, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x87, 0x71, 0, 0x68, 0, 0x86, 0x2e,
        ]
        let v = try Unpickler.load(p2)
        #expect(v.description == "((-32768, -1, 1.5), (-32768, -1, 1.5))")
        // Protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, EMPTY_SET + ADDITEMS, BINBYTES8, STACK_GLOBAL of OrderedDict.
        var p4: [UInt8] = [0x80, 4, 0x95, 40, 0, 0, 0, 0, 0, 0, 0]
        p4 +=
            [0x8c, 11] + Array("collections".utf8) + [0x94, 0x8c, 11] + Array("OrderedDict".utf8) + [0x94, 0x93, 0x94]
        p4 += [0x29, 0x52, 0x94]  // OrderedDict()
        p4 += [0x8c, 1, 0x73, 0x8f, 0x28, 0x4b, 5, 0x90, 0x73]  // ['s'] = {5}
        p4 += [0x8c, 1, 0x62, 0x8e, 2, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xbb, 0x73, 0x2e]  // ['b'] = b'\xaa\xbb'
        let d = try Unpickler.load(p4)
        #expect(d["s"]?.description == "{5}")
        if case let .bytes(b)? = d["b"] { #expect(b == [0xaa, 0xbb]) } else { Issue.record("bytes: \(d)") }
    }

    @Test(
        "malformed streams end in typed errors with offsets",
        arguments: [
            ("empty", [], "an opcode"),
            ("no STOP", [0x80, 2, 0x4e], "an opcode"),
            ("stack underflow", [0x80, 2, 0x2e], "stack underflow"),
            ("tuple underflow", [0x80, 2, 0x4e, 0x86, 0x2e], "stack underflow"),
            ("unknown opcode", [0x80, 2, 0xff, 0x2e], "0xff"),
            ("bad protocol", [0x80, 9, 0x4e, 0x2e], "protocol"),
            ("missing mark", [0x80, 2, 0x4e, 0x74, 0x2e], "MARK"),
            ("bad memo", [0x80, 2, 0x68, 5, 0x2e], "memo"),
            ("truncated unicode", [0x80, 2, 0x58, 0xff, 0xff, 0, 0, 0x61], "truncated"),
            ("truncated BININT", [0x80, 2, 0x4a, 1], "truncated"),
            ("huge BINBYTES8", [0x80, 4, 0x8e, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x2e], "truncated"),
            ("setitem on int", [0x80, 2, 0x4b, 1, 0x4b, 2, 0x4b, 3, 0x73, 0x2e], "a dict below SETITEM"),
            ("append on None", [0x80, 2, 0x4e, 0x4b, 1, 0x61, 0x2e], "a list below APPEND"),
            ("odd SETITEMS", [0x80, 2, 0x7d, 0x28, 0x4b, 1, 0x75, 0x2e], "key/value pairs"),
            ("REDUCE args not tuple", [0x80, 2, 0x4e, 0x4e, 0x52, 0x2e], "argument tuple"),
            ("STACK_GLOBAL non-string", [0x80, 4, 0x4b, 1, 0x4b, 2, 0x93, 0x2e], "as a str"),
            ("EXT1", [0x80, 2, 0x82, 1, 0x2e], "extension"),
            ("NEXT_BUFFER", [0x80, 5, 0x97, 0x2e], "out-of-band"),
            ("invalid UTF-8", [0x80, 2, 0x8c, 1, 0xff, 0x2e], "UTF-8"),
            ("bad INT", Array("Iabc\n.".utf8), "decimal"),
            ("unterminated line", Array("Vabc".utf8), "newline"),
            ("BUILD on int", [0x80, 2, 0x4b, 1, 0x4e, 0x62, 0x2e], "object below BUILD"),
        ] as [(String, [UInt8], String)])
    func malformed(_ label: String, _ bytes: [UInt8], _ message: String) throws {
        let err = expectCheckpointError(label) { try Unpickler.load(bytes, fileName: "p.pkl") }
        guard case let .malformedPickle(file, offset, _, _)? = err else {
            Issue.record("\(label): \(String(describing: err))"); return
        }
        #expect(file == "p.pkl" && offset >= 0 && offset <= bytes.count)
        #expect(err!.description.contains(message), "\(label): \(err!.description)")
    }

    @Test("resource limits: nesting, shared-subtree blow-up, stack size, memo size, cycles")
    func limits() throws {
        // 10 000 nested lists.
        let deep =
            [0x80, 2] + [UInt8](repeating: 0x5d, count: 10_000) + [UInt8](repeating: 0x61, count: 9_999) + [0x2e]
        #expect(
            expectCheckpointError { try Unpickler.load(deep) }.map {
                if case .limitExceeded = $0 { true } else { false }
            } == true)
        // x = [x, x] sixty times via the memo: 2^60 nodes if expanded.
        var dag: [UInt8] = [0x80, 2, 0x4e, 0x71, 0]
        for _ in 0..<60 { dag += [0x68, 0, 0x68, 0, 0x86, 0x71, 0] }
        dag.append(0x2e)
        let e = expectCheckpointError { try Unpickler.load(dag) }
        #expect(e?.description.contains("number of values") == true)
        // A list that contains itself.
        let cycle: [UInt8] = [0x80, 2, 0x5d, 0x71, 0, 0x68, 0, 0x61, 0x2e]
        #expect(
            expectCheckpointError { try Unpickler.load(cycle) }.map {
                if case .limitExceeded = $0 { true } else { false }
            } == true)
        // Stack and memo bounds.
        var options = Unpickler.Options()
        options.limits.maxStackItems = 100
        options.limits.maxMemoEntries = 10
        let pushes = [0x80, 2] + [UInt8](repeating: 0x4e, count: 200) + [0x2e]
        #expect(
            expectCheckpointError { try Unpickler.load(pushes, options: options) }?.description.contains("stack")
                == true)
        let memo: [UInt8] = [0x80, 2, 0x4e] + (0..<20).flatMap { [UInt8(0x71), UInt8($0)] } + [0x2e]
        #expect(
            expectCheckpointError { try Unpickler.load(memo, options: options) }?.description.contains("memo") == true)
        // A long text line.
        options.limits.maxLineLength = 16
        let line = Array(("I" + String(repeating: "1", count: 100) + "\n.").utf8)
        #expect(
            expectCheckpointError { try Unpickler.load(line, options: options) }.map {
                if case .limitExceeded = $0 { true } else { false }
            } == true)
    }

    @Test("tensors: bad layouts and unknown storages in hand-made archives")
    func tensorArguments() throws {
        // {'t': _rebuild_tensor_v2(pid('storage', FloatStorage, '0', 'cpu', 4), offset, size, stride, False, OrderedDict())}
        func pickle(numel: Int, offset: Int, size: [Int], stride: [Int], storageType: String = "FloatStorage")
            -> [UInt8]
        {
            var p: [UInt8] = [0x80, 2, 0x7d, 0x8c, 1, 0x74]
            p += Array("ctorch._utils\n_rebuild_tensor_v2\n".utf8)
            p += [0x28, 0x28, 0x8c, 7] + Array("storage".utf8) + Array("ctorch\n\(storageType)\n".utf8)
            p += [0x8c, 1, 0x30, 0x8c, 3] + Array("cpu".utf8) + [0x4a] + le32(numel) + [0x74, 0x51]
            p += [0x4a] + le32(offset)
            p += [0x28] + size.flatMap { [0x4a] + le32($0) } + [0x74]
            p += [0x28] + stride.flatMap { [0x4a] + le32($0) } + [0x74]
            p += [0x89] + Array("ccollections\nOrderedDict\n".utf8) + [0x29, 0x52, 0x74, 0x52, 0x73, 0x2e]
            return p
        }
        func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        let data = (0..<4).flatMap { i in le32(Int(Float(i + 1).bitPattern)) }
        func archive(_ p: [UInt8], _ d: [UInt8] = data) throws -> TorchArchive {
            try TorchArchive(file: MappedFile(bytes: makeTorchZip(pickle: p, storages: [("0", d)]), name: "h.pth"))
        }
        let ok = try archive(pickle(numel: 4, offset: 1, size: [3], stride: [1]))
        #expect(try ok.root["t"]?.tensor?.floatTensor().scalars == [2, 3, 4])
        let strided = try archive(pickle(numel: 4, offset: 0, size: [2, 2], stride: [1, 2]))
        #expect(try strided.root["t"]?.tensor?.floatTensor().scalars == [1, 3, 2, 4])
        // Out of the storage, negative, numel larger than the record, wrong rank of stride.
        for (label, p) in [
            ("past end", pickle(numel: 4, offset: 2, size: [3], stride: [1])),
            ("negative stride", pickle(numel: 4, offset: 3, size: [2], stride: [-1])),
            ("huge stride", pickle(numel: 4, offset: 0, size: [2], stride: [Int(Int32.max)])),
            ("record too small", pickle(numel: 1000, offset: 0, size: [3], stride: [1])),
            ("stride rank", pickle(numel: 4, offset: 0, size: [2, 2], stride: [1])),
        ] {
            let e = expectCheckpointError(label) { try archive(p) }
            #expect(e?.file.hasPrefix("h.pth") == true, "\(label): \(String(describing: e))")
        }
        // Missing storage record.
        expectCheckpointError("missing record") {
            try TorchArchive(
                file: MappedFile(bytes: makeTorchZip(pickle: pickle(numel: 4, offset: 0, size: [4], stride: [1]))))
        }
        // An unknown storage type stays opaque instead of failing.
        let unknown = try archive(
            pickle(numel: 4, offset: 0, size: [4], stride: [1], storageType: "ComplexFloatStorage"))
        if case let .object(o)? = unknown.root["t"] {
            #expect(o.name == "_rebuild_tensor_v2")
        } else {
            Issue.record("\(unknown.root)")
        }
        // Expanded tensors with a huge element count are refused (no huge allocation).
        let e = expectCheckpointError {
            try archive(pickle(numel: 4, offset: 0, size: [1 << 30, 1 << 30], stride: [0, 0]))
        }
        #expect(e.map { if case .limitExceeded = $0 { true } else { false } } == true, "\(String(describing: e))")
    }
}

@Suite("SHA-256 and CRC-32")
struct HashTests {
    @Test("FIPS 180-4 test vectors")
    func sha256() {
        #expect(
            SHA256.hex(SHA256.hash([UInt8]())) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(
            SHA256.hex(SHA256.hash(Array("abc".utf8)))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256.hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(
            SHA256.hex(SHA256.hash([UInt8](repeating: 0x61, count: 1_000_000)))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // Incremental updates of odd sizes give the same digest.
        var h = SHA256()
        let msg = [UInt8](repeating: 0x61, count: 1_000_000)
        var i = 0, step = 1
        while i < msg.count {
            let n = min(step, msg.count - i); h.update(msg[i..<(i + n)]); i += n; step = step * 3 % 997 + 1
        }
        #expect(SHA256.hex(h.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // The one-shot digest of a buffer (libcrypto, as for checkpoint files) against the vectors and the portable rounds.
        #expect(msg.withUnsafeBytes { SHA256.hex(SHA256.hash($0)) } == SHA256.hex(SHA256.hash(msg)))
        #expect(
            [UInt8]().withUnsafeBytes { SHA256.hex(SHA256.hash($0)) }
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        var g = SeededGenerator(seed: 5)
        let odd = (0..<100_003).map { _ in UInt8(truncatingIfNeeded: g.next()) }
        var portable = SHA256()
        portable.update(odd)
        #expect(odd.withUnsafeBytes { SHA256.hash($0) } == portable.finalize())
    }

    @Test("the background digest of shards equals the portable digest wherever the caller takes it over")
    func backgroundDigest() {
        var g = SeededGenerator(seed: 9)
        let parts = [1000, 0, 333, 64].map { n in (0..<n).map { _ in UInt8(truncatingIfNeeded: g.next()) } }
        var portable = SHA256()
        for p in parts { portable.update(p) }
        let reference = SHA256.hex(portable.finalize())
        let files = parts.map { MappedFile(bytes: $0) }
        // Pieces of 7 bytes: 202 steps read the bytes, the next one finishes; `hex()` takes over after k steps.
        for k in [0, 1, 2, 142, 143, 200, 201, 202, 400] {
            let d = BackgroundDigest(files, chunk: 7, background: false)
            for _ in 0..<k { _ = d.step() }
            #expect(d.hex() == reference, "taken over after \(k) steps")
            #expect(d.hex() == reference)
        }
        #expect(BackgroundDigest(files, chunk: 7).hex() == reference)  // with its thread (any interleaving)
        #expect(BackgroundDigest([files[1]], background: false).hex() == SHA256.hex(SHA256.hash([UInt8]())))
        #expect(BackgroundDigest([]).hex() == SHA256.hex(SHA256.hash([UInt8]())))
    }

    @Test("CRC-32 check values")
    func crc() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
        #expect(CRC32.checksum(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x414F_A339)
    }
}
