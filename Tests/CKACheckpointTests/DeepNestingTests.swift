@testable import CKACheckpoint
import Foundation
import Testing
import _CKATestSupport

/// Issue 13, class 1: deeply nested pickles must end in a `limitExceeded` error (or load, when the nesting is
/// interpreted), never in a stack overflow while the half-built value is torn down or walked.
@Suite("hardening: deep pickle structures")
struct DeepNestingTests {
    static let depth = 40_000
    func shortString(_ s: String) -> [UInt8] { [0x8c, UInt8(s.utf8.count)] + Array(s.utf8) }

    /// `()` wrapped in 40 000 `TUPLE1`: a 40 KB pickle.
    var nestedTuples: [UInt8] { [0x80, 2, 0x29] + [UInt8](repeating: 0x85, count: Self.depth) + [0x2e] }

    /// `f(f(…f(())…))` with the callable in memo slot 0: each round stores the value in slot 1, pops it, then
    /// pushes f, the value, TUPLE1 and REDUCE (protocol 2 opcodes only; no MARK, so no mark limit).
    func nestedCalls(_ preamble: [UInt8]) -> [UInt8] {
        var p: [UInt8] = [0x80, 2] + preamble + [0x71, 0, 0x30, 0x29]  // global → memo[0], pop; push ()
        for _ in 0..<Self.depth { p += [0x71, 1, 0x30, 0x68, 0, 0x68, 1, 0x85, 0x52] }
        return p + [0x2e]
    }

    func expectDepthLimit(_ e: CheckpointError?, sourceLocation: SourceLocation = #_sourceLocation) {
        guard case .limitExceeded? = e else {
            Issue.record("expected limitExceeded, got \(String(describing: e))", sourceLocation: sourceLocation); return
        }
    }

    @Test("40 000 nested tuples: limitExceeded (was SIGSEGV while freeing the nodes)")
    func nestedTupleChain() throws {
        expectDepthLimit(expectCheckpointError { try Unpickler.load(nestedTuples) })
    }

    @Test("40 000 nested opaque calls and _rebuild_from_type_v2 calls: limitExceeded, no recursion")
    func nestedCallChains() throws {
        expectDepthLimit(expectCheckpointError { try Unpickler.load(nestedCalls(Array("cmymodule\nf\n".utf8))) })
        // f = _rebuild_from_type_v2; f(*(f, None, (f, None, (…)))) interprets its third argument as the
        // arguments of f, recursively: bounded now (was a stack overflow).
        var rebuild: [UInt8] =
            [0x80, 2] + Array("ctorch._tensor\n_rebuild_from_type_v2\n".utf8) + [0x71, 0, 0x30, 0x29]
        for _ in 0..<Self.depth { rebuild += [0x71, 1, 0x30, 0x68, 0, 0x4e, 0x68, 1, 0x87] }  // x = (f, None, x)
        rebuild += [0x71, 1, 0x30, 0x68, 0, 0x68, 1, 0x52, 0x2e]  // f(*x)
        expectDepthLimit(expectCheckpointError { try Unpickler.load(rebuild) })
    }

    @Test("a tensor whose size is torch.Size nested 40 000 deep loads (the Size wrappers are unwrapped in a loop)")
    func nestedSize() throws {
        func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        // torch.Size → memo[0]; {'t': _rebuild_tensor_v2(pid, 0, Size(Size(…(3,)…)), (1,), False, OrderedDict())}
        var p: [UInt8] = [0x80, 2] + Array("ctorch\nSize\n".utf8) + [0x71, 0, 0x30, 0x7d, 0x8c, 1, 0x74]
        p += Array("ctorch._utils\n_rebuild_tensor_v2\n".utf8)
        p += [0x28, 0x28, 0x8c, 7] + Array("storage".utf8) + Array("ctorch\nFloatStorage\n".utf8)
        p += [0x8c, 1, 0x30, 0x8c, 3] + Array("cpu".utf8) + [0x4a] + le32(3) + [0x74, 0x51]
        p += [0x4a] + le32(0)
        p += [0x4a] + le32(3) + [0x85]
        for _ in 0..<Self.depth { p += [0x71, 1, 0x30, 0x68, 0, 0x68, 1, 0x85, 0x52] }
        p += [0x4a] + le32(1) + [0x85]
        p += [0x89] + Array("ccollections\nOrderedDict\n".utf8) + [0x29, 0x52, 0x74, 0x52, 0x73, 0x2e]
        let data = (0..<3).flatMap { i in le32(Int(Float(i + 1).bitPattern)) }
        let a = try TorchArchive(
            file: MappedFile(bytes: makeTorchZip(pickle: p, storages: [("0", data)]), name: "s.pth"))
        #expect(a.root["t"]?.tensor?.shape == [3])
    }

    @Test("a .pth whose data.pkl nests 40 000 tuples: Checkpoint refuses it with a CheckpointError")
    func nestedInCheckpoint() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("deep.pth")
        try Data(makeTorchZip(pickle: nestedTuples)).write(to: url)
        #expect(throws: CheckpointError.self) { try Checkpoint(contentsOf: url) }
    }
}
