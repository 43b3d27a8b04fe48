import CKADistributed
import CKAKit
import CKALandscape
import Foundation
import _CKASupport

/// The grid of `cka landscape` over the ranks of an MPI job.
///
/// Every rank, rank 0 included, takes the next point that is not done (in flat-index order) whenever it is free,
/// so the ranks finish within one point of each other. Rank 0 computes its points on a thread of its own: its
/// main thread — the only one that calls MPI — answers the other ranks at once, records every value and writes
/// the surface atomically, once per batch of values that arrived together (after each point when they come one
/// at a time), exactly as one process does. Between messages it sleeps (from 50 µs up to 2 ms), so it does not
/// take a core from the points. A point's value does not depend on which rank computed it, so the surface has
/// the same bits for any number of ranks; a killed job leaves the points written so far, and a rerun resumes.
enum DistributedLandscape {
    static let requestTag = 10, replyTag = 11
    /// Requests a rank keeps open: one, so no point waits at a busy rank while another rank is idle (rank 0
    /// answers within milliseconds, against seconds per point).
    static let lookahead = 1

    /// The points left, shared by rank 0's main thread (handing points to the other ranks) and its compute
    /// thread, with the values the compute thread finished.
    final class SharedQueue: @unchecked Sendable {
        let condition = NSCondition()
        private var points: [(ix: Int, iy: Int)]
        private var finished: [(ix: Int, iy: Int, value: LandscapeValue, seconds: Double)] = []
        private var failure: Error?
        private var localDone = false

        init(_ points: [(ix: Int, iy: Int)]) { self.points = points.reversed() }

        func next() -> (ix: Int, iy: Int)? { condition.withLock { points.popLast() } }

        /// Stops handing out points (after an error).
        func drain() { condition.withLock { points.removeAll() } }

        func finish(_ ix: Int, _ iy: Int, _ value: LandscapeValue, _ seconds: Double) {
            condition.withLock {
                finished.append((ix, iy, value, seconds))
                condition.signal()
            }
        }

        func end(_ error: Error?) {
            condition.withLock {
                failure = error
                localDone = true
                condition.signal()
            }
        }

        /// The values finished since the last call, the compute thread's error, and whether it has ended.
        func take() -> (values: [(ix: Int, iy: Int, value: LandscapeValue, seconds: Double)], error: Error?, done: Bool)
        {
            condition.withLock {
                defer { finished.removeAll() }
                return (finished, failure, localDone)
            }
        }

        /// Sleeps until the compute thread finishes a value or `seconds` pass.
        func wait(_ seconds: Double) {
            condition.withLock {
                if finished.isEmpty && !localDone { _ = condition.wait(until: Date(timeIntervalSinceNow: seconds)) }
            }
        }
    }

    /// Rank 0: the surface with every point (or `maxPoints` new ones) done. Other ranks: nil, after rank 0 has
    /// no point left for them.
    static func evaluate(
        _ run: SurfaceEvaluation, surface: LandscapeSurface, savingTo path: String, maxPoints: Int?,
        communicator world: Communicator, progress: SurfaceEvaluation.Progress?
    ) throws -> LandscapeSurface? {
        guard world.isRoot else {
            try work(run, surface: surface, communicator: world)
            return nil
        }
        var s = surface
        var points: [(ix: Int, iy: Int)] = []
        for iy in 0..<s.ny { for ix in 0..<s.nx where s.done[iy * s.nx + ix] == 0 { points.append((ix, iy)) } }
        if let maxPoints { points = Array(points.prefix(max(0, maxPoints))) }
        let queue = SharedQueue(points)
        defer { queue.drain() }

        // Rank 0's own points, on a compute thread (MPI stays on this one).
        let job = UncheckedSendable((run, s.x, s.y))
        let compute = Thread {
            let (run, x, y) = job.value
            do {
                while let p = queue.next() {
                    let start = DispatchTime.now().uptimeNanoseconds
                    let v = try run.value(a: x[p.ix], b: y[p.iy])
                    queue.finish(p.ix, p.iy, v, Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
                }
                queue.end(nil)
            } catch {
                queue.drain()
                queue.end(error)
            }
        }
        compute.stackSize = 64 << 20
        compute.start()

        var completed = s.completedCount, assigned = 0
        var answered = [Int](repeating: 0, count: world.size), results = [Int](repeating: 0, count: world.size)
        var arrived: [(ix: Int, iy: Int, value: LandscapeValue, seconds: Double)] = []

        /// Takes one message of a rank: a result (also a request) or a first request; answers it at once.
        func handle(_ source: Int, _ bytes: [UInt8]) throws {
            var r = MessageReader(bytes)
            if try r.int() == 1 {
                let ix = try r.int(), iy = try r.int(), seconds = try r.doubles()[0]
                arrived.append((ix, iy, try decodeValue(&r), seconds))
                results[source] += 1
                assigned -= 1
            }
            var reply = Message()
            if let p = queue.next() {
                reply.append(p.ix); reply.append(p.iy)
                assigned += 1
            } else {
                reply.append(-1)
            }
            world.send(reply.bytes, to: source, tag: replyTag)
            answered[source] += 1
        }
        func allAnswered() -> Bool { (1..<world.size).allSatisfy { answered[$0] == lookahead + results[$0] } }

        var pause = 50e-6
        while true {
            while let (source, bytes) = world.poll(tag: requestTag) { try handle(source, bytes) }
            let local = queue.take()
            if let error = local.error { throw error }
            arrived += local.values
            if !arrived.isEmpty {
                // One write for every value that arrived together.
                for a in arrived { s.record(a.value, ix: a.ix, iy: a.iy) }
                try s.write(to: path)
                for a in arrived {
                    completed += 1
                    progress?(completed, s.loss.count, a.value, a.seconds)
                }
                arrived.removeAll()
                pause = 50e-6
                continue
            }
            if local.done && assigned == 0 && allAnswered() { break }
            queue.wait(pause)
            pause = min(pause * 2, 2e-3)
        }
        return s
    }

    /// A rank other than 0: asks for points, computes them, sends their values, until rank 0 has none left.
    static func work(_ run: SurfaceEvaluation, surface s: LandscapeSurface, communicator world: Communicator) throws {
        var ready = Message()
        ready.append(0)
        for _ in 0..<lookahead { world.send(ready.bytes, to: 0, tag: requestTag) }
        var open = lookahead
        while open > 0 {
            var r = MessageReader(world.receive(from: 0, tag: replyTag).bytes)
            open -= 1
            let ix = try r.int()
            guard ix >= 0 else { continue }
            let iy = try r.int()
            let start = DispatchTime.now().uptimeNanoseconds
            let v = try run.value(a: s.x[ix], b: s.y[iy])
            var m = Message()
            m.append(1); m.append(ix); m.append(iy)
            m.append([Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9])
            encodeValue(v, into: &m)
            world.send(m.bytes, to: 0, tag: requestTag)
            open += 1
        }
    }

    static func encodeValue(_ v: LandscapeValue, into m: inout Message) {
        let names = v.parts.keys.sorted()
        m.append([v.loss, v.accuracy ?? .nan] + names.map { v.parts[$0]! })
        m.append(v.accuracy == nil ? 0 : 1)
        m.append(names)
        m.append([v.lambdaMin ?? .nan, v.lambdaMax ?? .nan])
        m.append(v.lambdaMin == nil ? 0 : 1)
    }

    static func decodeValue(_ r: inout MessageReader) throws -> LandscapeValue {
        let values = try r.doubles(), hasAccuracy = try r.int() == 1, names = try r.strings()
        guard values.count == 2 + names.count else { throw DistributedError.malformedMessage(offset: 0) }
        var parts: [String: Double] = [:]
        for (i, n) in names.enumerated() { parts[n] = values[2 + i] }
        var v = LandscapeValue(loss: values[0], accuracy: hasAccuracy ? values[1] : nil, parts: parts)
        let extremes = try r.doubles()
        if try r.int() == 1, extremes.count == 2 { (v.lambdaMin, v.lambdaMax) = (extremes[0], extremes[1]) }
        return v
    }
}

/// The Hessian under MPI: rank 0's decisions, and the gradients of each Hessian-vector product dealt out over the
/// ranks (`HessianVectorProduct`: chunks of examples, or single gradients, added in chunk order on every rank).
enum DistributedHessian {
    static let decisionTag = 13

    /// Rank 0 tells every rank whether the Hessian runs (every rank calls this once after the grid).
    static func shareDecision(_ run: Bool, communicator world: Communicator) -> Bool {
        guard world.isDistributed else { return run }
        var bytes: [UInt8] = [run ? 1 : 0]
        world.broadcast(&bytes)
        return bytes.first == 1
    }
}

/// The gradients of Hessian-vector products over the ranks of the job (`cka landscape`, `cka hessian`).
struct RankGradientSplit: GradientWorkSplit {
    let world: Communicator
    var rank: Int { world.rank }
    var size: Int { world.size }
    func allGather(_ values: [Float]) throws -> [[Float]] { world.allGather(floats: values) }
    func exchangeSegments(_ values: [Float], segments: [Range<Int>]) throws -> [[Float]] {
        world.exchangeSegments(values, segments: segments)
    }

    /// The split of `world`, or nil for a single process.
    static func of(_ world: Communicator) -> (any GradientWorkSplit)? {
        world.isDistributed ? RankGradientSplit(world: world) : nil
    }
}

/// `cka landscape` over the ranks of the job: the grid by `DistributedLandscape`, the Hessian's gradients by
/// `RankGradientSplit`; one process computes everything itself.
struct RankLandscapeSplit: LandscapeWorkSplit {
    let world: Communicator
    init(_ world: Communicator) { self.world = world }
    var rank: Int { world.rank }
    var size: Int { world.size }
    func barrier() { world.barrier() }

    func evaluate(
        _ run: SurfaceEvaluation, surface: LandscapeSurface, savingTo path: String, maxPoints: Int?,
        progress: SurfaceEvaluation.Progress?
    ) throws -> LandscapeSurface? {
        guard world.isDistributed else {
            return try run.evaluate(surface, savingTo: path, maxPoints: maxPoints, progress: progress)
        }
        return try DistributedLandscape.evaluate(
            run, surface: surface, savingTo: path, maxPoints: maxPoints, communicator: world, progress: progress)
    }

    func shareDecision(_ decision: Bool) -> Bool { DistributedHessian.shareDecision(decision, communicator: world) }

    var gradients: (any GradientWorkSplit)? { RankGradientSplit.of(world) }

    func gather(_ values: [Int: Double]) throws -> [Int: Double]? {
        guard world.isDistributed else { return values }
        let keys = values.keys.sorted()
        guard world.isRoot else {
            var m = Message()
            m.append(keys)
            m.append(keys.map { values[$0]! })
            world.send(m.bytes, to: 0, tag: Self.gatherTag)
            return nil
        }
        var all = values
        for source in 1..<world.size {
            var r = MessageReader(world.receive(from: source, tag: Self.gatherTag).bytes)
            let k = try r.ints(), v = try r.doubles()
            guard k.count == v.count else { throw DistributedError.malformedMessage(offset: 0) }
            for (key, value) in zip(k, v) { all[key] = value }
        }
        return all
    }
    static let gatherTag = 14
}
