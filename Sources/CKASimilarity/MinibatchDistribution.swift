/// Splits the minibatches of a comparison over cooperating processes (MPI ranks) and brings their HSIC₁ terms
/// back together in batch order, so the CKA matrix has the same bits for any number of processes.
///
/// Minibatch g (its `ordinal` in the `MinibatchPlan`) belongs to process `g % size`. The batches go in rounds
/// of `size`, one per process; after its batch of a round (or with nil when it has none), each process calls
/// `exchange`, and the accumulating process adds the returned terms, which are in batch order.
public protocol MinibatchDistribution: AnyObject {
    /// This process's index, 0..<size.
    var rank: Int { get }
    /// Number of processes.
    var size: Int { get }
    /// Whether this process adds all terms and holds the result (one process of the job).
    var accumulates: Bool { get }
    /// Called by every process once per round with the terms of its batch of the round (nil if it has none).
    /// Returns, on the accumulating process, the round's terms in batch (= rank) order without the nils; [] elsewhere.
    func exchange(_ terms: MinibatchCKA.BatchTerms?) throws -> [MinibatchCKA.BatchTerms]
}

/// The minibatch loop's bookkeeping: which batches are this process's, and the rounds of exchanges.
struct BatchRounds {
    let distribution: MinibatchDistribution?
    let total: Int
    private var exchanged = 0

    init(_ distribution: MinibatchDistribution?, total: Int) {
        self.distribution = distribution
        self.total = total
    }

    /// Whether this process computes `batch`.
    func owns(_ batch: Minibatch) -> Bool { distribution.map { batch.ordinal % $0.size == $0.rank } ?? true }

    /// Whether this process ends up with the sums (always, without distribution).
    var accumulates: Bool { distribution?.accumulates ?? true }

    /// Adds this process's next batch's terms to `acc`: directly, or through the round's exchange. A process's
    /// k-th batch is in round k.
    mutating func add(_ terms: MinibatchCKA.BatchTerms, into acc: inout MinibatchCKA) throws {
        guard let d = distribution else { return try acc.add(terms) }
        for t in try d.exchange(terms) { try acc.add(t) }
        exchanged += 1
    }

    /// Takes part in the rounds left after this process's last batch.
    mutating func finish(into acc: inout MinibatchCKA) throws {
        guard let d = distribution else { return }
        while exchanged < (total + d.size - 1) / d.size {
            for t in try d.exchange(nil) { try acc.add(t) }
            exchanged += 1
        }
    }
}
