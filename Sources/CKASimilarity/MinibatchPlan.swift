import CKATensor

/// One minibatch of a comparison: which examples (rows of both stores) it holds.
package struct Minibatch: Sendable, Equatable {
    /// Position in the whole comparison, `pass · batchesPerPass + index`: partial sums are added in this order,
    /// which makes the result independent of how the batches were split over threads or processes.
    public let ordinal: Int
    /// The pass (its permutation seed is `shuffleSeed + pass`).
    public let pass: Int
    /// Index within the pass; stored Grams are numbered by it.
    public let index: Int
    /// Rows `index·b ..< (index+1)·b` of the (permuted) order.
    public let rows: Range<Int>
    /// The examples of the batch when shuffled (a slice of the pass's permutation); nil means `rows`.
    public let indices: [Int]?

    /// The examples of the batch, as row numbers of the stores.
    public var examples: [Int] { indices ?? Array(rows) }
}

/// The minibatches of a comparison, every pass in order (formats.md §2: consecutive batches of `batchSize`
/// examples in file order, or in the order of one seeded permutation per pass; a short last batch is dropped).
package struct MinibatchPlan: Sendable {
    public let batchSize: Int
    public let batchesPerPass: Int
    public let passes: Int
    /// True when the examples are permuted (a seed or several passes).
    public let shuffled: Bool
    public let batches: [Minibatch]
    /// Things the user should know (a dropped short batch).
    public let warnings: [String]

    /// - Throws: `CKAError.batchSize` unless 4 ≤ `options.batchSize` ≤ `examples`; `.invalidOption` for passes < 1.
    public init(examples n: Int, options o: CKAOptions) throws {
        let bs = o.batchSize
        guard bs >= 4, bs <= n else { throw CKAError.batchSize(requested: bs, examples: n) }
        guard o.passes >= 1 else { throw CKAError.invalidOption("`passes` must be at least 1") }
        let k = n / bs
        batchSize = bs
        batchesPerPass = k
        passes = o.passes
        shuffled = o.shuffleSeed != nil || o.passes > 1
        warnings =
            n % bs == 0 ? [] : ["the last \(n % bs) of \(n) examples do not fill a batch of \(bs) and were dropped"]
        var batches: [Minibatch] = []
        batches.reserveCapacity(k * o.passes)
        for pass in 0..<o.passes {
            let order = shuffled ? CKAComparison.permutation(n, seed: (o.shuffleSeed ?? 0) &+ UInt64(pass)) : nil
            for index in 0..<k {
                let rows = index * bs..<(index + 1) * bs
                batches.append(
                    Minibatch(
                        ordinal: pass * k + index, pass: pass, index: index, rows: rows,
                        indices: order.map { Array($0[rows]) }))
            }
        }
        self.batches = batches
    }
}
