import CKADistributed
import CKAKit
import Foundation
import _CKASupport

/// `cka extract` over the ranks of an MPI job.
///
/// The listed inputs are cut into chunks of `lcm(batch size, Gram batch size)` examples (of the batch size when
/// no Grams are stored), so every forward batch and every Gram batch lies inside one chunk, exactly where one
/// process would have put it. Chunk c belongs to rank `c % size`, which decodes and runs only its chunks.
/// Rank 0 writes the store: it runs its own chunks straight into the store and replays the others' events
/// (activations, pooled features, Grams, logits, ids) as they arrive, in chunk order. A rank's send waits until
/// rank 0 takes it, so rank 0 holds at most one chunk per rank.
enum DistributedExtraction {
    static let tag = 1

    /// Returns the summary on rank 0, nil on the other ranks.
    static func run<S: RangedInputSource>(
        model: VisionTransformer, checkpoint: Checkpoint, input: S, to path: String,
        options: ExtractionOptions, communicator world: Communicator,
        progress: ((CKAProgress) -> Void)?
    ) throws -> ExtractionSummary? {
        let plan = try ExtractionPlan(model: model, checkpoint: checkpoint, input: input, options: options)
        let n = input.listedCount
        let chunk = plan.storesGrams ? lcm(options.batchSize, options.gramBatchSize) : options.batchSize
        let chunks = (n + chunk - 1) / chunk

        /// Runs chunk c into `sink`; returns the inputs it skipped (`id: reason`).
        func produce(_ c: Int, into sink: some ExtractionSink) throws -> [String] {
            let range = c * chunk..<min(n, (c + 1) * chunk)
            var part = try input.restricted(to: range)
            var producer = BatchProducer(model: model, plan: plan)
            while let batch = try part.next(maxCount: options.batchSize) {
                try producer.process(batch, isLast: batch.ids.count < options.batchSize, into: sink)
            }
            let skipped = part.skipped
            if plan.storesGrams && !skipped.isEmpty && c != chunks - 1 {
                throw ExtractionError.invalidOption(
                    "\(skipped[0].id): \(skipped[0].reason). Under mpirun, Gram batches must stay where one process puts them, so an unreadable image stops an extraction that stores Grams: remove it, or run without mpirun"
                )
            }
            return skipped.map { "\($0.id): \($0.reason)" }
        }

        guard world.isRoot else {
            for c in stride(from: world.rank, to: chunks, by: world.size) {
                let recorder = RecordingSink()
                let skipped = try produce(c, into: recorder)
                world.send(encode(recorder.events, skipped: skipped).bytes, to: 0, tag: tag)
            }
            return nil
        }
        let sink = try StoreSink(path: path, plan: plan)
        var skipped: [String] = []
        let start = Date()
        for c in 0..<chunks {
            let owner = c % world.size
            if owner == 0 {
                skipped += try produce(c, into: sink)
            } else {
                let (events, remoteSkipped) = try decode(world.receive(from: owner, tag: tag).bytes)
                for e in events { try sink.consume(e) }
                skipped += remoteSkipped
            }
            progress?(CKAProgress(done: sink.count, total: n, unit: "images", seconds: Date().timeIntervalSince(start)))
        }
        return try sink.finish(classes: input.classes, skipped: skipped, seconds: Date().timeIntervalSince(start))
    }

    static func lcm(_ a: Int, _ b: Int) -> Int {
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        return a / gcd(a, b) * b
    }

    /// A chunk's events as a message (tensors bit for bit).
    static func encode(_ events: [ExtractionEvent], skipped: [String]) -> Message {
        var m = Message()
        m.append(skipped)
        m.append(events.count)
        for e in events {
            switch e {
            case let .pixels(t): m.append(0); m.append(t)
            case let .layer(name, t): m.append(1); m.append(name); m.append(t)
            case let .declareGrams(name): m.append(2); m.append(name)
            case let .gram(name, g): m.append(3); m.append(name); m.append(g)
            case let .logits(t): m.append(4); m.append(t)
            case let .examples(ids, labels): m.append(5); m.append(ids); m.append(labels)
            }
        }
        return m
    }

    static func decode(_ bytes: [UInt8]) throws -> (events: [ExtractionEvent], skipped: [String]) {
        var r = MessageReader(bytes)
        let skipped = try r.strings()
        var events: [ExtractionEvent] = []
        for _ in 0..<(try r.int()) {
            switch try r.int() {
            case 0: events.append(.pixels(try r.tensor(Float.self)))
            case 1: events.append(.layer(try r.string(), try r.tensor(Float.self)))
            case 2: events.append(.declareGrams(try r.string()))
            case 3: events.append(.gram(try r.string(), try r.tensor(Double.self)))
            case 4: events.append(.logits(try r.tensor(Float.self)))
            case 5: events.append(.examples(ids: try r.strings(), labels: try r.ints()))
            default: throw DistributedError.malformedMessage(offset: 0)
            }
        }
        guard r.atEnd else { throw DistributedError.malformedMessage(offset: 0) }
        return (events, skipped)
    }
}
