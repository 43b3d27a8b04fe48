import CKADistributed
import CKATensor
import Testing

@Suite("Messages between ranks; a world of one without mpirun")
struct MessageTests {
    @Test("Integers, strings, arrays and tensors come back bit for bit, in order")
    func roundTrip() throws {
        var m = Message()
        let f = try Tensor<Float>(shape: [2, 3], scalars: [1, -0.0, .nan, .infinity, 1e-38, 3.25])
        let d = try Tensor<Double>(shape: [1, 2], scalars: [.pi, -1e300])
        m.append(-42)
        m.append("blocks.3:cls ✓")
        m.append(["a", "", "ü"])
        m.append([3, -1])
        m.append([0.1, 0.2])
        m.append(f)
        m.append(d)
        var r = MessageReader(m.bytes)
        #expect(try r.int() == -42)
        #expect(try r.string() == "blocks.3:cls ✓")
        #expect(try r.strings() == ["a", "", "ü"])
        #expect(try r.ints() == [3, -1])
        #expect(try r.doubles() == [0.1, 0.2])
        let f2 = try r.tensor(Float.self), d2 = try r.tensor(Double.self)
        #expect(f2.shape == [2, 3] && f2.scalars.map(\.bitPattern) == f.scalars.map(\.bitPattern))
        #expect(d2.shape == [1, 2] && d2.scalars == d.scalars)
        #expect(r.atEnd)
        #expect(throws: DistributedError.self) { try r.int() }  // past the end: a typed error, not a crash
        var truncated = MessageReader(Array(m.bytes.prefix(20)))
        _ = try truncated.int()
        #expect(throws: DistributedError.self) { try truncated.string() }
    }

    @Test("MPI only under a launcher: OMPI/PMIx/PMI variables, CKA_MPI overrides")
    func launchDetection() {
        #expect(!Communicator.launchedByMPI([:]))
        #expect(!Communicator.launchedByMPI(["SLURM_PROCID": "0", "PATH": "/bin"]))
        #expect(Communicator.launchedByMPI(["OMPI_COMM_WORLD_SIZE": "2"]))
        #expect(Communicator.launchedByMPI(["PMIX_RANK": "0"]))
        #expect(Communicator.launchedByMPI(["PMI_RANK": "1"]))
        #expect(!Communicator.launchedByMPI(["OMPI_COMM_WORLD_SIZE": "2", "CKA_MPI": "0"]))
        #expect(Communicator.launchedByMPI(["CKA_MPI": "1"]))
    }

    @Test("Without mpirun: rank 0 of 1, collectives return their input")
    func worldOfOne() {
        let w = Communicator.world
        #expect(w.rank == 0 && w.size == 1 && !w.usesMPI && w.isRoot && !w.isDistributed)
        #expect(w.orderedSum([1, 2]) == [1, 2])
        #expect(w.gather([3]) == [[3]])
        #expect(w.gatherVariable([4, 5]) == [[4, 5]])
        #expect(w.allGather([6]) == [[6]])
        #expect(w.allGather(floats: [7]) == [[7]])
        var bytes: [UInt8] = [1, 2]
        w.broadcast(&bytes)
        #expect(bytes == [1, 2])
        w.barrier()
    }
}
