import CKALandscape
import CKAViT
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// R simulated processes on R threads: `allGather` waits until every rank of the round has given its values.
final class ThreadedExchange: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    private var slots: [[Float]?]
    private var published: [[Float]] = []
    private var generation = 0

    init(size: Int) {
        self.size = size
        slots = Array(repeating: nil, count: size)
    }

    func allGather(rank: Int, _ values: [Float]) -> [[Float]] {
        condition.lock()
        defer { condition.unlock() }
        let round = generation
        slots[rank] = values
        if slots.allSatisfy({ $0 != nil }) {
            published = slots.map { $0! }
            slots = Array(repeating: nil, count: size)
            generation += 1
            condition.broadcast()
        } else {
            while generation == round { condition.wait() }
        }
        return published
    }

    /// `body(split)` on `size` threads, one per rank; the results in rank order.
    func run<T>(_ body: @escaping (any GradientWorkSplit) throws -> T) throws -> [T] {
        let results = UncheckedBox<[Result<T, Error>?]>(Array(repeating: nil, count: size))
        let done = DispatchGroup()
        for rank in 0..<size {
            done.enter()
            let split = ThreadedRank(rank: rank, exchange: self), work = UncheckedBox(body)
            let t = Thread {
                let r = Result { try work.value(split) }
                self.condition.withLock { results.value[rank] = r }
                done.leave()
            }
            t.stackSize = 16 << 20
            t.start()
        }
        done.wait()
        return try results.value.map { try $0!.get() }
    }
}

final class UncheckedBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

struct ThreadedRank: GradientWorkSplit {
    let rank: Int
    let exchange: ThreadedExchange
    var size: Int { exchange.size }
    func allGather(_ values: [Float]) throws -> [[Float]] { exchange.allGather(rank: rank, values) }
    func exchangeSegments(_ values: [Float], segments: [Range<Int>]) throws -> [[Float]] {
        exchange.allGather(rank: rank, values).map { $0.isEmpty ? [] : Array($0[segments[rank]]) }
    }
}

@Suite("Hessian-vector products split over processes: the same bits for every process count")
struct HessianSplitTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }

    /// The fixture's cross-entropy objective with its 6 examples in batches of `sizes`.
    func chunked(_ f: HessianFixture, _ sizes: [Int]) throws -> CrossEntropyLandscapeObjective {
        let pixels = try f.file.dataset("ce/pixels").readFloat()
        let labels = try f.file.dataset("ce/labels").readInt64().map { Int($0) }
        let per = pixels.count / pixels.shape[0]
        var batches: [LandscapeBatch] = [], start = 0
        for n in sizes {
            let rows = Array(pixels.scalars[start * per..<(start + n) * per])
            batches.append(
                LandscapeBatch(
                    pixels: try Tensor(shape: [n] + pixels.shape.dropFirst(), scalars: rows),
                    labels: Array(labels[start..<start + n])))
            start += n
        }
        return try CrossEntropyLandscapeObjective(
            checkpoint: f.checkpoint, head: ClassifierHead(checkpoint: f.checkpoint), batches: batches)
    }

    @Test("H·v over 1, 2, 3 chunks on 1–7 processes: identical bits per chunking, equal to torch double-backward")
    func identicalForEveryProcessCount() throws {
        let f = try HessianFixture(extrapolated: false, directory: dir)
        let names = Set(f.objective.center.names)
        for sizes in [[6], [3, 3], [2, 2, 2]] {
            let objective = try chunked(f, sizes)
            #expect(objective.gradientChunkWeights == sizes.map(Double.init))
            let single = try HessianOperator(objective: objective, parameters: names, relativeStep: 1e-3)
            let v = try f.vector("v", 0, over: single)
            let reference = try single(v)
            // Against PyTorch's float64 double-backward (the same bound as the one-batch product).
            let err = relativeError(reference, try f.vector("hv", 0, over: single))
            #expect(err <= 1e-4, "chunks \(sizes): relative error \(err)")
            for processes in [1, 2, 3, 4, 7] {
                let results = try ThreadedExchange(size: processes).run { split in
                    try HessianOperator(objective: objective, parameters: names, relativeStep: 1e-3, split: split)(v)
                }
                for (rank, hv) in results.enumerated() {
                    #expect(hv == reference, "chunks \(sizes), \(processes) processes, rank \(rank): other bits")
                }
            }
        }
    }
}
