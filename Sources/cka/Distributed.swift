import ArgumentParser
import CKADistributed
import CKAKit
import Foundation

/// The processes of this job: a world of one unless launched by mpirun/srun (see `Communicator.world`).
var world: Communicator { Communicator.world }

/// `--threads`, shared by the commands that split their work over processes.
struct ThreadOptions: ParsableArguments {
    @Option(
        help:
            "Threads per process (BLAS and the loops over layers or heads; default: OPENBLAS_NUM_THREADS, else all cores). Under mpirun, ranks per node × threads should not exceed the cores."
    )
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// Sets the thread count of this process.
    func apply() { if let threads { setBLASThreadCount(threads) } }
}

/// Minibatches of one comparison split over the ranks: each rank sends the HSIC₁ terms of its batch of a
/// round to rank 0, which adds them in batch order.
final class RankDistribution: MinibatchDistribution {
    let communicator: Communicator
    init(_ communicator: Communicator) { self.communicator = communicator }
    var rank: Int { communicator.rank }
    var size: Int { communicator.size }
    var accumulates: Bool { communicator.isRoot }

    func exchange(_ terms: MinibatchCKA.BatchTerms?) throws -> [MinibatchCKA.BatchTerms] {
        var flat: [Double] = []
        if let t = terms {
            flat = [Double(t.examples), Double(t.selfA.count), Double(t.selfB.count)]
            flat += t.cross
            flat += t.selfA
            flat += t.selfB
        }
        guard let all = communicator.gatherVariable(flat) else { return [] }
        var out: [MinibatchCKA.BatchTerms] = []
        for v in all where !v.isEmpty {
            let b = Int(v[0]), la = Int(v[1]), lb = Int(v[2])
            let crossEnd = 3 + la * lb, selfAEnd = crossEnd + la
            guard v.count == selfAEnd + lb else { throw DistributedError.malformedMessage(offset: 0) }
            out.append(
                MinibatchCKA.BatchTerms(
                    cross: Array(v[3..<crossEnd]), selfA: Array(v[crossEnd..<selfAEnd]),
                    selfB: Array(v[selfAEnd...]), examples: b))
        }
        return out
    }
}

extension CKAResult {
    /// The result as a message to another rank (everything the outputs need, the matrix bit for bit).
    var message: Message {
        var m = Message()
        for s in [modelA, modelB, fileA, fileB, estimator.rawValue, tokens.rawValue] { m.append(s) }
        m.append(layersA)
        m.append(layersB)
        m.append(matrix.flatMap { $0 })
        m.append([batchSize, examplesUsed, batches, passes, usedStoredGrams ? 1 : 0, usedMemoryMap ? 1 : 0])
        m.append(warnings)
        return m
    }

    init(message bytes: [UInt8]) throws {
        var r = MessageReader(bytes)
        let modelA = try r.string(), modelB = try r.string(), fileA = try r.string(), fileB = try r.string()
        guard let estimator = CKAEstimator(rawValue: try r.string()),
            let tokens = TokenReduction(rawValue: try r.string())
        else {
            throw DistributedError.malformedMessage(offset: 0)
        }
        let layersA = try r.strings(), layersB = try r.strings()
        let flat = try r.doubles()
        let ints = try r.ints()
        guard flat.count == layersA.count * layersB.count, ints.count == 6 else {
            throw DistributedError.malformedMessage(offset: 0)
        }
        let matrix = layersA.indices.map { i in Array(flat[i * layersB.count..<(i + 1) * layersB.count]) }
        self = .assembled(
            modelA: modelA, modelB: modelB, fileA: fileA, fileB: fileB, layersA: layersA, layersB: layersB,
            matrix: matrix, estimator: estimator, batchSize: ints[0], tokens: tokens, examplesUsed: ints[1],
            batches: ints[2], passes: ints[3], usedStoredGrams: ints[4] != 0, usedMemoryMap: ints[5] != 0,
            warnings: try r.strings())
    }
}
