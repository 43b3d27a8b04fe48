// libFuzzer harness for the activation-store validation layer (built by run_fuzzers.sh).
//
// The input bytes are a recipe, not a file: HDF5's own parser is not ours to fuzz, the checks we make on what a
// well-formed HDF5 file declares are. The recipe writes a file through HDF5File with random shapes (including
// huge declared but empty extents), element types and attributes — format, format_version, ids, labels,
// classes, layers, Grams with batch_size/tokens/centered, pixels, logits — then opens it with ActivationStore and
// reads what it declares. Every outcome must be a value or a thrown error: no trap, no crash, no huge allocation.
import CKAIO
import CKATensor
import Foundation

struct Recipe {
    var bytes: UnsafeRawBufferPointer
    var at = 0
    mutating func byte() -> Int { defer { at += 1 }; return at < bytes.count ? Int(bytes[at]) : 0 }
    mutating func pick<T>(_ xs: [T]) -> T { xs[byte() % xs.count] }
    /// A dimension: mostly small, sometimes 0, sometimes huge (declared, never written).
    mutating func dim() -> Int { pick([0, 1, 2, 3, 4, 5, 8, 16, 31, 64, 1 << 20, 1 << 31, 1 << 40, Int(Int32.max)]) }
}

let path = "/dev/shm/cka-fuzz-store-\(getpid()).h5"
/// The reads are held to a 64 MiB budget (through the same `CKA_MEMORY_LIMIT` a user on a small node would set),
/// far below libFuzzer's 2 GiB RSS limit and fast to fill under ASan: a declared size within it may be allocated.
let budgetSet: Void = { setenv("CKA_MEMORY_LIMIT", "64M", 1) }()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    budgetSet
    precondition(MemoryBudget.bytes <= 64 << 20)
    var r = Recipe(bytes: UnsafeRawBufferPointer(start: data, count: size))
    defer { unlink(path) }
    do {
        let f = try HDF5File(path: path, mode: .create)
        let values: [HDF5AttributeValue] = [
            .string("activations"), .string("other"), .int(1), .int(2), .int(-1),
            .double(1.5), .double(.nan), .bool(true), .ints([1, 2]), .strings(["a", "b"]),
        ]
        if r.byte() % 4 != 0 { try f.setAttribute("format", r.pick(values)) }
        if r.byte() % 4 != 0 { try f.setAttribute("format_version", r.pick(values)) }
        let n = r.pick([0, 1, 3, 4, 8, 16, 33])
        if r.byte() % 8 != 0 { try f.writeStrings("inputs/ids", (0..<n).map { "id\($0)" }) }
        if r.byte() % 3 == 0 {
            let ds = try f.createDataset(
                "inputs/labels", type: r.pick([.int64, .uint8, .float32]), shape: [r.pick([n, n + 1, 0])])
            if ds.elementType == .int64 { try? ds.write((0..<ds.shape[0]).map { Int64($0 % 3) - Int64(r.byte() % 2) }) }
        }
        if r.byte() % 4 == 0 { try f.writeStrings("inputs/classes", ["a", "b", "c"].prefix(r.byte() % 4).map { $0 }) }
        for k in 0..<(r.byte() % 4) {
            let name = r.pick(["blocks.\(k)", "blocks.\(k):cls", "norm", "x.y", "blocks.\(k).attn.qkv"])
            let rank = 1 + r.byte() % 3
            var shape = [r.pick([n, n, n, 0, n + 1, 1 << 40])]
            for _ in 1..<rank { shape.append(r.dim()) }
            let type: HDF5ElementType = r.pick([.float32, .float16, .float64, .int64, .uint8])
            if let ds = try? f.createDataset("activations/\(name)", type: type, shape: shape, chunkRows: 1),
                let elements = MemoryBudget.elementCount(shape), elements > 0, elements < 4096, type == .float32
            {
                let t = Tensor<Float>(shape: shape, repeating: r.pick([0, 1, .nan, .infinity, 1e30, -2]))
                try? ds.write(t)
            }
            if r.byte() % 2 == 0 { try? f.setAttribute("order", r.pick(values), of: "activations/\(name)") }
            if r.byte() % 2 == 0 { try? f.setAttribute("kind", r.pick(values), of: "activations/\(name)") }
        }
        for k in 0..<(r.byte() % 3) {
            let b = r.pick([4, 2, 0, n, 1 << 20])
            let shape = [r.pick([0, 1, n, 1 << 30]), b, r.pick([b, b, 3])]
            _ = try? f.createDataset(
                "grams/blocks.\(k)", type: r.pick([.float64, .float32, .int64]), shape: shape, chunkRows: 1)
            if r.byte() % 2 == 0 {
                try? f.setAttribute("batch_size", r.pick(values + [.int(b)]), of: "grams/blocks.\(k)")
            }
            if r.byte() % 2 == 0 {
                try? f.setAttribute("tokens", r.pick(values + [.string("flatten")]), of: "grams/blocks.\(k)")
            }
        }
        if r.byte() % 4 == 0 {
            _ = try? f.createDataset("inputs/pixels", type: .float32, shape: [n, 3, r.dim(), r.dim()], chunkRows: 1)
        }
        if r.byte() % 4 == 0 { _ = try? f.createDataset("logits", type: .float32, shape: [n, r.dim()], chunkRows: 1) }
        try f.close()
    } catch {
        return 0
    }
    // The validation layer and the reads the commands make.
    guard let store = try? ActivationStore(path: path) else { return 0 }
    for l in store.layers {
        _ = try? store.read(l.name, rows: 0..<min(store.count, 4))
        var t = Tensor<Float>(shape: [0])
        _ = try? store.read(l.name, rowIndices: [0, 0], into: &t)
    }
    for (name, _) in store.grams { _ = try? store.gram(name, batch: 0) }
    if store.hasDataset("inputs/pixels") {
        _ = try? store.readFloatDataset("inputs/pixels", rows: 0..<min(store.count, 1))
    }
    if store.hasDataset("logits") { _ = try? store.readFloatDataset("logits") }
    return 0
}
