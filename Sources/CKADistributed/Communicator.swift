import CMPI
import Foundation

/// The processes of a job started by `mpirun` / `srun` (Open MPI's `MPI_COMM_WORLD`), or this process alone.
///
/// `Communicator.world` initialises MPI only when the process was launched by an MPI launcher (its environment
/// holds `OMPI_COMM_WORLD_SIZE`, `PMIX_RANK` or `PMI_RANK`); a plain `cka …` never touches MPI and is a world
/// of one (rank 0, size 1) whose collective operations return their input. Only the thread that first used
/// `world` may call MPI (`MPI_THREAD_FUNNELED`).
///
/// Reductions here never use `MPI_Reduce`/`MPI_Allreduce` sums, whose order of addition is up to the
/// implementation: values are gathered and added in rank order (`orderedSum`), so a result depends on the
/// data only, not on how many processes computed it.
public final class Communicator: @unchecked Sendable {
    /// This process's index, 0..<size.
    public let rank: Int
    /// Number of processes.
    public let size: Int
    /// True when MPI was initialised (launched by mpirun/srun), even with one process.
    public let usesMPI: Bool
    /// Bytes this process sent to other ranks so far (payloads of sends, broadcasts from the root, gathers).
    public private(set) var bytesSent = 0

    private init(rank: Int, size: Int, usesMPI: Bool) {
        self.rank = rank
        self.size = size
        self.usesMPI = usesMPI
    }

    /// The job's processes (initialised on first use).
    public static let world: Communicator = {
        guard launchedByMPI(ProcessInfo.processInfo.environment) else {
            return Communicator(rank: 0, size: 1, usesMPI: false)
        }
        // Ranks waiting for a message yield the core instead of spinning on it (ranks often share cores).
        setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0)
        var provided: Int32 = 0
        MPI_Init_thread(nil, nil, cka_MPI_THREAD_FUNNELED(), &provided)
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(cka_MPI_COMM_WORLD(), &r)
        MPI_Comm_size(cka_MPI_COMM_WORLD(), &s)
        atexit { Communicator.finalizeAtExit() }
        return Communicator(rank: Int(r), size: Int(s), usesMPI: true)
    }()

    /// Whether `environment` is that of a process started by an MPI launcher. `CKA_MPI=0` forces a plain
    /// single process, `CKA_MPI=1` forces MPI (a singleton world of one when not launched by mpirun).
    public static func launchedByMPI(_ environment: [String: String]) -> Bool {
        if let forced = environment["CKA_MPI"] { return forced == "1" }
        return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"].contains { environment[$0] != nil }
    }

    /// True on rank 0, the process that writes outputs and prints progress.
    public var isRoot: Bool { rank == 0 }

    /// True when several processes share the work.
    public var isDistributed: Bool { size > 1 }

    nonisolated(unsafe) private static var finalized = false

    private static func finalizeAtExit() {
        guard !finalized else { return }
        finalized = true
        if ProcessInfo.processInfo.environment["CKA_MPI_STATS"] == "1" {
            // Bytes this rank sent (payloads), for the scale-out report.
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            let cpu =
                Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(
                    usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6
            FileHandle.standardError.write(
                Data(
                    String(
                        format: "cka-mpi-stats: rank %d of %d sent %d bytes cpu %.2f s\n",
                        world.rank, world.size, world.bytesSent, cpu
                    ).utf8))
        }
        world.barrier()  // ranks that finish early wait here asleep, not spinning inside MPI_Finalize
        var flag: Int32 = 0
        MPI_Finalized(&flag)
        if flag == 0 { MPI_Finalize() }
    }

    // MARK: Errors

    /// Ends the whole job: prints `error: rank r: message` (one line, stderr) and calls `MPI_Abort`, which
    /// makes the launcher terminate every other rank (they are blocked or busy, never waiting forever).
    /// In a single process, prints `error: message` and exits with `code`.
    public func abort(message: String, code: Int32 = 1) -> Never {
        // An error every rank meets (a missing file) is reported once: rank 0 at once, the others after a
        // pause in which rank 0's abort usually ends them.
        if isDistributed && !isRoot { usleep(500_000) }
        let prefix = isDistributed ? "error: rank \(rank): " : "error: "
        FileHandle.standardError.write(Data((prefix + message.replacingOccurrences(of: "\n", with: " ") + "\n").utf8))
        if usesMPI {
            Communicator.finalized = true
            MPI_Abort(cka_MPI_COMM_WORLD(), code)
        }
        exit(code)
    }

    private func check(_ rc: Int32, _ what: String) {
        if rc != cka_MPI_SUCCESS() { abort(message: "MPI \(what) failed (code \(rc))") }
    }

    // MARK: Collectives

    /// Waits for every rank (asleep, not spinning).
    public func barrier() {
        guard usesMPI, size > 1 else { return }
        var request: MPI_Request? = nil
        check(MPI_Ibarrier(cka_MPI_COMM_WORLD(), &request), "barrier")
        wait(&request, "barrier")
    }

    /// Completes a non-blocking operation, sleeping between tests (from 20 µs up to 2 ms): Open MPI's blocking
    /// calls spin on a core, which would slow the ranks still computing on a shared machine.
    private func wait(_ request: inout MPI_Request?, _ what: String) {
        var done: Int32 = 0, pause: UInt32 = 20
        while true {
            check(MPI_Test(&request, &done, cka_MPI_STATUS_IGNORE()), what)
            if done != 0 { return }
            usleep(pause)
            pause = min(pause * 2, 2000)
        }
    }

    /// Makes `bytes` on every rank equal to those of `root` (the length travels too).
    public func broadcast(_ bytes: inout [UInt8], root: Int = 0) {
        guard usesMPI, size > 1 else { return }
        var count = Int64(bytes.count)
        var request: MPI_Request? = nil
        check(MPI_Ibcast(&count, 1, cka_MPI_INT64_T(), Int32(root), cka_MPI_COMM_WORLD(), &request), "broadcast")
        wait(&request, "broadcast")
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(count)) }
        if rank == root { bytesSent += Int(count) * (size - 1) }
        bytes.withUnsafeMutableBytes { p in
            var request: MPI_Request? = nil
            check(
                MPI_Ibcast(p.baseAddress, Int32(count), cka_MPI_BYTE(), Int32(root), cka_MPI_COMM_WORLD(), &request),
                "broadcast")
            wait(&request, "broadcast")
        }
    }

    /// `root`'s Doubles on every rank.
    public func broadcast(_ values: inout [Double], root: Int = 0) {
        var bytes = rank == root ? Message.encode(values) : []
        broadcast(&bytes, root: root)
        if rank != root { values = Message.decodeDoubles(bytes) }
    }

    /// Every rank's `values` (any length), in rank order, on every rank.
    public func allGather(_ values: [Double]) -> [[Double]] {
        guard usesMPI, size > 1 else { return [values] }
        var count = Int64(values.count)
        var counts = [Int64](repeating: 0, count: size)
        check(
            MPI_Allgather(&count, 1, cka_MPI_INT64_T(), &counts, 1, cka_MPI_INT64_T(), cka_MPI_COMM_WORLD()),
            "allgather")
        var displs = [Int32](repeating: 0, count: size), counts32 = counts.map { Int32($0) }
        for i in 1..<size { displs[i] = displs[i - 1] + counts32[i - 1] }
        var out = [Double](repeating: 0, count: Int(counts.reduce(0, +)))
        bytesSent += values.count * 8 * (size - 1)
        values.withUnsafeBufferPointer { v in
            check(
                MPI_Allgatherv(
                    v.baseAddress, Int32(values.count), cka_MPI_DOUBLE(), &out, &counts32, &displs,
                    cka_MPI_DOUBLE(), cka_MPI_COMM_WORLD()), "allgather")
        }
        return (0..<size).map { Array(out[Int(displs[$0])..<Int(displs[$0]) + Int(counts32[$0])]) }
    }

    /// Every rank's Floats (any length), in rank order, on every rank: each rank broadcasts its values in turn,
    /// in pieces of at most 2²⁸ floats (MPI counts are 32-bit), waiting asleep.
    public func allGather(floats values: [Float]) -> [[Float]] {
        guard usesMPI, size > 1 else { return [values] }
        var counts = [Int64](repeating: 0, count: size)
        var count = Int64(values.count)
        withUnsafeMutablePointer(to: &count) { c in
            counts.withUnsafeMutableBufferPointer { all in
                var request: MPI_Request? = nil
                check(
                    MPI_Iallgather(
                        c, 1, cka_MPI_INT64_T(), all.baseAddress, 1, cka_MPI_INT64_T(), cka_MPI_COMM_WORLD(), &request),
                    "allgather")
                wait(&request, "allgather")
            }
        }
        var out: [[Float]] = []
        for root in 0..<size {
            var buffer = root == rank ? values : [Float](repeating: 0, count: Int(counts[root]))
            buffer.withUnsafeMutableBufferPointer { p in
                var offset = 0
                while offset < p.count {
                    let n = min(p.count - offset, 1 << 28)
                    var request: MPI_Request? = nil
                    check(
                        MPI_Ibcast(
                            p.baseAddress! + offset, Int32(n), cka_MPI_FLOAT(), Int32(root), cka_MPI_COMM_WORLD(),
                            &request), "broadcast")
                    wait(&request, "broadcast")
                    offset += n
                }
            }
            if root == rank { bytesSent += values.count * 4 * (size - 1) }
            out.append(buffer)
        }
        return out
    }

    /// An all-to-all exchange of Floats: every rank passes a vector (or an empty one) and the same `segments`, one
    /// range per rank; rank r receives segment r of every rank's vector, in rank order ([] from an empty vector).
    /// Counts are 32-bit: segments up to 2³¹ floats, vectors whose segments start below 2³¹.
    public func exchangeSegments(_ values: [Float], segments: [Range<Int>]) -> [[Float]] {
        precondition(segments.count == size, "exchangeSegments: one segment per rank")
        guard usesMPI, size > 1 else { return [values.isEmpty ? [] : Array(values[segments[0]])] }
        var sendCounts = segments.map { Int64(values.isEmpty ? 0 : $0.count) }
        var receiveCounts = [Int64](repeating: 0, count: size)
        sendCounts.withUnsafeMutableBufferPointer { s in
            receiveCounts.withUnsafeMutableBufferPointer { r in
                var request: MPI_Request? = nil
                check(
                    MPI_Ialltoall(
                        s.baseAddress, 1, cka_MPI_INT64_T(), r.baseAddress, 1, cka_MPI_INT64_T(), cka_MPI_COMM_WORLD(),
                        &request), "alltoall")
                wait(&request, "alltoall")
            }
        }
        var sc = sendCounts.map { Int32($0) }, sd = segments.map { Int32(values.isEmpty ? 0 : $0.lowerBound) }
        var rc = receiveCounts.map { Int32($0) }, rd = [Int32](repeating: 0, count: size)
        for i in 1..<size { rd[i] = rd[i - 1] + rc[i - 1] }
        var out = [Float](repeating: 0, count: max(1, Int(receiveCounts.reduce(0, +))))
        let source = values.isEmpty ? [Float(0)] : values
        bytesSent += 4 * (0..<size).filter { $0 != rank }.reduce(0) { $0 + Int(sendCounts[$1]) }
        source.withUnsafeBufferPointer { v in
            out.withUnsafeMutableBufferPointer { o in
                sc.withUnsafeMutableBufferPointer { sc in
                    sd.withUnsafeMutableBufferPointer { sd in
                        rc.withUnsafeMutableBufferPointer { rc in
                            rd.withUnsafeMutableBufferPointer { rd in
                                var request: MPI_Request? = nil
                                check(
                                    MPI_Ialltoallv(
                                        v.baseAddress, sc.baseAddress, sd.baseAddress, cka_MPI_FLOAT(), o.baseAddress,
                                        rc.baseAddress, rd.baseAddress, cka_MPI_FLOAT(), cka_MPI_COMM_WORLD(), &request),
                                    "alltoall")
                                wait(&request, "alltoall")
                            }
                        }
                    }
                }
            }
        }
        return (0..<size).map { Array(out[Int(rd[$0])..<Int(rd[$0]) + Int(rc[$0])]) }
    }

    /// Every rank's `values` (the same length on every rank), in rank order, on `root`; nil elsewhere.
    public func gather(_ values: [Double], root: Int = 0) -> [[Double]]? {
        guard usesMPI, size > 1 else { return [values] }
        let n = values.count
        var out = [Double](repeating: 0, count: rank == root ? n * size : 0)
        if rank != root { bytesSent += n * 8 }
        values.withUnsafeBufferPointer { v in
            out.withUnsafeMutableBufferPointer { o in
                var request: MPI_Request? = nil
                check(
                    MPI_Igather(
                        v.baseAddress, Int32(n), cka_MPI_DOUBLE(), o.baseAddress, Int32(n), cka_MPI_DOUBLE(),
                        Int32(root), cka_MPI_COMM_WORLD(), &request), "gather")
                wait(&request, "gather")
            }
        }
        guard rank == root else { return nil }
        return (0..<size).map { Array(out[$0 * n..<($0 + 1) * n]) }
    }

    /// Every rank's `values` (lengths may differ), in rank order, on `root`; nil elsewhere.
    public func gatherVariable(_ values: [Double], root: Int = 0) -> [[Double]]? {
        guard usesMPI, size > 1 else { return [values] }
        var count = Int64(values.count)
        var counts = [Int64](repeating: 0, count: rank == root ? size : 0)
        counts.withUnsafeMutableBufferPointer { c in
            var request: MPI_Request? = nil
            check(
                MPI_Igather(
                    &count, 1, cka_MPI_INT64_T(), c.baseAddress, 1, cka_MPI_INT64_T(), Int32(root),
                    cka_MPI_COMM_WORLD(), &request), "gather")
            wait(&request, "gather")
        }
        var counts32 = counts.map { Int32($0) }, displs = [Int32](repeating: 0, count: counts.count)
        for i in displs.indices.dropFirst() { displs[i] = displs[i - 1] + counts32[i - 1] }
        var out = [Double](repeating: 0, count: Int(counts.reduce(0, +)))
        if rank != root { bytesSent += values.count * 8 }
        values.withUnsafeBufferPointer { v in
            out.withUnsafeMutableBufferPointer { o in
                counts32.withUnsafeMutableBufferPointer { c in
                    displs.withUnsafeMutableBufferPointer { d in
                        var request: MPI_Request? = nil
                        check(
                            MPI_Igatherv(
                                v.baseAddress, Int32(values.count), cka_MPI_DOUBLE(), o.baseAddress, c.baseAddress,
                                d.baseAddress, cka_MPI_DOUBLE(), Int32(root), cka_MPI_COMM_WORLD(), &request), "gather")
                        wait(&request, "gather")
                    }
                }
            }
        }
        guard rank == root else { return nil }
        return (0..<size).map { Array(out[Int(displs[$0])..<Int(displs[$0]) + Int(counts32[$0])]) }
    }

    /// The element-wise sum of every rank's `values` (same length everywhere), added in rank order
    /// (`((v₀ + v₁) + v₂) + …`, starting from v₀), on every rank: the same bits for the same per-rank values,
    /// whatever the MPI implementation. Use it when the split of the work into ranks is part of the contract;
    /// when the split must not matter, gather the per-item terms and add them in item order instead.
    public func orderedSum(_ values: [Double]) -> [Double] {
        guard usesMPI, size > 1 else { return values }
        let all = allGather(values)
        var sum = all[0]
        for r in 1..<size {
            precondition(all[r].count == sum.count, "orderedSum: ranks passed different lengths")
            for i in sum.indices { sum[i] += all[r][i] }
        }
        return sum
    }

    // MARK: Point to point

    /// Sends `bytes` to `destination` (blocks until MPI has taken them; large messages wait for the receive,
    /// which bounds the memory of a fast sender).
    public func send(_ bytes: [UInt8], to destination: Int, tag: Int = 0) {
        precondition(usesMPI && destination != rank, "send needs another rank")
        var count = Int64(bytes.count)
        check(MPI_Send(&count, 1, cka_MPI_INT64_T(), Int32(destination), Int32(tag), cka_MPI_COMM_WORLD()), "send")
        bytes.withUnsafeBytes { p in
            check(
                MPI_Send(
                    p.baseAddress, Int32(bytes.count), cka_MPI_BYTE(), Int32(destination), Int32(tag),
                    cka_MPI_COMM_WORLD()), "send")
        }
        bytesSent += bytes.count + 8
    }

    /// The next message sent with `tag` by any rank, if one has arrived; nil at once otherwise.
    public func poll(tag: Int = 0) -> (source: Int, bytes: [UInt8])? {
        guard usesMPI else { return nil }
        var flag: Int32 = 0
        var status = MPI_Status()
        check(MPI_Iprobe(cka_MPI_ANY_SOURCE(), Int32(tag), cka_MPI_COMM_WORLD(), &flag, &status), "probe")
        guard flag != 0 else { return nil }
        return receive(from: Int(cka_status_source(&status)), tag: tag)
    }

    /// Receives the next message `send` sent from `source` with `tag` (`nil` source: from any rank).
    /// Returns the sender's rank and the bytes.
    public func receive(from source: Int? = nil, tag: Int = 0) -> (source: Int, bytes: [UInt8]) {
        precondition(usesMPI, "receive needs MPI")
        var count: Int64 = 0
        var status = MPI_Status()
        var request: MPI_Request? = nil
        check(
            MPI_Irecv(
                &count, 1, cka_MPI_INT64_T(), Int32(source ?? Int(cka_MPI_ANY_SOURCE())), Int32(tag),
                cka_MPI_COMM_WORLD(), &request), "receive")
        var done: Int32 = 0, pause: UInt32 = 20
        while true {
            check(MPI_Test(&request, &done, &status), "receive")
            if done != 0 { break }
            usleep(pause)
            pause = min(pause * 2, 2000)
        }
        let from = Int(cka_status_source(&status))
        var bytes = [UInt8](repeating: 0, count: Int(count))
        bytes.withUnsafeMutableBytes { p in
            check(
                MPI_Recv(
                    p.baseAddress, Int32(count), cka_MPI_BYTE(), Int32(from), Int32(tag), cka_MPI_COMM_WORLD(),
                    cka_MPI_STATUS_IGNORE()), "receive")
        }
        return (from, bytes)
    }
}
