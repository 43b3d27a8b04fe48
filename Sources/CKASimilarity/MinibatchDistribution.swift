/// Splits the minibatches of a comparison over cooperating processes (MPI ranks) and brings their HSIC₁ terms
/// back together in batch order, so the CKA matrix has the same bits for any number of processes.
///
/// Batches are numbered over all passes (`pass · batches + batch`); batch g belongs to process `g % size`.
/// The batches go in rounds of `size` (one per process); after its batch of a round (or none), each process
/// calls `exchange`, and the accumulating process adds the returned terms in order.
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

/// The minibatch loop's bookkeeping: which batches are this process's, and when a round's terms are exchanged.
struct BatchRounds {
    let distribution: MinibatchDistribution?
    let total: Int
    private var pending: MinibatchCKA.BatchTerms?

    init(_ distribution: MinibatchDistribution?, total: Int) {
        self.distribution = distribution
        self.total = total
    }

    /// Whether this process computes global batch `g`.
    func owns(_ g: Int) -> Bool { distribution.map { g % $0.size == $0.rank } ?? true }

    /// Whether this process ends up with the sums (always, without distribution).
    var accumulates: Bool { distribution?.accumulates ?? true }

    /// Records global batch g's terms (nil unless `owns(g)`); adds them to `acc`, directly or at the end of g's round.
    mutating func finish(_ g: Int, _ terms: MinibatchCKA.BatchTerms?, into acc: inout MinibatchCKA) throws {
        guard let d = distribution else {
            if let terms { try acc.add(terms) }
            return
        }
        if let terms { pending = terms }
        guard g % d.size == d.size - 1 || g == total - 1 else { return }
        let all = try d.exchange(pending)
        pending = nil
        for t in all { try acc.add(t) }
    }
}
