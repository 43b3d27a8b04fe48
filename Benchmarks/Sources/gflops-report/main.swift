// gflops-report: GFLOP/s of the tensor core's kernels next to the sgemm 2048³ peak, measured in
// one process so that every percentage compares figures taken on the same machine, in the same
// state, with the same OpenBLAS thread count.
//
//   swift run -c release gflops-report [--threads 1,2] [--runs 5] [--min-time 0.5] [--require-goal]
//
// Each kernel is called once to warm up, then timed in `--runs` runs; a run repeats the call until
// at least `--min-time` seconds have passed, and the best run's time per call is reported.
// FLOP counts: GEMM 2·m·n·k; Gram X·Xᵀ of X [n, d] 2·n²·d (the full square, as sgemm computes it;
// the centred Gram's extra copy and ~4·n·d centring flops are not counted).
//
// The acceptance goal checked at the end: the (uncentred) Gram of X [32, 151296] float32 runs at
// ≥ 70 % of the sgemm GFLOP/s measured in the same run.

import CKAKit
import Foundation

#if DEBUG
    FileHandle.standardError.write(
        Data(
            """
            gflops-report: refusing to run a debug build: the timings would be meaningless.
            Run it as `swift run -c release gflops-report`.

            """.utf8))
    exit(1)
#else

    // MARK: - Options

    struct Options {
        var threads: [Int]? = nil  // nil: whatever OpenBLAS chose (OPENBLAS_NUM_THREADS or one per core)
        var runs = 5
        var minTime = 0.5
        var goal = 70.0
        var requireGoal = false
    }

    func usage() -> Never {
        print(
            """
            usage: gflops-report [--threads N[,M…]] [--runs R] [--min-time SECONDS] [--goal PERCENT] [--require-goal]

              --threads       OpenBLAS thread counts to measure, one table each (default: OpenBLAS's own,
                              i.e. OPENBLAS_NUM_THREADS or one per core)
              --runs          timed runs per kernel; the best is reported (default 5)
              --min-time      minimum seconds per run (default 0.5)
              --goal          Gram-vs-sgemm goal in percent (default 70)
              --require-goal  exit with status 3 if the goal is missed in any table
            """)
        exit(2)
    }

    func parseOptions() -> Options {
        var o = Options()
        var args = CommandLine.arguments.dropFirst()
        func value(_ flag: String) -> String {
            guard let v = args.popFirst() else { print("gflops-report: \(flag) needs a value"); usage() }
            return v
        }
        while let a = args.popFirst() {
            switch a {
            case "--threads":
                let list = value(a).split(separator: ",").compactMap { Int($0) }
                guard !list.isEmpty, list.allSatisfy({ $0 > 0 }) else { usage() }
                o.threads = list
            case "--runs":
                guard let r = Int(value(a)), r > 0 else { usage() }
                o.runs = r
            case "--min-time":
                guard let t = Double(value(a)), t > 0 else { usage() }
                o.minTime = t
            case "--goal":
                guard let g = Double(value(a)), g > 0 else { usage() }
                o.goal = g
            case "--require-goal": o.requireGoal = true
            case "-h", "--help": usage()
            default: print("gflops-report: unknown argument \(a)"); usage()
            }
        }
        return o
    }

    // MARK: - Data and timing

    /// Deterministic pseudo-random values in [-1, 1) (SplitMix64), the same as the TensorCore suite.
    func noise(_ i: Int, seed: UInt64) -> Float {
        var z = UInt64(bitPattern: Int64(i)) &+ seed &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) * 0x1p-23 - 1
    }

    func matrix(_ rows: Int, _ cols: Int, seed: UInt64) -> Tensor<Float> {
        Tensor<Float>(shape: [rows, cols], generating: { noise($0, seed: seed) })
    }

    /// Keeps results observable so that no call can be optimised away.
    nonisolated(unsafe) var sink: Double = 0

    func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// Seconds per call of one run: `body` repeated until at least `minTime` seconds have passed.
    func timePerCall(minTime: Double, _ body: () throws -> Void) rethrows -> Double {
        let clock = ContinuousClock()
        var calls = 0
        let start = clock.now
        var elapsed = 0.0
        repeat {
            try body()
            calls += 1
            elapsed = seconds(clock.now - start)
        } while elapsed < minTime
        return elapsed / Double(calls)
    }

    /// CPU time used on the whole machine (all processes, from /proc/stat) and by this process, in
    /// seconds, so that a table can say how much of the machine something else was using meanwhile.
    struct CPUSample {
        var machineBusy: Double  // user+nice+system+irq+softirq+steal over all CPUs
        var machineSteal: Double
        var own: Double  // this process, user + system
        var wall: ContinuousClock.Instant

        static func now() -> CPUSample {
            var busy = 0.0, steal = 0.0
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            if let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
                let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
            {
                let f = line.split(separator: " ").dropFirst().compactMap { Double($0) }
                if f.count >= 8 {
                    busy = (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / ticks
                    steal = f[7] / ticks
                }
            }
            var usage = rusage()
            #if os(Linux)
                getrusage(RUSAGE_SELF.rawValue, &usage)
            #else
                getrusage(RUSAGE_SELF, &usage)
            #endif
            let own =
                Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) * 1e-6
                + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6
            return CPUSample(machineBusy: busy, machineSteal: steal, own: own, wall: ContinuousClock().now)
        }

        /// Average number of CPUs busy with other work (other processes, or stolen by the hypervisor)
        /// between `self` and `later`.
        func otherLoad(until later: CPUSample) -> (other: Double, steal: Double) {
            let wall = seconds(later.wall - self.wall)
            guard wall > 0 else { return (0, 0) }
            let other = (later.machineBusy - machineBusy) - (later.own - own)
            return (max(0, other) / wall, max(0, later.machineSteal - machineSteal) / wall)
        }
    }

    // MARK: - Kernels

    struct Kernel {
        var name: String
        var flops: Double
        var isPeak = false
        var isGoal = false
        var run: () throws -> Void
        /// Compares one or two output elements with a Double-precision reference; nil if they agree.
        var check: () throws -> String?
    }

    /// Relative difference check of a Float-accumulated result against a Double reference.
    func agree(_ got: Double, _ want: Double, tol: Double = 1e-3, scale: Double) -> Bool {
        abs(got - want) <= tol * max(abs(want), scale)
    }

    func gemmKernel(_ name: String, m: Int, n: Int, k: Int, isPeak: Bool = false) -> Kernel {
        let a = matrix(m, k, seed: 1), b = matrix(k, n, seed: 2)
        var c = Tensor<Float>(shape: [m, n])
        return Kernel(
            name: name, flops: 2 * Double(m) * Double(n) * Double(k), isPeak: isPeak,
            run: {
                try Tensor.gemm(a, b, into: &c)
                sink += Double(c[0, 0])
            },
            check: {
                try Tensor.gemm(a, b, into: &c)
                for (i, j) in [(0, 0), (m - 1, n - 1), (m / 2, n / 3)] {
                    var want = 0.0, scale = 0.0
                    for p in 0..<k {
                        let t = Double(a[i, p]) * Double(b[p, j])
                        want += t; scale += abs(t)
                    }
                    let got = Double(c[i, j])
                    if !agree(got, want, scale: scale) { return "C[\(i), \(j)] = \(got), expected \(want)" }
                }
                return nil
            })
    }

    enum GramVariant {
        case uncentred  // x.gramOfRows()
        case centredCopy  // x.gram(centered: true): the Gram kernel (≤ 256 rows), no copy
        case centredInPlace  // x.centerColumns(); x.gramOfRows(): what the CKA code does with its buffers
    }

    func gramKernel(_ name: String, n: Int, d: Int, _ variant: GramVariant, isGoal: Bool = false) -> Kernel {
        var x = matrix(n, d, seed: 3)
        func gram() throws -> Tensor<Double> {
            switch variant {
            case .uncentred: return try x.gramOfRows()
            case .centredCopy: return try x.gram(centered: true)
            case .centredInPlace:
                try x.centerColumns()  // x is uniquely referenced after the first call: no copy
                return try x.gramOfRows()
            }
        }
        let centered = variant != .uncentred
        return Kernel(
            name: name, flops: 2 * Double(n) * Double(n) * Double(d), isGoal: isGoal,
            run: {
                sink += try gram()[0, 0]
            },
            check: {
                let g = try gram()
                x = matrix(n, d, seed: 3)  // the in-place variant centred x; the reference centres the original itself
                guard g.shape == [n, n] else { return "shape \(g.shape), expected [\(n), \(n)]" }
                // Column means (Double) for the centred reference.
                var mean = [Double](repeating: 0, count: d)
                if centered {
                    x.withUnsafeBufferPointer { p in
                        for r in 0..<n { for j in 0..<d { mean[j] += Double(p[r * d + j]) } }
                    }
                    for j in 0..<d { mean[j] /= Double(n) }
                }
                for (i, j) in [(0, 0), (n - 1, 0), (n / 2, n - 1), (n - 1, n - 1)] {
                    var want = 0.0, scale = 0.0
                    x.withUnsafeBufferPointer { p in
                        for q in 0..<d {
                            let t = (Double(p[i * d + q]) - mean[q]) * (Double(p[j * d + q]) - mean[q])
                            want += t; scale += abs(t)
                        }
                    }
                    if !agree(g[i, j], want, scale: scale) { return "G[\(i), \(j)] = \(g[i, j]), expected \(want)" }
                    if g[i, j] != g[j, i] { return "not symmetric at [\(i), \(j)]: \(g[i, j]) vs \(g[j, i])" }
                }
                return nil
            })
    }

    // MARK: - Report

    func cpuModel() -> String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        for line in info.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return "unknown CPU"
    }

    func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
        let n = s.count
        if n >= width { return s }
        let fill = String(repeating: " ", count: width - n)
        return right ? fill + s : s + fill
    }

    let options = parseOptions()

    let kernels: [Kernel] = [
        gemmKernel("sgemm f32 [2048x2048]·[2048x2048]", m: 2048, n: 2048, k: 2048, isPeak: true),
        gemmKernel("gemm f32 [197x768]·[768x2304] (ViT-B/16 qkv, one image)", m: 197, n: 2304, k: 768),
        gemmKernel("gemm f32 [6304x768]·[768x3072] (ViT-B/16 fc1, 32 images)", m: 6304, n: 3072, k: 768),
        gramKernel(
            "gram f32 [32x151296]·[151296x32] (CKA Gram of a ViT-B block output)",
            n: 32, d: 197 * 768, .uncentred, isGoal: true),
        gramKernel(
            "gram f32 [32x151296]·[151296x32] centred, Gram kernel (gram(centered: true))",
            n: 32, d: 197 * 768, .centredCopy),
        gramKernel(
            "gram f32 [32x151296]·[151296x32] centred in place by SYRK (centerColumns() + gramOfRows())",
            n: 32, d: 197 * 768, .centredInPlace),
    ]

    print("gflops-report: CKATensor kernels against the sgemm 2048³ peak, all in one process")
    print("CPU: \(cpuModel()) (\(ProcessInfo.processInfo.activeProcessorCount) online)")
    print(
        "OpenBLAS core: \(blasCoreName); OPENBLAS_NUM_THREADS=\(ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] ?? "(unset)")"
    )
    print(
        "Timing: \(options.runs) interleaved rounds, each timing every kernel for ≥ \(options.minTime) s; best round per kernel"
    )

    var failedChecks = 0
    for k in kernels {
        if let problem = try k.check() {
            print("CHECK FAILED  \(k.name): \(problem)")
            failedChecks += 1
        }
    }
    if failedChecks == 0 { print("Results checked against Double references at sample elements: ok") }

    var goalMissed = false
    for threads in options.threads ?? [blasThreadCount] {
        if options.threads != nil { setBLASThreadCount(threads) }
        print("")
        print("BLAS threads: \(blasThreadCount)  (core \(blasCoreName))")
        let nameWidth = kernels.map(\.name.count).max()!
        print(
            pad("shape", nameWidth) + "  " + pad("ms", 9, right: true) + "  " + pad("GFLOP/s", 8, right: true)
                + "  " + pad("% of sgemm peak", 15, right: true))
        print(String(repeating: "-", count: nameWidth + 2 + 9 + 2 + 8 + 2 + 15))
        for k in kernels { try k.run() }  // warm up (threads, caches, page faults) at this thread count
        let before = CPUSample.now()
        var best = [Double](repeating: .infinity, count: kernels.count)
        // Rounds interleave the kernels, so that a burst of load from elsewhere hits all of them
        // alike and the best round of each comes from a quiet moment.
        for _ in 0..<options.runs {
            for (i, k) in kernels.enumerated() {
                best[i] = min(best[i], try timePerCall(minTime: options.minTime, k.run))
            }
        }
        let load = before.otherLoad(until: CPUSample.now())
        let peak = zip(kernels, best).first(where: { $0.0.isPeak }).map { $0.0.flops / $0.1 / 1e9 } ?? .nan
        var goalPercent = Double.nan
        for (k, t) in zip(kernels, best) {
            let gflops = k.flops / t / 1e9
            let percent = 100 * gflops / peak
            if k.isGoal { goalPercent = percent }
            print(
                pad(k.name, nameWidth) + "  " + pad(String(format: "%.3f", t * 1e3), 9, right: true)
                    + "  " + pad(String(format: "%.1f", gflops), 8, right: true)
                    + "  " + pad(String(format: "%.1f %%", percent), 15, right: true))
        }
        print(
            String(
                format:
                    "Other load during this table: %.2f CPUs busy elsewhere (of which %.2f stolen by the hypervisor)",
                load.other, load.steal)
                + (load.other > 0.25 ? "  ← NOT QUIET: re-run on an idle machine before trusting the percentages" : ""))
        let met = goalPercent >= options.goal
        if !met { goalMissed = true }
        let pct = goalPercent.isNaN ? "n/a" : String(format: "%.1f", goalPercent)
        print(
            "Goal (uncentred Gram ≥ \(String(format: "%.0f", options.goal)) % of sgemm): \(met ? "MET" : "NOT MET")"
                + " — \(pct) % with \(blasThreadCount) BLAS thread\(blasThreadCount == 1 ? "" : "s")")
    }

    if sink.isNaN { print("(sink: \(sink))") }
    if failedChecks > 0 { exit(4) }
    if options.requireGoal && goalMissed { exit(3) }
#endif
