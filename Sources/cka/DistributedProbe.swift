import CKADistributed
import CKAKit
import Foundation
import _CKASupport

/// `cka probe` over the ranks of an MPI job: the selected layers are dealt out (layer i → rank i mod R), each rank
/// trains and tests the probes of its layers (the same code, the same bits as one process), and rank 0 puts the
/// rows back in layer order. The split of the examples is a function of the seed, so every rank draws the same.
enum DistributedProbe {
    static let tag = 4

    /// The report on rank 0 (nil elsewhere).
    static func run(
        test: ActivationStore, train: ActivationStore?, layers: [String]?, trainFraction: Double, seed: UInt64,
        options: ProbeOptions, keepLogits: Bool, communicator world: Communicator,
        progress: ((CKAProgress) -> Void)?
    ) throws -> ProbeReport? {
        let selected = try FeatureLayer.select(test, train: train, patterns: layers)
        // Layer 0 is rank 0's, so rank 0 always has a report to merge into.
        let mine = selected.indices.filter { $0 % world.size == world.rank }.map { selected[$0].name }
        var report: ProbeReport?
        if !mine.isEmpty {
            report = try ProbeEvaluation.run(
                test: test, train: train, layers: mine, trainFraction: trainFraction, seed: seed, options: options,
                keepLogits: keepLogits, progress: progress)
        }
        guard world.isRoot else {
            world.send(encode(report).bytes, to: 0, tag: tag)
            return nil
        }
        guard var merged = report else { return nil }
        var byLayer = Dictionary(grouping: merged.rows, by: \.feature.name)
        var warnings = merged.warnings
        let features = Dictionary(selected.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for source in 1..<world.size {
            var r = MessageReader(world.receive(from: source, tag: tag).bytes)
            let (rows, remoteWarnings) = try decode(&r, features: features)
            for row in rows { byLayer[row.feature.name, default: []].append(row) }
            for w in remoteWarnings where !warnings.contains(w) { warnings.append(w) }
        }
        merged.rows = selected.flatMap { byLayer[$0.name] ?? [] }
        // As one process orders them: the store-level warnings first, then each layer's in layer order.
        let order = Dictionary(selected.enumerated().map { ($1.name + ":", $0) }, uniquingKeysWith: { a, _ in a })
        func rank(_ w: String) -> Int {
            order.first { w.hasPrefix($0.key) }.map { $0.value + 1 } ?? 0
        }
        merged.warnings = warnings.enumerated().sorted { (rank($0.element), $0.offset) < (rank($1.element), $1.offset) }
            .map(\.element)
        return merged
    }

    static func encode(_ report: ProbeReport?) -> Message {
        var m = Message()
        let rows = report?.rows ?? []
        m.append(rows.map(\.feature.name))
        for row in rows {
            let p = row.probe
            m.append([row.trainAccuracy, row.testAccuracy, p.l2, p.loss, p.gradientMax])
            m.append([p.iterations, p.evaluations])
            m.append(p.stop.rawValue)
            m.append(p.mean)
            m.append(p.scale)
            m.append(p.weight)
            m.append(p.bias)
        }
        m.append(report?.warnings ?? [])
        return m
    }

    static func decode(
        _ r: inout MessageReader, features: [String: FeatureLayer]
    ) throws -> (rows: [ProbeRow], warnings: [String]) {
        var rows: [ProbeRow] = []
        for name in try r.strings() {
            let values = try r.doubles(), counts = try r.ints(), stopName = try r.string()
            let mean = try r.doubles(), scale = try r.doubles(), weight = try r.tensor(Double.self)
            let bias = try r.doubles()
            guard let feature = features[name], values.count == 5, counts.count == 2,
                let stop = OptimizerStop(rawValue: stopName)
            else { throw DistributedError.malformedMessage(offset: 0) }
            let probe = LogisticProbe(
                mean: mean, scale: scale, weight: weight, bias: bias, l2: values[2], loss: values[3],
                gradientMax: values[4], iterations: counts[0], evaluations: counts[1], stop: stop)
            rows.append(
                ProbeRow(
                    feature: feature, probe: probe, trainAccuracy: values[0], testAccuracy: values[1],
                    testLogits: nil))
        }
        return (rows, try r.strings())
    }
}
