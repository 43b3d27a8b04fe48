import CKADistributed
import CKAKit
import Foundation
import _CKASupport

/// `cka knn` over the ranks of an MPI job: the selected layers are dealt out (layer i → rank i mod R), each
/// rank runs the whole k-NN evaluation of its layers (the same code, the same bits as one process), and rank 0
/// puts the rows back in layer order.
enum DistributedKnn {
    static let tag = 3

    /// The report on rank 0 (nil elsewhere).
    static func run(
        test: ActivationStore, train: ActivationStore?, layers: [String]?, options: KNNOptions,
        communicator world: Communicator, progress: ((CKAProgress) -> Void)?
    ) throws -> KNNReport? {
        let selected = try FeatureLayer.select(test, train: train, patterns: layers)
        let mine = selected.indices.filter { $0 % world.size == world.rank }.map { selected[$0].name }
        var report: KNNReport?
        if !mine.isEmpty {
            report = try KNNEvaluation.run(test: test, train: train, layers: mine, options: options, progress: progress)
        }
        guard world.isRoot else {
            var m = Message()
            let rows = report?.rows ?? []
            m.append(rows.map(\.feature.name))
            m.append(rows.map(\.k))
            m.append(rows.map(\.count))
            m.append(rows.flatMap { [$0.top1, $0.top5] })
            world.send(m.bytes, to: 0, tag: tag)
            return nil
        }
        guard var merged = report else { return nil }
        var byLayer = Dictionary(grouping: merged.rows, by: \.feature.name)
        let features = Dictionary(selected.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for source in 1..<world.size {
            var r = MessageReader(world.receive(from: source, tag: tag).bytes)
            let names = try r.strings(), ks = try r.ints(), counts = try r.ints(), acc = try r.doubles()
            guard ks.count == names.count, counts.count == names.count, acc.count == 2 * names.count else {
                throw DistributedError.malformedMessage(offset: 0)
            }
            for (i, name) in names.enumerated() {
                guard let f = features[name] else { throw DistributedError.malformedMessage(offset: 0) }
                byLayer[name, default: []].append(
                    .assembled(
                        feature: f, k: ks[i], top1: acc[2 * i], top5: acc[2 * i + 1],
                        count: counts[i]))
            }
        }
        merged.rows = selected.flatMap { byLayer[$0.name] ?? [] }
        return merged
    }
}
