import CKADistributed
import CKAKit
import CKALandscape
import Foundation

/// The grid of `cka landscape` over the ranks of an MPI job.
///
/// Rank 0 hands the points that are not done yet out one at a time, in flat-index order, as ranks ask for them
/// (each rank keeps two requests open, so it never waits for rank 0 to finish a point of its own), computes
/// points itself in between, records every value and writes the surface atomically after each point, exactly
/// as one process does. A point's value does not depend on which rank computed it, so the surface has the
/// same bits for any number of ranks; a killed job leaves the points done so far, and a rerun resumes.
enum DistributedLandscape {
    static let requestTag = 10, replyTag = 11
    /// Requests a rank keeps open.
    static let lookahead = 2

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
        var queue: [(ix: Int, iy: Int)] = []
        for iy in 0..<s.ny { for ix in 0..<s.nx where s.done[iy * s.nx + ix] == 0 { queue.append((ix, iy)) } }
        if let maxPoints { queue = Array(queue.prefix(max(0, maxPoints))) }
        queue.reverse()  // popLast takes them in flat-index order
        var completed = s.completedCount, assigned = 0
        var answered = [Int](repeating: 0, count: world.size), results = [Int](repeating: 0, count: world.size)

        func record(_ v: LandscapeValue, ix: Int, iy: Int, seconds: Double) throws {
            s.record(v, ix: ix, iy: iy)
            try s.write(to: path)
            completed += 1
            progress?(completed, s.loss.count, v, seconds)
        }
        /// Takes one message of a rank: a result (also a request) or a first request; answers it at once.
        func handle(_ source: Int, _ bytes: [UInt8]) throws {
            var r = MessageReader(bytes)
            if try r.int() == 1 {
                let ix = try r.int(), iy = try r.int(), seconds = try r.doubles()[0]
                try record(try decodeValue(&r), ix: ix, iy: iy, seconds: seconds)
                results[source] += 1
                assigned -= 1
            }
            var reply = Message()
            if let p = queue.popLast() {
                reply.append(p.ix); reply.append(p.iy)
                assigned += 1
            } else {
                reply.append(-1)
            }
            world.send(reply.bytes, to: source, tag: replyTag)
            answered[source] += 1
        }
        func allAnswered() -> Bool { (1..<world.size).allSatisfy { answered[$0] == lookahead + results[$0] } }

        while true {
            while let (source, bytes) = world.poll(tag: requestTag) { try handle(source, bytes) }
            if let p = queue.popLast() {
                let start = DispatchTime.now().uptimeNanoseconds
                let v = try run.value(a: s.x[p.ix], b: s.y[p.iy])
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                try record(v, ix: p.ix, iy: p.iy, seconds: seconds)
                continue
            }
            if assigned == 0 && allAnswered() { break }
            let (source, bytes) = world.receive(from: nil, tag: requestTag)
            try handle(source, bytes)
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

/// The Hessian power iteration on two ranks: both run the same iteration; each Hessian-vector product needs the
/// gradients at θ₀ ± εv, and rank 0 computes the one at +εv while rank 1 computes the one at −εv. They swap
/// them (bit for bit), so both ranks hold the same vector at every step and the eigenvalue is that of one process.
enum DistributedHessian {
    static let tag = 12, decisionTag = 13

    /// Rank 0 tells every rank whether the Hessian runs (every rank calls this once after the grid).
    static func shareDecision(_ run: Bool, communicator world: Communicator) -> Bool {
        guard world.isDistributed else { return run }
        var bytes: [UInt8] = [run ? 1 : 0]
        world.broadcast(&bytes)
        return bytes.first == 1
    }

    /// The gradient pair of this rank (0: computes +εv, 1: computes −εv), or nil without a second rank.
    static func gradientPair(
        _ objective: any DifferentiableLandscapeObjective, parameters: Set<String>,
        communicator world: Communicator
    ) -> HessianEigenvalue.GradientPair? {
        guard world.isDistributed, world.rank <= 1 else { return nil }
        return { plus, minus in
            if world.rank == 0 {
                let g = try objective.valueAndGradient(at: plus).gradient.restricted(to: parameters)
                let other = try decode(world.receive(from: 1, tag: tag).bytes)
                world.send(encode(g).bytes, to: 1, tag: tag)
                return (g, other)
            } else {
                let g = try objective.valueAndGradient(at: minus).gradient.restricted(to: parameters)
                world.send(encode(g).bytes, to: 0, tag: tag)
                return (try decode(world.receive(from: 0, tag: tag).bytes), g)
            }
        }
    }

    static func encode(_ p: ParameterSet) -> Message {
        var m = Message()
        m.append(p.names)
        for name in p.names { m.append(p[name]!) }
        return m
    }

    static func decode(_ bytes: [UInt8]) throws -> ParameterSet {
        var r = MessageReader(bytes)
        let names = try r.strings()
        var tensors: [String: Tensor<Float>] = [:]
        for name in names { tensors[name] = try r.tensor(Float.self) }
        return try ParameterSet(names: names, tensors: tensors)
    }
}

/// `cka landscape` over the ranks of the job: the grid by `DistributedLandscape`, the Hessian by
/// `DistributedHessian`; one process computes everything itself.
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

    func gradientPair(
        _ objective: any DifferentiableLandscapeObjective, parameters: Set<String>
    ) -> HessianEigenvalue.GradientPair? {
        DistributedHessian.gradientPair(objective, parameters: parameters, communicator: world)
    }

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
