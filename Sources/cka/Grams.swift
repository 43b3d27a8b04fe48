import ArgumentParser
import CKAKit
import Foundation
import _CKASupport

extension CKACommand {
    struct Grams: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add per-minibatch Gram matrices (/grams/<layer>) to an existing activation store.",
            discussion: """
                Later 'cka compare' runs with the same --batch-size and --tokens read these b×b Grams instead of the \
                activations. Feature columns are centred within each batch first (HSIC₁ is unchanged by it and float32 \
                stays exact). The store is rewritten under a temporary name and replaced only when complete.
                """)

        @Argument(help: "The activation store to extend.")
        var file: String

        @Option(help: "Examples per minibatch (at least 4).")
        var batchSize = 32

        @Option(help: "Token reduction of [N, T, D] layers: flatten, cls, gap or gap_nocls.")
        var tokens: TokenReduction = .flatten

        @Option(help: "Comma-separated layer globs (default: all).")
        var layers: String?

        @Flag(help: "No progress messages.")
        var quiet = false

        func validate() throws {
            if batchSize < 4 { throw ValidationError("--batch-size must be at least 4") }
        }

        func run() throws {
            try reportingErrors {
                let store = try ActivationStore(path: file)
                guard batchSize <= store.count else {
                    throw CKAError.batchSize(requested: batchSize, examples: store.count)
                }
                let names = try CKAComparison.selectLayers(store, patterns: globs(layers)).filter { n in
                    store.layers.contains { $0.name == n }
                }
                let writer = try ActivationStoreWriter(updating: file)
                let k = store.count / batchSize
                let progress = ProgressLine("grams", quiet: quiet)
                var buffer = Tensor<Float>(shape: [0])
                for name in names { try writer.addGrams(name, batchSize: batchSize, tokens: tokens, centered: true) }
                for batch in 0..<k {
                    for name in names {
                        try store.read(name, rows: batch * batchSize..<(batch + 1) * batchSize, into: &buffer)
                        let x = buffer.rank == 3 && tokens != .flatten ? try tokens.apply(buffer) : buffer
                        try writer.appendGram(try x.centeredGram(), to: name)
                    }
                    progress.update(CKAProgress(done: batch + 1, total: k, unit: "minibatches"))
                }
                try writer.finish()
                if store.count % batchSize != 0 {
                    note(
                        "warning: the last \(store.count % batchSize) examples do not fill a batch of \(batchSize) and have no Gram"
                    )
                }
                print(
                    "\(file): added Grams of \(names.count) layers, \(k) batches of \(batchSize) (tokens \(tokens.rawValue))"
                )
            }
        }
    }
}
