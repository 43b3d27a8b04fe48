import CKACheckpoint
import Foundation
import Testing
import _CKATestSupport

/// The enum case of an error (`malformedZip`, …).
func caseName(_ e: CheckpointError) -> String { Mirror(reflecting: e).children.first?.label ?? "\(e)" }

/// Fuzz-style robustness: truncated and mutated fixtures must load or fail with a `CheckpointError` — never trap,
/// never throw anything else, never allocate without bound. (A trap would abort the test process.)
@Suite("Fuzz-style robustness")
struct FuzzTests {
    /// Loads `bytes` as a checkpoint; returns "ok", or the error kind. Records an issue for non-CheckpointErrors.
    @discardableResult
    func attempt(_ bytes: [UInt8], _ label: @autoclosure () -> String) -> String {
        do {
            let f = MappedFile(bytes: bytes, name: "fuzz")
            _ = try Checkpoint(file: f, options: .init(heads: 2))
            return "ok"
        } catch let e as CheckpointError {
            #expect(!e.description.isEmpty)
            return caseName(e)
        } catch {
            Issue.record("\(label()): non-typed error \(error)")
            return "untyped"
        }
    }

    func offsets(_ n: Int, every step: Int) -> [Int] {
        Array(Set(Array(stride(from: 0, to: n, by: step)) + Array(0..<min(n, 64)) + Array(max(0, n - 256)..<n)))
            .sorted()
    }

    @Test(
        "every truncation of a torch zip and a safetensors file is refused",
        arguments: ["dino_full.pth", "mocov3.pth.tar", "timm.safetensors", "values.pth"])
    func truncations(_ name: String) throws {
        let bytes = try Fixtures.bytes(name)
        var kinds: [String: Int] = [:]
        for n in offsets(bytes.count, every: 13) {
            let kind = attempt(Array(bytes[0..<n]), "\(name)[0..<\(n)]")
            if name == "values.pth" {
                // Not a ViT: the untruncated file fails in mapping, truncations must fail earlier.
                #expect(kind != "ok")
            } else {
                #expect(kind != "ok", "\(name) truncated at \(n) loaded")
            }
            kinds[kind, default: 0] += 1
        }
        #expect(kinds["untyped"] == nil)
        print("\(name): \(bytes.count) bytes, truncations → \(kinds.sorted { $0.key < $1.key })")
    }

    @Test(
        "random byte mutations of whole files", arguments: ["dino_full.pth", "timm.safetensors", "rcmae_pretrain.pth"])
    func mutations(_ name: String) throws {
        let original = try Fixtures.bytes(name)
        var g = SeededGenerator(seed: 0xC0FFEE ^ UInt64(name.utf8.count))
        var kinds: [String: Int] = [:]
        // Bias mutations towards structure: the first 16 KiB (headers, pickle) and the last 4 KiB (zip directory).
        for trial in 0..<600 {
            var b = original
            let count = Int.random(in: 1...4, using: &g)
            for _ in 0..<count {
                let region = Int.random(in: 0..<3, using: &g)
                let pos: Int
                switch region {
                case 0: pos = Int.random(in: 0..<min(b.count, 16_384), using: &g)
                case 1: pos = Int.random(in: max(0, b.count - 4096)..<b.count, using: &g)
                default: pos = Int.random(in: 0..<b.count, using: &g)
                }
                b[pos] = Int.random(in: 0..<4, using: &g) == 0 ? b[pos] ^ 0x80 : UInt8.random(in: 0...255, using: &g)
            }
            kinds[attempt(b, "\(name) trial \(trial)"), default: 0] += 1
        }
        #expect(kinds["untyped"] == nil)
        print("\(name): mutations → \(kinds.sorted { $0.key < $1.key })")
    }

    /// Mutates only the pickle of a real checkpoint and re-packs it with valid CRCs, so the unpickler (not the
    /// CRC check) sees the damage; storages are the fixture's own.
    @Test("mutated pickles inside valid archives", arguments: ["dino_full.pth", "values.pth", "mae_pretrain_full.pth"])
    func pickleMutations(_ name: String) throws {
        let zip = try ZipArchive(file: MappedFile(url: Fixtures.url(name)))
        let pkl = try #require(zip.entries.first { $0.name.hasSuffix("/data.pkl") })
        let pickle = try zip.read(pkl)
        let storages = try zip.entries.filter { $0.name.contains("/data/") }.map {
            (key: String($0.name.split(separator: "/").last!), data: try zip.read($0, verifyCRC: false))
        }
        // Sanity: the re-packed original loads.
        let packed = makeTorchZip(pickle: pickle, storages: storages)
        #expect(attempt(packed, "\(name) repacked") != "untyped")
        var g = SeededGenerator(seed: 42 &+ UInt64(pickle.count))
        var kinds: [String: Int] = [:]
        for trial in 0..<1500 {
            var p = pickle
            switch trial % 4 {
            case 0:  // overwrite bytes
                for _ in 0..<Int.random(in: 1...3, using: &g) {
                    p[Int.random(in: 0..<p.count, using: &g)] = .random(in: 0...255, using: &g)
                }
            case 1:  // delete a run
                let a = Int.random(in: 0..<p.count, using: &g)
                p.removeSubrange(a..<min(p.count, a + Int.random(in: 1...16, using: &g)))
            case 2:  // duplicate a run
                let a = Int.random(in: 0..<p.count, using: &g)
                let run = p[a..<min(p.count, a + Int.random(in: 1...32, using: &g))]
                p.insert(contentsOf: run, at: Int.random(in: 0...p.count, using: &g))
            default:  // truncate
                p = Array(p.prefix(Int.random(in: 0..<p.count, using: &g)))
            }
            kinds[attempt(makeTorchZip(pickle: p, storages: storages), "\(name) pickle trial \(trial)"), default: 0] +=
                1
        }
        #expect(kinds["untyped"] == nil)
        print("\(name): pickle mutations → \(kinds.sorted { $0.key < $1.key })")
    }

    @Test("random opcode streams")
    func randomPickles() {
        var g = SeededGenerator(seed: 7)
        // Opcodes weighted towards the ones with arguments and stack effects.
        let alphabet: [UInt8] =
            Array("().0123NIJKLMFGSTUVXBCabcdeghijlopqrstu}])".utf8) + [
                0x80, 0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x91, 0x92, 0x93,
                0x94,
                0x95, 0x96, 0x97, 0x98, 0x0a, 0x00, 0x01, 0x02, 0xff, 0x51, 0x50, 0x52,
            ]
        var kinds: [String: Int] = [:]
        for _ in 0..<20_000 {
            let n = Int.random(in: 1...48, using: &g)
            let bytes = (0..<n).map { _ in
                Bool.random(using: &g) ? alphabet.randomElement(using: &g)! : UInt8.random(in: 0...255, using: &g)
            }
            do {
                _ = try Unpickler.load(bytes)
                kinds["ok", default: 0] += 1
            } catch let e as CheckpointError {
                kinds[caseName(e), default: 0] += 1
            } catch {
                Issue.record("untyped \(error) for \(bytes)")
            }
        }
        print("random pickles → \(kinds.sorted { $0.key < $1.key })")
    }

    @Test("mutated safetensors headers")
    func headerMutations() throws {
        let original = try Fixtures.bytes("timm.safetensors")
        let headerLength = Int(original[0]) | Int(original[1]) << 8 | Int(original[2]) << 16
        var g = SeededGenerator(seed: 99)
        let interesting = Array("{}[]\":,0123456789-eE.tfn \\u".utf8)
        var kinds: [String: Int] = [:]
        for trial in 0..<3000 {
            var b = original
            for _ in 0..<Int.random(in: 1...3, using: &g) {
                let pos = Int.random(in: 0..<(8 + headerLength), using: &g)
                b[pos] =
                    Bool.random(using: &g) ? interesting.randomElement(using: &g)! : .random(in: 0...255, using: &g)
            }
            kinds[attempt(b, "header trial \(trial)"), default: 0] += 1
        }
        #expect(kinds["untyped"] == nil)
        print("safetensors header mutations → \(kinds.sorted { $0.key < $1.key })")
    }
}
