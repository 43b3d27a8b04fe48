import CKACheckpoint
import Foundation
import Testing
import _CKATestSupport

/// Malicious pickles: nothing is ever called; files that reference code-running callables are refused.
@Suite("Malicious pickles", .serialized)
struct SecurityTests {
    let sentinel = Fixtures.sentinel

    init() { try? FileManager.default.removeItem(atPath: Fixtures.sentinel) }

    func expectNoSentinel(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!FileManager.default.fileExists(atPath: sentinel), "a payload ran!", sourceLocation: sourceLocation)
    }

    @Test("torch.save of a __reduce__ → os.system payload (GLOBAL posix system + REDUCE) is refused")
    func osSystem() throws {
        let url = Fixtures.url("malicious_system.pth")
        let err = expectCheckpointError { try Checkpoint(contentsOf: url, options: .init(heads: 2)) }
        guard case let .forbiddenGlobal(file, offset, module, name)? = err else {
            Issue.record("\(String(describing: err))"); return
        }
        #expect(file.hasSuffix("malicious_system.pth:malicious_system/data.pkl"))
        #expect(module == "posix" && name == "system" && offset > 0)
        #expect(err!.description.contains("Nothing was executed"))
        expectNoSentinel()
    }

    @Test("builtins.eval and subprocess.Popen (pickled as commands.Popen) payloads are refused")
    func evalAndPopen() throws {
        let e1 = expectCheckpointError { try TorchArchive(contentsOf: Fixtures.url("malicious_eval.pth")) }
        #expect(e1.map { if case .forbiddenGlobal(_, _, "__builtin__", "eval") = $0 { true } else { false } } == true)
        let e2 = expectCheckpointError { try TorchArchive(contentsOf: Fixtures.url("malicious_popen.pth")) }
        #expect(e2.map { if case .forbiddenGlobal(_, _, "commands", "Popen") = $0 { true } else { false } } == true)
        expectNoSentinel()
    }

    @Test("with refusal disabled the payloads load as inert opaque objects, still never executed")
    func inertWhenAllowed() throws {
        var options = TorchArchive.Options()
        options.unpickler.refuseDangerousGlobals = false
        let a = try TorchArchive(contentsOf: Fixtures.url("malicious_system.pth"), options: options)
        guard case let .object(o)? = a.root["payload"] else {
            Issue.record("payload: \(String(describing: a.root["payload"]))"); return
        }
        #expect(o.qualifiedName == "posix.system" && o.kind == .call)
        #expect(o.args.first.map { "\($0)" } == "'touch \(sentinel)'")
        // The tensors of the same file still load.
        #expect(a.root["model"]?["cls_token"]?.tensor?.shape == [1, 1, 8])
        let b = try TorchArchive(contentsOf: Fixtures.url("malicious_popen.pth"), options: options)
        if case let .object(p)? = b.root["blocks.0.attn.qkv.weight"] {
            #expect(p.name == "Popen")
        } else {
            Issue.record("popen")
        }
        // …and a checkpoint whose weight is an opaque object is reported, not used.
        _ = try TorchArchive(contentsOf: Fixtures.url("malicious_eval.pth"), options: options)
        expectNoSentinel()
    }

    /// Hand-made pickles: protocol-0 GLOBAL, STACK_GLOBAL, INST/OBJ, NEWOBJ on dangerous and unknown classes.
    @Test("hand-made payloads: STACK_GLOBAL, INST, nested REDUCE on opaque values")
    func handMade() throws {
        let cmd = Array("touch \(sentinel)".utf8)
        func shortString(_ s: String) -> [UInt8] { [0x8c, UInt8(s.utf8.count)] + Array(s.utf8) }
        // STACK_GLOBAL os.system, then REDUCE.
        let stack: [UInt8] =
            [0x80, 4] + shortString("os") + shortString("system") + [0x93] + [0x8c, UInt8(cmd.count)] + cmd
            + [0x85, 0x52, 0x2e]
        let e1 = expectCheckpointError { try Unpickler.load(stack) }
        #expect(e1.map { if case .forbiddenGlobal(_, _, "os", "system") = $0 { true } else { false } } == true)
        // INST subprocess.Popen (protocol 0).
        let inst = Array("(S'touch x'\nisubprocess\nPopen\n.".utf8)
        let e2 = expectCheckpointError { try Unpickler.load(inst) }
        #expect(e2.map { if case .forbiddenGlobal(_, _, "subprocess", "Popen") = $0 { true } else { false } } == true)
        // builtins.getattr gadget.
        let getattr = Array("cbuiltins\ngetattr\n(cargparse\nNamespace\nS'__init__'\ntR.".utf8)
        #expect(
            expectCheckpointError { try Unpickler.load(getattr) }.map {
                if case .forbiddenGlobal(_, _, "builtins", "getattr") = $0 { true } else { false }
            } == true)
        // An unknown (not dangerous) callable: REDUCE → opaque; REDUCE/BUILD on that opaque → opaque again.
        let chain = Array("cmymodule\nFactory\n(tR(S'arg'\ntR}S'k'\nI01\nsb.".utf8)
        let v = try Unpickler.load(chain)
        guard case let .object(o) = v else { Issue.record("\(v)"); return }
        #expect(o.name.hasPrefix("<call of mymodule.Factory") && o.args.first.map { "\($0)" } == "'arg'")
        #expect(o.state?["k"]?.intValue == 1)
        expectNoSentinel()
    }
}
