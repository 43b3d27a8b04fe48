import CKATensor
import Foundation

// The exact neighbour search under the k-NN classifier: blocked dot products in Double, top-k selection.
/// Read-only data of a neighbour search shared by the workers.
struct SearchContext: Sendable {
    let train: UnsafeSendablePointer<Float>
    let trainNorms: UnsafeSendablePointer<Double>
    let inverseNorms: UnsafeSendablePointer<Float>
    let n: Int
    let d: Int
}

/// One worker's scratch for the exact top-k neighbours of a query.
struct NeighbourSearch {
    private var selector: TopKSelector
    private var candidates: [Int32] = []
    private var exact: [Double] = []
    private var order: [Int] = []
    /// The k of the search.
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        selector = TopKSelector(capacity: capacity)
    }

    /// Finds the `capacity` nearest training rows: heap selection on the float32 keys
    /// `keys[j]·inverseNorms[j]` (= ‖q‖·cos), then every row whose key is within `margin` of the last
    /// kept one is rescored in float64 and the short list ranked exactly.
    mutating func search(
        keys: UnsafePointer<Float>, query: UnsafePointer<Float>, queryNorm: Double, excluding: Int,
        margin: Double, context: SearchContext
    ) {
        let n = context.n, d = context.d
        let scale = context.inverseNorms.base
        selector.select(keys, scale: scale, count: n, excluding: excluding)
        let threshold = Float(Double(selector.similarities[capacity - 1]) - margin)
        candidates.removeAll(keepingCapacity: true)
        for j in 0..<n where keys[j] * scale[j] >= threshold && j != excluding {
            candidates.append(Int32(truncatingIfNeeded: j))
        }
        exact.removeAll(keepingCapacity: true)
        let train = context.train.base, tn = context.trainNorms.base
        // Four candidate rows per pass over the query: more loads in flight, the query read once.
        let count = candidates.count
        var c = 0
        candidates.withUnsafeBufferPointer { cand in
            while c + 4 <= count {
                let j0 = Int(cand[c]), j1 = Int(cand[c + 1]), j2 = Int(cand[c + 2]), j3 = Int(cand[c + 3])
                let dots = dot4InDouble(query, train + j0 * d, train + j1 * d, train + j2 * d, train + j3 * d, d)
                exact.append(dots.0 / (queryNorm * tn[j0]))
                exact.append(dots.1 / (queryNorm * tn[j1]))
                exact.append(dots.2 / (queryNorm * tn[j2]))
                exact.append(dots.3 / (queryNorm * tn[j3]))
                c += 4
            }
            while c < count {
                let j = Int(cand[c])
                exact.append(dotInDouble(query, train + j * d, d) / (queryNorm * tn[j]))
                c += 1
            }
        }
        order.removeAll(keepingCapacity: true)
        order.append(contentsOf: 0..<candidates.count)
        exact.withUnsafeBufferPointer { e in
            candidates.withUnsafeBufferPointer { c in
                order.sort { a, b in e[a] > e[b] || (e[a] == e[b] && c[a] < c[b]) }
            }
        }
    }

    /// The training index of neighbour `j` (0 = most similar) after `search`.
    @inline(__always) func index(_ j: Int) -> Int { Int(candidates[order[j]]) }
    /// The float64 cosine similarity of neighbour `j` after `search`.
    @inline(__always) func similarity(_ j: Int) -> Double { exact[order[j]] }
}

/// `Σ a[t]·b[t]` over `d` floats, accumulated in `Double` (eight lanes, then the tail in order).
@inline(__always)
func dotInDouble(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int) -> Double {
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    var acc0 = SIMD4<Double>(), acc1 = SIMD4<Double>()
    var t = 0
    while t + 8 <= d {
        let x0 = SIMD4<Double>(ra.loadUnaligned(fromByteOffset: 4 * t, as: SIMD4<Float>.self))
        let y0 = SIMD4<Double>(rb.loadUnaligned(fromByteOffset: 4 * t, as: SIMD4<Float>.self))
        let x1 = SIMD4<Double>(ra.loadUnaligned(fromByteOffset: 4 * t + 16, as: SIMD4<Float>.self))
        let y1 = SIMD4<Double>(rb.loadUnaligned(fromByteOffset: 4 * t + 16, as: SIMD4<Float>.self))
        acc0 += x0 * y0
        acc1 += x1 * y1
        t += 8
    }
    var s = (acc0 + acc1).sum()
    while t < d { s += Double(a[t]) * Double(b[t]); t += 1 }
    return s
}

/// `dotInDouble(q, r_i, d)` for four rows at once (same lanes and order, so the same results).
@inline(__always)
func dot4InDouble(
    _ q: UnsafePointer<Float>, _ r0: UnsafePointer<Float>, _ r1: UnsafePointer<Float>,
    _ r2: UnsafePointer<Float>, _ r3: UnsafePointer<Float>, _ d: Int
) -> (Double, Double, Double, Double) {
    let rq = UnsafeRawPointer(q)
    let rows = (UnsafeRawPointer(r0), UnsafeRawPointer(r1), UnsafeRawPointer(r2), UnsafeRawPointer(r3))
    var a0 = SIMD4<Double>(), b0 = SIMD4<Double>(), a1 = SIMD4<Double>(), b1 = SIMD4<Double>()
    var a2 = SIMD4<Double>(), b2 = SIMD4<Double>(), a3 = SIMD4<Double>(), b3 = SIMD4<Double>()
    var t = 0
    while t + 8 <= d {
        let x0 = SIMD4<Double>(rq.loadUnaligned(fromByteOffset: 4 * t, as: SIMD4<Float>.self))
        let x1 = SIMD4<Double>(rq.loadUnaligned(fromByteOffset: 4 * t + 16, as: SIMD4<Float>.self))
        a0 += x0 * SIMD4<Double>(rows.0.loadUnaligned(fromByteOffset: 4 * t, as: SIMD4<Float>.self))
        b0 += x1 * SIMD4<Double>(rows.0.loadUnaligned(fromByteOffset: 4 * t + 16, as: SIMD4<Float>.self))
        a1 += x0 * SIMD4<Double>(rows.1.loadUnaligned(fromByteOffset: 4 * t, as: SIMD4<Float>.self))
        b1 += x1 * SIMD4<Double>(rows.1.loadUnaligned(fromByteOffset: 4 * t + 16, as: SIMD4<Float>.self))
        a2 += x0 * SIMD4<Double>(rows.2.loadUnaligned(fromByteOffset: 4 * t, as: SIMD4<Float>.self))
        b2 += x1 * SIMD4<Double>(rows.2.loadUnaligned(fromByteOffset: 4 * t + 16, as: SIMD4<Float>.self))
        a3 += x0 * SIMD4<Double>(rows.3.loadUnaligned(fromByteOffset: 4 * t, as: SIMD4<Float>.self))
        b3 += x1 * SIMD4<Double>(rows.3.loadUnaligned(fromByteOffset: 4 * t + 16, as: SIMD4<Float>.self))
        t += 8
    }
    var s0 = (a0 + b0).sum(), s1 = (a1 + b1).sum(), s2 = (a2 + b2).sum(), s3 = (a3 + b3).sum()
    while t < d {
        let x = Double(q[t])
        s0 += x * Double(r0[t]); s1 += x * Double(r1[t]); s2 += x * Double(r2[t]); s3 += x * Double(r3[t])
        t += 1
    }
    return (s0, s1, s2, s3)
}

/// True if no element is NaN or ±Inf (a specialised pass: x·0 is 0 exactly for finite x).
func allFinite(_ x: Tensor<Float>) -> Bool {
    x.withUnsafeBufferPointer { p in
        guard let base = p.baseAddress else { return true }
        var acc: Float = 0
        for i in 0..<p.count { acc += base[i] * 0 }
        return acc == 0
    }
}

/// The 0-based rank of class `label` when classes are sorted by score (descending), equal scores by
/// lower class index first: the number of classes ranked before it.
@inline(__always)
func classRank(of label: Int, scores: UnsafeMutableBufferPointer<Double>) -> Int {
    guard label >= 0 && label < scores.count else { return Int.max }
    let s = scores[label]
    var rank = 0
    for c in 0..<scores.count {
        let v = scores[c]
        if v > s || (v == s && c < label) { rank += 1 }
    }
    return rank
}

/// The `k` largest values of a row with their indices, by a bounded heap (no full sort):
/// larger value first, equal values by lower index first.
struct TopKSelector {
    let capacity: Int
    /// After `select`: the selected similarities and indices, best first.
    private(set) var similarities: [Float]
    private(set) var indices: [Int32]

    init(capacity: Int) {
        self.capacity = capacity
        similarities = Array(repeating: 0, count: capacity)
        indices = Array(repeating: 0, count: capacity)
    }

    /// Selects from the values `row[j]` (times `scale[j]` when a scale is given) for `j` in `0..<count`,
    /// skipping index `excluding` (−1 for none). Needs `count` (less the excluded one) ≥ capacity.
    mutating func select(_ row: UnsafePointer<Float>, scale: UnsafePointer<Float>? = nil, count: Int, excluding: Int) {
        let k = capacity
        similarities.withUnsafeMutableBufferPointer { hs in
            indices.withUnsafeMutableBufferPointer { hi in
                // Min-heap on "goodness": the root is the worst kept element. a is worse than b if
                // a.s < b.s, or a.s == b.s and a.i > b.i.
                @inline(__always) func worse(_ a: Int, _ b: Int) -> Bool {
                    hs[a] < hs[b] || (hs[a] == hs[b] && hi[a] > hi[b])
                }
                @inline(__always) func swapAt(_ a: Int, _ b: Int) {
                    let s = hs[a]; hs[a] = hs[b]; hs[b] = s
                    let t = hi[a]; hi[a] = hi[b]; hi[b] = t
                }
                @inline(__always) func siftDown(_ start: Int, _ size: Int) {
                    var i = start
                    while true {
                        let l = 2 * i + 1
                        if l >= size { return }
                        var m = l
                        if l + 1 < size && worse(l + 1, l) { m = l + 1 }
                        if worse(m, i) { swapAt(m, i); i = m } else { return }
                    }
                }
                var filled = 0
                var j = 0
                // Fill the heap with the first k candidates.
                while filled < k && j < count {
                    if j != excluding {
                        hs[filled] = scale.map { row[j] * $0[j] } ?? row[j]
                        hi[filled] = Int32(truncatingIfNeeded: j)
                        var c = filled
                        while c > 0 {
                            let p = (c - 1) / 2
                            if worse(c, p) { swapAt(c, p); c = p } else { break }
                        }
                        filled += 1
                    }
                    j += 1
                }
                // Later candidates have larger indices, so they enter only with a strictly larger value.
                @inline(__always) func offer(_ s: Float, _ j: Int) {
                    hs[0] = s; hi[0] = Int32(truncatingIfNeeded: j)
                    siftDown(0, k)
                }
                var root = hs[0]
                if let scale {
                    while j < count {
                        let s = row[j] * scale[j]
                        if s > root && j != excluding { offer(s, j); root = hs[0] }
                        j += 1
                    }
                } else {
                    while j < count {
                        let s = row[j]
                        if s > root && j != excluding { offer(s, j); root = hs[0] }
                        j += 1
                    }
                }
                // Heap sort in place: repeatedly move the worst to the end → best first.
                var size = filled
                while size > 1 {
                    swapAt(0, size - 1)
                    size -= 1
                    siftDown(0, size)
                }
            }
        }
    }
}

/// A pointer that may cross into `DispatchQueue.concurrentPerform` workers (read-only use).
struct UnsafeSendablePointer<T>: @unchecked Sendable {
    let base: UnsafePointer<T>
    init(_ base: UnsafePointer<T>) { self.base = base }
}

/// A zeroed buffer that workers write disjoint parts of.
struct UnsafeSendableBuffer<T: Numeric>: @unchecked Sendable {
    let base: UnsafeMutablePointer<T>
    init(count: Int) {
        base = .allocate(capacity: max(1, count))
        base.initialize(repeating: 0, count: max(1, count))
    }
    func deallocate() { base.deallocate() }
}
