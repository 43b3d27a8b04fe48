import CKAIO
import CKASimilarity
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// R simulated processes on R threads: `exchange` is a collective over them, like `RankDistribution` over MPI.
final class ThreadGroup: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    private var slots: [MinibatchCKA.BatchTerms?]
    private var arrived = 0, generation = 0
    private var round: [MinibatchCKA.BatchTerms?] = []
    private(set) var exchanges = 0

    init(size: Int) { self.size = size; slots = Array(repeating: nil, count: size) }

    func exchange(rank: Int, _ terms: MinibatchCKA.BatchTerms?) -> [MinibatchCKA.BatchTerms] {
        condition.lock()
        defer { condition.unlock() }
        let g = generation
        slots[rank] = terms
        arrived += 1
        if arrived == size {
            round = slots
            slots = Array(repeating: nil, count: size)
            arrived = 0
            exchanges += 1
            generation += 1
            condition.broadcast()
        } else {
            while generation == g { condition.wait() }
        }
        return rank == 0 ? round.compactMap { $0 } : []
    }
}

final class ThreadRank: MinibatchDistribution {
    let group: ThreadGroup
    let rank: Int
    init(_ group: ThreadGroup, rank: Int) { self.group = group; self.rank = rank }
    var size: Int { group.size }
    var accumulates: Bool { rank == 0 }
    func exchange(_ terms: MinibatchCKA.BatchTerms?) throws -> [MinibatchCKA.BatchTerms] {
        group.exchange(rank: rank, terms)
    }
}

/// A CKA result of rank 0 computed by `size` simulated processes (each opens the stores, as a process would).
func distributedRun(_ a: String, _ b: String, _ o: CKAOptions, size: Int) throws -> CKAResult {
    let group = ThreadGroup(size: size)
    let results = LockedResults(count: size)
    let threads = (0..<size).map { rank in
        Thread {
            results.set(
                rank,
                Result {
                    try CKAComparison.run(
                        ActivationStore(path: a), ActivationStore(path: b), options: o,
                        distribution: ThreadRank(group, rank: rank))
                })
        }
    }
    for t in threads { t.start() }
    while !results.complete { usleep(1000) }
    return try results.get(0)
}

final class LockedResults: @unchecked Sendable {
    private var values: [Result<CKAResult, Error>?]
    private let lock = NSLock()
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<CKAResult, Error>) { lock.withLock { values[i] = r } }
    var complete: Bool { lock.withLock { values.allSatisfy { $0 != nil } } }
    func get(_ i: Int) throws -> CKAResult { try lock.withLock { values[i]! }.get() }
}

@Suite("Minibatches split over processes")
struct DistributionTests {
    @Test("Per-batch terms added in batch order give the same bits as add(gramsA:gramsB:)")
    func termsMatchAdd() throws {
        var direct = MinibatchCKA(layerCountA: 2, layerCountB: 3)
        var viaTerms = MinibatchCKA(layerCountA: 2, layerCountB: 3)
        for k in 0..<5 {
            let ga = try (0..<2).map {
                try randomTensor([10, 7 + $0], seed: UInt64(100 * k + $0), as: Float.self).gram(centered: true)
            }
            let gb = try (0..<3).map {
                try randomTensor([10, 5 + $0], seed: UInt64(100 * k + 50 + $0), as: Float.self).gram(centered: true)
            }
            try direct.add(gramsA: ga, gramsB: gb)
            try viaTerms.add(MinibatchCKA.terms(gramsA: ga, gramsB: gb))
        }
        #expect(direct.crossSums == viaTerms.crossSums)
        #expect(direct.selfSumsA == viaTerms.selfSumsA && direct.selfSumsB == viaTerms.selfSumsB)
        #expect(try direct.matrix() == viaTerms.matrix())
        var wrong = MinibatchCKA(layerCountA: 3, layerCountB: 3)
        #expect(throws: TensorError.self) {
            try wrong.add(
                MinibatchCKA.terms(gramsA: [Tensor<Double>(shape: [4, 4])], gramsB: [Tensor<Double>(shape: [4, 4])]))
        }
    }

    @Test(
        "compare split over 1, 2, 3 and 7 processes: the matrix of one process, bit for bit (mapped, read, shuffled)",
        arguments: [false, true])
    func sameMatrixForAnySplit(shuffled: Bool) throws {
        let a = try ActivationStore(path: fixture("cka_a.h5")), b = try ActivationStore(path: fixture("cka_b.h5"))
        for memoryMap in [true, false] {
            var o = CKAOptions()
            o.batchSize = 8
            o.memoryMap = memoryMap
            if shuffled { o.shuffleSeed = 5; o.passes = 2 }
            let single = try CKAComparison.run(a, b, options: o)
            for size in [1, 2, 3, 7] {
                let r = try distributedRun(a.path, b.path, o, size: size)
                #expect(r.matrix == single.matrix, "R = \(size), memory map \(memoryMap)")
                #expect(r.batches == single.batches && r.examplesUsed == single.examplesUsed)
            }
        }
    }
}
